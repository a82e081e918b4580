//! DHCPv4: wire format at the edge (`wire`), the pure RFC 2131 engine (`engine`, `alloc`,
//! `options`, `dest`), the sans-IO commit pipeline (`pipeline`), and the DHCP thread's loop that
//! owns them (`service`). `Iface` and `Dest` are defined in `net` (which reads the one and sends
//! to the other) and used here.

pub mod alloc;
pub mod control;
pub mod dest;
pub mod engine;
pub mod events;
pub mod options;
pub mod ping;
pub mod pipeline;
pub mod relayport;
pub mod reserve;
pub mod service;
#[cfg(test)]
pub(crate) mod test_relay;
pub mod wire;

pub use crate::net::Iface;
