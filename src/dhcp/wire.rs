//! DHCPv4 wire format at the edge: `decode` turns bytes into a `Request` without ever panicking
//! (dhcproto's owned decoder panics or silently stops on some bad input; see shared notes),
//! `encode` turns a reply into bytes (BOOTP padding to 300, client max size respected).
//! No sockets, no clock.

use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;

use crate::lease::HwAddr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("packet too short ({0} bytes)")]
    TooShort(usize),
    #[error("not a BOOTREQUEST (op {0})")]
    NotRequest(u8),
    #[error("bad magic cookie")]
    BadCookie,
    #[error("hardware address length {0} > 16")]
    BadHlen(u8),
    #[error("no DHCP message type (option 53)")]
    NoMessageType,
    #[error("malformed option {code}")]
    BadOption { code: u8 },
}

/// A decoded client request: the header fields and the options the server uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub htype: u8,
    pub hops: u8,
    pub xid: u32,
    pub secs: u16,
    pub broadcast: bool,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub hwaddr: HwAddr,
    pub msg_type: MessageType,
    /// Option 61, raw (type byte included).
    pub client_id: Option<Vec<u8>>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 12, raw bytes (may not be UTF-8; the engine validates).
    pub hostname: Option<Vec<u8>>,
    /// Option 55, in the client's order.
    pub params: Vec<u8>,
    /// Option 57.
    pub max_size: Option<u16>,
    /// Option 51.
    pub lease_time: Option<u32>,
    /// Option 82, raw, echoed back to relays.
    pub relay_info: Option<Vec<u8>>,
    /// Option 60, raw.
    pub vendor_class: Option<Vec<u8>>,
    /// Option 81, raw.
    pub fqdn: Option<Vec<u8>>,
}

pub fn decode(_buf: &[u8]) -> Result<Request, DecodeError> {
    todo!("wire::decode")
}

/// Encode a reply; never longer than `max_size` (at least 576).
pub fn encode(_msg: &dhcproto::v4::Message, _max_size: usize) -> Vec<u8> {
    todo!("wire::encode")
}
