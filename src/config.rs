//! Configuration: raw serde types (`raw`), the validated `Config` built from them, and errors
//! that name the file, line and field. Opens no sockets.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::lease::{ClientId, HwAddr};

/// How lease changes reach the disk before a reply leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// write + fdatasync before replying (default).
    Fsync,
    /// write only; for tmpfs and tests.
    None,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The file this came from (for messages).
    pub path: PathBuf,
    /// Interfaces to serve DHCP on (names). Empty: every interface that has an address in a subnet.
    pub interfaces: Vec<String>,
    /// The local domain, lowercase, without trailing dot, e.g. "lan".
    pub domain: String,
    /// UDP port the DHCP server listens on (67) and the port clients listen on (68).
    pub dhcp_port: u16,
    pub client_port: u16,
    /// Lease journal file.
    pub lease_file: PathBuf,
    pub durability: Durability,
    /// How long an OFFER holds its address for the client (seconds).
    pub offer_hold: u32,
    /// How long a declined address is put aside (seconds).
    pub decline_hold: u32,
    pub dns: DnsConfig,
    pub subnets: Vec<Subnet>,
    pub reservations: Vec<Reservation>,
    /// Outbound RFC 2136 updates to DNS servers elsewhere (`[[ddns_zone]]`).
    pub ddns: DdnsConfig,
}

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
    pub key: Option<TsigKey>,
    /// TTL of the records we add (never more than the lease's remaining time).
    pub ttl: u32,
}

/// A TSIG key shared with the primary.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// Lowercase, no trailing dot.
    pub name: String,
    pub algorithm: TsigAlgorithm,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TsigKey({} {:?}, secret hidden)",
            self.name, self.algorithm
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    /// The algorithm's name as written in config and on the wire (RFC 8945 section 6).
    pub fn name(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

#[derive(Clone, Debug)]
pub struct DnsConfig {
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
    /// Static records from `[[dns.record]]`, in file order.
    pub records: Vec<DnsRecord>,
    /// An /etc/hosts-format file read at start (and on reload).
    pub hosts_file: Option<PathBuf>,
    /// Answer a bare name ("laptop.") as if it were "laptop.<domain>" (as dnsmasq does).
    pub expand_bare_names: bool,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: Vec::new(),
            ttl: 300,
            upstreams: Vec::new(),
            upstream_timeout: Duration::from_millis(2000),
            cache_size: 10_000,
            records: Vec::new(),
            hosts_file: None,
            expand_bare_names: false,
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    pub pool_start: Ipv4Addr,
    pub pool_end: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    /// Lease time in seconds.
    pub lease_time: u32,
    /// Serve this subnet only on this interface (else: any interface with an address in it).
    pub interface: Option<String>,
    /// NAK requests for addresses that are not ours on this segment (true by default).
    pub authoritative: bool,
}

impl Subnet {
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix_len))
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = prefix_mask(self.prefix_len);
        u32::from(ip) & m == u32::from(self.network) & m
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !prefix_mask(self.prefix_len))
    }
    pub fn in_pool(&self, ip: Ipv4Addr) -> bool {
        ip >= self.pool_start && ip <= self.pool_end
    }
}

pub fn prefix_mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len.min(32)))
    }
}

/// A fixed address (and optionally a name) for one client, by MAC or client identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub hwaddr: Option<HwAddr>,
    pub client_id: Option<ClientId>,
    pub ip: Ipv4Addr,
    /// Lowercase DNS label.
    pub name: Option<String>,
}

/// A config that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `field` is the dotted path of the key, e.g. `subnet[0].pool_start`.
    #[error("{path}:{line}: {field}: {message}")]
    Invalid {
        path: String,
        line: usize,
        field: String,
        message: String,
    },
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parse and validate config text; `path` is only used in messages and the result.
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
        let raw: raw::Root = toml::from_str(text).map_err(|e| {
            let (line, field) = match e.span() {
                Some(span) => (line_of(text, span.start), key_at(text, span.start)),
                None => (0, String::from("(file)")),
            };
            ConfigError::Invalid {
                path: path.display().to_string(),
                line,
                field,
                message: e.message().trim().to_string(),
            }
        })?;
        validate::root(raw, text, path)
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key written on the line holding `offset` (for syntax and type errors), or the table header.
fn key_at(text: &str, offset: usize) -> String {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("").trim();
    match line.split_once('=') {
        Some((k, _)) => k.trim().to_string(),
        None => line.trim_matches(|c| c == '[' || c == ']').to_string(),
    }
}

