//! The RFC 2131 state machine. Pure: takes a decoded request, the receiving interface and `now`;
//! returns the reply, where it goes, and the lease changes. No I/O, no clock.
//!
//! Offers are held in the table (so two clients never get the same address) but never reported
//! as changes; bound and declined leases are, in the order they happen.
//!
//! With `ping_check` on, an address that never had a lease is not offered at once: `handle`
//! holds it and returns `Outcome::ping`; the service pings it without stalling other clients
//! and calls `handle_after_ping` with the answer. An answered address is put aside like a
//! declined one, and the next address is tried.
//!
//! One file a concern, each an `impl Engine` block: `discover` (DISCOVER, the offer, the ping
//! hold, the per-MAC and per-relay-port limits, the exhausted warning), `request` (REQUEST in
//! each state, binding and lease reuse), `release` (RELEASE, DECLINE, INFORM), `expiry` (leases
//! ended by time or by the operator, and restored after a failed write), `reply` (OFFER/ACK/NAK
//! building and where each goes). Here: the types, dispatch, the request's context and the
//! helpers they share.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use dhcproto::v4::MessageType;
use tracing::{debug, warn};

use crate::clock::UnixTime;
use crate::config::{ClientClass, Config, GrantSettings, Reservation, Subnet};
use crate::dhcp::Iface;
use crate::dhcp::alloc::{Pool, Reservations, Want};
use crate::dhcp::dest::Dest;
use crate::dhcp::relayport::RelayPorts;
use crate::dhcp::wire::{self, ReplyMsg, Request};
use crate::lease::table::{LeaseTable, held_by};
use crate::lease::{ClientId, Lease, LeaseChange, LeaseState, RemoveReason};

mod discover;
mod expiry;
mod release;
mod reply;
mod request;

/// A lease time a client asks for (option 51) is granted down to this, never below.
pub const MIN_REQUESTED_LEASE: u32 = 60;

#[derive(Debug)]
pub struct Reply {
    pub msg: ReplyMsg,
    pub dest: Dest,
    /// The most the client accepts (option 57, at least 576).
    pub max_size: usize,
    /// The client's parameter request list: options are encoded in this order after 53, 54.
    pub order: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub reply: Option<Reply>,
    pub changes: Vec<LeaseChange>,
    /// Ping this address, then call `handle_after_ping` with the same request.
    pub ping: Option<Ipv4Addr>,
}

pub struct Engine {
    cfg: Arc<Config>,
    table: LeaseTable,
    reservations: Reservations,
    /// Per subnet, in `cfg.subnets` order.
    subnets: Vec<SubnetState>,
    /// Addresses being pinged, and for whom (each is held as that client's offer meanwhile).
    pinging: HashMap<Ipv4Addr, ClientId>,
    /// Some subnet, class or host sets a timer or network boot key (else replies skip them).
    grants: bool,
    /// DISCOVERs that found no free address since `take_allocation_failures` last ran.
    alloc_failures: u64,
    /// Which addresses went out through which relay agent port (`max_leases_per_relay_port`).
    relay_ports: RelayPorts,
}

#[derive(Clone, Debug, Default)]
struct SubnetState {
    /// Where the next free-address scan starts.
    cursor: u32,
    /// When the last "pool full" warning was logged.
    full_warned: Option<UnixTime>,
    /// Ranges of this subnet kept for client classes.
    class_pools: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Pools (range, with class ranges excluded or not) whose last free-address scan found
    /// nothing, with the table's `removals()` then: until a lease is removed, "no free address"
    /// is known without a scan (O(1) for every DISCOVER to a full pool).
    full: Vec<(PoolKey, u64)>,
    /// Free-address scans that found nothing (for tests and debugging).
    failed_scans: u64,
}

/// A pool's identity for the "full" memo: its range and whether class ranges are cut out.
type PoolKey = ((Ipv4Addr, Ipv4Addr), bool);

/// One request, once its subnet, server identifier, client, class and reservation are known.
struct Ctx<'a> {
    now: UnixTime,
    req: &'a Request,
    iface: &'a Iface,
    subnet_idx: usize,
    subnet: &'a Subnet,
    server_id: Ipv4Addr,
    client: ClientId,
    /// The first class the client matches in this subnet.
    class: Option<&'a ClientClass>,
    /// The client's reservation (anywhere).
    host: Option<&'a Reservation>,
    /// Its timers and network boot settings.
    host_grant: Option<&'a GrantSettings>,
}

