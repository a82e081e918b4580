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
    /// write at once, fdatasync at most every `max_delay_ms`; replies still wait for the
    /// fdatasync that covers them, so many batches share one.
    Batch { max_delay_ms: u32 },
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
    /// A bound lease is stored with this fraction of its lease time as headroom, so renewals
    /// that stay inside it are not written (0 writes every renewal). 0..=1, default 0.5.
    pub renew_write_fraction: f64,
    /// How long an OFFER holds its address for the client (seconds).
    pub offer_hold: u32,
    /// How long a declined address is put aside (seconds).
    pub decline_hold: u32,
    pub dns: DnsConfig,
    pub subnets: Vec<Subnet>,
    pub reservations: Vec<Reservation>,
    /// Server-wide DHCP settings: ping check, warnings, client classes.
    pub dhcp: DhcpGlobals,
    /// Outbound RFC 2136 updates to DNS servers elsewhere (`[[ddns_zone]]`).
    pub ddns: DdnsConfig,
}

/// Server-wide DHCP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpGlobals {
    /// Before offering an address that never had a lease, send it an ICMP echo; an answered
    /// address is put aside for `decline_hold` and the next one tried.
    pub ping_check: bool,
    /// How long to wait for the echo reply.
    pub ping_timeout: Duration,
    /// Seconds between two "pool exhausted" warnings of one subnet.
    pub exhausted_warn_interval: u32,
    /// `[[class]]` in file order: the first class a client matches applies.
    pub classes: Vec<ClientClass>,
}

impl Default for DhcpGlobals {
    fn default() -> Self {
        DhcpGlobals {
            ping_check: false,
            ping_timeout: Duration::from_millis(300),
            exhausted_warn_interval: 60,
            classes: Vec::new(),
        }
    }
}

/// One option from `[[subnet.option]]`, `[[host.option]]` or `[[class.option]]`: its code and
/// its payload, already encoded from the typed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionSpec {
    pub code: u8,
    pub data: Vec<u8>,
}

/// A classless static route (options 121 and 249).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// A client class: who matches it (every match key given must match) and what it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientClass {
    pub name: String,
    /// Option 60 starts with these bytes.
    pub vendor_class: Option<Vec<u8>>,
    /// Option 77 contains these bytes.
    pub user_class: Option<Vec<u8>>,
    /// chaddr starts with these bytes.
    pub mac_prefix: Option<Vec<u8>>,
    /// Only in this subnet (index into `Config::subnets`); set too when a pool is given.
    pub subnet: Option<usize>,
    /// Allocate members from this range instead of the subnet's pool; others never get it.
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
    pub lease_time: Option<u32>,
    pub options: Vec<OptionSpec>,
}

impl ClientClass {
    /// Whether a client with this option 60, option 77 and chaddr is a member (subnet aside).
    pub fn matches(&self, vendor: Option<&[u8]>, user: Option<&[u8]>, chaddr: &[u8]) -> bool {
        let vendor_ok = self
            .vendor_class
            .as_ref()
            .is_none_or(|p| vendor.is_some_and(|v| v.starts_with(p)));
        let user_ok = self.user_class.as_ref().is_none_or(|p| {
            user.is_some_and(|u| !p.is_empty() && u.windows(p.len()).any(|w| w == p.as_slice()))
        });
        let mac_ok = self
            .mac_prefix
            .as_ref()
            .is_none_or(|p| chaddr.starts_with(p));
        vendor_ok && user_ok && mac_ok
    }
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
    pub key: Option<crate::dns::tsig::TsigKey>,
    /// TTL of the records we add (never more than the lease's remaining time).
    pub ttl: u32,
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
    /// `[[tsig_key]]`: keys that may send RFC 2136 UPDATEs, each with its policy.
    pub tsig_keys: Vec<TsigKeyConfig>,
    /// Where dynamic records (UPDATE, DynDNS2) are journaled; `<lease_file>.dns` by default.
    pub update_journal: Option<PathBuf>,
    /// `[http]`: the DynDNS2 listener.
    pub http: HttpConfig,
    /// `[[dyndns_user]]`: who may update which names over DynDNS2.
    pub dyndns_users: Vec<DynDnsUser>,
}

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

/// One `allow` entry of a TSIG key: names and the record types it may change there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateRule {
    pub names: NameMatch,
    pub types: Vec<hickory_server::proto::rr::RecordType>,
}

/// A TSIG key and what it may change (`[[tsig_key]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsigKeyConfig {
    /// The key name as clients send it, lowercase, without trailing dot.
    pub name: String,
    pub algorithm: hickory_server::proto::rr::rdata::tsig::TsigAlgorithm,
    pub secret: Vec<u8>,
    /// Allowed clock difference, seconds.
    pub fudge: u16,
    pub allow: Vec<UpdateRule>,
    /// May change names that the config or a lease holds.
    pub may_override: bool,
}

/// The DynDNS2 HTTP listener (`[http]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Empty: no HTTP server.
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain and private key: serve HTTPS instead of HTTP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Requests per user per minute before `abuse`.
    pub rate_limit: u32,
    /// TTL of the records DynDNS2 writes.
    pub ttl: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Vec::new(),
            tls_cert: None,
            tls_key: None,
            rate_limit: 10,
            ttl: 60,
        }
    }
}

/// A DynDNS2 account (`[[dyndns_user]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynDnsUser {
    pub name: String,
    /// An Argon2 PHC string (`leasedns hash-password`).
    pub password_hash: String,
    /// The names it may update, lowercase, without trailing dot.
    pub hosts: Vec<String>,
    pub may_override: bool,
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
            tsig_keys: Vec::new(),
            update_journal: None,
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
    /// Everything else a subnet may say (issue 3 keys); all empty by default.
    pub settings: SubnetSettings,
}

