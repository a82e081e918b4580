//! End-to-end tests: network-namespace LANs with real DHCP clients (dhclient, udhcpc) against the
//! leasedns binary, answers checked with dig. Needs root; never touches the host's interfaces,
//! resolver or host name. `harness_selftest` proves the harness against dnsmasq.
//!
//! Run: `cargo test --test e2e` as root. Tests run in parallel: each builds its own LAN named
//! `ld<tag><pid><seq>-*` on 10.(50+index).0.0/24. Indices in use: 1 harness self-test,
//! 2 dhclient, 3 udhcpc, 4 restart, 5 reservation, 6 two clients, 60-62 dynamic DNS (ddns_in).

mod clients;
mod dig;
mod netns;
mod proc;
mod server;

mod check_config;
mod ddns_in;
mod harness_selftest;
mod leasedns_lan;