impl Engine {
    /// Build an engine from the config and the leases recovered from the journal; leases whose
    /// time is up at `now`, and offers, are left out.
    pub fn new(cfg: Arc<Config>, recovered: Vec<Lease>, now: UnixTime) -> Self {
        let mut table = LeaseTable::new();
        let nets: Vec<_> = cfg
            .subnets
            .iter()
            .map(|s| (s.network, s.prefix_len))
            .collect();
        table.tally_subnets(&nets);
        table.reserve(recovered.len());
        let mut recovered = recovered;
        // From the back, giving the vector's memory back as it empties, so that the table and
        // a full copy of the leases never coexist.
        while let Some(l) = recovered.pop() {
            if l.expires > now && l.state != LeaseState::Offered {
                table.insert(l);
            }
            if recovered.len().is_multiple_of(8192) {
                recovered.shrink_to_fit();
            }
        }
        let mut subnets = vec![SubnetState::default(); cfg.subnets.len()];
        for c in &cfg.dhcp.classes {
            if let (Some(i), Some(range)) = (c.subnet, c.pool)
                && let Some(state) = subnets.get_mut(i)
            {
                state.class_pools.push(range);
            }
        }
        let unset = GrantSettings::default();
        let grants = cfg.subnets.iter().any(|s| s.settings.grant != unset)
            || cfg.dhcp.classes.iter().any(|c| c.grant != unset)
            || cfg.dhcp.host_grants.iter().any(|g| *g != unset);
        let engine = Engine {
            grants,
            reservations: Reservations::new(&cfg.reservations),
            subnets,
            table,
            cfg,
            pinging: HashMap::new(),
            alloc_failures: 0,
            relay_ports: RelayPorts::default(),
        };
        engine.log_reservation_conflicts();
        engine
    }

    pub fn handle(&mut self, now: UnixTime, req: &Request, iface: &Iface) -> Outcome {
        let cfg = Arc::clone(&self.cfg);
        let Some(cx) = self.context(&cfg, now, req, iface) else {
            return Outcome::default();
        };
        match req.msg_type {
            MessageType::Discover => self.discover(&cx),
            MessageType::Request => self.request(&cx),
            MessageType::Inform => self.inform(&cx),
            MessageType::Release => self.release(&cx),
            MessageType::Decline => self.decline(&cx),
            other => {
                debug!(xid = req.xid, ?other, "ignored message type");
                Outcome::default()
            }
        }
    }

    /// Continue a DISCOVER whose `handle` asked for a ping of `ip`: offer it if nobody
    /// `answered`, else put it aside for `decline_hold` and try the next address (which may ask
    /// for another ping).
    pub fn handle_after_ping(
        &mut self,
        now: UnixTime,
        req: &Request,
        iface: &Iface,
        ip: Ipv4Addr,
        answered: bool,
    ) -> Outcome {
        let client = client_id(req);
        if self.pinging.get(&ip) != Some(&client) {
            debug!(xid = req.xid, %ip, "ping result for a hold that is gone");
            return Outcome::default();
        }
        self.pinging.remove(&ip);
        let cfg = Arc::clone(&self.cfg);
        let Some(cx) = self.context(&cfg, now, req, iface) else {
            return Outcome::default();
        };
        let held = self
            .table
            .get(ip)
            .is_some_and(|l| l.state == LeaseState::Offered && held_by(l, &cx.client));
        if !held {
            return self.discover(&cx);
        }
        if !answered {
            return self.offer(&cx, ip);
        }
        let subnet = format!("{}/{}", cx.subnet.network, cx.subnet.prefix_len);
        warn!(xid = req.xid, %ip, %subnet, "address answered a ping; set aside");
        let lease = Lease {
            ip,
            client: cx.client.clone(),
            hwaddr: req.hwaddr.clone(),
            hostname: None,
            expires: now.plus(u64::from(self.cfg.decline_hold)),
            state: LeaseState::Declined,
        };
        self.table.insert(lease.clone());
        let mut out = self.discover(&cx);
        out.changes.insert(0, LeaseChange::Upsert(lease));
        out
    }

