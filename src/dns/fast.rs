//! The DNS fast path: answers the common UDP queries (A and AAAA of lease and static names in
//! the local domain, PTR of known addresses in our reverse zones) straight from the name index by reading and
//! writing wire bytes, with the same meaning as the hickory path in `zone` and `server`.
//! Must not answer anything it is not sure about: every other message (another opcode or
//! type, dynamic or CNAME names, EDNS options or versions it does not know, anything
//! malformed) is left to hickory. Holds the names lock only inside `answer`, never across
//! `.await`; reads time from the injected `Clock`.

use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_server::proto::rr::Name;

use crate::clock::Clock;
use crate::config::{Config, RecordData};
use crate::dns::names::{Names, SharedNames};
use crate::dns::zone::{LocalZone, ZoneKind, lease_ttl};

const HEADER_LEN: usize = 12;
const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_PTR: u16 = 12;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
const EDNS_COOKIE: u16 = 10;
/// RFC 1035 section 4.2.1: without EDNS a UDP answer fits in 512 bytes.
const PLAIN_UDP_MAX: usize = 512;
/// The SOA timers of `zone` (refresh, retry, expire); the minimum is the configured TTL.
const SOA_TIMERS: [u32; 3] = [3600, 600, 86400];
/// The wire form of "in-addr.arpa." (lowercase).
const IN_ADDR_ARPA: &[u8] = b"\x07in-addr\x04arpa\x00";

/// What the fast path knows about our zones (fixed at bind; the names change under it).
pub struct FastPath {
    names: SharedNames,
    clock: Arc<dyn Clock>,
    ttl: u32,
    /// The local domain's wire form, lowercase; None when another zone nests inside it (then
    /// the catalog's choice of zone is left to the catalog).
    domain: Option<Vec<u8>>,
    /// SOA MNAME and RNAME of the local domain, wire form, as the config spells them.
    mname: Vec<u8>,
    rname: Vec<u8>,
    /// Wire forms (lowercase) of the reverse zones.
    reverse: Vec<Vec<u8>>,
}

/// A query the fast path may answer: one question, class IN, opcode QUERY.
struct Parsed<'a> {
    query: &'a [u8],
    /// End of the question (the name, type and class) in `query`.
    question_end: usize,
    /// The question name, wire form, lowercase.
    lower: Vec<u8>,
    /// Whether the question name was already lowercase (then answers point to it).
    was_lower: bool,
    qtype: u16,
    /// The requester's EDNS payload size, if it sent an OPT record.
    edns: Option<u16>,
    /// The requester's DO bit (copied into our OPT record, RFC 3225 §3).
    dnssec_ok: bool,
}

/// A finished answer: the answer records (already encoded), the rcode, whether the zone's SOA
/// goes into the authority section.
struct Reply {
    rcode: u8,
    answers: Vec<Vec<u8>>,
    soa: Option<u32>,
}

impl FastPath {
    /// The fast path for `cfg`'s zones (as `zones_for` built them).
    pub fn new(
        cfg: &Config,
        zones: &[Arc<LocalZone>],
        names: SharedNames,
        clock: Arc<dyn Clock>,
    ) -> FastPath {
        let wire = |text: &str| {
            let fqdn = format!("{}.", text.trim_end_matches('.'));
            Name::from_ascii(&fqdn).ok().and_then(|n| name_wire(&n))
        };
        let reverse: Vec<Vec<u8>> = zones
            .iter()
            .filter(|z| z.kind() == ZoneKind::Reverse)
            .filter_map(|z| name_wire(&Name::from(z.origin_name())))
            .collect();
        let mname = wire(&cfg.start.domain);
        let rname = wire(&format!("hostmaster.{}", cfg.start.domain));
        let domain = mname.as_ref().map(|m| m.to_ascii_lowercase()).filter(|d| {
            d.len() > 1
                && !is_under(d, b"\x04arpa\x00")
                && !reverse.iter().any(|r| is_under(r, d) || is_under(d, r))
        });
        let domain = domain.filter(|_| mname.is_some() && rname.is_some());
        FastPath {
            names,
            clock,
            ttl: cfg.start.dns.ttl,
            domain,
            mname: mname.unwrap_or_default(),
            rname: rname.unwrap_or_default(),
            reverse,
        }
    }

