//! TSIG (RFC 8945), both sides. Server (inbound UPDATE): verifying a request's MAC against the
//! configured keys (a truncated MAC gets BADTRUNC), the time check (BADTIME), a replay check
//! that never forgets a request inside its time window, and signing the response. Client
//! (outbound DDNS, tests, tools): signing a request and checking the response's MAC, error and
//! time. HMAC-SHA1/256/384/512 via `ring` (hickory's own TSigner has no SHA-1 and needs its
//! DNSSEC features, which change how the catalog answers every query). No sockets; time is
//! passed in.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use hickory_server::proto::ProtoError;
use hickory_server::proto::op::{Header, Query};
use hickory_server::proto::rr::rdata::TSIG;
use hickory_server::proto::rr::rdata::tsig::{TsigAlgorithm, TsigError, make_tsig_record};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder, NameEncoding,
};

/// How many (key, time, MAC) triples the replay check remembers at most (about 8 MB). An entry
/// is dropped only when its time window has passed; when every entry is still live, new
/// requests are refused (BADTIME) rather than an old one forgotten.
const REPLAY_CAPACITY: usize = 65_536;

pub use crate::keys::{FUDGE, TsigKey, algorithm, supported};

/// A request whose MAC and time are good: what signing the response needs.
#[derive(Clone, Debug)]
pub struct Verified {
    /// Index of the key in the keyring.
    pub key: usize,
    pub request_mac: Vec<u8>,
    pub request_id: u16,
    /// The request's Time Signed.
    pub time: u64,
}

/// Why a signed request is refused (always answered NOTAUTH, RFC 8945 §5.2).
#[derive(Clone, Debug)]
pub enum Rejected {
    /// Unknown key name or an algorithm that is not the key's: an unsigned BADKEY answer.
    BadKey {
        key_name: Name,
        algorithm: TsigAlgorithm,
        request_id: u16,
    },
    /// The MAC does not match: an unsigned BADSIG answer.
    BadSig { key: usize, request_id: u16 },
    /// A truncated MAC that matches (RFC 8945 §5.2.2.1), shorter than our policy (the full
    /// length; we accept no truncation): an unsigned BADTRUNC answer.
    BadTrunc { key: usize, request_id: u16 },
    /// Signed outside the fudge window, seen before, or the replay memory is full of live
    /// entries: a signed BADTIME answer.
    BadTime(Verified),
}

/// Outcome of checking one request.
#[derive(Clone, Debug)]
pub enum Check {
    Unsigned,
    Valid(Verified),
    Rejected(Rejected),
    /// A TSIG record that is not the last record, or a message that cannot be walked.
    Malformed(String),
}

/// The configured keys and the replay memory.
pub struct Keyring {
    keys: Vec<TsigKey>,
    /// std Mutex: never held across `.await`.
    seen: Mutex<Seen>,
}

/// A verified request: (key index, Time Signed, MAC prefix).
/// The MAC is kept by its first 16 bytes (every accepted MAC is a full HMAC, 20 bytes or more):
/// distinct requests share a prefix with probability 2^-128, and an entry needs no allocation
/// (32 + 40 bytes in the two sets plus their overhead: 65,536 of them take about 8 MB).
type SeenEntry = (usize, u64, [u8; 16]);

struct Seen {
    set: HashSet<SeenEntry>,
    /// (last second it could be replayed, entry), soonest first.
    by_expiry: BTreeSet<(u64, SeenEntry)>,
    capacity: usize,
}

/// What the replay memory says about a verified request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sight {
    First,
    Replay,
    /// Every remembered request is still inside its window: refuse rather than forget one.
    Full,
}

impl Keyring {
    pub fn new(keys: Vec<TsigKey>) -> Keyring {
        Keyring::with_replay_capacity(keys, REPLAY_CAPACITY)
    }

    /// A keyring whose replay memory holds at most `capacity` requests (tests use small ones).
    pub fn with_replay_capacity(keys: Vec<TsigKey>, capacity: usize) -> Keyring {
        Keyring {
            keys,
            seen: Mutex::new(Seen {
                set: HashSet::new(),
                by_expiry: BTreeSet::new(),
                capacity: capacity.max(1),
            }),
        }
    }

    pub fn key(&self, index: usize) -> Option<&TsigKey> {
        self.keys.get(index)
    }

