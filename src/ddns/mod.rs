//! Outbound dynamic DNS (RFC 2136) for users whose authoritative DNS lives elsewhere (BIND, Knot,
//! PowerDNS): lease grants, renames, releases and expiries become TSIG-signed UPDATEs to the
//! configured primaries, with RFC 4701 DHCID records and the RFC 4703 conflict rules.
//!
//! # Layout
//! - `dhcid`: the DHCID RDATA of a client for a name (pure).
//! - `tracker`: lease changes to jobs (what each lease has in DNS) (pure).
//! - `update`: the UPDATE message of each step and what follows each answer (pure).
//! - `queue`: pending jobs on disk, surviving restarts.
//! - `client`: the task fed by the DHCP service through a channel; sockets, retries, backoff.
//!   Requests are signed and answers checked by the shared TSIG code in `dns::tsig`.
//!
//! The DHCP service never waits on any of this: it hands each durable batch to the channel.

pub mod client;
pub mod dhcid;
pub mod queue;
pub mod tracker;
pub mod update;

pub use client::{DdnsSender, DdnsTask, start};
