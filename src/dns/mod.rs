//! The embedded DNS server: `names` (the index leases and config produce), `zone` (hickory
//! ZoneHandler for the local domain, reverse zones and static overrides), `forward` (upstreams
//! and the cache), `server` (sockets, the request handler and the catalog), `dynamic` (records
//! written by UPDATE and DynDNS2), `journal` (their durable log), `tsig` (RFC 8945), `update`
//! (RFC 2136), `fast` (the UDP fast path for the common queries).

pub mod dynamic;
pub mod fast;
pub mod forward;
pub mod journal;
pub mod names;
pub mod server;
pub mod tsig;
pub mod update;
pub mod zone;
