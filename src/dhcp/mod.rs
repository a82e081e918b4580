//! DHCPv4: wire format at the edge (`wire`), the pure RFC 2131 engine (`engine`, `alloc`,
//! `options`, `dest`), and the async service that owns it (`service`).

pub mod alloc;
pub mod dest;
pub mod engine;
pub mod options;
pub mod ping;
pub mod service;
pub mod wire;

use std::net::Ipv4Addr;

/// The interface a request came in on, as the engine sees it: plain data, no sockets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub index: u32,
    pub name: String,
    /// IPv4 addresses of the interface with their prefix lengths.
    pub addrs: Vec<(Ipv4Addr, u8)>,
}
