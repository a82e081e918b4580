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

use std::borrow::Cow;
use std::net::Ipv4Addr;

#[cfg(test)]
use dhcproto::v4::Message;
use dhcproto::v4::{DhcpOption, Flags, MessageType, Opcode, OptionCode};
use dhcproto::{Encodable, Encoder};

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

const BOOTREQUEST: u8 = 1;
/// BOOTP's minimum message size (RFC 951); some relays and old clients drop shorter ones.
pub const BOOTP_MIN: usize = 300;
/// The smallest datagram every host must accept (RFC 2131 section 2, option 57 minimum).
pub const MIN_MAX_SIZE: usize = 576;
/// IPv4 (no options) plus UDP header bytes, subtracted from option 57's datagram size.
const IP_UDP_HEADERS: usize = 28;

const OPT_PAD: u8 = 0;
const OPT_END: u8 = 255;
const OPT_OVERLOAD: u8 = 52;

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

/// Options `encode` never drops to make a reply fit: message type, server id, lease time,
/// subnet mask, router, the client identifier echo (RFC 6842) and the relay agent information a
/// relay needs to forward the reply.
const ESSENTIAL: [u8; 7] = [53, 54, 51, 1, 3, 61, 82];

/// BOOTREPLY.
const BOOTREPLY: u8 = 2;

/// A reply ready to encode: the BOOTP header fields and the options in wire form. Built by the
/// engine without dhcproto's option map; `from_message` takes a dhcproto `Message` instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyMsg {
    pub op: u8,
    pub htype: u8,
    pub hops: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    /// chaddr, cut to `hlen` (at most 16 bytes).
    pub chaddr: HwAddr,
    /// Server name and boot file (empty in every reply the engine builds).
    pub sname: Vec<u8>,
    pub file: Vec<u8>,
    pub opts: ReplyOpts,
}

impl Default for ReplyMsg {
    fn default() -> Self {
        ReplyMsg {
            op: BOOTREPLY,
            htype: 1,
            hops: 0,
            xid: 0,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: HwAddr::default(),
            sname: Vec::new(),
            file: Vec::new(),
            opts: ReplyOpts::default(),
        }
    }
}

impl ReplyMsg {
    /// The same reply as a dhcproto `Message` says, options encoded by dhcproto one by one
    /// (for tests, which build replies as dhcproto messages).
    #[cfg(test)]
    pub fn from_message(msg: &Message) -> Result<ReplyMsg, EncodeError> {
        if msg.hlen() > 16 {
            return Err(EncodeError::BadHeader("hlen > 16"));
        }
        let mut opts = ReplyOpts::default();
        for (_, opt) in msg.opts().iter() {
            opts.insert(opt)?;
        }
        Ok(ReplyMsg {
            op: msg.opcode().into(),
            htype: msg.htype().into(),
            hops: msg.hops(),
            xid: msg.xid(),
            secs: msg.secs(),
            flags: msg.flags().into(),
            ciaddr: msg.ciaddr(),
            yiaddr: msg.yiaddr(),
            siaddr: msg.siaddr(),
            giaddr: msg.giaddr(),
            chaddr: HwAddr::new(msg.htype().into(), msg.chaddr()),
            sname: msg.sname().unwrap_or_default().to_vec(),
            file: msg.fname().unwrap_or_default().to_vec(),
            opts,
        })
    }
    pub fn opcode(&self) -> Opcode {
        Opcode::from(self.op)
    }
    pub fn xid(&self) -> u32 {
        self.xid
    }
    pub fn flags(&self) -> Flags {
        Flags::from(self.flags)
    }
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.ciaddr
    }
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.yiaddr
    }
    pub fn giaddr(&self) -> Ipv4Addr {
        self.giaddr
    }
    pub fn chaddr(&self) -> &[u8] {
        self.chaddr.bytes()
    }
    pub fn opts(&self) -> &ReplyOpts {
        &self.opts
    }
    pub fn opts_mut(&mut self) -> &mut ReplyOpts {
        &mut self.opts
    }

    /// The header fields alone (options empty), to write an overloaded reply's header.
    fn clone_header(&self) -> ReplyMsg {
        ReplyMsg {
            chaddr: self.chaddr.clone(),
            sname: self.sname.clone(),
            file: self.file.clone(),
            opts: ReplyOpts::new(),
            ..*self
        }
    }

    /// The fixed 240 bytes: header, sname, file, magic cookie.
    fn write_header(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut h = [0u8; OPTIONS];
        let chaddr = self.chaddr.bytes();
        h[OP] = self.op;
        h[HTYPE] = self.htype;
        h[HLEN] = u8::try_from(chaddr.len()).unwrap_or(16);
        h[HOPS] = self.hops;
        h[XID..XID + 4].copy_from_slice(&self.xid.to_be_bytes());
        h[SECS..SECS + 2].copy_from_slice(&self.secs.to_be_bytes());
        h[FLAGS..FLAGS + 2].copy_from_slice(&self.flags.to_be_bytes());
        h[CIADDR..CIADDR + 4].copy_from_slice(&self.ciaddr.octets());
        h[YIADDR..YIADDR + 4].copy_from_slice(&self.yiaddr.octets());
        h[SIADDR..SIADDR + 4].copy_from_slice(&self.siaddr.octets());
        h[GIADDR..GIADDR + 4].copy_from_slice(&self.giaddr.octets());
        h[COOKIE].copy_from_slice(&MAGIC);
        for (at, bytes, room) in [
            (CHADDR, chaddr, SNAME.start - CHADDR),
            (SNAME.start, &self.sname[..], SNAME.len()),
            (FILE.start, &self.file[..], FILE.len()),
        ] {
            if bytes.len() > room {
                return Err(EncodeError::BadHeader("sname or file too long"));
            }
            if let Some(dst) = h.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        out.extend_from_slice(&h);
        Ok(())
    }
}

/// A set of option codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CodeSet([u64; 4]);

