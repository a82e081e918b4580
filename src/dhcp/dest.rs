//! Where a reply goes (RFC 2131 section 4.1). Pure.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::lease::HwAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// To the relay agent (giaddr) on the server port.
    Relay(SocketAddrV4),
    /// To a client that has an address (ciaddr) on the client port.
    Unicast(SocketAddrV4),
    /// To 255.255.255.255 on the client port, out of this interface.
    Broadcast { ifindex: u32 },
    /// To `ip` on the client port at `hwaddr`, after writing an ARP entry, out of this interface.
    Direct {
        ip: Ipv4Addr,
        hwaddr: HwAddr,
        ifindex: u32,
    },
}
