//! `[dns]`: listeners, forwarding, static records (`[[dns.record]]`), blocked names, transfers;
//! and the name rules (`qualify`, `is_label`) the other sections use.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::defaults::{self, BLOCKED_NAMES};
use super::error::Ctx;
use super::load::{millis_in, networks, optional_path, socket_addrs};
use super::*;

/// The part of `[dns]` a reload changes: static records, the hosts file, blocked names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Static records from `[[dns.record]]`, in file order.
    pub records: Vec<DnsRecord>,
    /// An /etc/hosts-format file read at start (and on reload).
    pub hosts_file: Option<PathBuf>,
    /// Host names a DHCP client may not claim (lowercase labels): such a lease gets its address
    /// but no name. Default `DEFAULT_BLOCKED_NAMES`.
    pub blocked_names: Vec<String>,
}

/// The DNS settings bound at start: sockets, forwarding, the zone's TTL, who may update and
/// transfer, the update journal, the HTTP listener.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsStartup {
    /// Addresses to answer DNS on, UDP and TCP. Empty: no DNS server.
    pub listen: Vec<SocketAddr>,
    /// TTL of local records; lease records never exceed the lease's remaining time.
    pub ttl: u32,
    /// Upstream servers for other names, tried in order; empty: REFUSED.
    pub upstreams: Vec<SocketAddr>,
    /// Total time a forwarded query may take, across every upstream tried.
    pub upstream_timeout: Duration,
    /// Forwarded answers kept in the cache (0: no cache).
    pub cache_size: usize,
    /// `dns.recursion_from`: networks (address, prefix length) whose clients may have other
    /// names forwarded; others get REFUSED for names not ours. None: the served subnets and
    /// loopback.
    pub recursion_from: Option<Vec<(std::net::IpAddr, u8)>>,
    /// Answer a bare name ("laptop.") as if it were "laptop.<domain>" (as dnsmasq does).
    pub expand_bare_names: bool,
    /// `[[tsig_key]]`: keys that may send RFC 2136 UPDATEs, each with its policy.
    pub tsig_keys: Vec<TsigKeyConfig>,
    /// `dns.transfer_to`: secondaries that may transfer our zones (AXFR/IXFR, by source
    /// address) and get NOTIFY (to this address and port) when the serial changes.
    pub transfer_to: Vec<SocketAddr>,
    /// `dns.transfer_keys`: names of `[[tsig_key]]`s whose signed transfers are allowed from
    /// any address (lowercase, without trailing dot); the first also signs NOTIFY.
    pub transfer_keys: Vec<String>,
    /// Where dynamic records (UPDATE, DynDNS2) are journaled; `<lease_file>.dns` by default.
    pub update_journal: PathBuf,
    /// `[http]`: the DynDNS2 listener.
    pub http: HttpConfig,
    /// `[[dyndns_user]]`: who may update which names over DynDNS2.
    pub dyndns_users: Vec<DynDnsUser>,
}

impl DnsStartup {
    /// The keys of the settings that differ in `new` (see `Startup::changed`).
    pub fn changed(&self, new: &DnsStartup) -> Vec<&'static str> {
        let DnsStartup {
            listen,
            ttl,
            upstreams,
            upstream_timeout,
            cache_size,
            recursion_from,
            expand_bare_names,
            tsig_keys,
            transfer_to,
            transfer_keys,
            update_journal,
            http,
            dyndns_users,
        } = self;
        let mut out = Vec::new();
        let mut differ = |key, differs: bool| out.extend(differs.then_some(key));
        differ("dns.listen", *listen != new.listen);
        differ("dns.ttl", *ttl != new.ttl);
        differ("dns.upstreams", *upstreams != new.upstreams);
        differ(
            "dns.upstream_timeout_ms",
            *upstream_timeout != new.upstream_timeout,
        );
        differ("dns.cache_size", *cache_size != new.cache_size);
        differ("dns.recursion_from", *recursion_from != new.recursion_from);
        differ(
            "dns.expand_bare_names",
            *expand_bare_names != new.expand_bare_names,
        );
        differ("tsig_key", *tsig_keys != new.tsig_keys);
        differ("dns.transfer_to", *transfer_to != new.transfer_to);
        differ("dns.transfer_keys", *transfer_keys != new.transfer_keys);
        differ("dns.update_journal", *update_journal != new.update_journal);
        differ("http", *http != new.http);
        differ("dyndns_user", *dyndns_users != new.dyndns_users);
        out
    }
}

/// Names no DHCP client may publish by default (`defaults::BLOCKED_NAMES`).
pub const DEFAULT_BLOCKED_NAMES: [&str; 3] = BLOCKED_NAMES;