impl CodeSet {
    fn set(&mut self, code: u8, on: bool) {
        if let Some(w) = self.0.get_mut(usize::from(code / 64)) {
            let bit = 1 << (code % 64);
            if on {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }
    fn has(&self, code: u8) -> bool {
        self.0
            .get(usize::from(code / 64))
            .is_some_and(|w| w & (1 << (code % 64)) != 0)
    }
}

/// One option of a `ReplyOpts`: its code and where its encoding sits in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    code: u8,
    start: u32,
    end: u32,
}

/// A reply's options, each kept in wire form (code, length, value; split into pieces of at
/// most 255 bytes when long, RFC 3396) in one byte arena. Setting a code again replaces it.
/// Options 53 and 54 are also kept typed, for the service (`get`, `msg_type`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyOpts {
    entries: Vec<Entry>,
    /// The codes in `entries`.
    present: CodeSet,
    bytes: Vec<u8>,
    msg_type: Option<DhcpOption>,
    server_id: Option<DhcpOption>,
}

impl ReplyOpts {
    pub fn new() -> Self {
        ReplyOpts {
            entries: Vec::with_capacity(16),
            present: CodeSet::default(),
            bytes: Vec::with_capacity(128),
            msg_type: None,
            server_id: None,
        }
    }

    /// Options 53 and 54, typed (the others: see `raw`).
    pub fn get(&self, code: OptionCode) -> Option<&DhcpOption> {
        match u8::from(code) {
            53 => self.msg_type.as_ref(),
            54 => self.server_id.as_ref(),
            _ => None,
        }
    }

    pub fn msg_type(&self) -> Option<MessageType> {
        match self.msg_type {
            Some(DhcpOption::MessageType(t)) => Some(t),
            _ => None,
        }
    }

    /// The codes present, in the order they were first set.
    pub fn codes(&self) -> impl Iterator<Item = u8> + '_ {
        self.entries.iter().map(|e| e.code)
    }

    pub fn contains(&self, code: u8) -> bool {
        self.present.has(code)
    }

    /// The value of option `code`, its pieces joined.
    pub fn raw(&self, code: u8) -> Option<Vec<u8>> {
        let e = self.entries.iter().find(|e| e.code == code)?;
        let mut area = self.encoded(e);
        let mut out = Vec::with_capacity(area.len());
        while let [_, len, rest @ ..] = area {
            let n = usize::from(*len).min(rest.len());
            out.extend_from_slice(&rest[..n]);
            area = &rest[n..];
        }
        Some(out)
    }

    pub fn remove(&mut self, code: u8) {
        self.entries.retain(|e| e.code != code);
        self.present.set(code, false);
        match code {
            53 => self.msg_type = None,
            54 => self.server_id = None,
            _ => {}
        }
    }

    pub fn set_msg_type(&mut self, t: MessageType) {
        self.msg_type = Some(DhcpOption::MessageType(t));
        self.put_with(53, |b| b.extend_from_slice(&[53, 1, u8::from(t)]));
    }

    pub fn set_server_id(&mut self, ip: Ipv4Addr) {
        self.server_id = Some(DhcpOption::ServerIdentifier(ip));
        self.put_ip(54, ip);
    }

    /// A 4-byte address (options 1, 28, 54, ...).
    pub fn put_ip(&mut self, code: u8, ip: Ipv4Addr) {
        self.put_with(code, |b| {
            b.extend_from_slice(&[code, 4]);
            b.extend_from_slice(&ip.octets());
        });
    }

    pub fn put_u32(&mut self, code: u8, v: u32) {
        self.put_with(code, |b| {
            b.extend_from_slice(&[code, 4]);
            b.extend_from_slice(&v.to_be_bytes());
        });
    }

    pub fn put_u16(&mut self, code: u8, v: u16) {
        self.put_with(code, |b| {
            b.extend_from_slice(&[code, 2]);
            b.extend_from_slice(&v.to_be_bytes());
        });
    }

    /// A list of addresses, in pieces of 63 addresses (252 bytes) as dhcproto splits them.
    pub fn put_ips(&mut self, code: u8, ips: &[Ipv4Addr]) {
        self.put_with(code, |b| {
            for chunk in ips.chunks(63) {
                b.extend_from_slice(&[code, (chunk.len() * 4) as u8]);
                for ip in chunk {
                    b.extend_from_slice(&ip.octets());
                }
            }
        });
    }

    /// Raw bytes, in pieces of 255 (nothing at all for an empty value, as dhcproto does).
    pub fn put_bytes(&mut self, code: u8, value: &[u8]) {
        self.put_with(code, |b| {
            for chunk in value.chunks(255) {
                b.extend_from_slice(&[code, chunk.len() as u8]);
                b.extend_from_slice(chunk);
            }
        });
    }

    /// An option without a value (rapid commit).
    pub fn put_flag(&mut self, code: u8) {
        self.put_with(code, |b| b.extend_from_slice(&[code, 0]));
    }

    /// A typed option, encoded by dhcproto (Pad and End are ignored).
    pub fn insert(&mut self, opt: &DhcpOption) -> Result<(), EncodeError> {
        let code = u8::from(OptionCode::from(opt));
        if code == OPT_PAD || code == OPT_END {
            return Ok(());
        }
        let mut buf = Vec::new();
        opt.encode(&mut Encoder::new(&mut buf))?;
        match opt {
            DhcpOption::MessageType(_) => self.msg_type = Some(opt.clone()),
            DhcpOption::ServerIdentifier(_) => self.server_id = Some(opt.clone()),
            _ => {}
        }
        self.put_with(code, |b| b.extend_from_slice(&buf));
        Ok(())
    }

    /// Option `code` decoded by dhcproto from its encoding alone (tests compare typed values).
    #[cfg(test)]
    pub(crate) fn typed(&self, code: OptionCode) -> Option<DhcpOption> {
        use dhcproto::Decodable;
        let e = self.entries.iter().find(|e| e.code == u8::from(code))?;
        let mut bytes = self.encoded(e).to_vec();
        bytes.push(OPT_END);
        let opts = dhcproto::v4::DhcpOptions::from_bytes(&bytes).ok()?;
        opts.get(code).cloned()
    }

    /// Append `code`'s encoding (written by `write`) and point its entry at it.
    fn put_with(&mut self, code: u8, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        write(&mut self.bytes);
        let (start, end) = (start as u32, self.bytes.len() as u32);
        if !self.present.has(code) {
            self.present.set(code, true);
            self.entries.push(Entry { code, start, end });
        } else if let Some(e) = self.entries.iter_mut().find(|e| e.code == code) {
            (e.start, e.end) = (start, end);
        }
    }

    fn encoded(&self, e: &Entry) -> &[u8] {
        self.bytes
            .get(e.start as usize..e.end as usize)
            .unwrap_or_default()
    }

    /// The options area in `rank` order followed by End (no header, no padding).
    pub fn to_bytes(&self, order: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 1);
        self.write_ordered(&mut out, order, &[]);
        out
    }

    /// Write every option not `dropped` (by code) in `rank` order, then End.
    fn write_ordered(&self, out: &mut Vec<u8>, order: &[u8], dropped: &[u8]) {
        let mut small = [0u64; 32];
        let mut big = Vec::new();
        let keys: &mut [u64] = if self.entries.len() <= small.len() {
            &mut small[..self.entries.len()]
        } else {
            big.resize(self.entries.len(), 0);
            &mut big
        };
        // Where each code stands in `order` (its first place), 0: not there.
        let mut place = [0u16; 256];
        for (i, c) in order.iter().enumerate().rev() {
            place[usize::from(*c)] = u16::try_from(i + 1).unwrap_or(u16::MAX);
        }
        // Sort key: rank, then code (numeric order among the rest), then the entry's index.
        for (i, (k, e)) in keys.iter_mut().zip(&self.entries).enumerate() {
            let rank = match (e.code, place[usize::from(e.code)]) {
                (53, _) => 0,
                (54, _) => 1,
                (82, _) => u64::from(u16::MAX) + 2,
                (_, 0) => u64::from(u16::MAX) + 1,
                (_, p) => u64::from(p) + 1,
            };
            *k = (rank << 16) | (u64::from(e.code) << 8) | i as u64;
        }
        keys.sort_unstable();
        for k in keys.iter() {
            let Some(e) = self.entries.get((*k & 0xff) as usize) else {
                continue;
            };
            if !dropped.contains(&e.code) {
                out.extend_from_slice(self.encoded(e));
            }
        }
        out.push(OPT_END);
    }

    /// Bytes of the options not `dropped`.
    fn len_without(&self, dropped: &[u8]) -> usize {
        self.entries
            .iter()
            .filter(|e| !dropped.contains(&e.code))
            .map(|e| (e.end - e.start) as usize)
            .sum()
    }

    /// The optional option, not yet `dropped`, with the longest encoding (ties: the highest
    /// code).
    fn largest_optional(&self, dropped: &[u8]) -> Option<u8> {
        self.entries
            .iter()
            .filter(|e| !ESSENTIAL.contains(&e.code) && !dropped.contains(&e.code))
            .map(|e| (e.end - e.start, e.code))
            .max()
            .map(|(_, code)| code)
    }
}

