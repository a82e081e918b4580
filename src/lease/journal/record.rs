//! The lease records' payloads (`H`, `U`, `R`; see the module docs for the format): encoding
//! without core::fmt (`log::frame::Ascii`) and parsing, with errors naming the field.
use super::*;

#[derive(Debug, PartialEq)]
pub(super) enum Record {
    Header {
        kind: String,
        version: u32,
        generation: u64,
    },
    Upsert(Lease),
    Remove(Ipv4Addr),
}

/// Check a line's checksum and parse its payload.
pub(super) fn parse_line(line: &[u8]) -> Result<Record, String> {
    parse_payload(checked_payload(line)?)
}

/// Exactly `N` more space-separated fields, or an error naming the record.
pub(super) fn fields<'a, const N: usize>(
    it: &mut std::str::Split<'a, char>,
    record: &str,
) -> Result<[&'a str; N], String> {
    let mut out = [""; N];
    for slot in &mut out {
        *slot = it.next().ok_or_else(|| format!("short {record} record"))?;
    }
    if it.next().is_some() {
        return Err(format!("long {record} record"));
    }
    Ok(out)
}

pub(super) fn parse_payload(payload: &str) -> Result<Record, String> {
    let mut it = payload.split(' ');
    match it.next().unwrap_or("") {
        "H" => {
            let [kind, version, generation] = fields(&mut it, "header")?;
            Ok(Record::Header {
                kind: kind.to_string(),
                version: number(version, "version")?,
                generation: generation
                    .strip_prefix("gen=")
                    .ok_or("header without gen=")
                    .and_then(|g| g.parse().map_err(|_| "bad generation"))?,
            })
        }
        "U" => parse_upsert(fields(&mut it, "upsert")?).map(Record::Upsert),
        "R" => {
            let [ip, _reason] = fields(&mut it, "remove")?;
            Ok(Record::Remove(number(ip, "address")?))
        }
        other => Err(format!("unknown record {other:?}")),
    }
}

pub(super) fn parse_upsert(f: [&str; 7]) -> Result<Lease, String> {
    let [ip, expires, state, htype, hw, client, host] = f;
    Ok(Lease {
        ip: number(ip, "address")?,
        expires: UnixTime(number(expires, "expiry")?),
        state: match state {
            "b" => LeaseState::Bound,
            "d" => LeaseState::Declined,
            _ => return Err(format!("bad state {state:?}")),
        },
        hwaddr: hw_addr(number(htype, "hardware type")?, hex_field(hw, ':')?)?,
        client: ClientId::from(hex_field(client, '\0')?),
        hostname: match host {
            "-" => None,
            escaped => Some(unescape(escaped)?.into()),
        },
    })
}

/// A hardware address of at most 16 bytes (the size of chaddr).
pub(super) fn hw_addr(htype: u8, bytes: Vec<u8>) -> Result<HwAddr, String> {
    if bytes.len() > HW_MAX {
        return Err(format!("hardware address of {} bytes", bytes.len()));
    }
    Ok(HwAddr::new(htype, &bytes))
}

pub(super) fn number<T: std::str::FromStr>(field: &str, what: &str) -> Result<T, String> {
    field.parse().map_err(|_| format!("bad {what} {field:?}"))
}

#[cfg(test)]
pub(super) fn remove_payload(ip: Ipv4Addr, reason: RemoveReason) -> String {
    let mut a = Ascii::new();
    write_remove_payload(&mut a, ip, reason);
    a.as_str().to_string()
}

/// `R <ip> <reason>`.
pub(super) fn write_remove_payload(a: &mut Ascii, ip: Ipv4Addr, reason: RemoveReason) {
    let reason = match reason {
        RemoveReason::Released => "released",
        RemoveReason::Expired => "expired",
        RemoveReason::Superseded => "superseded",
    };
    a.extend(b"R ");
    a.ipv4(ip);
    a.push(b' ');
    a.extend(reason.as_bytes());
}

pub(super) fn header_payload(kind: &str, generation: u64) -> String {
    format!("H {kind} {VERSION} gen={generation}")
}

pub(super) fn upsert_payload(lease: &Lease) -> Option<String> {
    upsert_payload_at(lease, lease.expires)
}

/// The upsert payload of `lease` written with expiry `expires`; `None` for an offer.
pub(super) fn upsert_payload_at(lease: &Lease, expires: UnixTime) -> Option<String> {
    let mut a = Ascii::new();
    write_upsert_payload(&mut a, lease, expires).then(|| a.as_str().to_string())
}

/// The upsert payload of `lease` (with expiry `expires`); false for an offer.
pub(super) fn write_upsert_payload(a: &mut Ascii, lease: &Lease, expires: UnixTime) -> bool {
    let state = match lease.state {
        LeaseState::Bound => b'b',
        LeaseState::Declined => b'd',
        LeaseState::Offered => return false,
    };
    a.extend(b"U ");
    a.ipv4(lease.ip);
    a.push(b' ');
    a.u64(expires.0);
    a.extend(&[b' ', state, b' ']);
    a.u64(u64::from(lease.hwaddr.htype));
    a.push(b' ');
    a.hex(lease.hwaddr.bytes(), true);
    a.push(b' ');
    a.hex(lease.client.as_bytes(), false);
    a.push(b' ');
    match &lease.hostname {
        // An empty name is no name.
        Some(name) if !name.is_empty() => a.escaped(name),
        _ => a.push(b'-'),
    }
    true
}

pub(super) fn unescape(field: &str) -> Result<String, String> {
    if !field.contains('%') {
        return Ok(field.to_string());
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = field.get(i + 1..i + 3).ok_or("truncated % escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad % escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "hostname is not UTF-8".to_string())
}
