//! TSIG (RFC 8945) for outbound UPDATEs: sign a request's wire bytes, verify the response's.
//! HMAC-SHA256/384/512 through ring. Pure: the time is passed in; no sockets.

use ring::hmac;

use crate::config::{TsigAlgorithm, TsigKey};
use crate::ddns::dhcid::wire_name;

/// TSIG RR type and the ANY class it uses.
const TSIG_TYPE: u16 = 250;
const CLASS_ANY: u16 = 255;
/// Seconds of clock difference we and the server accept (RFC 8945 recommends 300).
pub const FUDGE: u16 = 300;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TsigError {
    #[error("malformed DNS message: {0}")]
    Malformed(&'static str),
    #[error("response is not signed")]
    Unsigned,
    #[error("response signed with another key or algorithm")]
    WrongKey,
    #[error("server reported TSIG error {0} ({name})", name = tsig_error_name(*.0))]
    ServerError(u16),
    #[error("response signature does not verify")]
    BadMac,
    #[error("response signed at {signed}, outside {fudge}s of our time {now}")]
    BadTime { signed: u64, now: u64, fudge: u16 },
}

fn tsig_error_name(code: u16) -> &'static str {
    match code {
        16 => "BADSIG",
        17 => "BADKEY",
        18 => "BADTIME",
        22 => "BADTRUNC",
        _ => "unknown",
    }
}

/// A signed request and the MAC a response's signature chains from.
#[derive(Debug)]
pub struct Signed {
    pub bytes: Vec<u8>,
    pub mac: Vec<u8>,
}

fn hmac_alg(a: TsigAlgorithm) -> hmac::Algorithm {
    match a {
        TsigAlgorithm::HmacSha256 => hmac::HMAC_SHA256,
        TsigAlgorithm::HmacSha384 => hmac::HMAC_SHA384,
        TsigAlgorithm::HmacSha512 => hmac::HMAC_SHA512,
    }
}

/// The TSIG variables that follow the message in the MAC input (RFC 8945 section 4.3.3).
fn variables(key: &TsigKey, time: u64, fudge: u16, error: u16, other: &[u8]) -> Vec<u8> {
    let mut v = wire_name(&key.name);
    v.extend_from_slice(&CLASS_ANY.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&wire_name(key.algorithm.name()));
    v.extend_from_slice(&time.to_be_bytes()[2..]);
    v.extend_from_slice(&fudge.to_be_bytes());
    v.extend_from_slice(&error.to_be_bytes());
    v.extend_from_slice(&(other.len() as u16).to_be_bytes());
    v.extend_from_slice(other);
    v
}

/// Appends a TSIG RR signed with `key` at `now` (Unix seconds) to `msg` (a complete message
/// without TSIG) and increments ARCOUNT.
pub fn sign(msg: &[u8], key: &TsigKey, now: u64) -> Result<Signed, TsigError> {
    if msg.len() < 12 {
        return Err(TsigError::Malformed("shorter than a header"));
    }
    let mut input = msg.to_vec();
    input.extend_from_slice(&variables(key, now, FUDGE, 0, &[]));
    let mac = hmac::sign(
        &hmac::Key::new(hmac_alg(key.algorithm), &key.secret),
        &input,
    )
    .as_ref()
    .to_vec();
    let mut rdata = wire_name(key.algorithm.name());
    rdata.extend_from_slice(&now.to_be_bytes()[2..]);
    rdata.extend_from_slice(&FUDGE.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(&mac);
    rdata.extend_from_slice(&msg[0..2]); // original ID
    rdata.extend_from_slice(&[0, 0, 0, 0]); // error 0, other length 0
    let mut bytes = msg.to_vec();
    bytes.extend_from_slice(&wire_name(&key.name));
    bytes.extend_from_slice(&TSIG_TYPE.to_be_bytes());
    bytes.extend_from_slice(&CLASS_ANY.to_be_bytes());
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&rdata);
    let arcount = u16::from_be_bytes([msg[10], msg[11]]).wrapping_add(1);
    bytes[10..12].copy_from_slice(&arcount.to_be_bytes());
    Ok(Signed { bytes, mac })
}

/// The parsed TSIG RR of a response.
struct Rr<'a> {
    /// Where the TSIG RR starts in the message.
    start: usize,
    key_name: Vec<u8>,
    algorithm: Vec<u8>,
    time: u64,
    fudge: u16,
    mac: &'a [u8],
    original_id: [u8; 2],
    error: u16,
    other: &'a [u8],
}