/// Encode a dhcproto message (see `encode_ordered`; no request order). Tests build replies
/// this way; the server builds `ReplyMsg`s directly.
#[cfg(test)]
pub fn encode(msg: &Message, max_size: usize) -> Result<Vec<u8>, EncodeError> {
    encode_message(msg, max_size, &[])
}

/// Encode a dhcproto message (see `encode_ordered`).
#[cfg(test)]
pub fn encode_message(
    msg: &Message,
    max_size: usize,
    order: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    encode_ordered(&ReplyMsg::from_message(msg)?, max_size, order)
}

/// Encode a reply, with the options in `order` (the client's parameter request list) written
/// right after 53 and 54, in that order; the others follow in numeric order, and 82 stays last.
///
/// `max_size` is a datagram size as in the client's option 57 (raised to 576 if smaller); the
/// DHCP message itself is kept within `max_size - 28` (IP and UDP headers), as dnsmasq does.
/// If the reply is too long, optional options are dropped, largest first; the options in
/// `ESSENTIAL` are never dropped. The message is zero-padded to BOOTP's 300 bytes.
pub fn encode_ordered(
    msg: &ReplyMsg,
    max_size: usize,
    order: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(MIN_MAX_SIZE);
    encode_into(msg, max_size, order, &mut out)?;
    Ok(out)
}

/// `encode_ordered` into `out` (cleared first), so a caller can reuse one buffer.
pub fn encode_into(
    msg: &ReplyMsg,
    max_size: usize,
    order: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.clear();
    let limit = max_size.max(MIN_MAX_SIZE) - IP_UDP_HEADERS;
    let opts = &msg.opts;
    let whole = OPTIONS + opts.len_without(&[]) + 1;
    if whole > limit && encode_overloaded(msg, limit, order, out)? {
        return Ok(());
    }
    // Codes dropped to fit (none, nearly always).
    let mut dropped: Vec<u8> = Vec::new();
    let mut len = whole;
    loop {
        if len <= limit {
            break;
        }
        let Some(code) = opts.largest_optional(&dropped) else {
            return Err(EncodeError::TooLarge { len, limit });
        };
        tracing::debug!(code, limit, "dropping option to fit reply");
        dropped.push(code);
        len = OPTIONS + opts.len_without(&dropped) + 1;
    }
    msg.write_header(out)?;
    opts.write_ordered(out, order, &dropped);
    if out.len() < BOOTP_MIN {
        out.resize(BOOTP_MIN, 0);
    }
    Ok(())
}

