//! The embedded DNS server: `names` (the index leases and config produce), `zone` (hickory
//! ZoneHandler for the local domain and reverse zones), `server` (sockets and the catalog).

pub mod names;
pub mod server;
pub mod zone;
