//! Decoding: bytes to a `Request`, never panicking: the fixed header read with bounds checks,
//! the options walked by hand (RFC 3396 joining, option overload), only the wanted ones kept.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;

use super::{
    CHADDR, CIADDR, COOKIE, DecodeError, FILE, FLAGS, GIADDR, HLEN, HOPS, HTYPE, MAGIC, OP,
    OPT_OVERLOAD, OPTIONS, SECS, SIADDR, SNAME, XID, YIADDR, walk,
};
use crate::lease::HwAddr;

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
    /// Option 81, raw (see `parse_fqdn`).
    pub fqdn: Option<Vec<u8>>,
    /// Option 77, raw.
    pub user_class: Option<Vec<u8>>,
    /// Option 80 was present (RFC 4039).
    pub rapid_commit: bool,
}

/// Option 81 (RFC 4702) as the client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFqdn {
    /// The flags byte: S = 0x01, O = 0x02, E = 0x04, N = 0x08.
    pub flags: u8,
    /// The name's labels, as sent (not validated); empty when the client sent no name.
    pub labels: Vec<Vec<u8>>,
}

impl ClientFqdn {
    pub const S: u8 = 0x01;
    pub const O: u8 = 0x02;
    pub const E: u8 = 0x04;
    pub const N: u8 = 0x08;

    /// Whether the name is in DNS wire format (E set) rather than ASCII.
    pub fn wire_format(&self) -> bool {
        self.flags & Self::E != 0
    }
}

/// Parse option 81's value: flags, two rcode bytes, then the name, in DNS wire format (E=1;
/// labels up to a zero byte or the end) or ASCII (E=0, dotted). None when malformed.
pub fn parse_fqdn(raw: &[u8]) -> Option<ClientFqdn> {
    let (&flags, rest) = raw.split_first()?;
    let name = rest.get(2..)?;
    let labels = if flags & ClientFqdn::E != 0 {
        wire_labels(name)?
    } else {
        let text = name.split(|b| *b == 0).next().unwrap_or_default();
        text.split(|b| *b == b'.')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    Some(ClientFqdn { flags, labels })
}

/// DNS wire-format labels (no compression) up to the root label or the end of the bytes.
fn wire_labels(mut name: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut labels = Vec::new();
    while let Some((&len, rest)) = name.split_first() {
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        let label = rest.get(..usize::from(len))?;
        labels.push(label.to_vec());
        name = rest.get(usize::from(len)..).unwrap_or_default();
    }
    Some(labels)
}

const BOOTREQUEST: u8 = 1;

/// The option codes `decode` keeps; every other option is skipped unread.
const WANTED: [u8; 13] = [53, 50, 54, 61, 12, 55, 57, 51, 82, 60, 81, 77, 80];

/// For each option code, 1 + its place in `WANTED`; 0 when not wanted.
const SLOTS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < WANTED.len() {
        t[WANTED[i] as usize] = i as u8 + 1;
        i += 1;
    }
    t
};

/// Values of the wanted options, each the concatenation of all its instances (RFC 3396):
/// borrowed from the packet while an option comes once, copied only when it must be joined.
#[derive(Default)]
struct RawOptions<'a> {
    vals: [Option<Cow<'a, [u8]>>; WANTED.len()],
}

impl<'a> RawOptions<'a> {
    fn slot(code: u8) -> Option<usize> {
        usize::from(SLOTS[usize::from(code)]).checked_sub(1)
    }
    fn add(&mut self, code: u8, value: &'a [u8]) {
        if let Some(slot) = Self::slot(code).and_then(|i| self.vals.get_mut(i)) {
            match slot {
                None => *slot = Some(Cow::Borrowed(value)),
                Some(v) => v.to_mut().extend_from_slice(value),
            }
        }
    }
    fn take(&mut self, code: u8) -> Option<Cow<'a, [u8]>> {
        Self::slot(code).and_then(|i| self.vals.get_mut(i)?.take())
    }
    /// A variable-length value as the `Request` keeps it.
    fn take_vec(&mut self, code: u8) -> Option<Vec<u8>> {
        self.take(code).map(Cow::into_owned)
    }
}

fn is_wanted(code: u8) -> bool {
    code == OPT_OVERLOAD || SLOTS[usize::from(code)] != 0
}

