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
//! 8 reload; 40-43 crash safety (kill -9, full disk, dnsmasq import, restart figures); 46-47
//! restart time and memory with 100,000 leases; 50-53 dns; 60-62 inbound dynamic DNS (nsupdate,
//! ddclient); 70-72 outbound DDNS (BIND).

mod clients;
mod dhcp_load;
mod dig;
mod netns;
mod proc;
mod server;

mod check_config;
mod crash;
mod ddns_in;
mod ddns_out;
mod dhcp_clients;
mod dns;
mod harness_selftest;
mod hostile;
mod leasedns_lan;
mod options;
mod perf;
mod relay;
mod reload;