    /// Check the TSIG of raw request bytes at `now` (Unix seconds).
    pub fn check(&self, raw: &[u8], now: u64) -> Check {
        let (tbv, key_name, tsig) = match split(raw) {
            Ok(Some(parts)) => parts,
            Ok(None) => return Check::Unsigned,
            Err(e) => return Check::Malformed(e),
        };
        let request_id = tsig.oid;
        let wanted = key_name.to_lowercase();
        let Some(index) = self
            .keys
            .iter()
            .position(|k| k.name == wanted && k.algorithm == tsig.algorithm)
        else {
            return Check::Rejected(Rejected::BadKey {
                key_name,
                algorithm: tsig.algorithm,
                request_id,
            });
        };
        let key = &self.keys[index];
        let full = key.mac(b"").len();
        let len = tsig.mac.len();
        // RFC 8945 §5.2.2.1: longer than the hash, or shorter than max(10, half of it): FORMERR.
        if len > full || len < (full / 2).max(10) {
            return Check::Malformed(format!("TSIG MAC of {len} bytes (full length {full})"));
        }
        if !key.verify_truncated(&tbv, &tsig.mac) {
            return Check::Rejected(Rejected::BadSig {
                key: index,
                request_id,
            });
        }
        if len < full {
            return Check::Rejected(Rejected::BadTrunc {
                key: index,
                request_id,
            });
        }
        let verified = Verified {
            key: index,
            request_mac: tsig.mac.clone(),
            request_id,
            time: tsig.time,
        };
        if now.abs_diff(tsig.time) > u64::from(key.fudge) {
            return Check::Rejected(Rejected::BadTime(verified));
        }
        match self.first_sight(&verified, now) {
            Sight::First => Check::Valid(verified),
            Sight::Replay => Check::Rejected(Rejected::BadTime(verified)),
            Sight::Full => {
                tracing::warn!(
                    "TSIG replay memory full of requests inside their time window: refusing (BADTIME)"
                );
                Check::Rejected(Rejected::BadTime(verified))
            }
        }
    }

    /// Remember a verified (key, time, MAC) until it falls out of its window (Time Signed +
    /// fudge): entries whose window has passed are forgotten, no other.
    fn first_sight(&self, v: &Verified, now: u64) -> Sight {
        let fudge = self.keys.get(v.key).map_or(0, |k| u64::from(k.fudge));
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(first) = seen.by_expiry.first() {
            if first.0 >= now {
                break;
            }
            if let Some((_, entry)) = seen.by_expiry.pop_first() {
                seen.set.remove(&entry);
            }
        }
        let mut prefix = [0u8; 16];
        let n = v.request_mac.len().min(16);
        prefix[..n].copy_from_slice(&v.request_mac[..n]);
        let entry = (v.key, v.time, prefix);
        if seen.set.contains(&entry) {
            return Sight::Replay;
        }
        if seen.set.len() >= seen.capacity {
            return Sight::Full;
        }
        seen.set.insert(entry);
        seen.by_expiry.insert((v.time.saturating_add(fudge), entry));
        Sight::First
    }

    /// The TSIG record for a response to a verified request: `response` is the encoded
    /// response without TSIG. For BADTIME, `error` is set and Other Data carries our time.
    pub fn sign_response(
        &self,
        v: &Verified,
        response: &[u8],
        now: u64,
        error: Option<TsigError>,
    ) -> Option<Record<TSIG>> {
        let key = self.keys.get(v.key)?;
        let (time, other) = match error {
            // RFC 8945 §5.2.3: the request's time, and ours in Other Data (48 bits).
            Some(TsigError::BadTime) => (v.time, now.to_be_bytes()[2..].to_vec()),
            _ => (now, Vec::new()),
        };
        let stub = TSIG::new(
            key.algorithm.clone(),
            time,
            key.fudge,
            Vec::new(),
            v.request_id,
            error,
            other,
        );
        let mut tbs = Vec::with_capacity(response.len() + 128);
        let mut encoder = BinEncoder::new(&mut tbs);
        let mac_len = u16::try_from(v.request_mac.len()).ok()?;
        encoder.emit_u16(mac_len).ok()?;
        encoder.emit_vec(&v.request_mac).ok()?;
        encoder.emit_vec(response).ok()?;
        stub.emit_tsig_for_mac(&mut encoder, &key.name).ok()?;
        let mac = key.mac(&tbs);
        Some(make_tsig_record(key.name.clone(), stub.set_mac(mac)))
    }

    /// `response` (a complete message without TSIG) signed as the answer to the verified
    /// request `v`: its TSIG record appended (names uncompressed) and counted in ARCOUNT. None if
    /// it cannot be signed.
    pub fn sign_response_bytes(&self, v: &Verified, response: &[u8], now: u64) -> Option<Vec<u8>> {
        let record = self.sign_response(v, response, now, None)?;
        let arcount =
            u16::from_be_bytes([*response.get(10)?, *response.get(11)?]).checked_add(1)?;
        let mut bytes = response.to_vec();
        let mut encoder = BinEncoder::with_offset(&mut bytes, u32::try_from(response.len()).ok()?);
        encoder.set_name_encoding(NameEncoding::Uncompressed);
        record.emit(&mut encoder).ok()?;
        bytes[10..12].copy_from_slice(&arcount.to_be_bytes());
        Some(bytes)
    }

