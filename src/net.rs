//! Socket building for DHCP: one wildcard UDP socket with SO_BROADCAST and IP_PKTINFO, replies
//! sent out of the receiving interface, ARP entries for clients without an address, and the
//! host's interface list. Contains no protocol logic. The one module allowed `unsafe` (ioctl).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::dhcp::Iface;
use crate::dhcp::dest::Dest;

/// What came with a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    pub len: usize,
    pub src: SocketAddrV4,
    pub ifindex: u32,
}

pub struct DhcpSocket {}

impl DhcpSocket {
    /// Bind 0.0.0.0:`port` with SO_REUSEADDR, SO_BROADCAST and IP_PKTINFO.
    pub fn bind(_port: u16) -> io::Result<DhcpSocket> {
        todo!()
    }
    pub fn local_port(&self) -> u16 {
        todo!()
    }
    /// Wait for a datagram.
    pub async fn recv(&self, _buf: &mut [u8]) -> io::Result<RecvMeta> {
        todo!()
    }
    /// A datagram if one is ready now, without waiting (to drain a batch).
    pub fn try_recv(&self, _buf: &mut [u8]) -> io::Result<Option<RecvMeta>> {
        todo!()
    }
    /// Send a reply: `src` is the server address to send from, `client_port` is 68 normally.
    /// For `Dest::Direct` an ARP entry is written first (falling back to broadcast on failure).
    pub fn send(
        &self,
        _buf: &[u8],
        _dest: &Dest,
        _src: Ipv4Addr,
        _client_port: u16,
    ) -> io::Result<()> {
        todo!()
    }
}

/// The host's interfaces with their IPv4 addresses.
pub fn interfaces() -> io::Result<Vec<Iface>> {
    todo!()
}
