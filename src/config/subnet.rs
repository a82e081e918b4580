//! `[[subnet]]` (network, pool, per-subnet settings, routes) and `[[host]]` reservations.

use std::net::Ipv4Addr;

use toml::Spanned;

use super::defaults;
use super::dhcp::{grant, lease_time, options};
use super::error::Ctx;
use super::load::hex_bytes;
use super::*;
pub use crate::lease::tally::prefix_mask;
use crate::lease::{ClientId, HwAddr};

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
    /// Everything else a subnet may say (search domains, NTP, MTU, routes, options, timers,
    /// relays); all empty by default.
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
    /// Timers and network boot.
    pub grant: GrantSettings,
    /// Relay agents (the relayed packet's IP source) allowed to relay for this subnet; empty:
    /// any relay.
    pub relays: Vec<Ipv4Addr>,
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

/// The optional subnet keys: search domains, NTP, MTU, routes, options, timers, relays.
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
            let msg = "is not a valid domain name";
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
        rapid_commit: s.rapid_commit.unwrap_or(defaults::RAPID_COMMIT),
        domain_search,
        ntp_servers: s.ntp_servers.clone(),
        mtu: s.mtu.as_ref().map(|m| *m.get_ref()),
        routes,
        relays: s.relays.clone(),
        options: options(cx, &s.option, &format!("subnet[{i}]"))?,
        grant: grant(
            cx,
            &format!("subnet[{i}]"),
            &s.grant_keys(Some(sub.lease_time)),
        )?,
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
        let msg = "is not a network like 10.9.0.0/16 (no host bits set)";
        return Err(cx.err(r.network.span(), format!("{field}.network"), msg));
    };
    let gateway = *r.gateway.get_ref();
    if !sub.contains(gateway) {
        let msg = format!("is not in {}/{}", sub.network, sub.prefix_len);
        return Err(cx.err(r.gateway.span(), format!("{field}.gateway"), msg));
    }
    Ok(Route {
        network,
        prefix_len,
        gateway,
    })
}

pub(super) fn subnet(
    cx: &Ctx,
    i: usize,
    raw: &Spanned<raw::Subnet>,
) -> Result<Subnet, ConfigError> {
    let s = raw.get_ref();
    let field = |f: &str| format!("subnet[{i}].{f}");
    let (network, prefix_len) = cidr(s.network.get_ref()).ok_or_else(|| {
        cx.err(
            s.network.span(),
            field("network"),
            "is not a network like 10.0.0.0/24",
        )
    })?;
    let mut sub = Subnet {
        network,
        prefix_len,
        pool_start: *s.pool_start.get_ref(),
        pool_end: *s.pool_end.get_ref(),
        router: s.router.as_ref().map(|r| *r.get_ref()),
        dns_servers: s.dns_servers.clone().unwrap_or_default(),
        lease_time: s
            .lease_time
            .as_ref()
            .map_or(defaults::LEASE_TIME, |t| *t.get_ref()),
        interface: s.interface.clone(),
        authoritative: s.authoritative.unwrap_or(defaults::AUTHORITATIVE),
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
                format!("is not a host address of {network}/{prefix_len}"),
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
        let msg = format!("is not in {network}/{prefix_len}");
        return Err(cx.err(r.span(), field("router"), msg));
    }
    sub.dns_servers.dedup();
    sub.settings = settings(cx, i, s, &sub)?;
    Ok(sub)
}

pub(super) fn cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/')?;
    let p: u8 = p.parse().ok()?;
    (p <= 30).then_some(())?;
    Some((a.parse().ok()?, p))
}

pub(super) fn hosts(
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
                            "is not a MAC like 52:54:00:12:34:56",
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
                            "is not hex bytes like 01:52:54:00:ab:cd:ef",
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
            return Err(cx.err(hr.ip.span(), field("ip"), "is in no configured subnet"));
        }
        if let Some(j) = out.iter().position(|r| r.ip == ip) {
            return Err(cx.err(
                hr.ip.span(),
                field("ip"),
                format!("is already reserved by host[{j}]"),
            ));
        }
        same_client(cx, i, hr, (&hwaddr, &client_id), &out)?;
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

/// Host `i`'s MAC or client id in an earlier reservation: an error, since only the first of
/// two reservations for one client could ever be used.
fn same_client(
    cx: &Ctx,
    i: usize,
    hr: &raw::Host,
    (hwaddr, client_id): (&Option<HwAddr>, &Option<ClientId>),
    earlier: &[Reservation],
) -> Result<(), ConfigError> {
    let field = |f: &str| format!("host[{i}].{f}");
    if let (Some(m), Some(hw)) = (&hr.mac, hwaddr)
        && let Some(j) = earlier.iter().position(|r| r.hwaddr.as_ref() == Some(hw))
    {
        let msg = format!("already has a reservation: host[{j}]");
        return Err(cx.err(m.span(), field("mac"), msg));
    }
    if let (Some(c), Some(id)) = (&hr.client_id, client_id)
        && let Some(j) = earlier
            .iter()
            .position(|r| r.client_id.as_ref() == Some(id))
    {
        let msg = format!("already has a reservation: host[{j}]");
        return Err(cx.err(c.span(), field("client_id"), msg));
    }
    Ok(())
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
        let msg = "is not a valid host name (RFC 1123 label)";
        return Err(cx.err(n.span(), field, msg));
    }
    if let Some(j) = earlier.iter().position(|r| r.name.as_deref() == Some(&l)) {
        return Err(cx.err(n.span(), field, format!("is already used by host[{j}]")));
    }
    Ok(Some(l))
}