/// Which names an update rule covers. Names are lowercase, without trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameMatch {
    /// Exactly this name.
    Exact(String),
    /// This name and every name below it.
    Subtree(String),
    /// Any name whose leftmost labels are these, e.g. "_acme-challenge" covers
    /// "_acme-challenge.www.lan".
    Prefix(String),
}

impl NameMatch {
    /// `fqdn`: lowercase, without trailing dot.
    pub fn matches(&self, fqdn: &str) -> bool {
        match self {
            NameMatch::Exact(n) => fqdn == n,
            NameMatch::Subtree(n) => {
                fqdn == n
                    || fqdn
                        .strip_suffix(n.as_str())
                        .is_some_and(|r| r.ends_with('.'))
            }
            NameMatch::Prefix(p) => fqdn
                .strip_prefix(p.as_str())
                .is_some_and(|r| r.starts_with('.') && r.len() > 1),
        }
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            records: Vec::new(),
            hosts_file: None,
            blocked_names: BLOCKED_NAMES.iter().map(|n| n.to_string()).collect(),
        }
    }
}

impl Default for DnsStartup {
    /// The defaults, with the update journal at `leasedns.journal.dns` (for tests).
    fn default() -> Self {
        DnsStartup {
            listen: Vec::new(),
            ttl: defaults::DNS_TTL,
            upstreams: Vec::new(),
            upstream_timeout: Duration::from_millis(defaults::UPSTREAM_TIMEOUT_MS),
            cache_size: defaults::CACHE_SIZE,
            recursion_from: None,
            expand_bare_names: defaults::EXPAND_BARE_NAMES,
            tsig_keys: Vec::new(),
            transfer_to: Vec::new(),
            transfer_keys: Vec::new(),
            update_journal: defaults::beside(
                std::path::Path::new("leasedns.journal"),
                defaults::UPDATE_JOURNAL_SUFFIX,
            ),
            http: HttpConfig::default(),
            dyndns_users: Vec::new(),
        }
    }
}

/// One static DNS record: its owner (fully qualified, lowercase, no trailing dot) and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRecord {
    pub name: String,
    pub data: RecordData,
}

/// The data of a static record. Target names are fully qualified, lowercase, no trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Mx {
        preference: u16,
        exchange: String,
    },
    /// Character strings of at most 255 bytes each.
    Txt(Vec<String>),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
}

/// A record name as written in config: "@" is the domain, a name ending in "." is absolute, a
/// name equal to the domain or ending in ".domain" is taken as is, anything else is relative to
/// the domain. Returns the lowercase name without trailing dot, or None if it is not a valid
/// DNS name (labels of letters, digits, '-' and '_', 1 to 63 bytes, 253 in all).
pub fn qualify(name: &str, domain: &str) -> Option<String> {
    let name = name.trim().to_ascii_lowercase();
    let fqdn = if name == "@" {
        domain.to_string()
    } else if let Some(abs) = name.strip_suffix('.') {
        abs.to_string()
    } else if name == domain || name.ends_with(&format!(".{domain}")) {
        name
    } else {
        format!("{name}.{domain}")
    };
    let ok = !fqdn.is_empty()
        && fqdn.len() <= 253
        && fqdn.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(fqdn)
}

/// An RFC 1123 label: letters, digits and hyphens, 1 to 63 long, no hyphen at either end.
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `[dns] blocked_names`: DNS labels, lowercased.
fn blocked_names(cx: &Ctx, list: &[Spanned<String>]) -> Result<Vec<String>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, name)| {
            let label = name.get_ref().to_ascii_lowercase();
            if is_label(&label) {
                Ok(label)
            } else {
                Err(cx.err(
                    name.span(),
                    format!("dns.blocked_names[{i}]"),
                    "is not a host name (one DNS label)",
                ))
            }
        })
        .collect()
}