    /// The request's subnet, server id, client, class and reservation; None when we do not
    /// serve it.
    fn context<'a>(
        &self,
        cfg: &'a Config,
        now: UnixTime,
        req: &'a Request,
        iface: &'a Iface,
    ) -> Option<Ctx<'a>> {
        let Some((subnet_idx, server_id)) = select_subnet(cfg, req, iface) else {
            debug!(xid = req.xid, iface = %iface.name, giaddr = %req.giaddr, "no subnet");
            return None;
        };
        let subnet = cfg.subnets.get(subnet_idx)?;
        let client = client_id(req);
        let host_idx = self.reservations.position(&client, &req.hwaddr);
        let host = host_idx.and_then(|i| cfg.reservations.get(i));
        let host_grant = host_idx.and_then(|i| cfg.dhcp.host_grants.get(i));
        let class = cfg.dhcp.classes.iter().find(|c| {
            c.subnet.is_none_or(|i| i == subnet_idx)
                && c.matches(
                    req.vendor_class.as_deref(),
                    req.user_class.as_deref(),
                    req.hwaddr.bytes(),
                )
        });
        Some(Ctx {
            now,
            req,
            iface,
            subnet_idx,
            subnet,
            server_id,
            client,
            class,
            host,
            host_grant,
        })
    }

    /// Bound and declined leases per subnet, in config order.
    pub fn usage(&self) -> &[(u64, u64)] {
        self.table.tally()
    }

    /// DISCOVERs that found no free address since the last call.
    pub fn take_allocation_failures(&mut self) -> u64 {
        std::mem::take(&mut self.alloc_failures)
    }

    /// Every bound or declined lease (for compaction and the API).
    pub fn leases(&self) -> Vec<Lease> {
        self.table
            .iter()
            .filter(|l| l.state != LeaseState::Offered)
            .cloned()
            .collect()
    }

    /// The bound lease on `ip`, if any (the control API reserves its address).
    pub fn lease(&self, ip: Ipv4Addr) -> Option<Lease> {
        self.table
            .get(ip)
            .filter(|l| l.state == LeaseState::Bound)
            .cloned()
    }

    /// The allocation view for this client: its class's range, or the subnet's pool without
    /// the class ranges.
    fn pool<'a>(&'a self, cx: &'a Ctx<'_>) -> Pool<'a> {
        let mut pool = Pool::new(cx.subnet, &self.table, &self.reservations, cx.now);
        if let Some(range) = cx.class.and_then(|c| c.pool) {
            pool.range = range;
        } else if let Some(state) = self.subnets.get(cx.subnet_idx) {
            pool.excluded = &state.class_pools;
        }
        pool
    }

    /// Log every reservation that a lease contradicts (after a reload, or at start): an
    /// address reserved for one client but leased to another (it changes hands when that lease
    /// ends or its holder renews), and a reserved client holding another address (NAKed at its
    /// next renewal, then given its reservation).
    fn log_reservation_conflicts(&self) {
        if self.cfg.reservations.is_empty() {
            return;
        }
        for r in &self.cfg.reservations {
            if let Some(l) = self.table.get(r.ip).filter(|l| {
                l.state == LeaseState::Bound && !reservation_is(r, &l.client, &l.hwaddr)
            }) {
                warn!(ip = %r.ip, holder = %l.hwaddr, client = %l.client, expires = %l.expires,
                    "reservation conflict: reserved address is leased to another client; it is not renewed and goes to the reserved client when that lease ends");
            }
        }
        for l in self.table.iter().filter(|l| l.state == LeaseState::Bound) {
            if let Some(r) = self.reservations.for_client(&l.client, &l.hwaddr)
                && r.ip != l.ip
            {
                warn!(ip = %l.ip, reserved = %r.ip, mac = %l.hwaddr, client = %l.client,
                    "reservation conflict: client holds another address than its reservation; NAK at its next renewal");
            }
        }
    }

    /// Drop the client's offers, except the one on `keep`.
    fn drop_offers(&mut self, client: &ClientId, keep: Option<Ipv4Addr>) {
        let offers: Vec<_> = self
            .table
            .by_client(client)
            .filter(|l| l.state == LeaseState::Offered && Some(l.ip) != keep)
            .map(|l| l.ip)
            .collect();
        for ip in offers {
            self.table.remove(ip);
        }
    }

    /// End whatever lease another client has on `ip`, reporting it unless it was only an offer.
    fn end_other(&mut self, ip: Ipv4Addr, reason: RemoveReason, changes: &mut Vec<LeaseChange>) {
        if let Some(old) = self.table.remove(ip)
            && old.state != LeaseState::Offered
        {
            changes.push(LeaseChange::Remove { ip, reason });
        }
    }

    fn want<'a>(&self, cx: &'a Ctx<'_>, requested: Option<Ipv4Addr>) -> Want<'a> {
        Want {
            client: &cx.client,
            hwaddr: &cx.req.hwaddr,
            requested,
            server_id: cx.server_id,
        }
    }

    /// The name for the client's lease: its reservation's, else the one it sent in option 12,
    /// else the first label of its option 81, if valid.
    fn hostname(&self, cx: &Ctx<'_>) -> Option<Arc<str>> {
        let fqdn_label = || {
            let f = wire::parse_fqdn(cx.req.fqdn.as_deref()?)?;
            valid_hostname(f.labels.first()?)
        };
        cx.host
            .and_then(|r| r.name.clone())
            .or_else(|| cx.req.hostname.as_deref().and_then(valid_hostname))
            .or_else(fqdn_label)
            .map(Arc::from)
    }
}