/// Checks the response's TSIG against the request's MAC and `now`.
pub fn verify_response(
    resp: &[u8],
    key: &TsigKey,
    request_mac: &[u8],
    now: u64,
) -> Result<(), TsigError> {
    let rr = find_tsig(resp)?.ok_or(TsigError::Unsigned)?;
    if rr.key_name != wire_name(&key.name) || rr.algorithm != wire_name(key.algorithm.name()) {
        return Err(TsigError::WrongKey);
    }
    if rr.error != 0 {
        return Err(TsigError::ServerError(rr.error));
    }
    let mut stripped = resp[..rr.start].to_vec();
    stripped[0..2].copy_from_slice(&rr.original_id);
    let arcount = u16::from_be_bytes([resp[10], resp[11]]).wrapping_sub(1);
    stripped[10..12].copy_from_slice(&arcount.to_be_bytes());
    let mut input = (request_mac.len() as u16).to_be_bytes().to_vec();
    input.extend_from_slice(request_mac);
    input.extend_from_slice(&stripped);
    input.extend_from_slice(&variables(key, rr.time, rr.fudge, rr.error, rr.other));
    let hkey = hmac::Key::new(hmac_alg(key.algorithm), &key.secret);
    hmac::verify(&hkey, &input, rr.mac).map_err(|_| TsigError::BadMac)?;
    if rr.time.abs_diff(now) > u64::from(rr.fudge) {
        return Err(TsigError::BadTime {
            signed: rr.time,
            now,
            fudge: rr.fudge,
        });
    }
    Ok(())
}

/// The last additional record, if it is a TSIG RR.
fn find_tsig(msg: &[u8]) -> Result<Option<Rr<'_>>, TsigError> {
    let count = |i: usize| -> Result<usize, TsigError> {
        let b = msg
            .get(i..i + 2)
            .ok_or(TsigError::Malformed("short header"))?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let (qd, an, ns, ar) = (count(4)?, count(6)?, count(8)?, count(10)?);
    if ar == 0 {
        return Ok(None);
    }
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    for _ in 0..an + ns + ar - 1 {
        pos = skip_rr(msg, pos)?;
    }
    let start = pos;
    let name_end = skip_name(msg, pos)?;
    let fixed = msg
        .get(name_end..name_end + 10)
        .ok_or(TsigError::Malformed("truncated record"))?;
    if u16::from_be_bytes([fixed[0], fixed[1]]) != TSIG_TYPE {
        return Ok(None);
    }
    let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let rdata = msg
        .get(name_end + 10..name_end + 10 + rdlen)
        .ok_or(TsigError::Malformed("truncated TSIG"))?;
    parse_rdata(msg, start, name_end, rdata).map(Some)
}

fn parse_rdata<'a>(
    msg: &[u8],
    start: usize,
    name_end: usize,
    rdata: &'a [u8],
) -> Result<Rr<'a>, TsigError> {
    let short = TsigError::Malformed("short TSIG rdata");
    let alg_end = skip_name(rdata, 0)?;
    let at = |i: usize, n: usize| rdata.get(i..i + n).ok_or(short.clone());
    let t = at(alg_end, 6)?;
    let time = t.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let fudge = at(alg_end + 6, 2)?;
    let mac_len = at(alg_end + 8, 2)?;
    let mac_len = usize::from(u16::from_be_bytes([mac_len[0], mac_len[1]]));
    let mac = at(alg_end + 10, mac_len)?;
    let rest = alg_end + 10 + mac_len;
    let id = at(rest, 2)?;
    let error = at(rest + 2, 2)?;
    let other_len = at(rest + 4, 2)?;
    let other = at(
        rest + 6,
        usize::from(u16::from_be_bytes([other_len[0], other_len[1]])),
    )?;
    Ok(Rr {
        start,
        key_name: lower_name(msg, start, name_end)?,
        algorithm: lower_name(rdata, 0, alg_end)?,
        time,
        fudge: u16::from_be_bytes([fudge[0], fudge[1]]),
        mac,
        original_id: [id[0], id[1]],
        error: u16::from_be_bytes([error[0], error[1]]),
        other,
    })
}

/// An uncompressed name's bytes, lowercased (a compressed name never matches a key name).
fn lower_name(buf: &[u8], start: usize, end: usize) -> Result<Vec<u8>, TsigError> {
    let bytes = buf
        .get(start..end)
        .ok_or(TsigError::Malformed("bad name"))?;
    Ok(bytes.iter().map(u8::to_ascii_lowercase).collect())
}

/// The offset after the name at `pos` (labels, or labels ending in a compression pointer).
fn skip_name(msg: &[u8], mut pos: usize) -> Result<usize, TsigError> {
    loop {
        let len = *msg
            .get(pos)
            .ok_or(TsigError::Malformed("name runs off the end"))?;
        match len {
            0 => return Ok(pos + 1),
            l if l & 0xc0 == 0xc0 => return Ok(pos + 2),
            l if l & 0xc0 != 0 => return Err(TsigError::Malformed("bad label type")),
            l => pos += 1 + usize::from(l),
        }
    }
}

