//! leasedns: a DHCPv4 server and an embedded DNS server sharing one lease table.
//!
//! # Layout
//! - `config`: raw TOML types, the validated `Config`, errors naming file, line and field.
//! - `clock`: `UnixTime` and the `Clock` trait (time is passed in everywhere else).
//! - `lease`: lease types, the lease `table`, the durable `journal`.
//! - `dhcp`: `wire` (bytes <-> requests/replies), `engine` (pure RFC 2131), `alloc`, `options`,
//!   `dest` (where replies go), `service` (the async loop that owns the engine).
//! - `dns`: `names` (the index leases produce), `zone` (hickory handler), `server` (sockets).
//! - `ddns`: outbound RFC 2136 updates to other DNS servers (DHCID, TSIG, a queue on disk).
//! - `http`: the HTTP listener; DynDNS2 `/nic/update`.
//! - `net`: socket building and ioctls, no protocol logic.
//! - `daemon`: wiring, signals, shutdown.
#![deny(unsafe_code)]

pub mod clock;
pub mod config;
pub mod daemon;
pub mod ddns;
pub mod dhcp;
pub mod dns;
pub mod http;
pub mod lease;
#[allow(unsafe_code)]
pub mod net;

/// Completes (changes to `true`) when the process is shutting down.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;