    /// Write the response to `query` into `out` and return true, or return false (and leave
    /// `out` unspecified) if the query is for the hickory path.
    pub fn answer(&self, query: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(parsed) = parse(query) else {
            return false;
        };
        let reply = {
            let names = self.names.read();
            match &self.domain {
                Some(domain) if is_strictly_under(&parsed.lower, domain) => {
                    self.forward(&names, &parsed)
                }
                _ => self.reverse(&names, &parsed),
            }
        };
        let Some(reply) = reply else {
            return false;
        };
        self.write(&parsed, &reply, out);
        let limit = parsed
            .edns
            .map_or(PLAIN_UDP_MAX, |p| usize::from(p.max(512)));
        out.len() <= limit
    }

    /// A or AAAA of a name in the local domain that only a lease (or nothing) holds.
    fn forward(&self, names: &Names, parsed: &Parsed<'_>) -> Option<Reply> {
        if !matches!(parsed.qtype, TYPE_A | TYPE_AAAA) {
            return None;
        }
        let key = key_of(&parsed.lower)?;
        if names.dynamic().has(&key) || names.is_interior(&key) {
            return None;
        }
        let statics = names.static_records(&key);
        if !statics.is_empty() {
            return self.static_reply(statics, parsed, names.serial());
        }
        let now = self.clock.now();
        let live = names.lookup_a(&key).and_then(|found| match found.expires {
            Some(expires) => lease_ttl(self.ttl, now, expires).map(|ttl| (found.value, ttl)),
            None => None,
        });
        let serial = names.serial();
        Some(match (live, parsed.qtype) {
            (Some((ip, ttl)), TYPE_A) => Reply {
                rcode: 0,
                answers: vec![record(parsed, TYPE_A, ttl, &ip.octets())],
                soa: None,
            },
            (Some(_), _) => Reply {
                rcode: 0,
                answers: Vec::new(),
                soa: Some(serial),
            },
            (None, _) => Reply {
                rcode: 3,
                answers: Vec::new(),
                soa: Some(serial),
            },
        })
    }

    /// A or AAAA of a static name (reservation, `[[dns.record]]`, hosts file) with the
    /// configured TTL, in source order; NODATA if it has none of that type. A CNAME is left to
    /// hickory (its chain may need following).
    fn static_reply(
        &self,
        statics: &[RecordData],
        parsed: &Parsed<'_>,
        serial: u32,
    ) -> Option<Reply> {
        if statics.iter().any(|d| matches!(d, RecordData::Cname(_))) {
            return None;
        }
        let answers: Vec<Vec<u8>> = statics
            .iter()
            .filter_map(|d| match (d, parsed.qtype) {
                (RecordData::A(ip), TYPE_A) => Some(record(parsed, TYPE_A, self.ttl, &ip.octets())),
                (RecordData::Aaaa(ip), TYPE_AAAA) => {
                    Some(record(parsed, TYPE_AAAA, self.ttl, &ip.octets()))
                }
                _ => None,
            })
            .collect();
        let soa = answers.is_empty().then_some(serial);
        Some(Reply {
            rcode: 0,
            answers,
            soa,
        })
    }

    /// PTR of an address in one of our reverse zones that the index names.
    fn reverse(&self, names: &Names, parsed: &Parsed<'_>) -> Option<Reply> {
        if parsed.qtype != TYPE_PTR || !self.reverse.iter().any(|r| is_under(&parsed.lower, r)) {
            return None;
        }
        let ip = arpa_v4(&parsed.lower)?;
        let key = key_of(&parsed.lower)?;
        if names.dynamic().has(&key) {
            return None;
        }
        let found = names.lookup_ptr(ip)?;
        let ttl = match found.expires {
            None => self.ttl,
            Some(expires) => lease_ttl(self.ttl, self.clock.now(), expires)?,
        };
        let target = text_wire(&found.value)?;
        Some(Reply {
            rcode: 0,
            answers: vec![record(parsed, TYPE_PTR, ttl, &target)],
            soa: None,
        })
    }

