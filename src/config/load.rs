//! Raw to `Config`: the top-level keys (domain, lease file, durability, ports) and the checks
//! the sections share (addresses, networks, paths, counts, hex bytes).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::Ctx;
use super::*;

pub fn root(mut raw: raw::Root, text: &str, path: &Path) -> Result<Config, ConfigError> {
    let cx = Ctx { text, path };
    let renew_write_fraction = match &raw.renew_write_fraction {
        None => defaults::RENEW_WRITE_FRACTION,
        Some(f) if (0.0..=1.0).contains(f.get_ref()) => *f.get_ref(),
        Some(f) => {
            return Err(cx.err(f.span(), "renew_write_fraction", "must be between 0 and 1"));
        }
    };
    let (start, dns) = startup(&cx, &mut raw)?;
    let mut subnets: Vec<Subnet> = Vec::new();
    for (i, s) in raw.subnet.iter().enumerate() {
        let sub = subnet::subnet(&cx, i, s)?;
        if let Some(other) = subnets
            .iter()
            .position(|o| o.contains(sub.network) || sub.contains(o.network))
        {
            return Err(cx.err(
                s.get_ref().network.span(),
                format!("subnet[{i}].network"),
                format!("overlaps subnet[{other}]"),
            ));
        }
        subnets.push(sub);
    }
    if subnets.is_empty() {
        return Err(cx.err(0..0, "subnet", "at least one [[subnet]] is needed"));
    }
    let reservations = subnet::hosts(&cx, &raw.host, &subnets)?;
    let dhcp = dhcp::globals(&cx, &raw, &subnets)?;
    Ok(Config {
        path: path.to_path_buf(),
        start,
        interfaces: raw.interfaces,
        renew_write_fraction,
        offer_hold: raw.offer_hold.unwrap_or(defaults::OFFER_HOLD),
        decline_hold: raw.decline_hold.unwrap_or(defaults::DECLINE_HOLD),
        dns,
        subnets,
        reservations,
        dhcp,
    })
}

/// The start-only settings (top-level keys, the start part of `[dns]`, `[[tsig_key]]`,
/// `[http]`, `[[dyndns_user]]`, outbound DDNS), and the live part of `[dns]`.
fn startup(cx: &Ctx, raw: &mut raw::Root) -> Result<(Startup, DnsConfig), ConfigError> {
    let domain = domain(cx, &raw.domain)?;
    if raw.lease_file.get_ref().trim().is_empty() {
        return Err(cx.err(raw.lease_file.span(), "lease_file", "must not be empty"));
    }
    let lease_file = PathBuf::from(raw.lease_file.get_ref());
    let mut raw_dns = raw.dns.take().unwrap_or_default();
    let transfer_keys = std::mem::take(&mut raw_dns.transfer_keys);
    let (mut dns, live_dns) = dns::section(cx, raw_dns, &domain, &lease_file)?;
    dns.tsig_keys = raw
        .tsig_key
        .iter()
        .enumerate()
        .map(|(i, k)| tsig::tsig_key(cx, i, k, &domain))
        .collect::<Result<_, _>>()?;
    dns.transfer_keys = dns::transfer_key_names(cx, &transfer_keys, &dns.tsig_keys)?;
    dns.http = http::section(cx, raw.http.take().unwrap_or_default())?;
    dns.dyndns_users = http::users(cx, &raw.dyndns_user, &domain)?;
    let ddns = ddns::section(cx, &raw.ddns_zone, raw.ddns_queue.as_ref(), &lease_file)?;
    let run_as = run_as(&raw.user, &raw.group)
        .map_err(|(field, span, message)| cx.err(span, field, message))?;
    let start = Startup {
        run_as,
        dhcp_script: script::dhcp_script(cx, raw)?,
        lease_database: leasedb::section(cx, raw)?,
        durability: durability(cx, raw)?,
        dhcp_port: raw.dhcp_port.unwrap_or(defaults::DHCP_PORT),
        client_port: raw.client_port.unwrap_or(defaults::CLIENT_PORT),
        arp_entries: raw.arp_entries.unwrap_or(defaults::ARP_ENTRIES),
        domain,
        lease_file,
        dns,
        ddns,
    };
    Ok((start, live_dns))
}