/// `[dns]`, split into what only a restart changes and what a reload does. The start part's
/// `tsig_keys`, `transfer_keys`, `http` and `dyndns_users` come from their own sections.
pub(super) fn section(
    cx: &Ctx,
    raw: raw::Dns,
    domain: &str,
    lease_file: &std::path::Path,
) -> Result<(DnsStartup, DnsConfig), ConfigError> {
    let upstream_timeout = millis_in(
        cx,
        raw.upstream_timeout_ms.as_ref(),
        50..=30_000,
        "dns.upstream_timeout_ms",
        Duration::from_millis(defaults::UPSTREAM_TIMEOUT_MS),
    )?;
    let records = raw
        .record
        .iter()
        .enumerate()
        .map(|(i, r)| record(cx, i, r.get_ref(), domain))
        .collect::<Result<Vec<_>, _>>()?;
    let port = defaults::DNS_PORT;
    let update_journal = optional_path(cx, raw.update_journal.as_ref(), "dns.update_journal")?
        .unwrap_or_else(|| defaults::beside(lease_file, defaults::UPDATE_JOURNAL_SUFFIX));
    let start = DnsStartup {
        listen: socket_addrs(cx, &raw.listen, "dns.listen", port)?,
        ttl: raw.ttl.unwrap_or(defaults::DNS_TTL),
        upstreams: socket_addrs(cx, &raw.upstreams, "dns.upstreams", port)?,
        upstream_timeout,
        cache_size: raw.cache_size.unwrap_or(defaults::CACHE_SIZE),
        recursion_from: raw
            .recursion_from
            .as_deref()
            .map(|list| networks(cx, list, "dns.recursion_from"))
            .transpose()?,
        expand_bare_names: raw.expand_bare_names.unwrap_or(defaults::EXPAND_BARE_NAMES),
        update_journal,
        transfer_to: socket_addrs(cx, &raw.transfer_to, "dns.transfer_to", port)?,
        ..DnsStartup::default()
    };
    let live = DnsConfig {
        records,
        hosts_file: optional_path(cx, raw.hosts_file.as_ref(), "dns.hosts_file")?,
        blocked_names: match &raw.blocked_names {
            Some(list) => blocked_names(cx, list)?,
            None => DnsConfig::default().blocked_names,
        },
    };
    Ok((start, live))
}

/// One `[[dns.record]]`: a name, a type and its value in zone-file order.
fn record(cx: &Ctx, i: usize, r: &raw::Record, domain: &str) -> Result<DnsRecord, ConfigError> {
    let field = |f: &str| format!("dns.record[{i}].{f}");
    let name = qualify(r.name.get_ref(), domain)
        .ok_or_else(|| cx.err(r.name.span(), field("name"), "is not a valid DNS name"))?;
    let rtype = r.rtype.get_ref().to_ascii_uppercase();
    let value = r.value.get_ref().trim();
    let bad = |what: &str| cx.err(r.value.span(), field("value"), format!("is not {what}"));
    let target = |s: &str| qualify(s, domain).ok_or_else(|| bad("a valid target name"));
    let words: Vec<&str> = value.split_whitespace().collect();
    let data = match (rtype.as_str(), words.as_slice()) {
        ("A", _) => RecordData::A(value.parse().map_err(|_| bad("an IPv4 address"))?),
        ("AAAA", _) => RecordData::Aaaa(value.parse().map_err(|_| bad("an IPv6 address"))?),
        ("CNAME", [t]) => RecordData::Cname(target(t)?),
        ("MX", [p, t]) => RecordData::Mx {
            preference: p.parse().map_err(|_| bad("\"PREFERENCE HOST\""))?,
            exchange: target(t)?,
        },
        ("SRV", [p, w, port, t]) => {
            let num = |s: &str| {
                s.parse::<u16>()
                    .map_err(|_| bad("\"PRIORITY WEIGHT PORT TARGET\""))
            };
            RecordData::Srv {
                priority: num(p)?,
                weight: num(w)?,
                port: num(port)?,
                target: target(t)?,
            }
        }
        ("TXT", _) if !value.is_ascii() => return Err(bad("ASCII text")),
        ("TXT", _) => RecordData::Txt(txt_chunks(r.value.get_ref())),
        ("CNAME", _) => return Err(bad("one target name")),
        ("MX", _) => return Err(bad("\"PREFERENCE HOST\"")),
        ("SRV", _) => return Err(bad("\"PRIORITY WEIGHT PORT TARGET\"")),
        _ => {
            return Err(cx.err(
                r.rtype.span(),
                field("type"),
                "is not one of A, AAAA, CNAME, MX, TXT, SRV",
            ));
        }
    };
    Ok(DnsRecord { name, data })
}

/// TXT text split into character strings of at most 255 bytes (ASCII, so bytes = chars).
fn txt_chunks(text: &str) -> Vec<String> {
    if text.is_empty() {
        return vec![String::new()];
    }
    text.as_bytes()
        .chunks(255)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// `dns.transfer_keys`: each must name a `[[tsig_key]]`.
pub(super) fn transfer_key_names(
    cx: &Ctx,
    list: &[Spanned<String>],
    keys: &[TsigKeyConfig],
) -> Result<Vec<String>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, k)| {
            let name = k.get_ref().trim_end_matches('.').to_ascii_lowercase();
            if keys.iter().any(|key| key.name == name) {
                Ok(name)
            } else {
                Err(cx.err(
                    k.span(),
                    format!("dns.transfer_keys[{i}]"),
                    "is not the name of a [[tsig_key]]",
                ))
            }
        })
        .collect()
}
