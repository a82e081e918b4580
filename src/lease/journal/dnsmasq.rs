//! Import of a dnsmasq lease file (`leasedns import-dnsmasq`): its lines as bound leases, errors
//! naming the line.
use super::*;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Read a dnsmasq lease file (`<expiry> <mac> <ip> <hostname|*> <clientid|*>` per line) as
/// bound leases, later lines winning for the same address. `duid` and IPv6 lines are skipped;
/// an expiry of 0 (dnsmasq's infinite lease) becomes the largest time. Expired leases are kept
/// (the caller knows `now`). A hostname that is not a valid DNS label is dropped with a warning.
pub fn import_dnsmasq(path: &Path) -> Result<Vec<Lease>, ImportError> {
    let shown = path.display().to_string();
    let text = fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: shown.clone(),
        source,
    })?;
    let mut leases = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_error = |reason| ImportError::Line {
            path: shown.clone(),
            line: index + 1,
            reason,
        };
        match parse_dnsmasq_line(line).map_err(line_error)? {
            Some(lease) => {
                leases.insert(lease.ip, lease);
            }
            None => continue,
        }
    }
    Ok(leases.into_values().collect())
}

fn parse_dnsmasq_line(line: &str) -> Result<Option<Lease>, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [expiry, mac, ip, host, client] = fields.as_slice() else {
        if fields.is_empty() || fields[0] == "duid" {
            return Ok(None);
        }
        let n = fields.len();
        return Err(format!(
            "expected 5 fields (expiry mac ip hostname clientid), found {n}"
        ));
    };
    if ip.contains(':') {
        return Ok(None); // an IPv6 lease: `<expiry> <iaid> <ipv6> <hostname> <duid>`
    }
    let expires = match number::<u64>(expiry, "expiry")? {
        0 => UnixTime(u64::MAX),
        t => UnixTime(t),
    };
    let hwaddr = match mac.split_once('-') {
        Some((htype, bytes)) => hw_addr(
            u8::from_str_radix(htype, 16).map_err(|_| format!("bad hardware type {htype:?}"))?,
            if bytes.is_empty() {
                Vec::new()
            } else {
                hex_field(bytes, ':')?
            },
        )?,
        None => hw_addr(1, hex_field(mac, ':')?)?,
    };
    let client = match *client {
        "*" => ClientId::from_hw(&hwaddr),
        hex => ClientId::from(hex_field(hex, ':')?),
    };
    let ip: Ipv4Addr = number(ip, "address")?;
    let hostname = match *host {
        "*" => None,
        name if is_dns_label(name) => Some(name.to_ascii_lowercase().into()),
        name => {
            tracing::warn!(%ip, hostname = name, "dnsmasq lease hostname is not a DNS label; dropped");
            None
        }
    };
    let state = LeaseState::Bound;
    Ok(Some(Lease {
        ip,
        client,
        hwaddr,
        hostname,
        expires,
        state,
    }))
}

/// RFC 1123 label: 1 to 63 letters, digits and hyphens, not starting or ending with a hyphen.
fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