/// Raw serde types: exactly what the file says, with spans for semantic checks.
mod raw {
    use serde::Deserialize;
    use toml::Spanned;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Root {
        pub domain: Spanned<String>,
        #[serde(default)]
        pub interfaces: Vec<String>,
        pub lease_file: Spanned<String>,
        #[serde(default)]
        pub durability: Option<Spanned<String>>,
        pub dhcp_port: Option<u16>,
        pub client_port: Option<u16>,
        pub offer_hold: Option<u32>,
        pub decline_hold: Option<u32>,
        #[serde(default)]
        pub dns: Option<Dns>,
        #[serde(default)]
        pub subnet: Vec<Spanned<Subnet>>,
        #[serde(default)]
        pub host: Vec<Spanned<Host>>,
        pub ddns_queue: Option<Spanned<String>>,
        #[serde(default)]
        pub ddns_zone: Vec<Spanned<DdnsZone>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct DdnsZone {
        pub zone: Spanned<String>,
        pub primary: Spanned<String>,
        pub key_name: Option<Spanned<String>>,
        pub key_algorithm: Option<Spanned<String>>,
        pub key_secret: Option<Spanned<String>>,
        pub ttl: Option<Spanned<u32>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Dns {
        #[serde(default)]
        pub listen: Vec<Spanned<String>>,
        pub ttl: Option<u32>,
        #[serde(default)]
        pub upstreams: Vec<Spanned<String>>,
        pub upstream_timeout_ms: Option<Spanned<u64>>,
        pub cache_size: Option<usize>,
        pub hosts_file: Option<Spanned<String>>,
        pub expand_bare_names: Option<bool>,
        #[serde(default)]
        pub record: Vec<Spanned<Record>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Record {
        pub name: Spanned<String>,
        #[serde(rename = "type")]
        pub rtype: Spanned<String>,
        pub value: Spanned<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Subnet {
        pub network: Spanned<String>,
        pub pool_start: Spanned<std::net::Ipv4Addr>,
        pub pool_end: Spanned<std::net::Ipv4Addr>,
        pub router: Option<Spanned<std::net::Ipv4Addr>>,
        #[serde(default)]
        pub dns_servers: Vec<std::net::Ipv4Addr>,
        pub lease_time: Option<Spanned<u32>>,
        pub interface: Option<String>,
        pub authoritative: Option<bool>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Host {
        pub mac: Option<Spanned<String>>,
        pub client_id: Option<Spanned<String>>,
        pub ip: Spanned<std::net::Ipv4Addr>,
        pub name: Option<Spanned<String>>,
    }
}

/// Semantic checks: raw types to `Config`, every error naming its line and field.
mod validate {
    use super::*;
    use std::net::IpAddr;
    use std::ops::Range;
    use std::path::Path;
    use toml::Spanned;

    struct Ctx<'a> {
        text: &'a str,
        path: &'a Path,
    }

    impl Ctx<'_> {
        fn err(
            &self,
            span: Range<usize>,
            field: impl Into<String>,
            message: impl Into<String>,
        ) -> ConfigError {
            ConfigError::Invalid {
                path: self.path.display().to_string(),
                line: line_of(self.text, span.start),
                field: field.into(),
                message: message.into(),
            }
        }
    }

    pub fn root(raw: raw::Root, text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cx = Ctx { text, path };
        let domain = domain(&cx, &raw.domain)?;
        let durability = match raw
            .durability
            .as_ref()
            .map(|d| (d.get_ref().as_str(), d.span()))
        {
            None | Some(("fsync", _)) => Durability::Fsync,
            Some(("none", _)) => Durability::None,
            Some((other, span)) => {
                return Err(cx.err(
                    span,
                    "durability",
                    format!("`{other}` is not one of \"fsync\", \"none\""),
                ));
            }
        };
        if raw.lease_file.get_ref().trim().is_empty() {
            return Err(cx.err(raw.lease_file.span(), "lease_file", "must not be empty"));
        }
        let dns = dns(&cx, raw.dns.unwrap_or_default(), &domain)?;
        let mut subnets: Vec<Subnet> = Vec::new();
        for (i, s) in raw.subnet.iter().enumerate() {
            let sub = subnet(&cx, i, s)?;
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
        let reservations = hosts(&cx, &raw.host, &subnets)?;
        let ddns = ddns(
            &cx,
            &raw.ddns_zone,
            raw.ddns_queue.as_ref(),
            &raw.lease_file,
        )?;
        Ok(Config {
            path: path.to_path_buf(),
            interfaces: raw.interfaces,
            domain,
            dhcp_port: raw.dhcp_port.unwrap_or(67),
            client_port: raw.client_port.unwrap_or(68),
            lease_file: PathBuf::from(raw.lease_file.into_inner()),
            durability,
            offer_hold: raw.offer_hold.unwrap_or(60),
            decline_hold: raw.decline_hold.unwrap_or(600),
            dns,
            subnets,
            reservations,
            ddns,
        })
    }

    fn ddns(
        cx: &Ctx,
        raw: &[Spanned<raw::DdnsZone>],
        queue: Option<&Spanned<String>>,
        lease_file: &Spanned<String>,
    ) -> Result<DdnsConfig, ConfigError> {
        let queue_file = match queue {
            Some(q) if q.get_ref().trim().is_empty() => {
                return Err(cx.err(q.span(), "ddns_queue", "must not be empty"));
            }
            Some(q) => PathBuf::from(q.get_ref()),
            None => PathBuf::from(format!("{}.ddns", lease_file.get_ref())),
        };
        let mut zones: Vec<DdnsZone> = Vec::new();
        for (i, z) in raw.iter().enumerate() {
            let zone = ddns_zone(cx, i, z.get_ref())?;
            if let Some(j) = zones.iter().position(|o| o.zone == zone.zone) {
                let msg = format!("`{}` is already configured by ddns_zone[{j}]", zone.zone);
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
            let msg = format!("`{}` is not a valid zone name", z.zone.get_ref());
            return Err(cx.err(z.zone.span(), field("zone"), msg));
        }
        let primary = socket_addr(z.primary.get_ref(), 53).ok_or_else(|| {
            let msg = format!(
                "`{}` is not an address like 10.0.0.53:53",
                z.primary.get_ref()
            );
            cx.err(z.primary.span(), field("primary"), msg)
        })?;
        let ttl = match &z.ttl {
            Some(t) if *t.get_ref() == 0 => {
                return Err(cx.err(t.span(), field("ttl"), "must be at least 1"));
            }
            Some(t) => *t.get_ref(),
            None => 300,
        };
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
    ) -> Result<Option<TsigKey>, ConfigError> {
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
            let msg = format!("`{}` is not a valid key name", name.get_ref());
            return Err(cx.err(name.span(), field("key_name"), msg));
        }
        let algorithm = match z
            .key_algorithm
            .as_ref()
            .map(|a| (a.get_ref().to_ascii_lowercase(), a.span()))
        {
            None => TsigAlgorithm::HmacSha256,
            Some((a, _)) if a == "hmac-sha256" => TsigAlgorithm::HmacSha256,
            Some((a, _)) if a == "hmac-sha384" => TsigAlgorithm::HmacSha384,
            Some((a, _)) if a == "hmac-sha512" => TsigAlgorithm::HmacSha512,
            Some((a, span)) => {
                let msg = format!("`{a}` is not one of hmac-sha256, hmac-sha384, hmac-sha512");
                return Err(cx.err(span, field("key_algorithm"), msg));
            }
        };
        let secret_bytes = data_encoding::BASE64
            .decode(secret.get_ref().trim().as_bytes())
            .ok()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                cx.err(
                    secret.span(),
                    field("key_secret"),
                    "is not base64 (as in a BIND key file)",
                )
            })?;
        Ok(Some(TsigKey {
            name: key_name,
            algorithm,
            secret: secret_bytes,
        }))
    }

    fn domain(cx: &Ctx, raw: &Spanned<String>) -> Result<String, ConfigError> {
        let d = raw.get_ref().trim_end_matches('.').to_ascii_lowercase();
        if d.is_empty() || !d.split('.').all(is_label) {
            return Err(cx.err(
                raw.span(),
                "domain",
                format!("`{}` is not a valid domain name", raw.get_ref()),
            ));
        }
        Ok(d)
    }

    fn dns(cx: &Ctx, raw: raw::Dns, domain: &str) -> Result<DnsConfig, ConfigError> {
        let addrs =
            |list: &[Spanned<String>], field: &str| -> Result<Vec<SocketAddr>, ConfigError> {
                list.iter()
                    .enumerate()
                    .map(|(i, a)| {
                        socket_addr(a.get_ref(), 53).ok_or_else(|| {
                            cx.err(
                                a.span(),
                                format!("dns.{field}[{i}]"),
                                format!("`{}` is not an address or address:port", a.get_ref()),
                            )
                        })
                    })
                    .collect()
            };
        let defaults = DnsConfig::default();
        let upstream_timeout = match &raw.upstream_timeout_ms {
            None => defaults.upstream_timeout,
            Some(ms) if (50..=30_000).contains(ms.get_ref()) => {
                Duration::from_millis(*ms.get_ref())
            }
            Some(ms) => {
                return Err(cx.err(
                    ms.span(),
                    "dns.upstream_timeout_ms",
                    "must be between 50 and 30000",
                ));
            }
        };
        let hosts_file = match &raw.hosts_file {
            Some(h) if h.get_ref().trim().is_empty() => {
                return Err(cx.err(h.span(), "dns.hosts_file", "must not be empty"));
            }
            Some(h) => Some(PathBuf::from(h.get_ref())),
            None => None,
        };
        let records = raw
            .record
            .iter()
            .enumerate()
            .map(|(i, r)| record(cx, i, r.get_ref(), domain))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DnsConfig {
            listen: addrs(&raw.listen, "listen")?,
            ttl: raw.ttl.unwrap_or(defaults.ttl),
            upstreams: addrs(&raw.upstreams, "upstreams")?,
            upstream_timeout,
            cache_size: raw.cache_size.unwrap_or(defaults.cache_size),
            records,
            hosts_file,
            expand_bare_names: raw.expand_bare_names.unwrap_or(false),
        })
    }

    /// One `[[dns.record]]`: a name, a type and its value in zone-file order.
    fn record(cx: &Ctx, i: usize, r: &raw::Record, domain: &str) -> Result<DnsRecord, ConfigError> {
        let field = |f: &str| format!("dns.record[{i}].{f}");
        let name = qualify(r.name.get_ref(), domain).ok_or_else(|| {
            cx.err(
                r.name.span(),
                field("name"),
                format!("`{}` is not a valid DNS name", r.name.get_ref()),
            )
        })?;
        let rtype = r.rtype.get_ref().to_ascii_uppercase();
        let value = r.value.get_ref().trim();
        let bad = |what: &str| {
            cx.err(
                r.value.span(),
                field("value"),
                format!("`{value}` is not {what}"),
            )
        };
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
            (other, _) => {
                return Err(cx.err(
                    r.rtype.span(),
                    field("type"),
                    format!("`{other}` is not one of A, AAAA, CNAME, MX, TXT, SRV"),
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

    /// "10.0.0.1", "10.0.0.1:5353", "::1", "[::1]:53".
    fn socket_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
        s.parse::<SocketAddr>().ok().or_else(|| {
            s.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, default_port))
        })
    }

    fn subnet(cx: &Ctx, i: usize, raw: &Spanned<raw::Subnet>) -> Result<Subnet, ConfigError> {
        let s = raw.get_ref();
        let field = |f: &str| format!("subnet[{i}].{f}");
        let (network, prefix_len) = cidr(s.network.get_ref()).ok_or_else(|| {
            cx.err(
                s.network.span(),
                field("network"),
                format!(
                    "`{}` is not a network like 10.0.0.0/24",
                    s.network.get_ref()
                ),
            )
        })?;
        let mut sub = Subnet {
            network,
            prefix_len,
            pool_start: *s.pool_start.get_ref(),
            pool_end: *s.pool_end.get_ref(),
            router: s.router.as_ref().map(|r| *r.get_ref()),
            dns_servers: s.dns_servers.clone(),
            lease_time: s.lease_time.as_ref().map_or(3600, |t| *t.get_ref()),
            interface: s.interface.clone(),
            authoritative: s.authoritative.unwrap_or(true),
        };
        if u32::from(network) & !prefix_mask(prefix_len) != 0 {
            let base = Ipv4Addr::from(u32::from(network) & prefix_mask(prefix_len));
            return Err(cx.err(
                s.network.span(),
                field("network"),
                format!("host bits set; did you mean {base}/{prefix_len}?"),
            ));
        }
        for (name, ip) in [("pool_start", &s.pool_start), ("pool_end", &s.pool_end)] {
            let a = *ip.get_ref();
            if !sub.contains(a) || a == sub.network || a == sub.broadcast() {
                return Err(cx.err(
                    ip.span(),
                    field(name),
                    format!("{a} is not a host address of {network}/{prefix_len}"),
                ));
            }
        }
        if sub.pool_start > sub.pool_end {
            return Err(cx.err(
                s.pool_end.span(),
                field("pool_end"),
                "comes before pool_start",
            ));
        }
        if let Some(t) = s.lease_time.as_ref().filter(|t| *t.get_ref() < 10) {
            return Err(cx.err(t.span(), field("lease_time"), "must be at least 10 seconds"));
        }
        if let Some(r) = s.router.as_ref().filter(|r| !sub.contains(*r.get_ref())) {
            let msg = format!("{} is not in {network}/{prefix_len}", r.get_ref());
            return Err(cx.err(r.span(), field("router"), msg));
        }
        sub.dns_servers.dedup();
        Ok(sub)
    }

    fn cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
        let (a, p) = s.split_once('/')?;
        let p: u8 = p.parse().ok()?;
        (p <= 30).then_some(())?;
        Some((a.parse().ok()?, p))
    }

    fn hosts(
        cx: &Ctx,
        raw: &[Spanned<raw::Host>],
        subnets: &[Subnet],
    ) -> Result<Vec<Reservation>, ConfigError> {
        let mut out: Vec<Reservation> = Vec::new();
        for (i, h) in raw.iter().enumerate() {
            let hr = h.get_ref();
            let field = |f: &str| format!("host[{i}].{f}");
            let hwaddr = match &hr.mac {
                Some(m) => Some(HwAddr {
                    htype: 1,
                    bytes: hex_bytes(m.get_ref())
                        .filter(|b| b.len() == 6)
                        .ok_or_else(|| {
                            cx.err(
                                m.span(),
                                field("mac"),
                                format!("`{}` is not a MAC like 52:54:00:12:34:56", m.get_ref()),
                            )
                        })?,
                }),
                None => None,
            };
            let client_id = match &hr.client_id {
                Some(c) => Some(ClientId(
                    hex_bytes(c.get_ref())
                        .filter(|b| !b.is_empty())
                        .ok_or_else(|| {
                            cx.err(
                                c.span(),
                                field("client_id"),
                                format!(
                                    "`{}` is not hex bytes like 01:52:54:00:ab:cd:ef",
                                    c.get_ref()
                                ),
                            )
                        })?,
                )),
                None => None,
            };
            if hwaddr.is_none() && client_id.is_none() {
                return Err(cx.err(h.span(), format!("host[{i}]"), "needs `mac` or `client_id`"));
            }
            let ip = *hr.ip.get_ref();
            if !subnets.iter().any(|s| s.contains(ip)) {
                return Err(cx.err(
                    hr.ip.span(),
                    field("ip"),
                    format!("{ip} is in no configured subnet"),
                ));
            }
            if let Some(j) = out.iter().position(|r| r.ip == ip) {
                return Err(cx.err(
                    hr.ip.span(),
                    field("ip"),
                    format!("{ip} is already reserved by host[{j}]"),
                ));
            }
            let name = match &hr.name {
                Some(n) => {
                    let l = n.get_ref().to_ascii_lowercase();
                    if !is_label(&l) {
                        return Err(cx.err(
                            n.span(),
                            field("name"),
                            format!(
                                "`{}` is not a valid host name (RFC 1123 label)",
                                n.get_ref()
                            ),
                        ));
                    }
                    if let Some(j) = out.iter().position(|r| r.name.as_deref() == Some(&l)) {
                        return Err(cx.err(
                            n.span(),
                            field("name"),
                            format!("`{l}` is already used by host[{j}]"),
                        ));
                    }
                    Some(l)
                }
                None => None,
            };
            out.push(Reservation {
                hwaddr,
                client_id,
                ip,
                name,
            });
        }
        Ok(out)
    }

    /// "52:54:00:12:34:56" or "525400123456" or with '-'.
    fn hex_bytes(s: &str) -> Option<Vec<u8>> {
        let digits: String = s.chars().filter(|c| !matches!(c, ':' | '-')).collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
            .collect()
    }
}

/// An RFC 1123 label: letters, digits and hyphens, 1 to 63 long, no hyphen at either end.
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const GOOD: &str = r#"
domain = "Lan."
lease_file = "/tmp/x.journal"
[dns]
listen = ["127.0.0.1:5353", "10.0.0.1"]
[[subnet]]
network = "10.0.0.0/24"
pool_start = "10.0.0.100"
pool_end = "10.0.0.199"
router = "10.0.0.1"
dns_servers = ["10.0.0.1"]
lease_time = 600
[[host]]
mac = "52:54:00:12:34:56"
ip = "10.0.0.10"
name = "Printer"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    fn invalid(text: &str) -> (usize, String, String) {
        match parse(text) {
            Err(ConfigError::Invalid {
                line,
                field,
                message,
                ..
            }) => (line, field, message),
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn every_shipped_config_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).expect("conf/ exists") {
            let p = e.expect("dir entry").path();
            if p.extension().is_some_and(|x| x == "toml") {
                Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 1, "no configs in conf/");
    }

    #[test]
    fn good_config_is_normalised() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.domain, "lan");
        assert_eq!(c.durability, Durability::Fsync);
        assert_eq!(c.dhcp_port, 67);
        assert_eq!(c.dns.listen[1], "10.0.0.1:53".parse().unwrap());
        assert_eq!(c.subnets[0].mask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.subnets[0].broadcast(), Ipv4Addr::new(10, 0, 0, 255));
        assert_eq!(c.reservations[0].name.as_deref(), Some("printer"));
        assert_eq!(
            c.reservations[0].hwaddr,
            Some(HwAddr::ethernet([0x52, 0x54, 0, 0x12, 0x34, 0x56]))
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let (line, field, msg) = invalid(&GOOD.replace("lease_time = 600", "lease_tme = 600"));
        assert_eq!(line, 12);
        assert_eq!(field, "lease_tme");
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn bad_address_names_line_and_key() {
        let (line, field, _) = invalid(&GOOD.replace("\"10.0.0.199\"", "\"10.0.0.299\""));
        assert_eq!((line, field.as_str()), (9, "pool_end"));
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let cases = [
            (
                GOOD.replace("10.0.0.199", "10.0.1.5"),
                "subnet[0].pool_end",
                9,
            ),
            (
                GOOD.replace("10.0.0.0/24", "10.0.0.1/24"),
                "subnet[0].network",
                7,
            ),
            (
                GOOD.replace("\"10.0.0.10\"", "\"10.9.0.10\""),
                "host[0].ip",
                15,
            ),
            (GOOD.replace("Printer", "bad_name"), "host[0].name", 16),
            (
                GOOD.replace("52:54:00:12:34:56", "52:54"),
                "host[0].mac",
                14,
            ),
            (GOOD.replace("Lan.", "bad..lan"), "domain", 2),
            (
                GOOD.replace("lease_time = 600", "lease_time = 1"),
                "subnet[0].lease_time",
                12,
            ),
            (
                GOOD.replace("\"10.0.0.1\"]\n[[sub", "\"nonsense\"]\n[[sub"),
                "dns.listen[1]",
                5,
            ),
        ];
        for (text, want_field, want_line) in cases {
            let (line, field, msg) = invalid(&text);
            assert_eq!((field.as_str(), line), (want_field, want_line), "{msg}");
        }
    }

    #[test]
    fn duplicate_reservation_and_overlap_are_rejected() {
        let dup = format!("{GOOD}[[host]]\nmac = \"52:54:00:00:00:01\"\nip = \"10.0.0.10\"\n");
        assert_eq!(invalid(&dup).1, "host[1].ip");
        let overlap = format!(
            "{GOOD}[[subnet]]\nnetwork = \"10.0.0.0/16\"\npool_start = \"10.0.1.1\"\npool_end = \"10.0.1.9\"\n"
        );
        assert_eq!(invalid(&overlap).1, "subnet[1].network");
    }

    #[test]
    fn error_message_reads_file_line_field() {
        let e = parse(&GOOD.replace("lease_time = 600", "lease_tme = 600")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("test.toml:12: lease_tme: unknown field"),
            "{e}"
        );
    }

    const RECORDS: &str = r#"
[[dns.record]]
name = "@"
type = "MX"
value = "10 mail"
[[dns.record]]
name = "_ldap._tcp"
type = "srv"
value = "0 5 389 nas.lan."
[[dns.record]]
name = "www.LAN"
type = "CNAME"
value = "nas"
[[dns.record]]
name = "router.example.net."
type = "A"
value = "10.0.0.1"
[[dns.record]]
name = "nas"
type = "AAAA"
value = "fd00::20"
[[dns.record]]
name = "nas"
type = "TXT"
value = "hello world"
"#;

    /// GOOD with extra `[dns]` keys and the records above appended.
    fn with_dns(extra: &str) -> String {
        let text = GOOD.replace(
            "[dns]\n",
            &format!("[dns]\n{extra}\nupstreams = [\"192.0.2.53\", \"192.0.2.54:5353\"]\n"),
        );
        let (head, hosts) = text.split_at(text.find("[[subnet]]").expect("subnet"));
        format!("{head}{RECORDS}{hosts}")
    }

    #[test]
    fn dns_defaults() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.dns.upstream_timeout, Duration::from_millis(2000));
        assert!(c.dns.records.is_empty() && c.dns.hosts_file.is_none());
        assert!(!c.dns.expand_bare_names);
        assert_eq!(c.dns.cache_size, 10_000);
    }

    #[test]
    fn dns_records_and_keys_are_normalised() {
        let text = with_dns(
            "upstream_timeout_ms = 500\nhosts_file = \"/etc/hosts\"\nexpand_bare_names = true",
        );
        let c = parse(&text).expect("valid");
        assert_eq!(c.dns.upstream_timeout, Duration::from_millis(500));
        assert_eq!(c.dns.upstreams[1], "192.0.2.54:5353".parse().unwrap());
        assert_eq!(c.dns.hosts_file, Some(PathBuf::from("/etc/hosts")));
        assert!(c.dns.expand_bare_names);
        let r = &c.dns.records;
        assert_eq!(
            r[0],
            DnsRecord {
                name: "lan".to_string(),
                data: RecordData::Mx {
                    preference: 10,
                    exchange: "mail.lan".to_string()
                }
            }
        );
        assert_eq!(r[1].name, "_ldap._tcp.lan");
        assert_eq!(
            r[1].data,
            RecordData::Srv {
                priority: 0,
                weight: 5,
                port: 389,
                target: "nas.lan".to_string()
            }
        );
        assert_eq!(r[2].name, "www.lan");
        assert_eq!(r[2].data, RecordData::Cname("nas.lan".to_string()));
        assert_eq!(r[3].name, "router.example.net");
        assert_eq!(r[4].data, RecordData::Aaaa("fd00::20".parse().unwrap()));
        assert_eq!(r[5].data, RecordData::Txt(vec!["hello world".to_string()]));
    }

    #[test]
    fn long_txt_is_split_into_255_byte_strings() {
        let text = with_dns("").replace("hello world", &"a".repeat(600));
        let c = parse(&text).expect("valid");
        let RecordData::Txt(strings) = &c.dns.records[5].data else {
            panic!("TXT expected")
        };
        let lens: Vec<usize> = strings.iter().map(String::len).collect();
        assert_eq!(lens, vec![255, 255, 90]);
    }

    #[test]
    fn bad_dns_values_name_line_and_field() {
        let base = with_dns("");
        let line_of_text = |text: &str, needle: &str| {
            text.lines()
                .position(|l| l.contains(needle))
                .expect("needle in text")
                + 1
        };
        let cases = [
            ("\"10 mail\"", "\"ten mail\"", "dns.record[0].value"),
            ("\"srv\"", "\"SPF\"", "dns.record[1].type"),
            ("\"0 5 389 nas.lan.\"", "\"0 5 nas\"", "dns.record[1].value"),
            (
                "\"nas\"\n[[dns",
                "\"bad name!\"\n[[dns",
                "dns.record[2].value",
            ),
            (
                "\"10.0.0.1\"\n[[dns",
                "\"10.0.0.300\"\n[[dns",
                "dns.record[3].value",
            ),
            ("\"fd00::20\"", "\"10.0.0.20\"", "dns.record[4].value"),
            ("\"router.example.net.\"", "\"a..b\"", "dns.record[3].name"),
        ];
        for (from, to, want_field) in cases {
            let text = base.replacen(from, to, 1);
            assert_ne!(text, base, "{from} not found");
            let (line, field, msg) = invalid(&text);
            assert_eq!(field, want_field, "{msg}");
            assert_eq!(
                line,
                line_of_text(&text, to.split('\n').next().unwrap()),
                "{field}: {msg}"
            );
        }
        let (line, field, _) = invalid(&with_dns("upstream_timeout_ms = 5"));
        assert_eq!((line, field.as_str()), (5, "dns.upstream_timeout_ms"));
        let (_, field, msg) = invalid(&with_dns("hosts = \"/etc/hosts\""));
        assert_eq!(field, "hosts");
        assert!(msg.contains("unknown field"), "{msg}");
        let (_, field, _) = invalid(&with_dns("").replace("type = \"AAAA\"", "tipe = \"AAAA\""));
        assert_eq!(field, "tipe");
    }

    const DDNS: &str = r#"
