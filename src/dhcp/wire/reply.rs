//! The reply as the engine builds it: `ReplyMsg` (the BOOTP header fields) and `ReplyOpts`
//! (the options in wire form, set one by one, written in the client's order).

use std::net::Ipv4Addr;

#[cfg(test)]
use dhcproto::v4::Message;
use dhcproto::v4::{DhcpOption, Flags, MessageType, Opcode, OptionCode};
use dhcproto::{Encodable, Encoder};

use super::{
    CHADDR, CIADDR, COOKIE, EncodeError, FILE, FLAGS, GIADDR, HLEN, HOPS, HTYPE, MAGIC, OP,
    OPT_END, OPT_PAD, OPTIONS, SECS, SIADDR, SNAME, XID, YIADDR,
};
use crate::lease::HwAddr;

/// Options `encode` never drops to make a reply fit: message type, server id, lease time,
/// subnet mask, router, the client identifier echo (RFC 6842) and the relay agent information a
/// relay needs to forward the reply.
pub(super) const ESSENTIAL: [u8; 7] = [53, 54, 51, 1, 3, 61, 82];

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
    pub(super) fn clone_header(&self) -> ReplyMsg {
        ReplyMsg {
            chaddr: self.chaddr.clone(),
            sname: self.sname.clone(),
            file: self.file.clone(),
            opts: ReplyOpts::new(),
            ..*self
        }
    }

    /// The fixed 240 bytes: header, sname, file, magic cookie.
    pub(super) fn write_header(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
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
    pub(super) fn write_ordered(&self, out: &mut Vec<u8>, order: &[u8], dropped: &[u8]) {
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
    pub(super) fn len_without(&self, dropped: &[u8]) -> usize {
        self.entries
            .iter()
            .filter(|e| !dropped.contains(&e.code))
            .map(|e| (e.end - e.start) as usize)
            .sum()
    }

    /// The optional option, not yet `dropped`, with the longest encoding (ties: the highest
    /// code).
    pub(super) fn largest_optional(&self, dropped: &[u8]) -> Option<u8> {
        self.entries
            .iter()
            .filter(|e| !ESSENTIAL.contains(&e.code) && !dropped.contains(&e.code))
            .map(|e| (e.end - e.start, e.code))
            .max()
            .map(|(_, code)| code)
    }
}