/// The optional per-subnet DHCP settings.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SubnetSettings {
    /// `dns_servers` was absent: offer our own address when the DNS server listens on it (port
    /// 53, or 0.0.0.0:53).
    pub dns_servers_default: bool,
    /// Answer a DISCOVER carrying option 80 with an ACK at once (RFC 4039).
    pub rapid_commit: bool,
    /// Option 119: domain names, lowercase, without trailing dot.
    pub domain_search: Vec<String>,
    /// Option 42.
    pub ntp_servers: Vec<Ipv4Addr>,
    /// Option 26.
    pub mtu: Option<u16>,
    /// Options 121 and 249.
    pub routes: Vec<Route>,
    /// Arbitrary options, `[[subnet.option]]`.
    pub options: Vec<OptionSpec>,
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
    /// Lease time for this host (seconds), instead of the subnet's or class's.
    pub lease_time: Option<u32>,
    /// Options for this host only; they override class and subnet options of the same code.
    pub options: Vec<OptionSpec>,
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
        pub batch_max_delay_ms: Option<Spanned<u32>>,
        pub renew_write_fraction: Option<Spanned<f64>>,
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
        pub ping_check: Option<bool>,
        pub ping_timeout_ms: Option<Spanned<u64>>,
        pub exhausted_warn_interval: Option<u32>,
        #[serde(default)]
        pub class: Vec<Spanned<Class>>,
        #[serde(default)]
        pub tsig_key: Vec<Spanned<TsigKey>>,
        #[serde(default)]
        pub http: Option<Http>,
        #[serde(default)]
        pub dyndns_user: Vec<Spanned<DynDnsUser>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct TsigKey {
        pub name: Spanned<String>,
        pub algorithm: Spanned<String>,
        pub secret: Spanned<String>,
        pub fudge: Option<u16>,
        #[serde(default)]
        pub allow: Vec<Spanned<Allow>>,
        #[serde(default)]
        pub may_override: bool,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Allow {
        pub name: Option<Spanned<String>>,
        pub prefix: Option<Spanned<String>>,
        #[serde(default)]
        pub subdomains: bool,
        pub types: Spanned<Vec<String>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Http {
        #[serde(default)]
        pub listen: Vec<Spanned<String>>,
        pub tls_cert: Option<Spanned<String>>,
        pub tls_key: Option<Spanned<String>>,
        pub rate_limit: Option<Spanned<u32>>,
        pub ttl: Option<u32>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct DynDnsUser {
        pub name: Spanned<String>,
        pub password_hash: Spanned<String>,
        #[serde(default)]
        pub hosts: Vec<Spanned<String>>,
        #[serde(default)]
        pub may_override: bool,
    }

    /// `[[subnet.option]]`, `[[host.option]]`, `[[class.option]]`.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Opt {
        pub code: Spanned<i64>,
        #[serde(rename = "type")]
        pub otype: Spanned<String>,
        pub value: Spanned<toml::Value>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Route {
        pub network: Spanned<String>,
        pub gateway: Spanned<std::net::Ipv4Addr>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Class {
        pub name: Spanned<String>,
        pub vendor_class: Option<Spanned<String>>,
        pub user_class: Option<Spanned<String>>,
        pub mac_prefix: Option<Spanned<String>>,
        pub subnet: Option<Spanned<String>>,
        pub pool_start: Option<Spanned<std::net::Ipv4Addr>>,
        pub pool_end: Option<Spanned<std::net::Ipv4Addr>>,
        pub lease_time: Option<Spanned<u32>>,
        #[serde(default)]
        pub option: Vec<Spanned<Opt>>,
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
        pub update_journal: Option<Spanned<String>>,
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
        pub dns_servers: Option<Vec<std::net::Ipv4Addr>>,
        pub lease_time: Option<Spanned<u32>>,
        pub interface: Option<String>,
        pub authoritative: Option<bool>,
        pub rapid_commit: Option<bool>,
        #[serde(default)]
        pub domain_search: Vec<Spanned<String>>,
        #[serde(default)]
        pub ntp_servers: Vec<std::net::Ipv4Addr>,
        pub mtu: Option<Spanned<u16>>,
        #[serde(default)]
        pub routes: Vec<Spanned<Route>>,
        #[serde(default)]
        pub option: Vec<Spanned<Opt>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Host {
        pub mac: Option<Spanned<String>>,
        pub client_id: Option<Spanned<String>>,
        pub ip: Spanned<std::net::Ipv4Addr>,
        pub name: Option<Spanned<String>>,
        pub lease_time: Option<Spanned<u32>>,
        #[serde(default)]
        pub option: Vec<Spanned<Opt>>,
    }
}

/// Semantic checks: raw types to `Config`, every error naming its line and field.
mod validate {
    use super::*;
    use hickory_server::proto::rr::rdata::tsig::TsigAlgorithm;
    use std::net::IpAddr;
    use std::ops::Range;
    use std::path::Path;
    use toml::Spanned;

    pub(super) struct Ctx<'a> {
        text: &'a str,
        path: &'a Path,
    }

    impl Ctx<'_> {
        pub(super) fn err(
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

    pub fn root(mut raw: raw::Root, text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cx = Ctx { text, path };
        let domain = domain(&cx, &raw.domain)?;
        let durability = durability(&cx, &raw)?;
        let renew_write_fraction = match &raw.renew_write_fraction {
            None => 0.5,
            Some(f) if (0.0..=1.0).contains(f.get_ref()) => *f.get_ref(),
            Some(f) => {
                return Err(cx.err(f.span(), "renew_write_fraction", "must be between 0 and 1"));
            }
        };
        if raw.lease_file.get_ref().trim().is_empty() {
            return Err(cx.err(raw.lease_file.span(), "lease_file", "must not be empty"));
        }
        let mut dns = dns(&cx, raw.dns.take().unwrap_or_default(), &domain)?;
        dns.tsig_keys = raw
            .tsig_key
            .iter()
            .enumerate()
            .map(|(i, k)| super::updates::tsig_key(&cx, i, k, &domain))
            .collect::<Result<_, _>>()?;
        dns.http = super::updates::http(&cx, raw.http.take().unwrap_or_default())?;
        dns.dyndns_users = super::updates::users(&cx, &raw.dyndns_user, &domain)?;
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
        let dhcp = globals(&cx, &raw, &subnets)?;
        Ok(Config {
            path: path.to_path_buf(),
            interfaces: raw.interfaces,
            domain,
            dhcp_port: raw.dhcp_port.unwrap_or(67),
            client_port: raw.client_port.unwrap_or(68),
            lease_file: PathBuf::from(raw.lease_file.into_inner()),
            durability,
            renew_write_fraction,
            offer_hold: raw.offer_hold.unwrap_or(60),
            decline_hold: raw.decline_hold.unwrap_or(600),
            dns,
            subnets,
            reservations,
            ddns,
            dhcp,
        })
    }

    fn globals(cx: &Ctx, raw: &raw::Root, subnets: &[Subnet]) -> Result<DhcpGlobals, ConfigError> {
        let defaults = DhcpGlobals::default();
        let ping_timeout = millis_in(
            cx,
            raw.ping_timeout_ms.as_ref(),
            10..=5000,
            "ping_timeout_ms",
            defaults.ping_timeout,
        )?;
        let classes = raw
            .class
            .iter()
            .enumerate()
            .map(|(i, c)| class(cx, i, c, subnets))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DhcpGlobals {
            ping_check: raw.ping_check.unwrap_or(defaults.ping_check),
            ping_timeout,
            exhausted_warn_interval: raw
                .exhausted_warn_interval
                .unwrap_or(defaults.exhausted_warn_interval),
            classes,
        })
    }

    /// One `[[class]]`: at least one match key, an optional subnet and pool inside it.
    fn class(
        cx: &Ctx,
        i: usize,
        raw: &Spanned<raw::Class>,
        subnets: &[Subnet],
    ) -> Result<ClientClass, ConfigError> {
        let c = raw.get_ref();
        let field = |f: &str| format!("class[{i}].{f}");
        let name = c.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(cx.err(c.name.span(), field("name"), "must not be empty"));
        }
        let mac_prefix = match &c.mac_prefix {
            Some(m) => Some(
                hex_bytes(m.get_ref())
                    .filter(|b| (1..=16).contains(&b.len()))
                    .ok_or_else(|| {
                        let msg = format!("`{}` is not a MAC prefix like 52:54:00", m.get_ref());
                        cx.err(m.span(), field("mac_prefix"), msg)
                    })?,
            ),
            None => None,
        };
        let bytes =
            |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().as_bytes().to_vec());
        let (vendor_class, user_class) = (bytes(&c.vendor_class), bytes(&c.user_class));
        if vendor_class.is_none() && user_class.is_none() && mac_prefix.is_none() {
            let msg = "needs `vendor_class`, `user_class` or `mac_prefix`";
            return Err(cx.err(raw.span(), format!("class[{i}]"), msg));
        }
        let mut subnet = match &c.subnet {
            Some(n) => Some(
                cidr(n.get_ref())
                    .and_then(|(a, p)| {
                        subnets
                            .iter()
                            .position(|s| s.network == a && s.prefix_len == p)
                    })
                    .ok_or_else(|| {
                        let msg = format!("`{}` is not a configured subnet", n.get_ref());
                        cx.err(n.span(), field("subnet"), msg)
                    })?,
            ),
            None => None,
        };
        let pool = match (&c.pool_start, &c.pool_end) {
            (None, None) => None,
            (Some(a), Some(b)) => {
                let idx = class_pool(cx, i, (a, b), subnet, subnets)?;
                subnet = Some(idx);
                Some((*a.get_ref(), *b.get_ref()))
            }
            (Some(a), None) => return Err(cx.err(a.span(), field("pool_end"), "is missing")),
            (None, Some(b)) => return Err(cx.err(b.span(), field("pool_start"), "is missing")),
        };
        Ok(ClientClass {
            name,
            vendor_class,
            user_class,
            mac_prefix,
            subnet,
            pool,
            lease_time: lease_time(cx, c.lease_time.as_ref(), &field("lease_time"))?,
            options: options(cx, &c.option, &format!("class[{i}]"))?,
        })
    }

    /// A class pool: both ends host addresses of one subnet (the class's, if it names one), in
    /// order. Returns that subnet's index.
    fn class_pool(
        cx: &Ctx,
        i: usize,
        (a, b): (&Spanned<Ipv4Addr>, &Spanned<Ipv4Addr>),
        subnet: Option<usize>,
        subnets: &[Subnet],
    ) -> Result<usize, ConfigError> {
        let field = |f: &str| format!("class[{i}].{f}");
        let host_of =
            |s: &Subnet, ip: Ipv4Addr| s.contains(ip) && ip != s.network && ip != s.broadcast();
        let start = *a.get_ref();
        let idx = match subnet {
            Some(idx) => idx,
            None => subnets
                .iter()
                .position(|s| host_of(s, start))
                .ok_or_else(|| {
                    cx.err(
                        a.span(),
                        field("pool_start"),
                        format!("{start} is in no configured subnet"),
                    )
                })?,
        };
        let Some(s) = subnets.get(idx) else {
            return Err(cx.err(a.span(), field("pool_start"), "no such subnet"));
        };
        for (name, ip) in [("pool_start", a), ("pool_end", b)] {
            let addr = *ip.get_ref();
            if !host_of(s, addr) {
                let msg = format!(
                    "{addr} is not a host address of {}/{}",
                    s.network, s.prefix_len
                );
                return Err(cx.err(ip.span(), field(name), msg));
            }
        }
        if start > *b.get_ref() {
            return Err(cx.err(b.span(), field("pool_end"), "comes before pool_start"));
        }
        Ok(idx)
    }

    /// An optional lease time of at least 10 seconds.
    fn lease_time(
        cx: &Ctx,
        raw: Option<&Spanned<u32>>,
        field: &str,
    ) -> Result<Option<u32>, ConfigError> {
        match raw {
            Some(t) if *t.get_ref() < 10 => {
                Err(cx.err(t.span(), field, "must be at least 10 seconds"))
            }
            other => Ok(other.map(|t| *t.get_ref())),
        }
    }

    /// Option codes the server sets itself; configuring them is an error.
    const SERVER_OWNED: [u8; 12] = [0, 50, 51, 52, 53, 54, 55, 57, 61, 81, 82, 255];

    /// `[[<prefix>.option]]` entries, each encoded from its type and value.
    fn options(
        cx: &Ctx,
        raw: &[Spanned<raw::Opt>],
        prefix: &str,
    ) -> Result<Vec<OptionSpec>, ConfigError> {
        let mut out = Vec::with_capacity(raw.len());
        for (j, o) in raw.iter().enumerate() {
            let o = o.get_ref();
            let field = |f: &str| format!("{prefix}.option[{j}].{f}");
            let code = u8::try_from(*o.code.get_ref())
                .ok()
                .filter(|c| !SERVER_OWNED.contains(c))
                .ok_or_else(|| {
                    let msg = format!(
                        "{} is not an option code we may send (1 to 254, not one of {SERVER_OWNED:?})",
                        o.code.get_ref()
                    );
                    cx.err(o.code.span(), field("code"), msg)
                })?;
            let otype = o.otype.get_ref().to_ascii_lowercase();
            if !OPTION_TYPES.contains(&otype.as_str()) {
                let msg = format!(
                    "`{}` is not one of {}",
                    o.otype.get_ref(),
                    OPTION_TYPES.join(", ")
                );
                return Err(cx.err(o.otype.span(), field("type"), msg));
            }
            let data = option_value(&otype, o.value.get_ref()).map_err(|what| {
                let msg = format!("`{}` is not {what}", o.value.get_ref());
                cx.err(o.value.span(), field("value"), msg)
            })?;
            out.retain(|x: &OptionSpec| x.code != code);
            out.push(OptionSpec { code, data });
        }
        Ok(out)
    }

    const OPTION_TYPES: [&str; 8] = ["string", "ip", "ips", "u8", "u16", "u32", "bool", "hex"];

    /// Encode a typed option value; Err names what was expected.
    fn option_value(otype: &str, v: &toml::Value) -> Result<Vec<u8>, &'static str> {
        use toml::Value as V;
        let ip = |v: &V| {
            v.as_str()
                .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
                .map(|a| a.octets().to_vec())
        };
        let int = |v: &V| v.as_integer();
        let got = match (otype, v) {
            ("string", V::String(s)) => Some(s.as_bytes().to_vec()),
            ("ip", _) => ip(v),
            ("ips", V::Array(a)) if !a.is_empty() => a
                .iter()
                .map(ip)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.concat()),
            ("ips", V::String(_)) => ip(v),
            ("u8", _) => int(v).and_then(|n| u8::try_from(n).ok()).map(|n| vec![n]),
            ("u16", _) => int(v)
                .and_then(|n| u16::try_from(n).ok())
                .map(|n| n.to_be_bytes().to_vec()),
            ("u32", _) => int(v)
                .and_then(|n| u32::try_from(n).ok())
                .map(|n| n.to_be_bytes().to_vec()),
            ("bool", V::Boolean(b)) => Some(vec![u8::from(*b)]),
            ("hex", V::String(s)) => hex_bytes(s),
            _ => None,
        };
        got.ok_or(match otype {
            "string" => "a string",
            "ip" => "an IPv4 address",
            "ips" => "a list of IPv4 addresses",
            "u8" => "an integer from 0 to 255",
            "u16" => "an integer from 0 to 65535",
            "u32" => "an integer from 0 to 4294967295",
            "bool" => "true or false",
            _ => "hex bytes like 01:02:ff",
        })
    }

    /// The issue-3 subnet keys: search domains, NTP, MTU, routes, options.
    fn settings(
        cx: &Ctx,
        i: usize,
        s: &raw::Subnet,
        sub: &Subnet,
    ) -> Result<SubnetSettings, ConfigError> {
        let field = |f: &str| format!("subnet[{i}].{f}");
        let mut domain_search = Vec::with_capacity(s.domain_search.len());
        for (j, d) in s.domain_search.iter().enumerate() {
            let name = d
                .get_ref()
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            if name.is_empty() || name.len() > 253 || !name.split('.').all(is_label) {
                let msg = format!("`{}` is not a valid domain name", d.get_ref());
                return Err(cx.err(d.span(), field(&format!("domain_search[{j}]")), msg));
            }
            domain_search.push(name);
        }
        if let Some(m) = s.mtu.as_ref().filter(|m| *m.get_ref() < 68) {
            return Err(cx.err(m.span(), field("mtu"), "must be at least 68"));
        }
        let mut routes = Vec::with_capacity(s.routes.len());
        for (j, r) in s.routes.iter().enumerate() {
            routes.push(route(
                cx,
                r.get_ref(),
                sub,
                &field(&format!("routes[{j}]")),
            )?);
        }
        Ok(SubnetSettings {
            dns_servers_default: s.dns_servers.is_none(),
            rapid_commit: s.rapid_commit.unwrap_or(false),
            domain_search,
            ntp_servers: s.ntp_servers.clone(),
            mtu: s.mtu.as_ref().map(|m| *m.get_ref()),
            routes,
            options: options(cx, &s.option, &format!("subnet[{i}]"))?,
        })
    }

    /// A route: a network (prefix 0 to 32, no host bits) and a gateway inside the subnet.
    fn route(cx: &Ctx, r: &raw::Route, sub: &Subnet, field: &str) -> Result<Route, ConfigError> {
        let net = r.network.get_ref();
        let parsed = net.split_once('/').and_then(|(a, p)| {
            let p: u8 = p.parse().ok().filter(|p| *p <= 32)?;
            let a: Ipv4Addr = a.parse().ok()?;
            (u32::from(a) & !prefix_mask(p) == 0).then_some((a, p))
        });
        let Some((network, prefix_len)) = parsed else {
            let msg = format!("`{net}` is not a network like 10.9.0.0/16 (no host bits set)");
            return Err(cx.err(r.network.span(), format!("{field}.network"), msg));
        };
        let gateway = *r.gateway.get_ref();
        if !sub.contains(gateway) {
            let msg = format!("{gateway} is not in {}/{}", sub.network, sub.prefix_len);
            return Err(cx.err(r.gateway.span(), format!("{field}.gateway"), msg));
        }
        Ok(Route {
            network,
            prefix_len,
            gateway,
        })
    }

    fn ddns(
        cx: &Ctx,
        raw: &[Spanned<raw::DdnsZone>],
        queue: Option<&Spanned<String>>,
        lease_file: &Spanned<String>,
    ) -> Result<DdnsConfig, ConfigError> {
        let queue_file = optional_path(cx, queue, "ddns_queue")?
            .unwrap_or_else(|| PathBuf::from(format!("{}.ddns", lease_file.get_ref())));
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
        let ttl = at_least_one(cx, z.ttl.as_ref(), &field("ttl"), 300)?;
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
    ) -> Result<Option<crate::dns::tsig::TsigKey>, ConfigError> {
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
        let algorithm = match &z.key_algorithm {
            None => TsigAlgorithm::HmacSha256,
            Some(a) => tsig_algorithm(cx, a, &field("key_algorithm"))?,
        };
        let secret = tsig_secret(cx, secret, &field("key_secret"))?;
        crate::dns::tsig::TsigKey::new(&key_name, algorithm, secret)
            .map(Some)
            .ok_or_else(|| cx.err(name.span(), field("key_name"), "is not a DNS name"))
    }

    /// `durability` and, for "batch", `batch_max_delay_ms` (default 10, 1 to 1000).
    fn durability(cx: &Ctx, raw: &raw::Root) -> Result<Durability, ConfigError> {
        let mode = raw
            .durability
            .as_ref()
            .map(|d| (d.get_ref().as_str(), d.span()));
        let delay = raw.batch_max_delay_ms.as_ref();
        if let (Some(d), false) = (delay, matches!(mode, Some(("batch", _)))) {
            return Err(cx.err(
                d.span(),
                "batch_max_delay_ms",
                "only applies to durability = \"batch\"",
            ));
        }
        match mode {
            None | Some(("fsync", _)) => Ok(Durability::Fsync),
            Some(("none", _)) => Ok(Durability::None),
            Some(("batch", _)) => match delay {
                None => Ok(Durability::Batch { max_delay_ms: 10 }),
                Some(d) if (1..=1000).contains(d.get_ref()) => Ok(Durability::Batch {
                    max_delay_ms: *d.get_ref(),
                }),
                Some(d) => Err(cx.err(d.span(), "batch_max_delay_ms", "must be 1 to 1000")),
            },
            Some((other, span)) => Err(cx.err(
                span,
                "durability",
                format!("`{other}` is not one of \"fsync\", \"batch\", \"none\""),
            )),
        }
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
        let defaults = DnsConfig::default();
        let upstream_timeout = millis_in(
            cx,
            raw.upstream_timeout_ms.as_ref(),
            50..=30_000,
            "dns.upstream_timeout_ms",
            defaults.upstream_timeout,
        )?;
        let hosts_file = optional_path(cx, raw.hosts_file.as_ref(), "dns.hosts_file")?;
        let records = raw
            .record
            .iter()
            .enumerate()
            .map(|(i, r)| record(cx, i, r.get_ref(), domain))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DnsConfig {
            listen: socket_addrs(cx, &raw.listen, "dns.listen", 53)?,
            ttl: raw.ttl.unwrap_or(defaults.ttl),
            upstreams: socket_addrs(cx, &raw.upstreams, "dns.upstreams", 53)?,
            upstream_timeout,
            cache_size: raw.cache_size.unwrap_or(defaults.cache_size),
            records,
            hosts_file,
            expand_bare_names: raw.expand_bare_names.unwrap_or(false),
            update_journal: optional_path(cx, raw.update_journal.as_ref(), "dns.update_journal")?,
            ..DnsConfig::default()
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
                        format!("`{}` is not an address or address:port", a.get_ref()),
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

    /// A TSIG algorithm name (`dns::tsig::algorithm`).
    pub(super) fn tsig_algorithm(
        cx: &Ctx,
        raw: &Spanned<String>,
        field: &str,
    ) -> Result<TsigAlgorithm, ConfigError> {
        crate::dns::tsig::algorithm(raw.get_ref()).ok_or_else(|| {
            let msg = format!(
                "`{}` is not one of hmac-sha1, hmac-sha256, hmac-sha384, hmac-sha512",
                raw.get_ref()
            );
            cx.err(raw.span(), field, msg)
        })
    }

    /// A TSIG secret: non-empty base64, as in a BIND key file.
    pub(super) fn tsig_secret(
        cx: &Ctx,
        raw: &Spanned<String>,
        field: &str,
    ) -> Result<Vec<u8>, ConfigError> {
        data_encoding::BASE64
            .decode(raw.get_ref().trim().as_bytes())
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| cx.err(raw.span(), field, "is not base64 (as in a BIND key file)"))
    }

    /// "10.0.0.1", "10.0.0.1:5353", "::1", "[::1]:53".
    pub(super) fn socket_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
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
            dns_servers: s.dns_servers.clone().unwrap_or_default(),
            lease_time: s.lease_time.as_ref().map_or(3600, |t| *t.get_ref()),
            interface: s.interface.clone(),
            authoritative: s.authoritative.unwrap_or(true),
            settings: SubnetSettings::default(),
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
        sub.settings = settings(cx, i, s, &sub)?;
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
                Some(m) => Some(HwAddr::new(
                    1,
                    &hex_bytes(m.get_ref())
                        .filter(|b| b.len() == 6)
                        .ok_or_else(|| {
                            cx.err(
                                m.span(),
                                field("mac"),
                                format!("`{}` is not a MAC like 52:54:00:12:34:56", m.get_ref()),
                            )
                        })?,
                )),
                None => None,
            };
            let client_id = match &hr.client_id {
                Some(c) => Some(ClientId::from(
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
            let name = host_name(cx, i, hr, &out)?;
            out.push(Reservation {
                hwaddr,
                client_id,
                ip,
                name,
                lease_time: lease_time(cx, hr.lease_time.as_ref(), &field("lease_time"))?,
                options: options(cx, &hr.option, &format!("host[{i}]"))?,
            });
        }
        Ok(out)
    }

    /// A host's `name`: an RFC 1123 label, lowercase, not used by an earlier host.
    fn host_name(
        cx: &Ctx,
        i: usize,
        hr: &raw::Host,
        earlier: &[Reservation],
    ) -> Result<Option<String>, ConfigError> {
        let Some(n) = &hr.name else {
            return Ok(None);
        };
        let field = format!("host[{i}].name");
        let l = n.get_ref().to_ascii_lowercase();
        if !is_label(&l) {
            let msg = format!(
                "`{}` is not a valid host name (RFC 1123 label)",
                n.get_ref()
            );
            return Err(cx.err(n.span(), field, msg));
        }
        if let Some(j) = earlier.iter().position(|r| r.name.as_deref() == Some(&l)) {
            return Err(cx.err(
                n.span(),
                field,
                format!("`{l}` is already used by host[{j}]"),
            ));
        }
        Ok(Some(l))
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

/// Semantic checks of `[[tsig_key]]`, `[http]` and `[[dyndns_user]]`.
mod updates {
    use super::validate::{Ctx, at_least_one, socket_addrs, tsig_algorithm, tsig_secret};
    use super::*;
    use hickory_server::proto::rr::RecordType;
    use toml::Spanned;

    pub(super) fn tsig_key(
        cx: &Ctx,
        i: usize,
        raw: &Spanned<raw::TsigKey>,
        domain: &str,
    ) -> Result<TsigKeyConfig, ConfigError> {
        let k = raw.get_ref();
        let field = |f: &str| format!("tsig_key[{i}].{f}");
        let name = k.name.get_ref().trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() || qualify(&format!("{name}."), domain).is_none() {
            return Err(cx.err(k.name.span(), field("name"), "not a valid key name"));
        }
        let algorithm = tsig_algorithm(cx, &k.algorithm, &field("algorithm"))?;
        let secret = tsig_secret(cx, &k.secret, &field("secret"))?;
        let allow = k
            .allow
            .iter()
            .enumerate()
            .map(|(j, a)| rule(cx, &format!("tsig_key[{i}].allow[{j}]"), a, domain))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TsigKeyConfig {
            name,
            algorithm,
            secret,
            fudge: k.fudge.unwrap_or(300),
            allow,
            may_override: k.may_override,
        })
    }

    fn rule(
        cx: &Ctx,
        at: &str,
        raw: &Spanned<raw::Allow>,
        domain: &str,
    ) -> Result<UpdateRule, ConfigError> {
        let a = raw.get_ref();
        let names = match (&a.name, &a.prefix) {
            (Some(n), None) => {
                let name = qualify(n.get_ref(), domain).ok_or_else(|| {
                    cx.err(n.span(), format!("{at}.name"), "not a valid DNS name")
                })?;
                if a.subdomains {
                    NameMatch::Subtree(name)
                } else {
                    NameMatch::Exact(name)
                }
            }
            (None, Some(p)) if !a.subdomains => {
                let prefix = p.get_ref().trim_end_matches('.').to_ascii_lowercase();
                // A prefix is a name of its own labels: check it as an absolute name.
                if prefix.is_empty() || qualify(&format!("{prefix}."), domain).is_none() {
                    return Err(cx.err(p.span(), format!("{at}.prefix"), "not valid DNS labels"));
                }
                NameMatch::Prefix(prefix)
            }
            _ => {
                return Err(cx.err(
                    raw.span(),
                    at.to_string(),
                    "needs exactly one of `name` or `prefix` (`subdomains` goes with `name`)",
                ));
            }
        };
        let mut types = Vec::new();
        for t in a.types.get_ref() {
            let upper = t.to_ascii_uppercase();
            if upper == "ANY" || upper == "*" {
                types.extend(crate::dns::dynamic::SUPPORTED_TYPES);
                continue;
            }
            match upper.parse::<RecordType>() {
                Ok(rt) if crate::dns::dynamic::SUPPORTED_TYPES.contains(&rt) => types.push(rt),
                _ => {
                    return Err(cx.err(
                        a.types.span(),
                        format!("{at}.types"),
                        format!("`{t}` is not one of A, AAAA, CNAME, MX, TXT, SRV, PTR, ANY"),
                    ));
                }
            }
        }
        if types.is_empty() {
            return Err(cx.err(a.types.span(), format!("{at}.types"), "must not be empty"));
        }
        types.dedup();
        Ok(UpdateRule { names, types })
    }

    pub(super) fn http(cx: &Ctx, raw: raw::Http) -> Result<HttpConfig, ConfigError> {
        let defaults = HttpConfig::default();
        let listen = socket_addrs(cx, &raw.listen, "http.listen", 8053)?;
        let path = |p: &Option<Spanned<String>>| p.as_ref().map(|p| PathBuf::from(p.get_ref()));
        match (&raw.tls_cert, &raw.tls_key) {
            (Some(_), Some(_)) | (None, None) => {}
            (Some(s), None) | (None, Some(s)) => {
                return Err(cx.err(
                    s.span(),
                    "http.tls_cert",
                    "tls_cert and tls_key go together",
                ));
            }
        }
        let rate_limit = at_least_one(
            cx,
            raw.rate_limit.as_ref(),
            "http.rate_limit",
            defaults.rate_limit,
        )?;
        Ok(HttpConfig {
            listen,
            tls_cert: path(&raw.tls_cert),
            tls_key: path(&raw.tls_key),
            rate_limit,
            ttl: raw.ttl.unwrap_or(defaults.ttl),
        })
    }

    pub(super) fn users(
        cx: &Ctx,
        raw: &[Spanned<raw::DynDnsUser>],
        domain: &str,
    ) -> Result<Vec<DynDnsUser>, ConfigError> {
        let mut out: Vec<DynDnsUser> = Vec::new();
        for (i, u) in raw.iter().enumerate() {
            let u = u.get_ref();
            let field = |f: &str| format!("dyndns_user[{i}].{f}");
            let name = u.name.get_ref().clone();
            if name.is_empty() || name.contains(':') || out.iter().any(|o| o.name == name) {
                return Err(cx.err(
                    u.name.span(),
                    field("name"),
                    "must be non-empty, unique and without ':'",
                ));
            }
            if let Err(e) = crate::http::auth::check_hash(u.password_hash.get_ref()) {
                return Err(cx.err(
                    u.password_hash.span(),
                    field("password_hash"),
                    format!("{e} (make one with `leasedns hash-password`)"),
                ));
            }
            let hosts = u
                .hosts
                .iter()
                .map(|h| {
                    qualify(h.get_ref(), domain).ok_or_else(|| {
                        cx.err(
                            h.span(),
                            field("hosts"),
                            format!("`{}` is not a valid DNS name", h.get_ref()),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.push(DynDnsUser {
                name,
                password_hash: u.password_hash.get_ref().clone(),
                hosts,
                may_override: u.may_override,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::rr::rdata::tsig::TsigAlgorithm;
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

    /// The line of the error for an unknown `key` in `text`, checking that it says so.
    fn unknown_key(text: &str, key: &str) -> usize {
        let (line, field, msg) = invalid(text);
        assert_eq!(field, key);
        assert!(msg.contains("unknown field"), "{msg}");
        line
    }

    /// `base` with the first `from` replaced by `to` (which must change it), and its error.
    fn broken(base: &str, from: &str, to: &str) -> (String, usize, String, String) {
        let text = base.replacen(from, to, 1);
        assert_ne!(text, base, "{from} not found");
        let (line, field, msg) = invalid(&text);
        (text, line, field, msg)
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
    fn durability_modes_and_renewal_headroom() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.renew_write_fraction, 0.5);
        let with = |keys: &str| GOOD.replacen("[dns]", &format!("{keys}\n[dns]"), 1);
        let c = parse(&with("durability = \"batch\"")).expect("valid");
        assert_eq!(c.durability, Durability::Batch { max_delay_ms: 10 });
        let c = parse(&with(
            "durability = \"batch\"\nbatch_max_delay_ms = 50\nrenew_write_fraction = 0",
        ))
        .expect("valid");
        assert_eq!(c.durability, Durability::Batch { max_delay_ms: 50 });
        assert_eq!(c.renew_write_fraction, 0.0);
        let c = parse(&with("durability = \"none\"")).expect("valid");
        assert_eq!(c.durability, Durability::None);

        let (line, field, msg) = invalid(&with("batch_max_delay_ms = 5"));
        assert_eq!((line, field.as_str()), (4, "batch_max_delay_ms"), "{msg}");
        let (_, field, _) = invalid(&with("durability = \"batch\"\nbatch_max_delay_ms = 0"));
        assert_eq!(field, "batch_max_delay_ms");
        let (_, field, msg) = invalid(&with("renew_write_fraction = 1.5"));
        assert_eq!(field, "renew_write_fraction", "{msg}");
        let (_, field, msg) = invalid(&with("durability = \"sometimes\""));
        assert_eq!(field, "durability");
        assert!(msg.contains("\"batch\""), "{msg}");
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
        let line = unknown_key(
            &GOOD.replace("lease_time = 600", "lease_tme = 600"),
            "lease_tme",
        );
        assert_eq!(line, 12);
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
            let (text, line, field, msg) = broken(&base, from, to);
            assert_eq!(field, want_field, "{msg}");
            assert_eq!(
                line,
                line_of_text(&text, to.split('\n').next().unwrap()),
                "{field}: {msg}"
            );
        }
        let (line, field, _) = invalid(&with_dns("upstream_timeout_ms = 5"));
        assert_eq!((line, field.as_str()), (5, "dns.upstream_timeout_ms"));
        unknown_key(&with_dns("hosts = \"/etc/hosts\""), "hosts");
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
            (key.name.to_string().as_str(), key.algorithm.clone()),
            ("rev.key.", TsigAlgorithm::HmacSha512)
        );
        assert_eq!(key.fudge, 300);
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
            let (_, _, field, msg) = broken(&base, from, to);
            assert_eq!(field, want_field, "{msg}");
        }
        unknown_key(&format!("{base}server = \"x\"\n"), "server");
    }

    /// The issue-3 keys, as the contract writes them.
    const ISSUE3: &str = r#"
ping_check = true
ping_timeout_ms = 250
exhausted_warn_interval = 30
[[subnet]]
network = "10.0.0.0/24"
pool_start = "10.0.0.100"
pool_end = "10.0.0.199"
router = "10.0.0.1"
lease_time = 3600
authoritative = false
rapid_commit = true
domain_search = ["lan", "Corp.Example."]
ntp_servers = ["10.0.0.1"]
mtu = 1500
routes = [ { network = "10.9.0.0/16", gateway = "10.0.0.254" }, { network = "0.0.0.0/0", gateway = "10.0.0.1" } ]
  [[subnet.option]]
  code = 252
  type = "string"
  value = "http://wpad.lan/wpad.dat"
  [[subnet.option]]
  code = 150
  type = "ips"
  value = ["10.0.0.5", "10.0.0.6"]
  [[subnet.option]]
  code = 23
  type = "u8"
  value = 64
  [[subnet.option]]
  code = 24
  type = "u32"
  value = 600
  [[subnet.option]]
  code = 13
  type = "u16"
  value = 512
  [[subnet.option]]
  code = 19
  type = "bool"
  value = false
  [[subnet.option]]
  code = 43
  type = "hex"
  value = "01:04:c0:a8:00:01"
  [[subnet.option]]
  code = 16
  type = "ip"
  value = "10.0.0.7"
[[host]]
client_id = "01:52:54:00:12:34:56"
ip = "10.0.0.10"
name = "printer"
lease_time = 86400
  [[host.option]]
  code = 42
  type = "ips"
  value = ["10.0.0.5"]
[[class]]
name = "phones"
vendor_class = "android-dhcp"
user_class = "x"
mac_prefix = "52:54:01"
subnet = "10.0.0.0/24"
pool_start = "10.0.0.200"
pool_end = "10.0.0.219"
lease_time = 600
  [[class.option]]
  code = 6
  type = "ips"
  value = ["10.0.0.53"]
[[class]]
name = "printers"
mac_prefix = "00-11-22"
"#;

    fn issue3() -> String {
        format!("domain = \"lan\"\nlease_file = \"/tmp/x\"\n{ISSUE3}")
    }

    #[test]
    fn issue3_keys_are_read_and_encoded() {
        let c = parse(&issue3()).expect("valid");
        assert!(c.dhcp.ping_check);
        assert_eq!(c.dhcp.ping_timeout, Duration::from_millis(250));
        assert_eq!(c.dhcp.exhausted_warn_interval, 30);
        let s = &c.subnets[0];
        assert!(!s.authoritative);
        let set = &s.settings;
        assert!(set.rapid_commit && set.dns_servers_default && s.dns_servers.is_empty());
        assert_eq!(set.domain_search, vec!["lan", "corp.example"]);
        assert_eq!(set.ntp_servers, vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(set.mtu, Some(1500));
        let gw = Ipv4Addr::new(10, 0, 0, 254);
        assert_eq!(
            set.routes[0],
            Route {
                network: Ipv4Addr::new(10, 9, 0, 0),
                prefix_len: 16,
                gateway: gw
            }
        );
        assert_eq!(set.routes[1].prefix_len, 0);
        let data: Vec<(u8, Vec<u8>)> = set
            .options
            .iter()
            .map(|o| (o.code, o.data.clone()))
            .collect();
        assert_eq!(
            data,
            vec![
                (252, b"http://wpad.lan/wpad.dat".to_vec()),
                (150, vec![10, 0, 0, 5, 10, 0, 0, 6]),
                (23, vec![64]),
                (24, vec![0, 0, 2, 88]),
                (13, vec![2, 0]),
                (19, vec![0]),
                (43, vec![1, 4, 0xc0, 0xa8, 0, 1]),
                (16, vec![10, 0, 0, 7]),
            ]
        );
        let h = &c.reservations[0];
        assert_eq!(h.lease_time, Some(86400));
        assert_eq!(
            h.options,
            vec![OptionSpec {
                code: 42,
                data: vec![10, 0, 0, 5]
            }]
        );
        let k = &c.dhcp.classes[0];
        assert_eq!(k.name, "phones");
        assert_eq!(k.vendor_class.as_deref(), Some(&b"android-dhcp"[..]));
        assert_eq!(k.mac_prefix.as_deref(), Some(&[0x52, 0x54, 0x01][..]));
        assert_eq!((k.subnet, k.lease_time), (Some(0), Some(600)));
        let range = (Ipv4Addr::new(10, 0, 0, 200), Ipv4Addr::new(10, 0, 0, 219));
        assert_eq!(k.pool, Some(range));
        assert_eq!(k.options[0].code, 6);
        assert_eq!(c.dhcp.classes[1].mac_prefix, Some(vec![0, 0x11, 0x22]));
    }

    #[test]
    fn issue3_defaults() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.dhcp, DhcpGlobals::default());
        assert!(!c.dhcp.ping_check);
        assert_eq!(c.dhcp.ping_timeout, Duration::from_millis(300));
        assert_eq!(c.dhcp.exhausted_warn_interval, 60);
        let set = &c.subnets[0].settings;
        assert!(!set.dns_servers_default, "dns_servers given");
        assert!(!set.rapid_commit && set.routes.is_empty() && set.options.is_empty());
        assert_eq!(c.reservations[0].lease_time, None);
    }

    #[test]
    fn class_matching_needs_every_key_given() {
        let c = parse(&issue3()).expect("valid");
        let phones = &c.dhcp.classes[0];
        let mac = [0x52, 0x54, 0x01, 0, 0, 9];
        assert!(phones.matches(Some(b"android-dhcp-13"), Some(b"\x01x"), &mac));
        assert!(
            !phones.matches(Some(b"android-dhcp-13"), None, &mac),
            "no user class"
        );
        assert!(
            !phones.matches(Some(b"MSFT 5.0"), Some(b"x"), &mac),
            "vendor prefix"
        );
        assert!(!phones.matches(Some(b"android-dhcp"), Some(b"x"), &[0x52, 0x54, 0, 0, 0, 9]));
        let printers = &c.dhcp.classes[1];
        assert!(printers.matches(None, None, &[0, 0x11, 0x22, 1, 2, 3]));
        assert!(!printers.matches(None, None, &[0, 0x11]));
    }

    #[test]
    fn issue3_errors_name_the_field() {
        let base = issue3();
        let cases = [
            (
                "gateway = \"10.0.0.1\" }",
                "gateway = \"10.1.0.1\" }",
                "subnet[0].routes[1].gateway",
            ),
            (
                "\"10.9.0.0/16\"",
                "\"10.9.0.1/16\"",
                "subnet[0].routes[0].network",
            ),
            (
                "\"0.0.0.0/0\"",
                "\"0.0.0.0/33\"",
                "subnet[0].routes[1].network",
            ),
            (
                "pool_start = \"10.0.0.200\"",
                "pool_start = \"10.0.1.200\"",
                "class[0].pool_start",
            ),
            (
                "pool_end = \"10.0.0.219\"",
                "pool_end = \"10.0.0.19\"",
                "class[0].pool_end",
            ),
            (
                "subnet = \"10.0.0.0/24\"",
                "subnet = \"10.7.0.0/24\"",
                "class[0].subnet",
            ),
            (
                "mac_prefix = \"00-11-22\"",
                "mac_prefix = \"zz\"",
                "class[1].mac_prefix",
            ),
            ("mac_prefix = \"00-11-22\"", "", "class[1]"),
            (
                "value = [\"10.0.0.5\"]\n[[class",
                "value = [\"10.0.0.500\"]\n[[class",
                "host[0].option[0].value",
            ),
            ("code = 42", "code = 53", "host[0].option[0].code"),
            ("code = 252", "code = 300", "subnet[0].option[0].code"),
            (
                "type = \"u8\"",
                "type = \"u64\"",
                "subnet[0].option[2].type",
            ),
            ("value = 64", "value = 256", "subnet[0].option[2].value"),
            ("value = 512", "value = -1", "subnet[0].option[4].value"),
            ("value = false", "value = 1", "subnet[0].option[5].value"),
            (
                "value = \"01:04:c0:a8:00:01\"",
                "value = \"0x1\"",
                "subnet[0].option[6].value",
            ),
            (
                "\"Corp.Example.\"",
                "\"bad..name\"",
                "subnet[0].domain_search[1]",
            ),
            ("mtu = 1500", "mtu = 67", "subnet[0].mtu"),
            ("lease_time = 86400", "lease_time = 5", "host[0].lease_time"),
            ("lease_time = 600", "lease_time = 1", "class[0].lease_time"),
            (
                "ping_timeout_ms = 250",
                "ping_timeout_ms = 9",
                "ping_timeout_ms",
            ),
        ];
        for (from, to, want) in cases {
            let (_, line, field, msg) = broken(&base, from, to);
            assert_eq!(field, want, "{msg}");
            assert!(line > 1, "{field}: line {line}");
        }
        unknown_key(&base.replace("mtu = 1500", "mtu = 1500\nmtus = 1"), "mtus");
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

    /// A real Argon2 hash of "pw" (made by `leasedns hash-password`).
    fn pw_hash() -> String {
        crate::http::auth::hash_password("pw").expect("hash")
    }

    fn with_updates(extra: &str) -> String {
        format!("{GOOD}\n{extra}")
    }

    #[test]
    fn tsig_keys_http_and_users_are_validated_and_normalised() {
        use hickory_server::proto::rr::RecordType;
        use hickory_server::proto::rr::rdata::tsig::TsigAlgorithm;
        let text = with_updates(&format!(
            r#"
[[tsig_key]]
name = "ACME."
algorithm = "hmac-sha512"
secret = "c2VjcmV0"
allow = [ {{ prefix = "_acme-challenge", types = ["txt"] }},
          {{ name = "dyn", subdomains = true, types = ["ANY"] }},
          {{ name = "@", types = ["MX"] }} ]

[http]
listen = ["127.0.0.1"]
rate_limit = 3

[[dyndns_user]]
name = "router"
password_hash = "{}"
hosts = ["home", "cam.example.org."]
"#,
            pw_hash()
        ));
        let c = parse(&text).expect("valid");
        let key = &c.dns.tsig_keys[0];
        assert_eq!(key.name, "acme");
        assert_eq!(key.algorithm, TsigAlgorithm::HmacSha512);
        assert_eq!(key.secret, b"secret");
        assert_eq!((key.fudge, key.may_override), (300, false));
        assert_eq!(
            key.allow[0].names,
            NameMatch::Prefix("_acme-challenge".into())
        );
        assert_eq!(key.allow[0].types, vec![RecordType::TXT]);
        assert_eq!(key.allow[1].names, NameMatch::Subtree("dyn.lan".into()));
        assert_eq!(key.allow[1].types.len(), 7);
        assert_eq!(key.allow[2].names, NameMatch::Exact("lan".into()));
        assert_eq!(c.dns.http.listen, vec!["127.0.0.1:8053".parse().unwrap()]);
        assert_eq!((c.dns.http.rate_limit, c.dns.http.ttl), (3, 60));
        assert_eq!(
            c.dns.dyndns_users[0].hosts,
            vec!["home.lan", "cam.example.org"]
        );
        assert_eq!(c.dns.update_journal, None);
        let c = parse(&GOOD.replace("[dns]\n", "[dns]\nupdate_journal = \"/var/lib/x.dns\"\n"))
            .expect("valid");
        assert_eq!(c.dns.update_journal, Some(PathBuf::from("/var/lib/x.dns")));
    }

    #[test]
    fn bad_update_settings_name_their_field() {
        let key = |body: &str| with_updates(&format!("[[tsig_key]]\nname = \"k\"\n{body}"));
        let (_, field, msg) = invalid(&key("algorithm = \"hmac-md5\"\nsecret = \"c2VjcmV0\""));
        assert_eq!(field, "tsig_key[0].algorithm");
        assert!(msg.contains("hmac-sha256"), "{msg}");
        let (_, field, _) = invalid(&key("algorithm = \"hmac-sha256\"\nsecret = \"!!\""));
        assert_eq!(field, "tsig_key[0].secret");
        let (_, field, _) = invalid(&key(
            "algorithm = \"hmac-sha256\"\nsecret = \"c2VjcmV0\"\nallow = [{ name = \"a\", types = [\"SOA\"] }]",
        ));
        assert_eq!(field, "tsig_key[0].allow[0].types");
        let (_, field, _) = invalid(&key(
            "algorithm = \"hmac-sha256\"\nsecret = \"c2VjcmV0\"\nallow = [{ name = \"a\", prefix = \"b\", types = [\"A\"] }]",
        ));
        assert_eq!(field, "tsig_key[0].allow[0]");
        let (_, field, _) = invalid(&with_updates("[http]\nlisten = [\"nowhere\"]"));
        assert_eq!(field, "http.listen[0]");
        let (_, field, _) = invalid(&with_updates("[http]\ntls_cert = \"/c.pem\""));
        assert_eq!(field, "http.tls_cert");
        let (line, field, msg) = invalid(&with_updates(
            "[[dyndns_user]]\nname = \"r\"\npassword_hash = \"plain\"\nhosts = [\"home\"]",
        ));
        assert_eq!(field, "dyndns_user[0].password_hash");
        assert!(msg.contains("hash-password") && line >= 20, "{line} {msg}");
        let (_, field, _) = invalid(&with_updates("[[tsig_key]]\nname = \"k\"\nbogus = 1"));
        assert_eq!(field, "bogus");
    }

    #[test]
    fn name_match_is_label_aligned() {
        assert!(NameMatch::Subtree("lan".into()).matches("a.lan"));
        assert!(!NameMatch::Subtree("lan".into()).matches("plan"));
        assert!(NameMatch::Prefix("_x".into()).matches("_x.lan"));
        assert!(!NameMatch::Prefix("_x".into()).matches("_x"));
        assert!(!NameMatch::Prefix("_x".into()).matches("_xy.lan"));
        assert!(NameMatch::Exact("a.lan".into()).matches("a.lan"));
    }
}