/// Whether a request that came from `src` may be served as relayed (giaddr set): its hops are
/// within `relay_max_hops`, and its subnet (by giaddr) lists no `relays` or lists `src`.
/// Unrelayed requests always may.
pub fn relay_allowed(cfg: &Config, req: &Request, src: Ipv4Addr) -> bool {
    if req.giaddr.is_unspecified() {
        return true;
    }
    if req.hops > cfg.dhcp.relay_max_hops {
        return false;
    }
    cfg.subnets
        .iter()
        .find(|s| s.contains(req.giaddr))
        .is_some_and(|s| s.settings.relays.is_empty() || s.settings.relays.contains(&src))
}

/// Whether reservation `r` is this client's (by client id or MAC).
fn reservation_is(r: &Reservation, client: &ClientId, hwaddr: &crate::lease::HwAddr) -> bool {
    r.client_id.as_ref() == Some(client) || r.hwaddr.as_ref() == Some(hwaddr)
}

/// The client's identity: option 61 when it sent a non-empty one, else type + chaddr.
pub fn client_id(req: &Request) -> ClientId {
    match &req.client_id {
        Some(id) if !id.is_empty() => ClientId::new(id),
        _ => ClientId::from_hw(&req.hwaddr),
    }
}

/// The subnet a request belongs to and our server identifier on it: by giaddr when relayed
/// (server id: the interface's first address), else by the receiving interface's addresses.
pub fn select_subnet(cfg: &Config, req: &Request, iface: &Iface) -> Option<(usize, Ipv4Addr)> {
    if !req.giaddr.is_unspecified() {
        let idx = cfg.subnets.iter().position(|s| s.contains(req.giaddr))?;
        let (sid, _) = iface.addrs.first()?;
        return Some((idx, *sid));
    }
    cfg.subnets.iter().enumerate().find_map(|(i, s)| {
        if s.interface.as_ref().is_some_and(|name| *name != iface.name) {
            return None;
        }
        let (addr, _) = iface.addrs.iter().find(|(a, _)| s.contains(*a))?;
        Some((i, *addr))
    })
}

/// A client's host name (option 12) as a DNS label: the part before the first '.', lowercase,
/// letters, digits and inner hyphens, 1 to 63 bytes. Trailing NULs (some clients send them)
/// are ignored. Anything else: None.
pub fn valid_hostname(raw: &[u8]) -> Option<String> {
    let end = raw.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let label = raw[..end].split(|b| *b == b'.').next()?;
    let ok_len = (1..=63).contains(&label.len());
    let ok_chars = label
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-');
    let ok_ends = label.first() != Some(&b'-') && label.last() != Some(&b'-');
    if !(ok_len && ok_chars && ok_ends) {
        return None;
    }
    Some(
        label
            .iter()
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
