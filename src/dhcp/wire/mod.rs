//! DHCPv4 wire format at the edge: `decode` turns bytes into a `Request` without ever panicking
//! (dhcproto's owned decoder panics or silently stops on some bad input; see shared notes),
//! `encode_ordered` turns a `ReplyMsg` into bytes (53 and 54 first, then the client's list,
//! BOOTP padding to 300, client max size respected). No sockets, no clock.
//!
//! Decoding reads the fixed BOOTP header and walks the options itself with bounds checks; it
//! never hands client bytes to dhcproto's typed option decoders, and copies an option's value
//! only when the `Request` keeps it. A reply's options are kept in wire form as they are set
//! (`ReplyOpts`), so encoding is a header, the options in order, and End: no option map, no
//! per-option allocation. `encode`/`encode_message` take a dhcproto `Message` (tests, tools).
//!
//! One file a concern: `decode` (bytes to `Request`), `reply` (`ReplyMsg`, `ReplyOpts`),
//! `encode` (`ReplyMsg` to bytes, fitted to the client's size); the BOOTP header layout and the
//! option walk they share are here.

mod decode;
mod encode;
mod reply;
#[cfg(test)]
mod tests;

pub use decode::{ClientFqdn, Request, decode, parse_fqdn};
#[cfg(test)]
pub use encode::{encode, encode_message};
pub use encode::{encode_into, encode_ordered};
pub use reply::{ReplyMsg, ReplyOpts};

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
    #[error("unknown DHCP message type {0}")]
    UnknownMessageType(u8),
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("dhcproto could not encode the reply: {0}")]
    Dhcproto(#[from] dhcproto::error::EncodeError),
    #[error("bad reply header: {0}")]
    BadHeader(&'static str),
    #[error("reply is {len} bytes even without optional options; limit is {limit}")]
    TooLarge { len: usize, limit: usize },
}

/// Fixed BOOTP header offsets (RFC 2131 figure 1).
const OP: usize = 0;
const HTYPE: usize = 1;
const HLEN: usize = 2;
const HOPS: usize = 3;
const XID: usize = 4;
const SECS: usize = 8;
const FLAGS: usize = 10;
const CIADDR: usize = 12;
const YIADDR: usize = 16;
const SIADDR: usize = 20;
const GIADDR: usize = 24;
const CHADDR: usize = 28;
const SNAME: std::ops::Range<usize> = 44..108;
const FILE: std::ops::Range<usize> = 108..236;
const COOKIE: std::ops::Range<usize> = 236..240;
const OPTIONS: usize = 240;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// BOOTP's minimum message size (RFC 951); some relays and old clients drop shorter ones.
pub const BOOTP_MIN: usize = 300;
/// The smallest datagram every host must accept (RFC 2131 section 2, option 57 minimum).
pub const MIN_MAX_SIZE: usize = 576;
/// IPv4 (no options) plus UDP header bytes, subtracted from option 57's datagram size.
const IP_UDP_HEADERS: usize = 28;

const OPT_PAD: u8 = 0;
const OPT_END: u8 = 255;
const OPT_OVERLOAD: u8 = 52;

/// One option as found in a buffer: its code and the byte range of its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tlv {
    code: u8,
    start: usize,
    end: usize,
}

/// Walk the options in `area` until End or the end of the area. An option whose length runs
/// past the area ends the walk: `Err(code)` if the caller wants that code, otherwise `Ok`.
fn walk(area: &[u8], mut visit: impl FnMut(Tlv), wanted: impl Fn(u8) -> bool) -> Result<(), u8> {
    let mut i = 0;
    while let Some(&code) = area.get(i) {
        match code {
            OPT_PAD => i += 1,
            OPT_END => return Ok(()),
            _ => {
                let Some(&len) = area.get(i + 1) else {
                    return if wanted(code) { Err(code) } else { Ok(()) };
                };
                let (start, end) = (i + 2, i + 2 + usize::from(len));
                if end > area.len() {
                    return if wanted(code) { Err(code) } else { Ok(()) };
                }
                visit(Tlv { code, start, end });
                i = end;
            }
        }
    }
    Ok(())
}