    /// The TSIG record of a later message of a multi-message response (RFC 8945 §5.3.1, a
    /// zone transfer): its MAC covers the prior message's MAC, this message without TSIG and
    /// the TSIG timers (Time Signed, Fudge) only.
    pub fn sign_continuation(
        &self,
        v: &Verified,
        prior_mac: &[u8],
        message: &[u8],
        now: u64,
    ) -> Option<Record<TSIG>> {
        let key = self.keys.get(v.key)?;
        let mut tbs = Vec::with_capacity(message.len() + prior_mac.len() + 10);
        tbs.extend_from_slice(&u16::try_from(prior_mac.len()).ok()?.to_be_bytes());
        tbs.extend_from_slice(prior_mac);
        tbs.extend_from_slice(message);
        tbs.extend_from_slice(&now.to_be_bytes()[2..]);
        tbs.extend_from_slice(&key.fudge.to_be_bytes());
        let mac = key.mac(&tbs);
        let tsig = TSIG::new(
            key.algorithm.clone(),
            now,
            key.fudge,
            mac,
            v.request_id,
            None,
            Vec::new(),
        );
        Some(make_tsig_record(key.name.clone(), tsig))
    }

    /// The unsigned TSIG record of a BADKEY or BADSIG answer.
    pub fn error_record(&self, rejected: &Rejected, now: u64) -> Option<Record<TSIG>> {
        let (name, algorithm, id, error) = match rejected {
            Rejected::BadKey {
                key_name,
                algorithm,
                request_id,
            } => (
                key_name.clone(),
                algorithm.clone(),
                *request_id,
                TsigError::BadKey,
            ),
            Rejected::BadSig { key, request_id } | Rejected::BadTrunc { key, request_id } => {
                let key = self.keys.get(*key)?;
                let error = match rejected {
                    Rejected::BadTrunc { .. } => TsigError::BadTrunc,
                    _ => TsigError::BadSig,
                };
                (key.name.clone(), key.algorithm.clone(), *request_id, error)
            }
            Rejected::BadTime(_) => return None,
        };
        let tsig = TSIG::new(algorithm, now, 300, Vec::new(), id, Some(error), Vec::new());
        Some(make_tsig_record(name, tsig))
    }
}

/// The bytes a request's MAC covers (RFC 8945 §4.3: the message without its TSIG, with the
/// original ID and one fewer additional record, then the TSIG variables), the key name and the
/// TSIG; None for an unsigned message.
fn split(raw: &[u8]) -> Result<Option<(Vec<u8>, Name, TSIG)>, String> {
    let mut decoder = BinDecoder::new(raw);
    let Header {
        mut metadata,
        mut counts,
    } = Header::read(&mut decoder).map_err(|e| e.to_string())?;
    for _ in 0..counts.queries {
        Query::read(&mut decoder).map_err(|e| e.to_string())?;
    }
    let records = usize::from(counts.answers)
        + usize::from(counts.authorities)
        + usize::from(counts.additionals);
    let mut last: Option<(usize, Record)> = None;
    for i in 0..records {
        let start = raw.len() - decoder.len();
        let record = Record::read(&mut decoder).map_err(|e| e.to_string())?;
        if record.record_type() == RecordType::TSIG && i + 1 != records {
            return Err("TSIG is not the last record".into());
        }
        last = Some((start, record));
    }
    let Some((start, record)) = last.filter(|(_, r)| r.record_type() == RecordType::TSIG) else {
        return Ok(None);
    };
    let RData::TSIG(tsig) = record.data else {
        return Err("TSIG record without TSIG data".into());
    };
    metadata.id = tsig.oid;
    counts.additionals = counts.additionals.saturating_sub(1);
    let mut tbv = Vec::with_capacity(raw.len());
    let mut encoder = BinEncoder::new(&mut tbv);
    Header { metadata, counts }
        .emit(&mut encoder)
        .map_err(|e| e.to_string())?;
    encoder
        .emit_vec(&raw[12..start])
        .map_err(|e| e.to_string())?;
    tsig.emit_tsig_for_mac(&mut encoder, &record.name)
        .map_err(|e| e.to_string())?;
    Ok(Some((tbv, record.name, tsig)))
}

