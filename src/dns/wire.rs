//! DNS wire-format walking shared by the front door (`listen`) and the answer cache
//! (`forward`): header checks, where the question ends, where each record and its TTL sit, the
//! OPT record, and the well-formed truncated reply (RFC 2181 §9, RFC 6891 §7).
//! Pure functions over byte slices: no sockets, no clock, no allocation on the hot checks. Also
//! what the handlers report for a reply that could not be sent (`serve_failed`).

use std::fmt;

use hickory_server::server::{Request, ResponseInfo};

pub const HEADER_LEN: usize = 12;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_TSIG: u16 = 250;
/// Our EDNS payload (RFC 9715): the most a UDP answer may be, whatever the client asks.
const OUR_PAYLOAD: u16 = 1232;
/// RFC 1035 §4.2.1: without EDNS a UDP answer fits in 512 bytes.
pub const PLAIN_UDP_MAX: usize = 512;

/// The 16-bit count at byte `i` of the header (`m` holds at least a header).
pub fn count(m: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([m[i], m[i + 1]])
}

pub fn u16_at(m: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(i)?, *m.get(i + 1)?]))
}

/// Whether a datagram is worth parsing: a full header and QR clear (a response sent to a
/// server is a reflection attempt or noise, RFC 1035 §4.1.1).
pub fn is_query(m: &[u8]) -> bool {
    m.len() >= HEADER_LEN && m[2] & 0x80 == 0
}

/// The end of the (possibly compressed) name at `at`.
pub fn skip_name(m: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *m.get(at)?;
        match len & 0xc0 {
            0 if len == 0 => return Some(at + 1),
            0 => at += 1 + usize::from(len),
            0xc0 => {
                m.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
    None
}

/// The end of the single question of `m` (None if QDCOUNT is not 1 or the name is bad).
pub fn question_end(m: &[u8]) -> Option<usize> {
    if m.len() < HEADER_LEN || count(m, 4) != 1 {
        return None;
    }
    let end = skip_name(m, HEADER_LEN)? + 4;
    (end <= m.len()).then_some(end)
}

/// Whether `m` asks for a zone transfer: one question of type AXFR (252) or IXFR (251).
pub fn is_transfer(m: &[u8]) -> bool {
    question_end(m)
        .and_then(|end| u16_at(m, end - 4))
        .is_some_and(|t| t == 251 || t == 252)
}

/// One resource record of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rr {
    pub start: usize,
    pub rtype: u16,
    /// Where the 4-byte TTL field is.
    pub ttl_at: usize,
    pub end: usize,
}

/// Every record after the single question, in order (answer, authority, additional); None if
/// the message is malformed.
pub fn records(m: &[u8]) -> Option<Vec<Rr>> {
    let mut at = question_end(m)?;
    let total = usize::from(count(m, 6)) + usize::from(count(m, 8)) + usize::from(count(m, 10));
    let mut out = Vec::with_capacity(total);
    for _ in 0..total {
        let start = at;
        let name_end = skip_name(m, at)?;
        let rtype = u16_at(m, name_end)?;
        let rdlen = usize::from(u16_at(m, name_end + 8)?);
        let end = name_end + 10 + rdlen;
        if end > m.len() {
            return None;
        }
        out.push(Rr {
            start,
            rtype,
            ttl_at: name_end + 4,
            end,
        });
        at = end;
    }
    (at == m.len()).then_some(out)
}

/// The client's EDNS view of a query: payload size and DO bit, if it sent an OPT record as
/// its last additional record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientEdns {
    pub payload: u16,
    pub dnssec_ok: bool,
}

/// The OPT record of a query (the last record), if any.
pub fn client_edns(q: &[u8]) -> Option<ClientEdns> {
    let rrs = records(q)?;
    let opt = rrs.iter().find(|r| r.rtype == TYPE_OPT)?;
    Some(ClientEdns {
        payload: u16_at(q, opt.ttl_at - 2)?,
        dnssec_ok: q.get(opt.ttl_at + 2)? & 0x80 != 0,
    })
}

/// The most a UDP answer to a client with `edns` may hold.
pub fn udp_limit(edns: Option<ClientEdns>) -> usize {
    edns.map_or(PLAIN_UDP_MAX, |e| {
        usize::from(e.payload.clamp(512, OUR_PAYLOAD))
    })
}

/// Set the DO bit of the OPT record in `m` (RFC 3225 §3: copied from the query). Does
/// nothing to a message without OPT, or a signed one (the signature covers the bits).
pub fn copy_dnssec_ok(m: &mut [u8]) {
    let Some(rrs) = records(m) else { return };
    if rrs.iter().any(|r| r.rtype == TYPE_TSIG) {
        return;
    }
    if let Some(opt) = rrs.iter().find(|r| r.rtype == TYPE_OPT) {
        m[opt.ttl_at + 2] |= 0x80;
    }
}

/// Whether `m` carries a TSIG record (then its bytes must not change).
pub fn is_signed(m: &[u8]) -> bool {
    records(m).is_some_and(|rrs| rrs.iter().any(|r| r.rtype == TYPE_TSIG))
}

/// The reply to send when `full` does not fit: the header with TC set, the question, and the
/// OPT record (if `full` has one), no other records. RFC 2181 §9 allows dropping whole
/// RRsets; dropping all of them leaves no partial one, and the client retries over TCP.
pub fn truncated(full: &[u8]) -> Option<Vec<u8>> {
    let qend = question_end(full)?;
    let opt = records(full)?.into_iter().find(|r| r.rtype == TYPE_OPT);
    let mut out = Vec::with_capacity(qend + 11);
    out.extend_from_slice(&full[..qend]);
    out[2] |= 0x02;
    out[6..12].copy_from_slice(&[0, 0, 0, 0, 0, u8::from(opt.is_some())]);
    if let Some(opt) = opt {
        out.extend_from_slice(&full[opt.start..opt.end]);
    }
    Some(out)
}

