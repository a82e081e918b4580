//! The embedded DNS server: `names` (the index leases and config produce, changed only by a
//! `NameChange`), `statics` (its static records) and `hosts` (the hosts file), `zone` (hickory
//! ZoneHandler for the local domain, reverse zones and static overrides), `forward` (upstreams
//! and the cache), `server` (sockets, the request handler and the catalog), `dynamic` (records
//! written by UPDATE and DynDNS2), `journal` (their durable log), `tsig` (RFC 8945), `update`
//! (RFC 2136), `fast` (the UDP fast path for the common queries), `xfr` (zone transfers to secondaries),
//! `notify` (NOTIFY to them when the serial changes), `ratelog` (info lines
//! per source, rate-limited).

pub mod batch;
pub mod dynamic;
pub mod fast;
pub mod forward;
pub mod hosts;
pub mod journal;
pub mod listen;
pub mod names;
pub mod notify;
pub mod ratelog;
pub mod server;
pub mod statics;
pub mod tsig;
pub mod update;
pub mod wire;
pub mod xfr;
pub mod zone;