/// Option overload (RFC 2131 section 4.1, RFC 2132 section 9.3): when the options do not fit in
/// `limit` and `file` and/or `sname` are unused, the options that do not fit in the options field
/// go on in `file` (then `sname`), each area ending with End, and option 52 says which areas
/// hold options. Every option is kept whole, in order; 82 stays in the options field. False
/// (and `out` unusable) when even that is too small: the caller then drops options instead.
fn encode_overloaded(
    msg: &ReplyMsg,
    limit: usize,
    order: &[u8],
    out: &mut Vec<u8>,
) -> Result<bool, EncodeError> {
    let mut all = Vec::new();
    msg.opts.write_ordered(&mut all, order, &[]);
    let mut tlvs = Vec::new();
    let _ = walk(&all, |t| tlvs.push(t), |_| true);
    // The options field: what is left of `limit` after the header, option 52 (3) and End (1).
    let main_room = limit.saturating_sub(OPTIONS + 3 + 1);
    // Room of each area: the options field, then `file` and `sname` when unused (End: 1 byte).
    let mut areas: Vec<(usize, u8, Vec<u8>)> = vec![(main_room, 0, Vec::new())];
    if msg.file.is_empty() {
        areas.push((FILE.len() - 1, 1, Vec::new()));
    }
    if msg.sname.is_empty() {
        areas.push((SNAME.len() - 1, 2, Vec::new()));
    }
    let len = |t: &Tlv| t.end - t.start + 2;
    // 53, 54 and 82 stay in the options field; the rest, largest first, go to the first area
    // with room (first fit decreasing); each area then holds its options in the usual order.
    let pinned = |t: &Tlv| matches!(t.code, 53 | 54 | 82);
    let mut fill = vec![0usize; areas.len()];
    let mut place = vec![0usize; tlvs.len()];
    fill[0] = tlvs.iter().filter(|t| pinned(t)).map(len).sum();
    let mut rest: Vec<usize> = (0..tlvs.len()).filter(|i| !pinned(&tlvs[*i])).collect();
    rest.sort_by_key(|i| std::cmp::Reverse(len(&tlvs[*i])));
    for i in rest {
        let n = len(&tlvs[i]);
        let Some(a) = (0..areas.len()).find(|a| fill[*a] + n <= areas[*a].0) else {
            return Ok(false);
        };
        fill[a] += n;
        place[i] = a;
    }
    if fill[0] > main_room {
        return Ok(false);
    }
    let mut used = 0u8;
    for (t, a) in tlvs.iter().zip(&place) {
        let area = &mut areas[*a];
        area.2
            .extend_from_slice(all.get(t.start - 2..t.end).unwrap_or_default());
        used |= area.1;
    }
    let mut header = msg.clone_header();
    for (_, bit, bytes) in &areas {
        if *bit != 0 && used & bit != 0 {
            let mut field = bytes.clone();
            field.push(OPT_END);
            if *bit == 1 {
                header.file = field;
            } else {
                header.sname = field;
            }
        }
    }
    header.write_header(out)?;
    if used != 0 {
        out.extend_from_slice(&[OPT_OVERLOAD, 1, used]);
    }
    out.extend_from_slice(&areas[0].2);
    out.push(OPT_END);
    if out.len() < BOOTP_MIN {
        out.resize(BOOTP_MIN, 0);
    }
    Ok(out.len() <= limit.max(BOOTP_MIN))
}

