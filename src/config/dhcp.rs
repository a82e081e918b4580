//! Server-wide DHCP settings (`ping_check`, `relay_max_hops`, ...), `[[class]]`, the options of
//! a subnet, class or host, and the grant keys (T1, T2, network boot) they share.

use std::net::Ipv4Addr;
use std::time::Duration;

use toml::Spanned;

use super::defaults;
use super::error::Ctx;
use super::load::{hex_bytes, millis_in};
use super::subnet::cidr;
use super::*;

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
    /// Relayed requests with more hops than this are dropped.
    pub relay_max_hops: u8,
    /// At most this many offered or bound leases on one hardware address under client ids
    /// other than the usual one derived from it (0: no limit).
    pub max_client_ids_per_mac: u32,
    /// At most this many live leases per relay agent port: option 82 circuit id (per relay)
    /// and remote id (0: no limit; `dhcp::relayport`).
    pub max_leases_per_relay_port: u32,
    /// Timers and network boot of each `[[host]]`, in `Config::reservations` order (kept here,
    /// apart from `Reservation`, which the DNS side reads too).
    pub host_grants: Vec<GrantSettings>,
    /// `init_reboot_unknown = "ack"`: ACK an INIT-REBOOT for a free address from a client we
    /// have no record of, as dnsmasq does. Default (`"silent"`): RFC 2131 section 4.3.2.
    pub init_reboot_ack_unknown: bool,
}

impl Default for DhcpGlobals {
    fn default() -> Self {
        DhcpGlobals {
            ping_check: defaults::PING_CHECK,
            ping_timeout: Duration::from_millis(defaults::PING_TIMEOUT_MS),
            exhausted_warn_interval: defaults::EXHAUSTED_WARN_INTERVAL,
            classes: Vec::new(),
            host_grants: Vec::new(),
            relay_max_hops: defaults::RELAY_MAX_HOPS,
            max_client_ids_per_mac: defaults::MAX_CLIENT_IDS_PER_MAC,
            max_leases_per_relay_port: defaults::MAX_LEASES_PER_RELAY_PORT,
            init_reboot_ack_unknown: defaults::INIT_REBOOT_UNKNOWN == "ack",
        }
    }
}

/// What a grant says besides its address and options: T1, T2 and network boot. Set per subnet,
/// class or host; key by key, a host's value wins over its class's, a class's over its subnet's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantSettings {
    /// T1 and T2 (options 58, 59) in seconds for a full lease (scaled for shorter grants).
    pub renew_time: Option<u32>,
    pub rebind_time: Option<u32>,
    /// siaddr: the server to boot from (TFTP).
    pub next_server: Option<Ipv4Addr>,
    /// The `sname` field (and option 66 when asked for): the boot server's name.
    pub server_name: Option<String>,
    /// The `file` field (and option 67 when asked for): the boot file.
    pub boot_file: Option<String>,
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
    /// Timers and network boot for members.
    pub grant: GrantSettings,
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

pub(super) fn globals(
    cx: &Ctx,
    raw: &raw::Root,
    subnets: &[Subnet],
) -> Result<DhcpGlobals, ConfigError> {
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
    let init_reboot_ack_unknown = match &raw.init_reboot_unknown {
        None => defaults.init_reboot_ack_unknown,
        Some(v) => match v.get_ref().as_str() {
            "silent" => false,
            "ack" => true,
            _ => {
                let msg = "must be \"silent\" or \"ack\"";
                return Err(cx.err(v.span(), "init_reboot_unknown", msg));
            }
        },
    };
    let host_grants = raw
        .host
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = h.get_ref();
            let lease = h.lease_time.as_ref().map(|t| *t.get_ref());
            grant(cx, &format!("host[{i}]"), &h.grant_keys(lease))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let relay_max_hops = match &raw.relay_max_hops {
        None => defaults.relay_max_hops,
        Some(h) if *h.get_ref() <= 16 => *h.get_ref(),
        Some(h) => return Err(cx.err(h.span(), "relay_max_hops", "must be 0 to 16")),
    };
    Ok(DhcpGlobals {
        relay_max_hops,
        max_client_ids_per_mac: raw
            .max_client_ids_per_mac
            .unwrap_or(defaults.max_client_ids_per_mac),
        max_leases_per_relay_port: raw
            .max_leases_per_relay_port
            .unwrap_or(defaults.max_leases_per_relay_port),
        host_grants,
        ping_check: raw.ping_check.unwrap_or(defaults.ping_check),
        ping_timeout,
        exhausted_warn_interval: raw
            .exhausted_warn_interval
            .unwrap_or(defaults.exhausted_warn_interval),
        classes,
        init_reboot_ack_unknown,
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
                    let msg = "is not a MAC prefix like 52:54:00";
                    cx.err(m.span(), field("mac_prefix"), msg)
                })?,
        ),
        None => None,
    };
    let bytes = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().as_bytes().to_vec());
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
                    let msg = "is not a configured subnet";
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
        grant: grant(
            cx,
            &format!("class[{i}]"),
            &c.grant_keys(c.lease_time.as_ref().map(|t| *t.get_ref())),
        )?,
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
            .ok_or_else(|| cx.err(a.span(), field("pool_start"), "is in no configured subnet"))?,
    };
    let Some(s) = subnets.get(idx) else {
        return Err(cx.err(a.span(), field("pool_start"), "no such subnet"));
    };
    for (name, ip) in [("pool_start", a), ("pool_end", b)] {
        let addr = *ip.get_ref();
        if !host_of(s, addr) {
            let msg = format!("is not a host address of {}/{}", s.network, s.prefix_len);
            return Err(cx.err(ip.span(), field(name), msg));
        }
    }
    if start > *b.get_ref() {
        return Err(cx.err(b.span(), field("pool_end"), "comes before pool_start"));
    }
    Ok(idx)
}

