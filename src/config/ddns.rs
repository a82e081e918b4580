//! Outbound dynamic DNS: `[[ddns_zone]]` and the queue file (`ddns_queue`).

use std::net::SocketAddr;
use std::path::PathBuf;

use hickory_server::proto::rr::rdata::tsig::TsigAlgorithm;
use toml::Spanned;

use super::defaults;
use super::dns::is_label;
use super::error::Ctx;
use super::load::{at_least_one, optional_path, socket_addr};
use super::tsig::{tsig_algorithm, tsig_secret};
use super::*;

/// Outbound dynamic DNS: the zones we update at other servers, and the queue file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DdnsConfig {
    /// Zones, forward and reverse; a name goes to the longest zone that contains it.
    pub zones: Vec<DdnsZone>,
    /// Pending updates survive restarts here (default `<lease_file>.ddns`).
    pub queue_file: PathBuf,
}

/// One zone at one primary server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DdnsZone {
    /// Lowercase, no trailing dot: "lan", "0.0.10.in-addr.arpa".
    pub zone: String,
    pub primary: SocketAddr,
    /// None: unsigned updates (for servers that allow updates by address).
    pub key: Option<crate::keys::TsigKey>,
    /// TTL of the records we add (never more than the lease's remaining time).
    pub ttl: u32,
}

pub(super) fn section(
    cx: &Ctx,
    raw: &[Spanned<raw::DdnsZone>],
    queue: Option<&Spanned<String>>,
    lease_file: &std::path::Path,
) -> Result<DdnsConfig, ConfigError> {
    let queue_file = optional_path(cx, queue, "ddns_queue")?
        .unwrap_or_else(|| defaults::beside(lease_file, defaults::DDNS_QUEUE_SUFFIX));
    let mut zones: Vec<DdnsZone> = Vec::new();
    for (i, z) in raw.iter().enumerate() {
        let zone = ddns_zone(cx, i, z.get_ref())?;
        if let Some(j) = zones.iter().position(|o| o.zone == zone.zone) {
            let msg = format!("is already configured by ddns_zone[{j}]");
            return Err(cx.err(z.get_ref().zone.span(), format!("ddns_zone[{i}].zone"), msg));
        }
        zones.push(zone);
    }
    Ok(DdnsConfig { zones, queue_file })
}

fn ddns_zone(cx: &Ctx, i: usize, z: &raw::DdnsZone) -> Result<DdnsZone, ConfigError> {
    let field = |f: &str| format!("ddns_zone[{i}].{f}");
    let zone = z.zone.get_ref().trim_end_matches('.').to_ascii_lowercase();
    if zone.is_empty() || !zone.split('.').all(is_label) {
        let msg = "is not a valid zone name";
        return Err(cx.err(z.zone.span(), field("zone"), msg));
    }
    let primary = socket_addr(z.primary.get_ref(), 53).ok_or_else(|| {
        let msg = "is not an address like 10.0.0.53:53";
        cx.err(z.primary.span(), field("primary"), msg)
    })?;
    let ttl = at_least_one(cx, z.ttl.as_ref(), &field("ttl"), defaults::DDNS_TTL)?;
    Ok(DdnsZone {
        zone,
        primary,
        key: tsig_key(cx, &field, z)?,
        ttl,
    })
}

fn tsig_key(
    cx: &Ctx,
    field: &dyn Fn(&str) -> String,
    z: &raw::DdnsZone,
) -> Result<Option<crate::keys::TsigKey>, ConfigError> {
    let (name, secret) = match (&z.key_name, &z.key_secret) {
        (None, None) => {
            return match &z.key_algorithm {
                Some(a) => Err(cx.err(
                    a.span(),
                    field("key_algorithm"),
                    "needs key_name and key_secret",
                )),
                None => Ok(None),
            };
        }
        (Some(n), None) => {
            return Err(cx.err(n.span(), field("key_name"), "needs key_secret too"));
        }
        (None, Some(s)) => {
            return Err(cx.err(s.span(), field("key_secret"), "needs key_name too"));
        }
        (Some(n), Some(s)) => (n, s),
    };
    let key_name = name.get_ref().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !key_name.split('.').all(label_ok) {
        let msg = "is not a valid key name";
        return Err(cx.err(name.span(), field("key_name"), msg));
    }
    let algorithm = match &z.key_algorithm {
        None => TsigAlgorithm::HmacSha256,
        Some(a) => tsig_algorithm(cx, a, &field("key_algorithm"))?,
    };
    let secret = tsig_secret(cx, secret, &field("key_secret"))?;
    crate::keys::TsigKey::new(&key_name, algorithm, secret)
        .map(Some)
        .ok_or_else(|| cx.err(name.span(), field("key_name"), "is not a DNS name"))
}