    fn write(&self, parsed: &Parsed<'_>, reply: &Reply, out: &mut Vec<u8>) {
        let q = parsed.query;
        out.clear();
        out.extend_from_slice(&q[..2]);
        // QR, opcode QUERY, AA, RD as asked; RA and AD clear, CD as asked.
        out.push(0x84 | (q[2] & 0x01));
        out.push((q[3] & 0x10) | reply.rcode);
        let answers = u16::try_from(reply.answers.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&answers.to_be_bytes());
        out.extend_from_slice(&u16::from(reply.soa.is_some()).to_be_bytes());
        out.extend_from_slice(&u16::from(parsed.edns.is_some()).to_be_bytes());
        out.extend_from_slice(&q[HEADER_LEN..parsed.question_end]);
        for answer in &reply.answers {
            out.extend_from_slice(answer);
        }
        if let (Some(serial), Some(domain)) = (reply.soa, &self.domain) {
            out.extend_from_slice(domain);
            push_rr_head(out, TYPE_SOA, self.ttl);
            let rdata_len = self.mname.len() + self.rname.len() + 20;
            out.extend_from_slice(&u16::try_from(rdata_len).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(&self.mname);
            out.extend_from_slice(&self.rname);
            for value in [
                serial,
                SOA_TIMERS[0],
                SOA_TIMERS[1],
                SOA_TIMERS[2],
                self.ttl,
            ] {
                out.extend_from_slice(&value.to_be_bytes());
            }
        }
        if let Some(payload) = parsed.edns {
            // Root owner, OPT, our payload (the requester's, at least 512), version 0, the
            // requester's DO bit.
            out.push(0);
            out.extend_from_slice(&TYPE_OPT.to_be_bytes());
            out.extend_from_slice(&payload.max(512).to_be_bytes());
            let flags = if parsed.dnssec_ok { 0x80 } else { 0 };
            out.extend_from_slice(&[0, 0, flags, 0, 0, 0]);
        }
    }
}

/// One answer record owned by the question name: a pointer to the question when it was
/// lowercase, the lowercase name otherwise (as the hickory path answers).
fn record(parsed: &Parsed<'_>, rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parsed.lower.len() + 10 + rdata.len());
    if parsed.was_lower {
        out.extend_from_slice(&[0xc0, 0x0c]);
    } else {
        out.extend_from_slice(&parsed.lower);
    }
    push_rr_head(&mut out, rtype, ttl);
    out.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

fn push_rr_head(out: &mut Vec<u8>, rtype: u16, ttl: u32) {
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
}

/// The query, if it is one the fast path may answer.
fn parse(q: &[u8]) -> Option<Parsed<'_>> {
    if q.len() < HEADER_LEN {
        return None;
    }
    // QR clear, opcode QUERY, TC clear; one question, no answers or authorities, at most
    // one additional (the OPT record).
    let count = |i: usize| u16::from_be_bytes([q[i], q[i + 1]]);
    if q[2] & 0xfa != 0 || count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    let (lower, was_lower, end) = read_name(q, HEADER_LEN)?;
    let fixed = q.get(end..end + 4)?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    if u16::from_be_bytes([fixed[2], fixed[3]]) != CLASS_IN {
        return None;
    }
    let question_end = end + 4;
    let (edns, dnssec_ok) = if count(10) == 1 {
        let (payload, dnssec_ok) = read_opt(&q[question_end..])?;
        (Some(payload), dnssec_ok)
    } else if question_end == q.len() {
        (None, false)
    } else {
        return None;
    };
    Some(Parsed {
        query: q,
        question_end,
        lower,
        was_lower,
        qtype,
        edns,
        dnssec_ok,
    })
}

/// An uncompressed name of letters, digits, '-' and '_' at `at`: its lowercase wire form,
/// whether it was lowercase, and where it ends.
fn read_name(q: &[u8], at: usize) -> Option<(Vec<u8>, bool, usize)> {
    let mut lower = Vec::with_capacity(32);
    let mut was_lower = true;
    let mut i = at;
    loop {
        let len = usize::from(*q.get(i)?);
        if len > 63 {
            return None;
        }
        let label = q.get(i..=i + len)?;
        for &b in &label[1..] {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            was_lower &= !b.is_ascii_uppercase();
        }
        lower.extend(label.iter().map(u8::to_ascii_lowercase));
        i += len + 1;
        if lower.len() > 255 {
            return None;
        }
        if len == 0 {
            return Some((lower, was_lower, i));
        }
    }
}

/// The requester's payload size and DO bit from an OPT record that ends the message: root
/// owner, version 0, and no options but DNS cookies.
fn read_opt(rest: &[u8]) -> Option<(u16, bool)> {
    let head = rest.get(..11)?;
    if head[0] != 0 || u16::from_be_bytes([head[1], head[2]]) != TYPE_OPT {
        return None;
    }
    let payload = u16::from_be_bytes([head[3], head[4]]);
    // Extended rcode and version must be 0; DO does not change our answers, only our OPT.
    if head[5] != 0 || head[6] != 0 {
        return None;
    }
    let rdlen = usize::from(u16::from_be_bytes([head[9], head[10]]));
    let mut options = rest.get(11..)?;
    if options.len() != rdlen {
        return None;
    }
    while !options.is_empty() {
        let code = u16::from_be_bytes([*options.first()?, *options.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*options.get(2)?, *options.get(3)?]));
        if code != EDNS_COOKIE || !(8..=40).contains(&len) || options.len() < 4 + len {
            return None;
        }
        options = &options[4 + len..];
    }
    Some((payload, head[7] & 0x80 != 0))
}