[[ddns_zone]]
zone = "LAN."
primary = "10.0.0.53"
key_name = "leasedns"
key_secret = "bGVhc2VkbnMtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyE="
[[ddns_zone]]
zone = "0.0.10.in-addr.arpa"
primary = "10.0.0.54:5353"
key_name = "rev.key."
key_algorithm = "HMAC-SHA512"
key_secret = "c2VjcmV0"
ttl = 60
"#;

    #[test]
    fn ddns_zones_are_normalised_with_defaults() {
        let c = parse(GOOD).expect("valid");
        assert!(c.ddns.zones.is_empty());
        assert_eq!(c.ddns.queue_file, PathBuf::from("/tmp/x.journal.ddns"));

        let c = parse(&format!("{GOOD}{DDNS}")).expect("valid");
        let (fwd, rev) = (&c.ddns.zones[0], &c.ddns.zones[1]);
        assert_eq!(fwd.zone, "lan");
        assert_eq!(fwd.primary, "10.0.0.53:53".parse().unwrap());
        assert_eq!(fwd.ttl, 300);
        let key = fwd.key.as_ref().expect("key");
        assert_eq!(key.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(key.secret, b"leasedns-test-key-32-bytes-long!".to_vec());
        assert!(
            !format!("{key:?}").contains("leasedns-test"),
            "secret hidden in Debug"
        );
        assert_eq!(rev.primary, "10.0.0.54:5353".parse().unwrap());
        let key = rev.key.as_ref().expect("key");
        assert_eq!(
            (key.name.as_str(), key.algorithm),
            ("rev.key", TsigAlgorithm::HmacSha512)
        );
        assert_eq!(rev.ttl, 60);

        let queue = GOOD.replace("[dns]", "ddns_queue = \"/var/q\"\n[dns]");
        assert_eq!(
            parse(&queue).expect("valid").ddns.queue_file,
            PathBuf::from("/var/q")
        );
        let unsigned = format!("{GOOD}[[ddns_zone]]\nzone = \"lan\"\nprimary = \"::1\"\n");
        let c = parse(&unsigned).expect("valid");
        assert_eq!(c.ddns.zones[0].key, None);
        assert_eq!(c.ddns.zones[0].primary, "[::1]:53".parse().unwrap());
    }

    #[test]
    fn bad_ddns_values_name_the_field() {
        let base = format!("{GOOD}{DDNS}");
        let cases = [
            (
                "zone = \"LAN.\"",
                "zone = \"bad..zone\"",
                "ddns_zone[0].zone",
            ),
            (
                "\"10.0.0.53\"",
                "\"primary.example\"",
                "ddns_zone[0].primary",
            ),
            (
                "\"HMAC-SHA512\"",
                "\"hmac-md5\"",
                "ddns_zone[1].key_algorithm",
            ),
            ("\"c2VjcmV0\"", "\"not base64!\"", "ddns_zone[1].key_secret"),
            ("ttl = 60", "ttl = 0", "ddns_zone[1].ttl"),
            ("\"0.0.10.in-addr.arpa\"", "\"lan\"", "ddns_zone[1].zone"),
            ("key_name = \"rev.key.\"\n", "", "ddns_zone[1].key_secret"),
            (
                "key_name = \"leasedns\"",
                "key_name = \"bad name\"",
                "ddns_zone[0].key_name",
            ),
        ];
        for (from, to, want_field) in cases {
            let text = base.replacen(from, to, 1);
            assert_ne!(text, base, "{from} not found");
            let (_, field, msg) = invalid(&text);
            assert_eq!(field, want_field, "{msg}");
        }
        let (_, field, msg) = invalid(&format!("{base}server = \"x\"\n"));
        assert_eq!(field, "server");
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn qualify_follows_the_documented_rules() {
        assert_eq!(qualify("@", "lan").as_deref(), Some("lan"));
        assert_eq!(qualify("nas", "lan").as_deref(), Some("nas.lan"));
        assert_eq!(qualify("NAS.lan", "lan").as_deref(), Some("nas.lan"));
        assert_eq!(qualify("a.b", "lan").as_deref(), Some("a.b.lan"));
        assert_eq!(
            qualify("a.example.com.", "lan").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            qualify("_sip._udp", "lan").as_deref(),
            Some("_sip._udp.lan")
        );
        assert_eq!(qualify("bad name", "lan"), None);
        assert_eq!(qualify(".", "lan"), None);
        assert_eq!(qualify(&"x".repeat(64), "lan"), None);
    }
}