fn durability(cx: &Ctx, raw: &raw::Root) -> Result<Durability, ConfigError> {
    let mode = raw
        .durability
        .as_ref()
        .map_or((defaults::DURABILITY, 0..0), |d| {
            (d.get_ref().as_str(), d.span())
        });
    let delay = raw.batch_max_delay_ms.as_ref();
    if let (Some(d), false) = (delay, mode.0 == "batch") {
        return Err(cx.err(
            d.span(),
            "batch_max_delay_ms",
            "only applies to durability = \"batch\"",
        ));
    }
    match mode {
        ("fsync", _) => Ok(Durability::Fsync),
        ("none", _) => Ok(Durability::None),
        ("batch", _) => match delay {
            None => Ok(Durability::Batch {
                max_delay_ms: defaults::BATCH_MAX_DELAY_MS,
            }),
            Some(d) if (1..=1000).contains(d.get_ref()) => Ok(Durability::Batch {
                max_delay_ms: *d.get_ref(),
            }),
            Some(d) => Err(cx.err(d.span(), "batch_max_delay_ms", "must be 1 to 1000")),
        },
        (_, span) => Err(cx.err(
            span,
            "durability",
            "is not one of \"fsync\", \"batch\", \"none\"",
        )),
    }
}

fn domain(cx: &Ctx, raw: &Spanned<String>) -> Result<String, ConfigError> {
    let d = raw.get_ref().trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty() || !d.split('.').all(is_label) {
        return Err(cx.err(raw.span(), "domain", "is not a valid domain name"));
    }
    Ok(d)
}

/// Addresses of a list field, each "address" (with `default_port`) or "address:port";
/// errors name the entry as `field[i]`.
pub(super) fn socket_addrs(
    cx: &Ctx,
    list: &[Spanned<String>],
    field: &str,
    default_port: u16,
) -> Result<Vec<SocketAddr>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            socket_addr(a.get_ref(), default_port).ok_or_else(|| {
                cx.err(
                    a.span(),
                    format!("{field}[{i}]"),
                    "is not an address or address:port",
                )
            })
        })
        .collect()
}

/// A list of networks, "ADDRESS/PREFIX" or a bare address (IPv4 or IPv6).
pub(super) fn networks(
    cx: &Ctx,
    list: &[Spanned<String>],
    field: &str,
) -> Result<Vec<(std::net::IpAddr, u8)>, ConfigError> {
    let one = |s: &str| -> Option<(std::net::IpAddr, u8)> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: std::net::IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.trim().parse().ok()?
        };
        (prefix <= max).then_some((addr, prefix))
    };
    list.iter()
        .enumerate()
        .map(|(i, n)| {
            one(n.get_ref()).ok_or_else(|| {
                cx.err(
                    n.span(),
                    format!("{field}[{i}]"),
                    "is not a network (address/prefix)",
                )
            })
        })
        .collect()
}

/// An optional path that, when given, must not be empty.
pub(super) fn optional_path(
    cx: &Ctx,
    raw: Option<&Spanned<String>>,
    field: &str,
) -> Result<Option<PathBuf>, ConfigError> {
    match raw {
        Some(p) if p.get_ref().trim().is_empty() => {
            Err(cx.err(p.span(), field, "must not be empty"))
        }
        Some(p) => Ok(Some(PathBuf::from(p.get_ref()))),
        None => Ok(None),
    }
}

/// An optional count of at least 1.
pub(super) fn at_least_one(
    cx: &Ctx,
    raw: Option<&Spanned<u32>>,
    field: &str,
    default: u32,
) -> Result<u32, ConfigError> {
    match raw {
        Some(n) if *n.get_ref() == 0 => Err(cx.err(n.span(), field, "must be at least 1")),
        Some(n) => Ok(*n.get_ref()),
        None => Ok(default),
    }
}

/// An optional time in milliseconds within `range`.
pub(super) fn millis_in(
    cx: &Ctx,
    raw: Option<&Spanned<u64>>,
    range: std::ops::RangeInclusive<u64>,
    field: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match raw {
        None => Ok(default),
        Some(ms) if range.contains(ms.get_ref()) => Ok(Duration::from_millis(*ms.get_ref())),
        Some(ms) => {
            let msg = format!("must be between {} and {}", range.start(), range.end());
            Err(cx.err(ms.span(), field, msg))
        }
    }
}

/// "10.0.0.1", "10.0.0.1:5353", "::1", "[::1]:53".
pub(super) fn socket_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().or_else(|| {
        s.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, default_port))
    })
}

/// "52:54:00:12:34:56" or "525400123456" or with '-'.
pub(super) fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let digits: String = s.chars().filter(|c| !matches!(c, ':' | '-')).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect()
}