/// An optional lease time of at least 10 seconds.
pub(super) fn lease_time(
    cx: &Ctx,
    raw: Option<&Spanned<u32>>,
    field: &str,
) -> Result<Option<u32>, ConfigError> {
    match raw {
        Some(t) if *t.get_ref() < 10 => Err(cx.err(t.span(), field, "must be at least 10 seconds")),
        other => Ok(other.map(|t| *t.get_ref())),
    }
}

/// Option codes the server sets itself; configuring them is an error.
const SERVER_OWNED: [u8; 12] = [0, 50, 51, 52, 53, 54, 55, 57, 61, 81, 82, 255];

/// `[[<prefix>.option]]` entries, each encoded from its type and value.
pub(super) fn options(
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
                    "is not an option code we may send (1 to 254, not one of {SERVER_OWNED:?})"
                );
                cx.err(o.code.span(), field("code"), msg)
            })?;
        let otype = o.otype.get_ref().to_ascii_lowercase();
        if !OPTION_TYPES.contains(&otype.as_str()) {
            let msg = format!("is not one of {}", OPTION_TYPES.join(", "));
            return Err(cx.err(o.otype.span(), field("type"), msg));
        }
        let data = option_value(&otype, o.value.get_ref()).map_err(|what| {
            let msg = format!("is not {what}");
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

/// The grant keys of `prefix` (a subnet, class or host): T1 before T2, both before the
/// lease time when it is known here; names that fit the `sname` (63 bytes) and `file` (127)
/// fields, printable ASCII.
pub(super) fn grant(
    cx: &Ctx,
    prefix: &str,
    k: &raw::GrantKeys<'_>,
) -> Result<GrantSettings, ConfigError> {
    let field = |f: &str| format!("{prefix}.{f}");
    let (t1, t2) = (k.renew_time.as_ref(), k.rebind_time.as_ref());
    for (name, t) in [("renew_time", t1), ("rebind_time", t2)] {
        if let Some(t) = t {
            if *t.get_ref() == 0 {
                return Err(cx.err(t.span(), field(name), "must be at least 1 second"));
            }
            if let Some(l) = k.lease_time.filter(|l| t.get_ref() >= l) {
                let msg = format!("must be less than the lease time ({l})");
                return Err(cx.err(t.span(), field(name), msg));
            }
        }
    }
    if let (Some(a), Some(b)) = (t1, t2)
        && a.get_ref() >= b.get_ref()
    {
        return Err(cx.err(
            b.span(),
            field("rebind_time"),
            "must be more than renew_time",
        ));
    }
    let text = |v: &Option<Spanned<String>>, name: &str, max: usize| match v {
        Some(s)
            if s.get_ref().is_empty()
                || s.get_ref().len() > max
                || !s.get_ref().bytes().all(|b| b.is_ascii_graphic()) =>
        {
            let msg = format!("must be 1 to {max} printable ASCII characters, without spaces");
            Err(cx.err(s.span(), field(name), msg))
        }
        other => Ok(other.as_ref().map(|s| s.get_ref().clone())),
    };
    Ok(GrantSettings {
        renew_time: t1.map(|t| *t.get_ref()),
        rebind_time: t2.map(|t| *t.get_ref()),
        next_server: k.next_server.as_ref().map(|a| *a.get_ref()),
        server_name: text(k.server_name, "server_name", 63)?,
        boot_file: text(k.boot_file, "boot_file", 127)?,
    })
}