/// Collect the wanted options from the options field and, if option 52 says so, from `file`
/// (value 1 or 3) and then `sname` (value 2 or 3), in that order (RFC 3396 section 5).
fn collect_options(buf: &[u8]) -> Result<RawOptions<'_>, DecodeError> {
    let mut raw = RawOptions::default();
    let mut overload: Option<&[u8]> = None;
    let area = buf.get(OPTIONS..).unwrap_or_default();
    walk(
        area,
        |t| match t.code {
            OPT_OVERLOAD => overload = area.get(t.start..t.end),
            code => raw.add(code, area.get(t.start..t.end).unwrap_or_default()),
        },
        is_wanted,
    )
    .map_err(|code| DecodeError::BadOption { code })?;
    let overload = match overload {
        None => 0,
        Some([v @ 1..=3]) => *v,
        Some(_) => return Err(DecodeError::BadOption { code: OPT_OVERLOAD }),
    };
    for (bit, field) in [(1u8, FILE), (2u8, SNAME)] {
        if overload & bit == 0 {
            continue;
        }
        let area = buf.get(field).unwrap_or_default();
        walk(
            area,
            |t| raw.add(t.code, area.get(t.start..t.end).unwrap_or_default()),
            |c| WANTED.contains(&c),
        )
        .map_err(|code| DecodeError::BadOption { code })?;
    }
    Ok(raw)
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    match buf.get(at..at + 2) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    match buf.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// A fixed-length option: `Ok(None)` if absent, `BadOption` if present with another length.
fn fixed<const N: usize>(
    raw: &mut RawOptions<'_>,
    code: u8,
) -> Result<Option<[u8; N]>, DecodeError> {
    match raw.take(code) {
        None => Ok(None),
        Some(v) => <[u8; N]>::try_from(&v[..])
            .map(Some)
            .map_err(|_| DecodeError::BadOption { code }),
    }
}

/// A variable-length option that must hold at least `min` bytes when present.
fn at_least(
    raw: &mut RawOptions<'_>,
    code: u8,
    min: usize,
) -> Result<Option<Vec<u8>>, DecodeError> {
    match raw.take_vec(code) {
        Some(v) if v.len() < min => Err(DecodeError::BadOption { code }),
        other => Ok(other),
    }
}

fn message_type(raw: &mut RawOptions<'_>) -> Result<MessageType, DecodeError> {
    let [t] = fixed::<1>(raw, 53)?.ok_or(DecodeError::NoMessageType)?;
    match MessageType::from(t) {
        MessageType::Unknown(t) => Err(DecodeError::UnknownMessageType(t)),
        known => Ok(known),
    }
}

/// Check the fixed header: length, op, magic cookie, hlen.
fn check_header(buf: &[u8]) -> Result<(), DecodeError> {
    if buf.len() < OPTIONS {
        return Err(DecodeError::TooShort(buf.len()));
    }
    let op = buf.get(OP).copied().unwrap_or_default();
    if op != BOOTREQUEST {
        return Err(DecodeError::NotRequest(op));
    }
    if buf.get(COOKIE) != Some(&MAGIC[..]) {
        return Err(DecodeError::BadCookie);
    }
    let hlen = buf.get(HLEN).copied().unwrap_or_default();
    if hlen > 16 {
        return Err(DecodeError::BadHlen(hlen));
    }
    Ok(())
}

/// Decode a client request. Never panics, whatever the bytes.
pub fn decode(buf: &[u8]) -> Result<Request, DecodeError> {
    check_header(buf)?;
    let hlen = usize::from(buf.get(HLEN).copied().unwrap_or_default());
    let byte = |at: usize| buf.get(at).copied().unwrap_or_default();
    let ip = |at: usize| Ipv4Addr::from(u32_at(buf, at));
    let mut raw = collect_options(buf)?;
    Ok(Request {
        htype: byte(HTYPE),
        hops: byte(HOPS),
        xid: u32_at(buf, XID),
        secs: u16_at(buf, SECS),
        broadcast: u16_at(buf, FLAGS) & 0x8000 != 0,
        ciaddr: ip(CIADDR),
        yiaddr: ip(YIADDR),
        siaddr: ip(SIADDR),
        giaddr: ip(GIADDR),
        hwaddr: HwAddr::new(
            byte(HTYPE),
            buf.get(CHADDR..CHADDR + hlen).unwrap_or_default(),
        ),
        msg_type: message_type(&mut raw)?,
        client_id: at_least(&mut raw, 61, 2)?,
        requested_ip: fixed::<4>(&mut raw, 50)?.map(Ipv4Addr::from),
        server_id: fixed::<4>(&mut raw, 54)?.map(Ipv4Addr::from),
        hostname: raw.take_vec(12).filter(|h| !h.is_empty()),
        params: raw.take_vec(55).unwrap_or_default(),
        max_size: fixed::<2>(&mut raw, 57)?.map(u16::from_be_bytes),
        lease_time: fixed::<4>(&mut raw, 51)?.map(u32::from_be_bytes),
        relay_info: at_least(&mut raw, 82, 1)?,
        vendor_class: raw.take_vec(60).filter(|v| !v.is_empty()),
        fqdn: at_least(&mut raw, 81, 3)?,
        user_class: raw.take_vec(77).filter(|v| !v.is_empty()),
        rapid_commit: raw.take(80).is_some(),
    })
}