fn skip_rr(msg: &[u8], pos: usize) -> Result<usize, TsigError> {
    let end = skip_name(msg, pos)?;
    let fixed = msg
        .get(end..end + 10)
        .ok_or(TsigError::Malformed("truncated record"))?;
    Ok(end + 10 + usize::from(u16::from_be_bytes([fixed[8], fixed[9]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TsigKey {
        TsigKey {
            name: "leasedns".into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: b"0123456789abcdef0123456789abcdef".to_vec(),
        }
    }

    /// A header with ID 0x1234, opcode UPDATE, and no records.
    fn bare_update() -> Vec<u8> {
        vec![0x12, 0x34, 0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0]
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
        let mac = hmac::sign(&hmac::Key::new(hmac_alg(k.algorithm), &k.secret), &input);
        let mut rdata = wire_name(k.algorithm.name());
        rdata.extend_from_slice(&time.to_be_bytes()[2..]);
        rdata.extend_from_slice(&FUDGE.to_be_bytes());
        rdata.extend_from_slice(&(mac.as_ref().len() as u16).to_be_bytes());
        rdata.extend_from_slice(mac.as_ref());
        rdata.extend_from_slice(&[0x12, 0x34]);
        rdata.extend_from_slice(&error.to_be_bytes());
        rdata.extend_from_slice(&[0, 0]);
        resp.extend_from_slice(&wire_name(&k.name));
        resp.extend_from_slice(&[0, 250, 0, 255, 0, 0, 0, 0]);
        resp.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        resp.extend_from_slice(&rdata);
        resp[11] = 1;
        resp
    }

    #[test]
    fn signed_request_carries_a_tsig_rr_whose_mac_covers_message_and_variables() {
        let k = key();
        let signed = sign(&bare_update(), &k, 1_700_000_000).expect("signs");
        assert_eq!(&signed.bytes[10..12], &[0, 1], "ARCOUNT counts the TSIG RR");
        let rr = find_tsig(&signed.bytes)
            .expect("parses")
            .expect("TSIG present");
        assert_eq!(rr.start, 12);
        assert_eq!(rr.key_name, b"\x08leasedns\x00".to_vec());
        assert_eq!(rr.algorithm, b"\x0bhmac-sha256\x00".to_vec());
        assert_eq!((rr.time, rr.fudge, rr.error), (1_700_000_000, 300, 0));
        assert_eq!(rr.original_id, [0x12, 0x34]);
        assert_eq!(rr.mac, signed.mac.as_slice());
        assert_eq!(signed.mac.len(), 32);
        let mut input = bare_update();
        input.extend_from_slice(&variables(&k, 1_700_000_000, FUDGE, 0, &[]));
        let hkey = hmac::Key::new(hmac::HMAC_SHA256, &k.secret);
        assert!(hmac::verify(&hkey, &input, &signed.mac).is_ok());
    }

    #[test]
    fn response_checks_key_mac_error_and_time() {
        let k = key();
        let t = 1_700_000_000;
        let req = sign(&bare_update(), &k, t).expect("signs");
        let good = server_reply(&k, &req.mac, t + 1, 0);
        assert_eq!(verify_response(&good, &k, &req.mac, t + 2), Ok(()));

        let mut tampered = good.clone();
        tampered[3] = 5; // REFUSED instead of NOERROR
        assert_eq!(
            verify_response(&tampered, &k, &req.mac, t),
            Err(TsigError::BadMac)
        );
        assert_eq!(
            verify_response(&good, &k, &[0u8; 32], t),
            Err(TsigError::BadMac),
            "chained to another request"
        );
        assert!(matches!(
            verify_response(&good, &k, &req.mac, t + 1000),
            Err(TsigError::BadTime { .. })
        ));
        let other = TsigKey {
            name: "other".into(),
            ..key()
        };
        assert_eq!(
            verify_response(&good, &other, &req.mac, t),
            Err(TsigError::WrongKey)
        );
        let badsig = server_reply(&k, &req.mac, t, 16);
        assert_eq!(
            verify_response(&badsig, &k, &req.mac, t),
            Err(TsigError::ServerError(16))
        );
        assert_eq!(
            verify_response(&bare_update(), &k, &req.mac, t),
            Err(TsigError::Unsigned)
        );
    }

    #[test]
    fn garbage_never_panics() {
        let k = key();
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = verify_response(&junk, &k, &[1, 2, 3], 0);
        }
        let mut lying = bare_update();
        lying[11] = 9; // claims 9 additional records
        assert!(matches!(
            verify_response(&lying, &k, &[], 0),
            Err(TsigError::Malformed(_))
        ));
    }
}