/// `m` if it fits in `limit` bytes, else its truncated form.
pub fn fit(m: Vec<u8>, limit: usize) -> Vec<u8> {
    if m.len() <= limit {
        return m;
    }
    truncated(&m).unwrap_or_else(|| {
        // No single question to keep: the header alone, TC set, every count zero.
        let mut header = m[..HEADER_LEN.min(m.len())].to_vec();
        header.resize(HEADER_LEN, 0);
        header[2] |= 0x02;
        header[4..].fill(0);
        header
    })
}

/// The question of a query as text ("name/type/class"), for debug logs; formats only when
/// the log line is written.
pub struct QuestionText<'a>(pub &'a [u8]);

impl fmt::Display for QuestionText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        let Some(end) = question_end(m) else {
            return f.write_str("?");
        };
        let mut at = HEADER_LEN;
        while let Some(&len) = m.get(at) {
            if len == 0 || len & 0xc0 != 0 {
                break;
            }
            let label = m.get(at + 1..at + 1 + usize::from(len)).unwrap_or(&[]);
            write!(f, "{}.", String::from_utf8_lossy(label))?;
            at += 1 + usize::from(len);
        }
        if at == HEADER_LEN {
            f.write_str(".")?;
        }
        let (t, c) = (count(m, end - 4), count(m, end - 2));
        write!(f, "/{t}/{c}")
    }
}

/// What we report for a response that could not be sent (hickory's own is crate-private).
pub fn serve_failed(request: &Request) -> ResponseInfo {
    let mut metadata = hickory_server::proto::op::Metadata::new(
        request.metadata.id,
        hickory_server::proto::op::MessageType::Response,
        request.metadata.op_code,
    );
    metadata.response_code = hickory_server::proto::op::ResponseCode::ServFail;
    ResponseInfo::from(hickory_server::proto::op::Header {
        metadata,
        counts: hickory_server::proto::op::HeaderCounts::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to "a.example A" with two A records and an OPT record (DO clear).
    fn response() -> Vec<u8> {
        let mut m = vec![0, 7, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 1];
        m.extend_from_slice(b"\x01a\x07example\x00\x00\x01\x00\x01");
        for last in [1u8, 2] {
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, last]);
        }
        m.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        m
    }

    #[test]
    fn transfers_are_told_by_their_question_type() {
        let q = |rtype: u8| {
            let mut m = vec![0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(b"\x03lan\x00\x00");
            m.extend_from_slice(&[rtype, 0, 1]);
            m
        };
        assert!(is_transfer(&q(252)) && is_transfer(&q(251)));
        assert!(!is_transfer(&q(6)) && !is_transfer(&q(1)));
        let full = q(252);
        assert!(!is_transfer(&full[..full.len() - 1]), "cut short");
        let mut two = q(252);
        two[5] = 2;
        assert!(!is_transfer(&two), "QDCOUNT 2");
    }

    #[test]
    fn records_and_their_ttls_are_found() {
        let m = response();
        let rrs = records(&m).expect("well formed");
        assert_eq!(rrs.len(), 3);
        assert_eq!(rrs[0].start, 27);
        assert_eq!(rrs[0].ttl_at, 33);
        assert_eq!(rrs[2].rtype, TYPE_OPT);
        assert_eq!(rrs[2].end, m.len());
        // Cut anywhere inside a record: malformed.
        for len in 28..m.len() {
            assert!(records(&m[..len]).is_none(), "cut at {len}");
        }
    }

    #[test]
    fn truncated_reply_keeps_question_and_opt_only() {
        let m = response();
        let tc = truncated(&m).expect("truncates");
        assert_eq!(&tc[..2], &[0, 7]);
        assert_eq!(tc[2] & 0x02, 0x02, "TC set");
        assert_eq!(&tc[4..12], &[0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&tc[tc.len() - 11..], &m[m.len() - 11..], "OPT kept");
        assert_eq!(records(&tc).expect("well formed").len(), 1);
        assert_eq!(fit(m.clone(), m.len()), m);
        assert_eq!(fit(m.clone(), 40), tc);
        // Two questions: the header alone.
        let mut two = m.clone();
        two[5] = 2;
        let header = fit(two, 40);
        assert_eq!(header.len(), HEADER_LEN);
        assert_eq!(header[2] & 0x02, 0x02);
        assert_eq!(&header[4..], &[0; 8]);
    }

    #[test]
    fn do_bit_is_copied_into_opt() {
        let mut m = response();
        copy_dnssec_ok(&mut m);
        let edns = client_edns(&m).expect("opt");
        assert!(edns.dnssec_ok);
        assert_eq!(edns.payload, 1232);
        assert_eq!(udp_limit(Some(edns)), 1232);
        assert_eq!(udp_limit(None), 512);
    }

    #[test]
    fn headers_and_garbage() {
        assert!(!is_query(&[0; 11]));
        assert!(is_query(&[0; 12]));
        assert!(!is_query(&response()), "QR set");
        assert!(question_end(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40]).is_none());
        // A pointer loop ends.
        let looped = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
        assert_eq!(question_end(&looped), Some(18));
        assert_eq!(QuestionText(&response()).to_string(), "a.example./1/1");
    }
}
