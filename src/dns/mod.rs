//! The embedded DNS server: `names` (the index leases and config produce), `zone` (hickory
//! ZoneHandler for the local domain, reverse zones and static overrides), `forward` (upstreams
//! and the cache), `server` (sockets, the request handler and the catalog).

pub mod forward;
pub mod names;
pub mod server;
pub mod zone;