/// Whether `name` (wire) is `zone` or a name under it.
fn is_under(name: &[u8], zone: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        if name[i..] == *zone {
            return true;
        }
        i += usize::from(name[i]) + 1;
    }
    false
}

/// Whether `name` (wire) is a name under `zone`, not the zone itself.
fn is_strictly_under(name: &[u8], zone: &[u8]) -> bool {
    name != zone && is_under(name, zone)
}

/// The index key of a wire name: its text without trailing dot ("laptop.lan").
fn key_of(wire: &[u8]) -> Option<String> {
    let mut key = String::with_capacity(wire.len());
    let mut i = 0;
    while let Some(&len) = wire.get(i) {
        if len == 0 {
            break;
        }
        let label = wire.get(i + 1..i + 1 + usize::from(len))?;
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(std::str::from_utf8(label).ok()?);
        i += usize::from(len) + 1;
    }
    Some(key)
}

/// The address of "d.c.b.a.in-addr.arpa." (canonical decimal octets), if the name is one.
fn arpa_v4(wire: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for slot in (0..4).rev() {
        let len = usize::from(*wire.get(i)?);
        let label = std::str::from_utf8(wire.get(i + 1..i + 1 + len)?).ok()?;
        if len == 0 || (len > 1 && label.starts_with('0')) {
            return None;
        }
        octets[slot] = label.parse().ok()?;
        i += len + 1;
    }
    (wire.get(i..)? == IN_ADDR_ARPA).then(|| Ipv4Addr::from(octets))
}

/// The wire form of a name in the index ("laptop.lan", no escapes), lowercase.
fn text_wire(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() + 2);
    for label in text.trim_end_matches('.').split('.') {
        let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if label.is_empty() || label.len() > 63 || !label.bytes().all(ok) {
            return None;
        }
        out.push(u8::try_from(label.len()).ok()?);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

/// The uncompressed wire form of a hickory name.
fn name_wire(name: &Name) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for label in name.iter() {
        out.push(u8::try_from(label.len()).ok()?);
        out.extend_from_slice(label);
    }
    out.push(0);
    Some(out)
}