/// Where option `code` goes: 53, 54, then the codes of `order` in turn, then the rest (in
/// numeric order), then 82. (`ReplyOpts::write_ordered` ranks the same way with a table; the
/// tests check one against the other.)
#[cfg(test)]
fn rank(code: u8, order: &[u8]) -> u64 {
    const LAST: u64 = 1 << 40;
    match code {
        53 => 0,
        54 => 1,
        82 => LAST,
        _ => order
            .iter()
            .position(|c| *c == code)
            .map_or(LAST - 1, |p| p as u64 + 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{Flags, HType, Opcode};
    use dhcproto::{Decodable, Decoder};

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    /// A DISCOVER laid out as a Linux dhclient sends it: broadcast flag, client id, hostname,
    /// parameter list, max size 1500, requested address, then End and padding to 300 bytes.
    fn discover() -> Vec<u8> {
        let mut p = vec![0u8; OPTIONS];
        p[..12].copy_from_slice(&[1, 1, 6, 0, 0xde, 0xad, 0xbe, 0xef, 0, 3, 0x80, 0]);
        p[CHADDR..CHADDR + 6].copy_from_slice(&MAC);
        p[COOKIE].copy_from_slice(&MAGIC);
        p.extend_from_slice(&[53, 1, 1]);
        p.extend_from_slice(&[61, 7, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        p.extend_from_slice(&[12, 4, b'h', b'o', b's', b't']);
        p.extend_from_slice(&[55, 4, 1, 3, 6, 15]);
        p.extend_from_slice(&[57, 2, 0x05, 0xdc]);
        p.extend_from_slice(&[50, 4, 10, 0, 0, 7]);
        p.push(OPT_END);
        p.resize(300, 0);
        p
    }

    /// Build a request with the given option bytes after the cookie.
    fn with_options(opts: &[u8]) -> Vec<u8> {
        let mut p = discover();
        p.truncate(OPTIONS);
        p.extend_from_slice(opts);
        p
    }

    #[test]
    fn golden_discover_decodes_every_field() {
        let r = decode(&discover()).expect("valid discover");
        assert_eq!(r.msg_type, MessageType::Discover);
        assert_eq!((r.htype, r.hops, r.xid, r.secs), (1, 0, 0xdead_beef, 3));
        assert!(r.broadcast);
        assert_eq!(r.hwaddr, HwAddr::ethernet(MAC));
        assert_eq!(r.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.giaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            r.client_id.as_deref(),
            Some(&[1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56][..])
        );
        assert_eq!(r.hostname.as_deref(), Some(&b"host"[..]));
        assert_eq!(r.params, vec![1, 3, 6, 15]);
        assert_eq!(r.max_size, Some(1500));
        assert_eq!(r.requested_ip, Some(Ipv4Addr::new(10, 0, 0, 7)));
        assert_eq!(
            (r.server_id, r.lease_time, r.relay_info.as_ref()),
            (None, None, None)
        );
        assert_eq!((r.vendor_class.as_ref(), r.fqdn.as_ref()), (None, None));
    }

    #[test]
    fn request_with_relay_fqdn_and_server_id_decodes() {
        let mut p = with_options(&[53, 1, 3, 54, 4, 10, 0, 0, 1, 51, 4, 0, 0, 0x0e, 0x10]);
        p.extend_from_slice(&[81, 6, 0x01, 0, 0, b'a', b'b', b'c', 60, 3, b'M', b'S', b'F']);
        p.extend_from_slice(&[82, 4, 1, 2, 0xaa, 0xbb, 255]);
        p[GIADDR..GIADDR + 4].copy_from_slice(&[10, 9, 0, 1]);
        let r = decode(&p).expect("valid request");
        assert_eq!(r.msg_type, MessageType::Request);
        assert_eq!(r.server_id, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(r.lease_time, Some(3600));
        assert_eq!(r.fqdn.as_deref(), Some(&[1, 0, 0, b'a', b'b', b'c'][..]));
        assert_eq!(r.vendor_class.as_deref(), Some(&b"MSF"[..]));
        assert_eq!(r.relay_info.as_deref(), Some(&[1, 2, 0xaa, 0xbb][..]));
        assert_eq!(r.giaddr, Ipv4Addr::new(10, 9, 0, 1));
    }

    #[test]
    fn truncated_at_every_length_never_panics() {
        let p = discover();
        for len in 0..=p.len() {
            let got = decode(&p[..len]);
            if len < OPTIONS {
                assert_eq!(got, Err(DecodeError::TooShort(len)), "len {len}");
            } else if len < OPTIONS + 3 {
                // Option 53 missing or cut short.
                assert!(got.is_err(), "len {len}: {got:?}");
            }
        }
        // Cut inside option 50 (the last option): 50 is wanted, so this is an error.
        let end_of_50 = p.iter().rposition(|&b| b == OPT_END).unwrap_or_default();
        assert_eq!(
            decode(&p[..end_of_50 - 1]),
            Err(DecodeError::BadOption { code: 50 })
        );
        assert!(decode(&p[..end_of_50]).is_ok(), "missing End is tolerated");
    }

    #[test]
    fn hostile_headers_are_rejected() {
        let mut p = discover();
        p[COOKIE.start] = 0;
        assert_eq!(decode(&p), Err(DecodeError::BadCookie));
        for hlen in [17u8, 255] {
            let mut p = discover();
            p[HLEN] = hlen;
            assert_eq!(decode(&p), Err(DecodeError::BadHlen(hlen)));
        }
        let mut p = discover();
        p[OP] = 2;
        assert_eq!(decode(&p), Err(DecodeError::NotRequest(2)));
        let mut p = discover();
        p[HLEN] = 16;
        assert_eq!(decode(&p).map(|r| r.hwaddr.bytes().len()), Ok(16));
    }

    #[test]
    fn malformed_options_we_use_are_errors_others_are_ignored() {
        assert_eq!(
            decode(&with_options(&[255])),
            Err(DecodeError::NoMessageType)
        );
        assert_eq!(
            decode(&with_options(&[53, 2, 1, 1])),
            Err(DecodeError::BadOption { code: 53 })
        );
        assert_eq!(
            decode(&with_options(&[53, 1, 0])),
            Err(DecodeError::UnknownMessageType(0))
        );
        assert_eq!(
            decode(&with_options(&[53, 1, 200])),
            Err(DecodeError::UnknownMessageType(200))
        );
        let bad50 = with_options(&[53, 1, 1, 50, 3, 10, 0, 0, 255]);
        assert_eq!(decode(&bad50), Err(DecodeError::BadOption { code: 50 }));
        assert_eq!(
            decode(&with_options(&[53, 1, 1, 57, 1, 5])),
            Err(DecodeError::BadOption { code: 57 })
        );
        assert_eq!(
            decode(&with_options(&[53, 1, 1, 81, 1, 0])),
            Err(DecodeError::BadOption { code: 81 })
        );
        // Options dhcproto's typed decoders choke on (80, 94, 151) are never looked at.
        let odd = with_options(&[80, 3, 1, 2, 3, 94, 1, 9, 151, 0, 53, 1, 1, 255]);
        assert_eq!(decode(&odd).map(|r| r.msg_type), Ok(MessageType::Discover));
        // An unused option running past the end stops the walk but is not an error.
        let past_end = with_options(&[53, 1, 1, 43, 200, 1, 2]);
        assert_eq!(
            decode(&past_end).map(|r| r.msg_type),
            Ok(MessageType::Discover)
        );
        let wanted_past_end = with_options(&[53, 1, 1, 12, 200, b'x']);
        assert_eq!(
            decode(&wanted_past_end),
            Err(DecodeError::BadOption { code: 12 })
        );
    }

    #[test]
    fn five_thousand_one_byte_options_and_non_utf8_hostname() {
        let mut opts = vec![OPT_PAD; 5000];
        opts.extend_from_slice(&[53, 1, 1, 12, 3, 0xff, 0xfe, b'a']);
        for _ in 0..2500 {
            opts.extend_from_slice(&[224, 0]); // zero-length private options
        }
        opts.push(OPT_END);
        let r = decode(&with_options(&opts)).expect("long but valid");
        assert_eq!(r.hostname.as_deref(), Some(&[0xff, 0xfe, b'a'][..]));
    }

    #[test]
    fn split_options_are_joined_rfc3396() {
        let p = with_options(&[
            53, 1, 1, 55, 2, 1, 3, 12, 2, b'a', b'b', 55, 1, 6, 12, 1, b'c', 255,
        ]);
        let r = decode(&p).expect("valid");
        assert_eq!(r.params, vec![1, 3, 6]);
        assert_eq!(r.hostname.as_deref(), Some(&b"abc"[..]));
    }

    #[test]
    fn overload_reads_file_then_sname() {
        let mut p = with_options(&[53, 1, 3, 52, 1, 3, 255]);
        p[FILE.start..FILE.start + 7].copy_from_slice(&[50, 4, 10, 0, 0, 9, 255]);
        p[SNAME.start..SNAME.start + 7].copy_from_slice(&[12, 4, b'n', b'a', b'm', b'e', 255]);
        let r = decode(&p).expect("overloaded request");
        assert_eq!(r.requested_ip, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(r.hostname.as_deref(), Some(&b"name"[..]));
        // Overload 1 (file only): sname stays a server name, not options.
        p[OPTIONS + 5] = 1;
        let r = decode(&p).expect("file only");
        assert_eq!((r.requested_ip.is_some(), r.hostname), (true, None));
        // Without option 52 neither field is read.
        let mut q = p.clone();
        q[OPTIONS + 3] = 0; // option 52 and its two bytes become Pad
        q[OPTIONS + 4] = 0;
        q[OPTIONS + 5] = 0;
        assert_eq!(decode(&q).map(|r| r.requested_ip), Ok(None));
        // Option 53 only inside the overloaded file field still counts.
        let mut f = with_options(&[52, 1, 1, 255]);
        f[FILE.start..FILE.start + 4].copy_from_slice(&[53, 1, 7, 255]);
        assert_eq!(decode(&f).map(|r| r.msg_type), Ok(MessageType::Release));
        // A bad overload value is an error.
        assert_eq!(
            decode(&with_options(&[53, 1, 1, 52, 1, 4])),
            Err(DecodeError::BadOption { code: 52 })
        );
    }

    fn offer() -> Message {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_htype(HType::Eth)
            .set_xid(0xdead_beef)
            .set_flags(Flags::default().set_broadcast())
            .set_yiaddr(Ipv4Addr::new(10, 0, 0, 7))
            .set_siaddr(Ipv4Addr::new(10, 0, 0, 1))
            .set_chaddr(&MAC);
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(MessageType::Offer));
        o.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1)));
        o.insert(DhcpOption::AddressLeaseTime(3600));
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 0, 1)]));
        o.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            10, 0, 0, 1,
        )]));
        o.insert(DhcpOption::DomainName("lan".into()));
        m
    }

    #[test]
    fn golden_offer_encodes_with_cookie_53_54_first_and_padding() {
        let bytes = encode(&offer(), 576).expect("encodes");
        assert_eq!(bytes.len(), BOOTP_MIN, "padded to BOOTP minimum");
        assert_eq!(bytes[..4], [2, 1, 6, 0], "op 2, ethernet, hlen 6");
        assert_eq!(bytes[XID..XID + 4], [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(bytes[FLAGS..FLAGS + 2], [0x80, 0]);
        assert_eq!(bytes[YIADDR..YIADDR + 4], [10, 0, 0, 7]);
        assert_eq!(bytes[CHADDR..CHADDR + 6], MAC);
        assert_eq!(bytes[COOKIE], MAGIC);
        let expected_opts: &[u8] = &[
            53, 1, 2, // message type first
            54, 4, 10, 0, 0, 1, // then server id
            1, 4, 255, 255, 255, 0, // subnet mask
            3, 4, 10, 0, 0, 1, // router
            6, 4, 10, 0, 0, 1, // dns
            15, 3, b'l', b'a', b'n', // domain name
            51, 4, 0, 0, 0x0e, 0x10, // lease time
            255,
        ];
        assert_eq!(
            &bytes[OPTIONS..OPTIONS + expected_opts.len()],
            expected_opts
        );
        assert!(
            bytes[OPTIONS + expected_opts.len()..]
                .iter()
                .all(|&b| b == 0)
        );
        let back = Message::decode(&mut Decoder::new(&bytes)).expect("dhcproto parses it back");
        assert_eq!(back.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(back.opts(), offer().opts());
    }

    #[test]
    fn relay_info_stays_last_after_reordering() {
        let mut m = offer();
        let mut relay = dhcproto::v4::relay::RelayAgentInformation::default();
        relay.insert(dhcproto::v4::relay::RelayInfo::AgentCircuitId(vec![
            1, 2, 3,
        ]));
        m.opts_mut()
            .insert(DhcpOption::RelayAgentInformation(relay));
        let bytes = encode(&m, 576).expect("encodes");
        let mut tlvs = Vec::new();
        walk(&bytes[OPTIONS..], |t| tlvs.push(t.code), |_| true).expect("well formed");
        assert_eq!(tlvs.first(), Some(&53));
        assert_eq!(tlvs.last(), Some(&82));
    }

    /// The encoder writes the same bytes as dhcproto's encoder followed by `reorder` (up to
    /// padding): sname and file, a long option split in pieces, an unknown option 82 (which
    /// dhcproto would write twice), and a request order naming absent options.
    #[test]
    fn direct_encoding_matches_dhcproto_then_reorder() {
        let mut m = offer();
        m.set_sname_str("boot-server").set_fname_str("pxelinux.0");
        m.opts_mut()
            .insert(DhcpOption::NtpServers(vec![Ipv4Addr::new(10, 0, 0, 2); 70]));
        m.opts_mut()
            .insert(DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
                OptionCode::RelayAgentInformation,
                vec![1, 3, 9, 9, 9],
            )));
        let trim = |b: &[u8]| b[..b.iter().rposition(|x| *x != 0).map_or(0, |i| i + 1)].to_vec();
        for order in [
            &[][..],
            &[15, 42, 6, 3, 1, 99][..],
            &[82, 6, 54, 6, 53, 42, 42][..],
        ] {
            let direct = encode_message(&m, 1500, order).expect("encodes directly");
            let mut via = Vec::new();
            m.encode(&mut Encoder::new(&mut via))
                .expect("dhcproto encodes");
            let via = reorder(via, order);
            assert_eq!(trim(&direct), trim(&via), "order {order:?}");
        }
    }

    /// Rewrite the options of a message dhcproto encoded in `rank` order. The pieces of a
    /// split long option share a rank, so they stay together and in order.
    fn reorder(bytes: Vec<u8>, order: &[u8]) -> Vec<u8> {
        let area = &bytes[OPTIONS..];
        let mut tlvs = Vec::new();
        walk(area, |t| tlvs.push(t), |_| true).expect("well formed");
        drop_repeated_relay_info(area, &mut tlvs);
        tlvs.sort_by_key(|t| rank(t.code, order));
        let mut out = bytes[..OPTIONS].to_vec();
        for t in &tlvs {
            out.push(t.code);
            out.push((t.end - t.start) as u8);
            out.extend_from_slice(&area[t.start..t.end]);
        }
        out.push(OPT_END);
        out
    }

    /// dhcproto 0.15 writes an option 82 that it holds as `Unknown` twice (its `OptionCode`
    /// equality and ordering disagree): keep one copy.
    fn drop_repeated_relay_info(area: &[u8], tlvs: &mut Vec<Tlv>) {
        let value = |t: &Tlv| &area[t.start..t.end];
        let pieces: Vec<&Tlv> = tlvs.iter().filter(|t| t.code == 82).collect();
        let half = pieces.len() / 2;
        let repeated = half > 0
            && pieces.len().is_multiple_of(2)
            && pieces[..half]
                .iter()
                .zip(&pieces[half..])
                .all(|(a, b)| value(a) == value(b));
        if repeated {
            let mut seen = 0;
            tlvs.retain(|t| {
                if t.code != 82 {
                    return true;
                }
                seen += 1;
                seen <= half
            });
        }
    }

    #[test]
    fn oversized_reply_drops_optional_options_to_fit() {
        let mut m = offer();
        // 40 routes-worth of static routes is optional and large; a domain name too.
        let big = vec![Ipv4Addr::new(10, 0, 0, 2); 60];
        m.opts_mut().insert(DhcpOption::NtpServers(big));
        m.opts_mut().insert(DhcpOption::DomainName("x".repeat(200)));
        let full = encode(&m, 1500).expect("fits in 1500");
        assert!(full.len() > 548, "len {}", full.len());
        let small = encode(&m, 576).expect("fits after dropping");
        assert!(small.len() <= 548, "len {}", small.len());
        let back = Message::decode(&mut Decoder::new(&small)).expect("parses back");
        assert!(
            back.opts().get(OptionCode::NtpServers).is_none(),
            "largest dropped first"
        );
        for code in ESSENTIAL.iter().filter(|c| **c != 82 && **c != 61) {
            let code = OptionCode::from(*code);
            assert!(back.opts().get(code).is_some(), "{code:?} kept");
        }
        // A limit below 576 is raised to 576.
        assert_eq!(encode(&m, 100).ok().map(|b| b.len()), Some(small.len()));
    }

    /// Every option of an encoded reply, following option 52 into `file` and `sname`.
    fn all_options(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut found = Vec::new();
        let mut overload = 0;
        let area_opts = |area: &[u8], found: &mut Vec<(u8, Vec<u8>)>| {
            let _ = walk(
                area,
                |t| found.push((t.code, area[t.start..t.end].to_vec())),
                |_| true,
            );
        };
        area_opts(&bytes[OPTIONS..], &mut found);
        if let Some((_, v)) = found.iter().find(|(c, _)| *c == OPT_OVERLOAD) {
            overload = v[0];
        }
        if overload & 1 != 0 {
            area_opts(&bytes[FILE], &mut found);
        }
        if overload & 2 != 0 {
            area_opts(&bytes[SNAME], &mut found);
        }
        found
    }

    #[test]
    fn options_that_do_not_fit_go_on_in_file_and_sname_with_option_52() {
        let mut m = offer();
        let ntp = vec![Ipv4Addr::new(10, 0, 0, 2); 60]; // 240 bytes: fits only the options field
        let domain = "x".repeat(110); // fits in file (127)
        let search = vec![7u8; 50]; // fits in sname (63)
        m.opts_mut().insert(DhcpOption::NtpServers(ntp.clone()));
        m.opts_mut().insert(DhcpOption::DomainName(domain.clone()));
        m.opts_mut()
            .insert(DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
                OptionCode::Unknown(224),
                search.clone(),
            )));
        m.opts_mut()
            .insert(DhcpOption::RelayAgentInformation(Default::default()));
        let msg = ReplyMsg::from_message(&m).expect("reply");
        let mut msg = msg;
        msg.opts.put_bytes(82, &[1, 2, b'a', b'b']);
        let bytes = encode_ordered(&msg, 576, &[]).expect("encodes");
        assert!(bytes.len() <= 548, "len {}", bytes.len());
        let found = all_options(&bytes);
        let get = |code: u8| {
            found
                .iter()
                .find(|(c, _)| *c == code)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(52), Some(vec![3]), "file and sname both used");
        assert_eq!(get(42).map(|v| v.len()), Some(240));
        assert_eq!(get(15), Some(domain.clone().into_bytes()));
        assert_eq!(get(224), Some(search));
        assert_eq!(get(82), Some(vec![1, 2, b'a', b'b']));
        for code in [53u8, 54, 51, 1, 3, 6] {
            assert!(get(code).is_some(), "option {code} lost");
        }
        // Option 82 is still the last option of the options field.
        let mut main = Vec::new();
        let _ = walk(&bytes[OPTIONS..], |t| main.push(t.code), |_| true);
        assert_eq!(main.last(), Some(&82));
        // With a boot file in `file`, only `sname` is free: what fits nowhere is dropped, the
        // boot file stays.
        let mut booted = msg.clone();
        booted.file = b"pxelinux.0".to_vec();
        let bytes = encode_ordered(&booted, 576, &[]).expect("encodes");
        assert_eq!(&bytes[FILE][..10], b"pxelinux.0");
        assert!(bytes.len() <= 548);
        // When everything fits, no option 52 and the fields are left alone.
        let small = encode_ordered(&ReplyMsg::from_message(&offer()).expect("r"), 576, &[])
            .expect("encodes");
        assert!(all_options(&small).iter().all(|(c, _)| *c != 52));
        assert!(small[SNAME].iter().chain(&small[FILE]).all(|b| *b == 0));
    }

    #[test]
    fn reply_that_cannot_fit_is_an_error() {
        let mut m = offer();
        let routers = vec![Ipv4Addr::new(10, 0, 0, 1); 200];
        m.opts_mut().insert(DhcpOption::Router(routers));
        assert!(matches!(
            encode(&m, 576),
            Err(EncodeError::TooLarge { limit: 548, .. })
        ));
    }

    #[test]
    fn user_class_rapid_commit_and_ascii_fqdn_decode_and_later_options_survive() {
        // Windows: option 81 with E=0 (ASCII name) before 53 and 77; dhcproto stops there.
        let p = with_options(&[
            81, 9, 0x00, 0, 0, b'W', b'i', b'n', b'.', b'a', b'd', 80, 0, 77, 4, 3, b'c', b'a',
            b'm', 53, 1, 1, 255,
        ]);
        let r = decode(&p).expect("valid");
        assert_eq!(r.msg_type, MessageType::Discover);
        assert!(r.rapid_commit);
        assert_eq!(r.user_class.as_deref(), Some(&b"\x03cam"[..]));
        let f = parse_fqdn(r.fqdn.as_deref().expect("81")).expect("parses");
        assert!(!f.wire_format());
        assert_eq!(f.labels, vec![b"Win".to_vec(), b"ad".to_vec()]);
        let plain = decode(&discover()).expect("valid");
        assert!(!plain.rapid_commit && plain.user_class.is_none());
    }

    #[test]
    fn fqdn_both_encodings_and_malformed_names() {
        let wire = parse_fqdn(b"\x05\x00\x00\x06laptop\x04corp\x00").expect("E=1");
        assert!(wire.wire_format());
        assert_eq!(wire.flags & ClientFqdn::S, ClientFqdn::S);
        assert_eq!(wire.labels, vec![b"laptop".to_vec(), b"corp".to_vec()]);
        // Partial name (no root label) is fine too.
        let partial = parse_fqdn(b"\x04\x00\x00\x02pc").expect("E=1 partial");
        assert_eq!(partial.labels, vec![b"pc".to_vec()]);
        let ascii = parse_fqdn(b"\x01\xff\xffpc.lan.\x00").expect("E=0");
        assert_eq!(ascii.labels, vec![b"pc".to_vec(), b"lan".to_vec()]);
        let empty = parse_fqdn(&[0x01, 0, 0]).expect("no name");
        assert!(empty.labels.is_empty());
        assert_eq!(
            parse_fqdn(&[0x04, 0, 0, 9, b'x']),
            None,
            "label past the end"
        );
        assert_eq!(parse_fqdn(&[0x04, 0, 0, 64]), None, "label too long");
        assert_eq!(parse_fqdn(&[0x04, 0]), None, "no rcodes");
        assert_eq!(parse_fqdn(&[]), None);
    }

    #[test]
    fn options_follow_the_request_list_and_long_ones_stay_whole() {
        let mut m = offer();
        let long = vec![7u8; 300];
        let opt = dhcproto::v4::UnknownOption::new(OptionCode::from(252), long.clone());
        m.opts_mut().insert(DhcpOption::Unknown(opt));
        let mut relay = dhcproto::v4::relay::RelayAgentInformation::default();
        relay.insert(dhcproto::v4::relay::RelayInfo::AgentCircuitId(vec![1]));
        m.opts_mut()
            .insert(DhcpOption::RelayAgentInformation(relay));
        let bytes = encode_message(&m, 1500, &[6, 252, 3, 99]).expect("encodes");
        let mut tlvs = Vec::new();
        walk(&bytes[OPTIONS..], |t| tlvs.push(t.code), |_| true).expect("well formed");
        // 53, 54, then the list (252 split in two, kept together), the rest, 82 last.
        assert_eq!(tlvs, vec![53, 54, 6, 252, 252, 3, 1, 15, 51, 82]);
        let back = Message::decode(&mut Decoder::new(&bytes)).expect("parses back");
        match back.opts().get(OptionCode::from(252)) {
            Some(DhcpOption::Unknown(u)) => assert_eq!(u.data(), &long[..], "joined again"),
            other => panic!("252: {other:?}"),
        }
    }

    /// xorshift64*: a tiny deterministic PRNG, so a failure names its seed and iteration.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
        }
    }

    #[test]
    fn fuzz_mutations_never_panic() {
        let mut base = with_options(&[
            53, 1, 1, 61, 3, 1, 2, 3, 12, 2, b'h', b'i', 55, 2, 1, 3, 52, 1, 3, 81, 3, 0, 0, 0, 82,
            2, 1, 0, 50, 4, 10, 0, 0, 7, 255,
        ]);
        base.resize(320, 0);
        base[FILE.start..FILE.start + 5].copy_from_slice(&[12, 2, b'f', b'i', 255]);
        base[SNAME.start..SNAME.start + 4].copy_from_slice(&[80, 1, 0, 255]);
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut ok = 0usize;
        for _ in 0..200_000 {
            let mut p = base.clone();
            for _ in 0..=rng.below(8) {
                match rng.below(4) {
                    0 => {
                        let i = rng.below(p.len());
                        if let Some(b) = p.get_mut(i) {
                            *b = rng.next() as u8;
                        }
                    }
                    1 => p.truncate(rng.below(p.len() + 1)),
                    2 => {
                        let i = OPTIONS + rng.below(p.len().saturating_sub(OPTIONS));
                        if let Some(b) = p.get_mut(i) {
                            *b = [0, 12, 50, 52, 53, 55, 61, 80, 81, 82, 94, 151, 255]
                                [rng.below(13)];
                        }
                    }
                    _ => p.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
                }
            }
            ok += usize::from(decode(&p).is_ok());
        }
        assert!(ok > 1000, "mutations should often stay valid, got {ok}");
    }
}