/// Why signing a request or checking its response failed (client side).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    #[error("malformed DNS message: {0}")]
    Malformed(String),
    #[error("response is not signed")]
    Unsigned,
    #[error("response signed with another key or algorithm ({0})")]
    WrongKey(String),
    #[error("server reported TSIG error {0} ({name})", name = tsig_error_name(*.0))]
    ServerError(u16),
    #[error("response signature does not verify")]
    BadMac,
    #[error("response signed at {signed}, outside {fudge}s of our time {now}")]
    BadTime { signed: u64, now: u64, fudge: u16 },
}

fn tsig_error_name(code: u16) -> &'static str {
    match TsigError::from(code) {
        TsigError::BadSig => "BADSIG",
        TsigError::BadKey => "BADKEY",
        TsigError::BadTime => "BADTIME",
        TsigError::BadTrunc => "BADTRUNC",
        TsigError::Unknown(_) => "unknown",
    }
}

/// A signed request and the MAC a response's signature chains from.
#[derive(Debug)]
pub struct Signed {
    pub bytes: Vec<u8>,
    pub mac: Vec<u8>,
}

/// Sign the wire bytes of a complete request without TSIG at `now` (Unix seconds): appends the
/// TSIG record (names uncompressed) and counts it in ARCOUNT.
pub fn sign(msg: &[u8], key: &TsigKey, now: u64) -> Result<Signed, ClientError> {
    let malformed = |e: ProtoError| ClientError::Malformed(e.to_string());
    let (Some(id), Some(arcount)) = (msg.get(0..2), msg.get(10..12)) else {
        return Err(ClientError::Malformed("shorter than a header".into()));
    };
    let id = u16::from_be_bytes([id[0], id[1]]);
    let arcount = u16::from_be_bytes([arcount[0], arcount[1]]).wrapping_add(1);
    let stub = TSIG::new(
        key.algorithm.clone(),
        now,
        key.fudge,
        Vec::new(),
        id,
        None,
        Vec::new(),
    );
    let mut tbs = msg.to_vec();
    let mut encoder = BinEncoder::with_offset(&mut tbs, msg.len() as u32);
    stub.emit_tsig_for_mac(&mut encoder, &key.name)
        .map_err(malformed)?;
    let mac = key.mac(&tbs);
    let mut bytes = msg.to_vec();
    let mut encoder = BinEncoder::with_offset(&mut bytes, msg.len() as u32);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    make_tsig_record(key.name.clone(), stub.set_mac(mac.clone()))
        .emit(&mut encoder)
        .map_err(malformed)?;
    bytes[10..12].copy_from_slice(&arcount.to_be_bytes());
    Ok(Signed { bytes, mac })
}

/// Sign a request message the way a client does (tests and tools): returns the bytes to send.
pub fn sign_request(
    message: &hickory_server::proto::op::Message,
    key: &TsigKey,
    time: u64,
) -> Result<Vec<u8>, ClientError> {
    let unsigned = message
        .to_vec()
        .map_err(|e| ClientError::Malformed(e.to_string()))?;
    sign(&unsigned, key, time).map(|s| s.bytes)
}

/// A response's TSIG when it is `key`'s, with the bytes its MAC covers (without the request MAC).
fn response_tsig(raw: &[u8], key: &TsigKey) -> Result<(Vec<u8>, TSIG), ClientError> {
    let (tbv, name, tsig) = split(raw)
        .map_err(ClientError::Malformed)?
        .ok_or(ClientError::Unsigned)?;
    if name.to_lowercase() != key.name || tsig.algorithm != key.algorithm {
        return Err(ClientError::WrongKey(format!(
            "signed by {name} with {}",
            tsig.algorithm
        )));
    }
    Ok((tbv, tsig))
}

/// The response's MAC covers the request's MAC (RFC 8945 §4.3.1), then the response.
fn check_response_mac(
    tbv: &[u8],
    tsig: &TSIG,
    request_mac: &[u8],
    key: &TsigKey,
) -> Result<(), ClientError> {
    let len = u16::try_from(request_mac.len())
        .map_err(|_| ClientError::Malformed("request MAC too long".into()))?;
    let mut data = Vec::with_capacity(tbv.len() + request_mac.len() + 2);
    data.extend_from_slice(&len.to_be_bytes());
    data.extend_from_slice(request_mac);
    data.extend_from_slice(tbv);
    if !key.verify(&data, &tsig.mac) {
        return Err(ClientError::BadMac);
    }
    Ok(())
}

