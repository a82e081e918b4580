//! End-to-end tests: network-namespace LANs with real DHCP clients (dhclient, udhcpc, dhcpcd;
//! plus dhcrelay, nmap and perfdhcp) against the leasedns binary, answers checked with dig. Needs
//! root; never touches the host's interfaces, resolver or host name. `harness_selftest` proves
//! the harness against dnsmasq.
//!
//! Run: `cargo test --test e2e` as root. Tests run in parallel: each builds its own LAN named
//! `ld<tag><pid><seq>-*` on 10.(50+index).0.0/24 (a relayed segment: 10.(50+index).1.0/24).
//! Indices in use: 1 harness self-test, 2 dhclient, 3 udhcpc, 4 restart, 5 reservation, 6 two
//! clients; issue 3: 20 dhcpcd, 21-23 renewals, 24 options (nmap), 25 relay, 26 moved client,
//! 27 perfdhcp, 28 hostile packets, 29 rapid commit, 30 classes and per-host options, 31 ping
//! check, 32 non-authoritative relayed subnet;
//! 8 reload, 158 hosts-file reload (issue 15); 40-43 crash safety (kill -9, full disk, dnsmasq import, restart figures); 46-47
//! restart time and memory with 100,000 leases; 50-53 dns; 60-62 inbound dynamic DNS (nsupdate,
//! ddclient); 70-72 outbound DDNS (BIND); issue 14 (hostile input, HTTP/DDNS/storage):
//! 100 HTTP floods, 101 name hijack, 102 ACK after fdatasync (strace), 103-105 power cut
//! (ext4 shutdown);
//! 90-95 issue 13 (90 scripted RFC conformance, 91 network boot, 92 reservations after a
//! reload, 95 names after restarts) and issue 14's DHCP part (93 DECLINE flood and forged
//! RELEASE, 94 relay trust);
//! 80-82 DNS front door (floods, recursion policy, RFC-shaped answers, out of descriptors);
//! 84-85 zone transfers and NOTIFY to real secondaries (NSD, BIND);
//! 110-119 running as a service (110-111 sd_notify; 112 the Debian package serving a LAN;
//! `package` also verifies the systemd unit). 120-124 Prometheus
//! /metrics (issue 16); 125-129 the control API and CLI (issue 16; 125 list, release, restart);
//! 140-144 names, conflicts, pools, the event stream and the status page (140 events, 141
//! the page in headless Chromium); 145-149 operating it (145 runtime reservations and reload,
//! 146 dhcp_script across a kill -9);
//! 150-154 hardening (150 privilege drop, 151 leases per relay port, 152 declined addresses,
//! 153 capabilities trimmed when started unprivileged); 130-132 two nodes sharing a PostgreSQL
//! lease store and the `db` tools (issue 18: `ha`).

mod clients;
mod dhcp_load;
mod dig;
mod netns;
mod proc;
mod server;

mod api;
mod api_events;
mod browser;
mod check_config;
mod conformance;
mod crash;
mod ddns_in;
mod ddns_out;
mod dhcp_clients;
mod dns;
mod dns_door;
mod dns_xfr;
mod durable_order;
mod ha;
mod harness_selftest;
mod hook;
mod hostile;
mod hostile_http;
mod leasedns_lan;
mod metrics;
mod name_hijack;
mod ops;
mod options;
mod package;
mod perf;
mod power_cut;
mod privdrop;
mod relay;
mod relay_limits;
mod reload;
mod reservations;
mod service;
mod status_page;