/// Verify a signed response's MAC: `request_mac` is the MAC of the request it answers. Returns
/// the response's TSIG (its error and time are the caller's to judge; see `check_response`).
pub fn verify_response(raw: &[u8], request_mac: &[u8], key: &TsigKey) -> Result<TSIG, ClientError> {
    let (tbv, tsig) = response_tsig(raw, key)?;
    check_response_mac(&tbv, &tsig, request_mac, key)?;
    Ok(tsig)
}

/// Everything a client checks in a response at `now`: signed with `key`, no TSIG error (an
/// error answer is reported before its MAC, since BADSIG and BADKEY answers are unsigned), the
/// MAC over `request_mac` and the response, and the time within the response's fudge.
pub fn check_response(
    raw: &[u8],
    key: &TsigKey,
    request_mac: &[u8],
    now: u64,
) -> Result<(), ClientError> {
    let (tbv, tsig) = response_tsig(raw, key)?;
    if let Some(error) = tsig.error {
        return Err(ClientError::ServerError(u16::from(error)));
    }
    check_response_mac(&tbv, &tsig, request_mac, key)?;
    if tsig.time.abs_diff(now) > u64::from(tsig.fudge) {
        return Err(ClientError::BadTime {
            signed: tsig.time,
            now,
            fudge: tsig.fudge,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::op::{Message, MessageType, OpCode};
    use ring::hmac;

    fn key(alg: TsigAlgorithm) -> TsigKey {
        TsigKey {
            name: Name::from_ascii("acme.").expect("name"),
            algorithm: alg,
            secret: b"0123456789abcdef0123456789abcdef".to_vec(),
            fudge: 300,
        }
    }

    fn update(id: u16) -> Message {
        let mut m = Message::new(id, MessageType::Query, OpCode::Update);
        m.add_query(Query::query(
            Name::from_ascii("lan.").expect("name"),
            RecordType::SOA,
        ));
        m
    }

    #[test]
    fn every_algorithm_verifies_its_own_signature() {
        for alg in [
            TsigAlgorithm::HmacSha1,
            TsigAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512,
        ] {
            let ring = Keyring::new(vec![key(alg.clone())]);
            let raw = sign_request(&update(7), &key(alg.clone()), 1000).expect("sign");
            match ring.check(&raw, 1000) {
                Check::Valid(v) => assert_eq!((v.key, v.request_id, v.time), (0, 7, 1000)),
                other => panic!("{alg}: {other:?}"),
            }
        }
        assert!(!supported(&TsigAlgorithm::HmacMd5));
    }

    #[test]
    fn unsigned_wrong_key_bad_mac_skew_and_replay() {
        let ring = Keyring::new(vec![key(TsigAlgorithm::HmacSha256)]);
        assert!(matches!(
            ring.check(&update(1).to_vec().expect("encode"), 0),
            Check::Unsigned
        ));
        // Another key name, and the right name with another algorithm: BADKEY.
        let mut other = key(TsigAlgorithm::HmacSha256);
        other.name = Name::from_ascii("other.").expect("name");
        let raw = sign_request(&update(2), &other, 1000).expect("sign");
        assert!(matches!(
            ring.check(&raw, 1000),
            Check::Rejected(Rejected::BadKey { .. })
        ));
        let raw = sign_request(&update(2), &key(TsigAlgorithm::HmacSha512), 1000).expect("sign");
        assert!(matches!(
            ring.check(&raw, 1000),
            Check::Rejected(Rejected::BadKey { .. })
        ));
        // Same name and algorithm, another secret: BADSIG.
        let mut forged = key(TsigAlgorithm::HmacSha256);
        forged.secret = b"not the secret".to_vec();
        let raw = sign_request(&update(3), &forged, 1000).expect("sign");
        assert!(matches!(
            ring.check(&raw, 1000),
            Check::Rejected(Rejected::BadSig { .. })
        ));
        // A flipped byte in the signed part: BADSIG.
        let mut raw =
            sign_request(&update(4), &key(TsigAlgorithm::HmacSha256), 1000).expect("sign");
        raw[2] ^= 0x01;
        assert!(matches!(
            ring.check(&raw, 1000),
            Check::Rejected(Rejected::BadSig { .. })
        ));
        // Signed at t=1000; our clock says 1301: outside the 300 s fudge.
        let raw = sign_request(&update(5), &key(TsigAlgorithm::HmacSha256), 1000).expect("sign");
        assert!(matches!(
            ring.check(&raw, 1301),
            Check::Rejected(Rejected::BadTime(_))
        ));
        // At 1299 it is fine once; the same bytes again are a replay.
        assert!(matches!(ring.check(&raw, 1299), Check::Valid(_)));
        assert!(matches!(
            ring.check(&raw, 1299),
            Check::Rejected(Rejected::BadTime(_))
        ));
    }

    #[test]
    fn response_signature_covers_the_request_mac() {
        let k = key(TsigAlgorithm::HmacSha256);
        let ring = Keyring::new(vec![k.clone()]);
        let raw = sign_request(&update(9), &k, 1000).expect("sign");
        let Check::Valid(v) = ring.check(&raw, 1000) else {
            panic!("valid request")
        };
        let mut response = update(9);
        response.metadata.message_type = MessageType::Response;
        let unsigned = response.to_vec().expect("encode");
        let record = ring
            .sign_response(&v, &unsigned, 1001, None)
            .expect("signed");
        // Verify as a client would: request MAC, response, TSIG variables.
        let mut tbs = Vec::new();
        let mut e = BinEncoder::new(&mut tbs);
        e.emit_u16(v.request_mac.len() as u16).expect("emit");
        e.emit_vec(&v.request_mac).expect("emit");
        e.emit_vec(&unsigned).expect("emit");
        let stub = TSIG::new(
            record.data.algorithm.clone(),
            record.data.time,
            record.data.fudge,
            Vec::new(),
            record.data.oid,
            record.data.error,
            record.data.other.clone(),
        );
        stub.emit_tsig_for_mac(&mut e, &k.name).expect("emit");
        assert_eq!(record.data.mac, k.mac(&tbs));
        assert_eq!((record.data.time, record.data.oid), (1001, 9));
        // BADTIME keeps the request's time and puts ours in Other Data.
        let bad = ring
            .sign_response(&v, &unsigned, 5000, Some(TsigError::BadTime))
            .expect("signed");
        assert_eq!(bad.data.time, 1000);
        assert_eq!(bad.data.other, 5000u64.to_be_bytes()[2..].to_vec());
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let ring = Keyring::new(vec![key(TsigAlgorithm::HmacSha256)]);
        let raw = sign_request(&update(1), &key(TsigAlgorithm::HmacSha256), 1000).expect("sign");
        for cut in [0, 5, 12, 20, raw.len() - 1] {
            assert!(
                !matches!(ring.check(&raw[..cut], 1000), Check::Valid(_)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn config_names_of_algorithms_and_keys() {
        assert_eq!(algorithm("HMAC-SHA1"), Some(TsigAlgorithm::HmacSha1));
        assert_eq!(algorithm("hmac-sha512"), Some(TsigAlgorithm::HmacSha512));
        assert_eq!(algorithm("hmac-md5"), None);
        let k = TsigKey::new("Rev.Key.", TsigAlgorithm::HmacSha384, b"s".to_vec()).expect("key");
        assert_eq!(
            (k.name.to_string(), k.fudge),
            ("rev.key.".to_string(), FUDGE)
        );
        assert_eq!(
            TsigKey::new("rev.key", TsigAlgorithm::HmacSha384, b"s".to_vec()),
            Some(k)
        );
        assert!(TsigKey::new(&"x".repeat(64), TsigAlgorithm::HmacSha256, Vec::new()).is_none());
    }

    // Client side on raw bytes (outbound DDNS), checked against hand-built wire forms.

    use crate::ddns::dhcid::wire_name;

    fn client_key() -> TsigKey {
        TsigKey::new(
            "leasedns",
            TsigAlgorithm::HmacSha256,
            b"0123456789abcdef0123456789abcdef".to_vec(),
        )
        .expect("key")
    }

    /// A header with ID 0x1234, opcode UPDATE, and no records.
    fn bare_update() -> Vec<u8> {
        vec![0x12, 0x34, 0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    }

    /// The TSIG variables that follow the message in the MAC input (RFC 8945 section 4.3.3),
    /// written out by hand.
    fn variables(key: &TsigKey, time: u64, fudge: u16, error: u16, other: &[u8]) -> Vec<u8> {
        let mut v = wire_name(&key.name.to_string());
        v.extend_from_slice(&255u16.to_be_bytes()); // class ANY
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(&wire_name(&key.algorithm.to_name().to_string()));
        v.extend_from_slice(&time.to_be_bytes()[2..]);
        v.extend_from_slice(&fudge.to_be_bytes());
        v.extend_from_slice(&error.to_be_bytes());
        v.extend_from_slice(&(other.len() as u16).to_be_bytes());
        v.extend_from_slice(other);
        v
    }

    /// What a server would answer: the request's header as a response, signed over the
    /// request's MAC (as RFC 8945 section 4.3.1 says).
    fn server_reply(k: &TsigKey, request_mac: &[u8], time: u64, error: u16) -> Vec<u8> {
        let mut resp = bare_update();
        resp[2] |= 0x80;
        let mut input = (request_mac.len() as u16).to_be_bytes().to_vec();
        input.extend_from_slice(request_mac);
        input.extend_from_slice(&resp);
        input.extend_from_slice(&variables(k, time, FUDGE, error, &[]));
        let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &k.secret), &input);
        let mut rdata = wire_name(&k.algorithm.to_name().to_string());
        rdata.extend_from_slice(&time.to_be_bytes()[2..]);
        rdata.extend_from_slice(&FUDGE.to_be_bytes());
        rdata.extend_from_slice(&(mac.as_ref().len() as u16).to_be_bytes());
        rdata.extend_from_slice(mac.as_ref());
        rdata.extend_from_slice(&[0x12, 0x34]);
        rdata.extend_from_slice(&error.to_be_bytes());
        rdata.extend_from_slice(&[0, 0]);
        resp.extend_from_slice(&wire_name(&k.name.to_string()));
        resp.extend_from_slice(&[0, 250, 0, 255, 0, 0, 0, 0]);
        resp.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        resp.extend_from_slice(&rdata);
        resp[11] = 1;
        resp
    }

    #[test]
    fn signed_request_carries_a_tsig_rr_whose_mac_covers_message_and_variables() {
        let k = client_key();
        let signed = sign(&bare_update(), &k, 1_700_000_000).expect("signs");
        assert_eq!(&signed.bytes[10..12], &[0, 1], "ARCOUNT counts the TSIG RR");
        // The TSIG RR starts right after the header: owner name, type/class/TTL/RDLENGTH, then
        // the algorithm name, all uncompressed.
        assert_eq!(&signed.bytes[12..22], b"\x08leasedns\x00");
        assert_eq!(&signed.bytes[22..26], &[0, 250, 0, 255]);
        assert_eq!(&signed.bytes[32..45], b"\x0bhmac-sha256\x00");
        let (tbv, name, rr) = split(&signed.bytes).expect("parses").expect("TSIG present");
        assert_eq!(name, k.name);
        assert_eq!((rr.time, rr.fudge, rr.error), (1_700_000_000, 300, None));
        assert_eq!(rr.oid, 0x1234, "original ID");
        assert_eq!(rr.mac, signed.mac);
        assert_eq!(signed.mac.len(), 32);
        let mut input = bare_update();
        input.extend_from_slice(&variables(&k, 1_700_000_000, FUDGE, 0, &[]));
        assert_eq!(tbv, input);
        let hkey = hmac::Key::new(hmac::HMAC_SHA256, &k.secret);
        assert!(hmac::verify(&hkey, &input, &signed.mac).is_ok());
        // The same request signed from a Message is the same bytes.
        let m = Message::from_vec(&bare_update()).expect("decode");
        assert_eq!(
            sign_request(&m, &k, 1_700_000_000).expect("signs"),
            signed.bytes
        );
    }

    #[test]
    fn response_checks_key_mac_error_and_time() {
        let k = client_key();
        let t = 1_700_000_000;
        let req = sign(&bare_update(), &k, t).expect("signs");
        let good = server_reply(&k, &req.mac, t + 1, 0);
        assert_eq!(check_response(&good, &k, &req.mac, t + 2), Ok(()));
        assert_eq!(
            verify_response(&good, &req.mac, &k).map(|tsig| tsig.time),
            Ok(t + 1)
        );

        let mut tampered = good.clone();
        tampered[3] = 5; // REFUSED instead of NOERROR
        assert_eq!(
            check_response(&tampered, &k, &req.mac, t),
            Err(ClientError::BadMac)
        );
        assert_eq!(
            check_response(&good, &k, &[0u8; 32], t),
            Err(ClientError::BadMac),
            "chained to another request"
        );
        assert!(matches!(
            check_response(&good, &k, &req.mac, t + 1000),
            Err(ClientError::BadTime { .. })
        ));
        let other = TsigKey {
            name: Name::from_ascii("other.").expect("name"),
            ..client_key()
        };
        assert!(matches!(
            check_response(&good, &other, &req.mac, t),
            Err(ClientError::WrongKey(_))
        ));
        let badsig = server_reply(&k, &req.mac, t, 16);
        assert_eq!(
            check_response(&badsig, &k, &req.mac, t),
            Err(ClientError::ServerError(16))
        );
        assert_eq!(
            check_response(&bare_update(), &k, &req.mac, t),
            Err(ClientError::Unsigned)
        );
    }

    #[test]
    fn garbage_responses_never_panic() {
        let k = client_key();
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = check_response(&junk, &k, &[1, 2, 3], 0);
        }
        let mut lying = bare_update();
        lying[11] = 9; // claims 9 additional records
        assert!(matches!(
            check_response(&lying, &k, &[], 0),
            Err(ClientError::Malformed(_))
        ));
        assert!(matches!(
            sign(&[0x12, 0x34], &k, 0),
            Err(ClientError::Malformed(_))
        ));
    }

    /// `msg` signed by `key` at `now`, with the MAC cut to its first `len` bytes.
    fn signed_with_mac_len(msg: &[u8], key: &TsigKey, now: u64, len: usize) -> Vec<u8> {
        let full = sign(msg, key, now).expect("signs");
        let stub = TSIG::new(
            key.algorithm.clone(),
            now,
            key.fudge,
            Vec::new(),
            1,
            None,
            Vec::new(),
        );
        let mut bytes = msg.to_vec();
        let mut encoder = BinEncoder::with_offset(&mut bytes, msg.len() as u32);
        encoder.set_name_encoding(NameEncoding::Uncompressed);
        make_tsig_record(key.name.clone(), stub.set_mac(full.mac[..len].to_vec()))
            .emit(&mut encoder)
            .expect("emit");
        bytes[10..12].copy_from_slice(&1u16.to_be_bytes());
        bytes
    }

    #[test]
    fn a_truncated_mac_gets_badtrunc_a_wrong_one_badsig_and_a_too_short_one_formerr() {
        let k = key(TsigAlgorithm::HmacSha256);
        let ring = Keyring::new(vec![k.clone()]);
        let msg = update(1).to_vec().expect("encode");
        // 16 of 32 bytes, correct: below our policy (full length only): BADTRUNC, unsigned.
        let raw = signed_with_mac_len(&msg, &k, 1000, 16);
        let Check::Rejected(rejected @ Rejected::BadTrunc { .. }) = ring.check(&raw, 1000) else {
            panic!("expected BADTRUNC");
        };
        let record = ring.error_record(&rejected, 1000).expect("record");
        assert_eq!(record.data.error, Some(TsigError::BadTrunc));
        assert!(record.data.mac.is_empty(), "not signed");
        // The same 16 bytes with one flipped: BADSIG.
        let mut wrong = raw.clone();
        let at = wrong.len() - 6 - 16; // the MAC, before original ID, error, other length
        wrong[at] ^= 1;
        assert!(matches!(
            ring.check(&wrong, 1000),
            Check::Rejected(Rejected::BadSig { .. })
        ));
        // Below max(10, half the hash), or none at all: FORMERR.
        assert!(matches!(
            ring.check(&signed_with_mac_len(&msg, &k, 1000, 15), 1000),
            Check::Malformed(_)
        ));
        assert!(matches!(
            ring.check(&signed_with_mac_len(&msg, &k, 1000, 0), 1000),
            Check::Malformed(_)
        ));
        // The full MAC is still fine.
        assert!(matches!(
            ring.check(&signed_with_mac_len(&msg, &k, 1000, 32), 1000),
            Check::Valid(_)
        ));
    }

    #[test]
    fn replay_memory_forgets_only_expired_requests_and_refuses_when_full_of_live_ones() {
        let k = key(TsigAlgorithm::HmacSha256);
        let ring = Keyring::with_replay_capacity(vec![k.clone()], 4);
        let req = |id: u16, t: u64| sign_request(&update(id), &k, t).expect("sign");
        let captured = req(1, 1000);
        assert!(matches!(ring.check(&captured, 1000), Check::Valid(_)));
        for id in 2..=4 {
            assert!(matches!(ring.check(&req(id, 1010), 1010), Check::Valid(_)));
        }
        // Full of live requests: a new one is refused, and nothing is forgotten.
        assert!(matches!(
            ring.check(&req(5, 1020), 1020),
            Check::Rejected(Rejected::BadTime(_))
        ));
        // The captured request inside its window (signed 1000, fudge 300) is still a replay.
        assert!(matches!(
            ring.check(&captured, 1300),
            Check::Rejected(Rejected::BadTime(_))
        ));
        // At 1301 the captured one's window has passed (and it is outside the fudge anyway):
        // its place is free for a new request; the three signed at 1010 are still remembered.
        assert!(matches!(ring.check(&req(6, 1301), 1301), Check::Valid(_)));
        assert!(matches!(
            ring.check(&req(7, 1301), 1301),
            Check::Rejected(Rejected::BadTime(_))
        ));
        assert!(matches!(
            ring.check(&req(2, 1010), 1301),
            Check::Rejected(Rejected::BadTime(_))
        ));
        // At 1311 the 1010 ones have passed too.
        assert!(matches!(ring.check(&req(7, 1311), 1311), Check::Valid(_)));
    }
}
