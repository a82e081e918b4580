//! The RFC 2131 state machine. Pure: takes a decoded request, the receiving interface and `now`;
//! returns the reply, where it goes, and the lease changes. No I/O, no clock.
//!
//! Offers are held in the table (so two clients never get the same address) but never reported
//! as changes; bound and declined leases are, in the order they happen.

use std::net::Ipv4Addr;
use std::sync::Arc;

use dhcproto::v4::{Flags, HType, Message, MessageType, Opcode};
use tracing::{debug, info, warn};

use crate::clock::UnixTime;
use crate::config::{Config, Subnet};
use crate::dhcp::Iface;
use crate::dhcp::alloc::{Pool, Reservations, Want};
use crate::dhcp::dest::{self, Dest, Ports};
use crate::dhcp::options::{self, ReplyOptions};
use crate::dhcp::wire::Request;
use crate::lease::table::{LeaseTable, held_by};
use crate::lease::{ClientId, Lease, LeaseChange, LeaseState, RemoveReason};

/// The smallest message every client must accept (RFC 2131 section 2).
const MIN_MAX_SIZE: usize = 576;
/// At most one "pool full" warning per subnet this often (seconds).
const POOL_FULL_WARN_EVERY: u64 = 60;

#[derive(Debug)]
pub struct Reply {
    pub msg: dhcproto::v4::Message,
    pub dest: Dest,
    /// The most the client accepts (option 57, at least 576).
    pub max_size: usize,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub reply: Option<Reply>,
    pub changes: Vec<LeaseChange>,
}

pub struct Engine {
    cfg: Arc<Config>,
    table: LeaseTable,
    reservations: Reservations,
    /// Per subnet, in `cfg.subnets` order.
    subnets: Vec<SubnetState>,
}

#[derive(Clone, Debug, Default)]
struct SubnetState {
    /// Where the next free-address scan starts.
    cursor: u32,
    /// When the last "pool full" warning was logged.
    full_warned: Option<UnixTime>,
}

/// One request, once its subnet, server identifier and client are known.
struct Ctx<'a> {
    now: UnixTime,
    req: &'a Request,
    iface: &'a Iface,
    subnet_idx: usize,
    subnet: &'a Subnet,
    server_id: Ipv4Addr,
    client: ClientId,
}

impl Engine {
    /// Build an engine from the config and the leases recovered from the journal; leases whose
    /// time is up at `now`, and offers, are left out.
    pub fn new(cfg: Arc<Config>, recovered: Vec<Lease>, now: UnixTime) -> Self {
        let mut table = LeaseTable::new();
        for l in recovered {
            if l.expires > now && l.state != LeaseState::Offered {
                table.insert(l);
            }
        }
        Engine {
            reservations: Reservations::new(&cfg.reservations),
            subnets: vec![SubnetState::default(); cfg.subnets.len()],
            table,
            cfg,
        }
    }

    pub fn handle(&mut self, now: UnixTime, req: &Request, iface: &Iface) -> Outcome {
        let client = client_id(req);
        match req.msg_type {
            MessageType::Release => return self.release(req, &client),
            MessageType::Decline => return self.decline(now, req, &client),
            _ => {}
        }
        let cfg = Arc::clone(&self.cfg);
        let Some((subnet_idx, server_id)) = select_subnet(&cfg, req, iface) else {
            debug!(xid = req.xid, iface = %iface.name, giaddr = %req.giaddr, "no subnet");
            return Outcome::default();
        };
        let Some(subnet) = cfg.subnets.get(subnet_idx) else {
            return Outcome::default();
        };
        let cx = Ctx {
            now,
            req,
            iface,
            subnet_idx,
            subnet,
            server_id,
            client,
        };
        match req.msg_type {
            MessageType::Discover => self.discover(&cx),
            MessageType::Request => self.request(&cx),
            MessageType::Inform => self.inform(&cx),
            other => {
                debug!(xid = req.xid, ?other, "ignored message type");
                Outcome::default()
            }
        }
    }

    /// End every lease (and drop every offer) whose time is up; returns the removals.
    pub fn expire(&mut self, now: UnixTime) -> Vec<LeaseChange> {
        let mut changes = Vec::new();
        while let Some(l) = self.table.pop_expired(now) {
            if l.state != LeaseState::Offered {
                debug!(ip = %l.ip, client = %l.client, state = ?l.state, "lease expired");
                changes.push(LeaseChange::Remove {
                    ip: l.ip,
                    reason: RemoveReason::Expired,
                });
            }
        }
        changes
    }

    /// When `expire` next has work to do.
    pub fn poll_at(&self) -> Option<UnixTime> {
        self.table.next_expiry()
    }

    /// Every bound or declined lease (for compaction and the API).
    pub fn leases(&self) -> Vec<Lease> {
        self.table
            .iter()
            .filter(|l| l.state != LeaseState::Offered)
            .cloned()
            .collect()
    }

    /// Put the lease on `ip` back to `durable` (what the journal holds; `None`: free) after its
    /// change could not be made durable, so the table never holds a lease the disk lacks.
    pub fn restore(&mut self, ip: Ipv4Addr, durable: Option<Lease>) {
        self.table.remove(ip);
        if let Some(lease) = durable {
            self.table.insert(lease);
        }
    }

    fn discover(&mut self, cx: &Ctx<'_>) -> Outcome {
        let want = self.want(cx, cx.req.requested_ip);
        let pool = Pool {
            subnet: cx.subnet,
            table: &self.table,
            reservations: &self.reservations,
            now: cx.now,
        };
        let Some(state) = self.subnets.get_mut(cx.subnet_idx) else {
            return Outcome::default();
        };
        let Some(ip) = pool.allocate(&want, &mut state.cursor) else {
            self.pool_full(cx);
            return Outcome::default();
        };
        let mut changes = Vec::new();
        self.hold_offer(cx, ip, &mut changes);
        debug!(xid = cx.req.xid, client = %cx.client, %ip, "offer");
        let reply = self.positive(cx, MessageType::Offer, ip, Some(cx.subnet.lease_time));
        Outcome {
            reply: Some(reply),
            changes,
        }
    }

    /// Hold `ip` for the client as an offer (a bound lease of its own stays bound). The client's
    /// other offers are dropped; a lease of another whose time is up is ended.
    fn hold_offer(&mut self, cx: &Ctx<'_>, ip: Ipv4Addr, changes: &mut Vec<LeaseChange>) {
        self.drop_offers(&cx.client, Some(ip));
        let old_name = match self.table.get(ip) {
            Some(l) if held_by(l, &cx.client) && l.state == LeaseState::Bound => return,
            Some(l) if held_by(l, &cx.client) => l.hostname.clone(),
            Some(_) => {
                self.end_other(ip, RemoveReason::Expired, changes);
                None
            }
            None => None,
        };
        let hold = u64::from(self.cfg.offer_hold);
        self.table.insert(Lease {
            ip,
            client: cx.client.clone(),
            hwaddr: cx.req.hwaddr.clone(),
            hostname: self.hostname(cx).or(old_name),
            expires: cx.now.plus(hold),
            state: LeaseState::Offered,
        });
    }

    fn request(&mut self, cx: &Ctx<'_>) -> Outcome {
        let req = cx.req;
        if let Some(sid) = req.server_id {
            return self.selecting(cx, sid);
        }
        if !req.ciaddr.is_unspecified() {
            return self.confirm(cx, req.ciaddr, false);
        }
        match req.requested_ip {
            Some(ip) => self.confirm(cx, ip, true),
            None => {
                debug!(
                    xid = req.xid,
                    "request without server id, ciaddr or requested address"
                );
                Outcome::default()
            }
        }
    }

    /// REQUEST in SELECTING state: the client chose a server (option 54).
    fn selecting(&mut self, cx: &Ctx<'_>, sid: Ipv4Addr) -> Outcome {
        if sid != cx.server_id {
            debug!(xid = cx.req.xid, client = %cx.client, %sid, "client chose another server");
            self.drop_offers(&cx.client, None);
            return Outcome::default();
        }
        let ciaddr = Some(cx.req.ciaddr).filter(|a| !a.is_unspecified());
        let Some(ip) = cx.req.requested_ip.or(ciaddr) else {
            return self.nak(cx, "no requested address");
        };
        let ours = self.table.get(ip).is_some_and(|l| held_by(l, &cx.client));
        let reserved = self
            .reservations
            .reserved_for_other(ip, &cx.client, &cx.req.hwaddr);
        if ours && cx.subnet.contains(ip) && !reserved {
            self.ack(cx, ip)
        } else {
            self.nak(cx, "requested address is not the one offered")
        }
    }

    /// REQUEST in INIT-REBOOT (`ip` from option 50, `reboot`) or RENEWING/REBINDING (`ip` is
    /// ciaddr): ACK when the client may keep `ip`, else NAK (when we are sure it is wrong).
    fn confirm(&mut self, cx: &Ctx<'_>, ip: Ipv4Addr, reboot: bool) -> Outcome {
        if !cx.subnet.contains(ip) {
            return self.nak_if_authoritative(cx, "address not on this segment");
        }
        let want = self.want(cx, Some(ip));
        let pool = Pool {
            subnet: cx.subnet,
            table: &self.table,
            reservations: &self.reservations,
            now: cx.now,
        };
        if let Some(r) = self.reservations.for_client(&cx.client, &cx.req.hwaddr)
            && r.ip != ip
            && pool.may_have(r.ip, &want)
        {
            return self.nak(cx, "client has a reservation elsewhere");
        }
        if pool.may_have(ip, &want) {
            return self.ack(cx, ip);
        }
        let taken = self.table.get(ip).is_some_and(|l| l.expires > cx.now)
            || self
                .reservations
                .reserved_for_other(ip, &cx.client, &cx.req.hwaddr);
        if reboot && taken {
            self.nak(cx, "address belongs to another client")
        } else {
            self.nak_if_authoritative(cx, "address not available")
        }
    }

    fn ack(&mut self, cx: &Ctx<'_>, ip: Ipv4Addr) -> Outcome {
        let changes = self.bind(cx, ip);
        info!(xid = cx.req.xid, client = %cx.client, %ip, "ack");
        let reply = self.positive(cx, MessageType::Ack, ip, Some(cx.subnet.lease_time));
        Outcome {
            reply: Some(reply),
            changes,
        }
    }

    /// Bind `ip` to the client: its other leases end (superseded), a lease of another on `ip`
    /// ends, then the new lease is upserted.
    fn bind(&mut self, cx: &Ctx<'_>, ip: Ipv4Addr) -> Vec<LeaseChange> {
        let mut changes = Vec::new();
        let others: Vec<_> = self
            .table
            .by_client(&cx.client)
            .filter(|l| l.ip != ip)
            .map(|l| (l.ip, l.state))
            .collect();
        for (old, state) in others {
            self.table.remove(old);
            if state == LeaseState::Bound {
                let reason = RemoveReason::Superseded;
                changes.push(LeaseChange::Remove { ip: old, reason });
            }
        }
        let old_name = match self.table.get(ip) {
            Some(l) if held_by(l, &cx.client) => l.hostname.clone(),
            Some(_) => {
                self.end_other(ip, RemoveReason::Superseded, &mut changes);
                None
            }
            None => None,
        };
        let lease = Lease {
            ip,
            client: cx.client.clone(),
            hwaddr: cx.req.hwaddr.clone(),
            hostname: self.hostname(cx).or(old_name),
            expires: cx.now.plus(u64::from(cx.subnet.lease_time)),
            state: LeaseState::Bound,
        };
        self.table.insert(lease.clone());
        changes.push(LeaseChange::Upsert(lease));
        changes
    }

    fn release(&mut self, req: &Request, client: &ClientId) -> Outcome {
        let ip = req.ciaddr;
        let mine = self
            .table
            .get(ip)
            .is_some_and(|l| held_by(l, client) && l.state == LeaseState::Bound);
        if !mine {
            debug!(xid = req.xid, %client, %ip, "release of a lease that is not the client's");
            return Outcome::default();
        }
        self.table.remove(ip);
        info!(xid = req.xid, %client, %ip, "released");
        let reason = RemoveReason::Released;
        Outcome {
            reply: None,
            changes: vec![LeaseChange::Remove { ip, reason }],
        }
    }

    fn decline(&mut self, now: UnixTime, req: &Request, client: &ClientId) -> Outcome {
        let Some(ip) = req.requested_ip else {
            return Outcome::default();
        };
        let Some(old) = self.table.get(ip).filter(|l| held_by(l, client)) else {
            debug!(xid = req.xid, %client, %ip, "decline of an address not offered to the client");
            return Outcome::default();
        };
        let lease = Lease {
            hostname: None,
            expires: now.plus(u64::from(self.cfg.decline_hold)),
            state: LeaseState::Declined,
            ..old.clone()
        };
        warn!(xid = req.xid, %client, %ip, "client declined the address (in use?); set aside");
        self.table.insert(lease.clone());
        Outcome {
            reply: None,
            changes: vec![LeaseChange::Upsert(lease)],
        }
    }

    fn inform(&mut self, cx: &Ctx<'_>) -> Outcome {
        debug!(xid = cx.req.xid, client = %cx.client, ciaddr = %cx.req.ciaddr, "inform");
        let reply = self.positive(cx, MessageType::Ack, Ipv4Addr::UNSPECIFIED, None);
        Outcome {
            reply: Some(reply),
            changes: Vec::new(),
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

    /// The name for the client's lease: its reservation's, else the one it sent, if valid.
    fn hostname(&self, cx: &Ctx<'_>) -> Option<String> {
        let reserved = self.reservations.for_client(&cx.client, &cx.req.hwaddr);
        reserved
            .and_then(|r| r.name.clone())
            .or_else(|| cx.req.hostname.as_deref().and_then(valid_hostname))
    }

    /// Log that the pool is full, at most once a minute per subnet.
    fn pool_full(&mut self, cx: &Ctx<'_>) -> bool {
        let Some(state) = self.subnets.get_mut(cx.subnet_idx) else {
            return false;
        };
        let due = state
            .full_warned
            .is_none_or(|t| cx.now >= t.plus(POOL_FULL_WARN_EVERY));
        if due {
            state.full_warned = Some(cx.now);
            let net = cx.subnet.network;
            warn!(subnet = %net, prefix = cx.subnet.prefix_len, "address pool exhausted; no offer");
        }
        due
    }

    fn nak_if_authoritative(&self, cx: &Ctx<'_>, why: &str) -> Outcome {
        if cx.subnet.authoritative {
            self.nak(cx, why)
        } else {
            debug!(xid = cx.req.xid, client = %cx.client, why, "not authoritative; silent");
            Outcome::default()
        }
    }

    fn nak(&self, cx: &Ctx<'_>, why: &str) -> Outcome {
        info!(xid = cx.req.xid, client = %cx.client, why, "nak");
        let req = cx.req;
        let relayed = !req.giaddr.is_unspecified();
        let mut msg = reply_header(req, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED);
        if relayed {
            msg.set_flags(Flags::default().set_broadcast());
        }
        msg.set_opts(options::nak(cx.server_id, req.relay_info.as_deref()));
        let dest = dest::choose(
            req,
            Ipv4Addr::UNSPECIFIED,
            true,
            cx.iface.index,
            self.ports(),
        );
        let reply = Reply {
            msg,
            dest,
            max_size: max_size(req),
        };
        Outcome {
            reply: Some(reply),
            changes: Vec::new(),
        }
    }

    /// An OFFER or ACK for `yiaddr` (unspecified for INFORM, which has no lease time).
    fn positive(
        &self,
        cx: &Ctx<'_>,
        msg_type: MessageType,
        yiaddr: Ipv4Addr,
        lease_time: Option<u32>,
    ) -> Reply {
        let req = cx.req;
        let ciaddr = if msg_type == MessageType::Ack {
            req.ciaddr
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        let mut msg = reply_header(req, ciaddr, yiaddr);
        msg.set_opts(options::reply(&ReplyOptions {
            msg_type,
            server_id: cx.server_id,
            subnet: cx.subnet,
            domain: &self.cfg.domain,
            lease_time,
            relay_info: req.relay_info.as_deref(),
        }));
        let dest = dest::choose(req, yiaddr, false, cx.iface.index, self.ports());
        Reply {
            msg,
            dest,
            max_size: max_size(req),
        }
    }

    fn ports(&self) -> Ports {
        Ports {
            server: self.cfg.dhcp_port,
            client: self.cfg.client_port,
        }
    }
}

/// The client's identity: option 61 when it sent a non-empty one, else type + chaddr.
pub fn client_id(req: &Request) -> ClientId {
    match &req.client_id {
        Some(id) if !id.is_empty() => ClientId(id.clone()),
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

/// A BOOTREPLY header answering `req`: xid, flags, htype, chaddr and giaddr copied.
fn reply_header(req: &Request, ciaddr: Ipv4Addr, yiaddr: Ipv4Addr) -> Message {
    let flags = if req.broadcast {
        Flags::default().set_broadcast()
    } else {
        Flags::default()
    };
    let mut msg = Message::default();
    msg.set_opcode(Opcode::BootReply)
        .set_htype(HType::from(req.htype))
        .set_xid(req.xid)
        .set_flags(flags)
        .set_ciaddr(ciaddr)
        .set_yiaddr(yiaddr)
        .set_giaddr(req.giaddr)
        .set_chaddr(&req.hwaddr.bytes);
    msg
}

fn max_size(req: &Request) -> usize {
    req.max_size
        .map_or(MIN_MAX_SIZE, usize::from)
        .max(MIN_MAX_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DnsConfig, Durability, Reservation};
    use crate::lease::HwAddr;
    use dhcproto::v4::{DhcpOption, OptionCode};
    use std::net::SocketAddrV4;
    use std::path::PathBuf;

    const SID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const RELAY_SID: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
    const GIADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 5, 1);
    const UNSPEC: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
    const PRINTER: u8 = 50;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }
    fn mac(n: u8) -> HwAddr {
        HwAddr::ethernet([0x52, 0x54, 0, 0, 0, n])
    }
    fn id(n: u8) -> ClientId {
        ClientId::from_hw(&mac(n))
    }

    fn subnet(net: Ipv4Addr, first: Ipv4Addr, last: Ipv4Addr) -> Subnet {
        Subnet {
            network: net,
            prefix_len: 24,
            pool_start: first,
            pool_end: last,
            router: Some(Ipv4Addr::from(u32::from(net) + 1)),
            dns_servers: vec![Ipv4Addr::from(u32::from(net) + 1)],
            lease_time: 3600,
            interface: None,
            authoritative: true,
        }
    }

    /// 10.0.0.0/24 with pool .100 to `last`, a relayed 192.168.5.0/24, and client 50 (the
    /// printer) reserved at 10.0.0.10.
    fn cfg(last: u8) -> Config {
        Config {
            path: PathBuf::from("test.toml"),
            interfaces: vec![],
            domain: "lan".into(),
            dhcp_port: 67,
            client_port: 68,
            lease_file: PathBuf::from("/nonexistent"),
            durability: Durability::None,
            renew_write_fraction: 0.5,
            offer_hold: 60,
            decline_hold: 600,
            dns: DnsConfig::default(),
            subnets: vec![
                subnet(ip(0), ip(100), ip(last)),
                subnet(
                    Ipv4Addr::new(192, 168, 5, 0),
                    Ipv4Addr::new(192, 168, 5, 100),
                    Ipv4Addr::new(192, 168, 5, 199),
                ),
            ],
            reservations: vec![Reservation {
                hwaddr: Some(mac(PRINTER)),
                client_id: None,
                ip: ip(10),
                name: Some("printer".into()),
            }],
        }
    }

    fn engine(cfg: Config) -> Engine {
        Engine::new(Arc::new(cfg), vec![], UnixTime(0))
    }

    fn eth0() -> Iface {
        Iface {
            index: 2,
            name: "eth0".into(),
            addrs: vec![(SID, 24)],
        }
    }
    fn uplink() -> Iface {
        Iface {
            index: 3,
            name: "eth1".into(),
            addrs: vec![(RELAY_SID, 30)],
        }
    }

    fn base(n: u8, msg_type: MessageType) -> Request {
        Request {
            htype: 1,
            hops: 0,
            xid: 0x1000 + u32::from(n),
            secs: 0,
            broadcast: false,
            ciaddr: UNSPEC,
            yiaddr: UNSPEC,
            siaddr: UNSPEC,
            giaddr: UNSPEC,
            hwaddr: mac(n),
            msg_type,
            client_id: None,
            requested_ip: None,
            server_id: None,
            hostname: None,
            params: vec![1, 3, 6, 15],
            max_size: None,
            lease_time: None,
            relay_info: None,
            vendor_class: None,
            fqdn: None,
        }
    }
    fn discover(n: u8) -> Request {
        base(n, MessageType::Discover)
    }
    /// REQUEST in SELECTING state: option 54 and option 50.
    fn select(n: u8, want: Ipv4Addr, sid: Ipv4Addr) -> Request {
        Request {
            server_id: Some(sid),
            requested_ip: Some(want),
            ..base(n, MessageType::Request)
        }
    }
    /// REQUEST in INIT-REBOOT state: option 50 only.
    fn reboot(n: u8, want: Ipv4Addr) -> Request {
        Request {
            requested_ip: Some(want),
            ..base(n, MessageType::Request)
        }
    }
    /// REQUEST in RENEWING (or, broadcast, REBINDING) state: ciaddr only.
    fn renew(n: u8, have: Ipv4Addr) -> Request {
        Request {
            ciaddr: have,
            ..base(n, MessageType::Request)
        }
    }
    fn release(n: u8, have: Ipv4Addr) -> Request {
        Request {
            ciaddr: have,
            server_id: Some(SID),
            ..base(n, MessageType::Release)
        }
    }
    fn decline(n: u8, bad: Ipv4Addr) -> Request {
        Request {
            requested_ip: Some(bad),
            server_id: Some(SID),
            ..base(n, MessageType::Decline)
        }
    }

    fn at(e: &mut Engine, t: u64, req: &Request) -> Outcome {
        e.handle(UnixTime(t), req, &eth0())
    }
    fn kind(o: &Outcome) -> Option<MessageType> {
        o.reply.as_ref().and_then(|r| r.msg.opts().msg_type())
    }
    fn yiaddr(o: &Outcome) -> Option<Ipv4Addr> {
        o.reply.as_ref().map(|r| r.msg.yiaddr())
    }
    fn opt(o: &Outcome, code: OptionCode) -> Option<DhcpOption> {
        o.reply
            .as_ref()
            .and_then(|r| r.msg.opts().get(code).cloned())
    }
    fn bound(e: &Engine, n: u8) -> Vec<Ipv4Addr> {
        let c = id(n);
        let l = e.leases();
        l.iter()
            .filter(|l| l.client == c && l.state == LeaseState::Bound)
            .map(|l| l.ip)
            .collect()
    }

    /// DISCOVER, OFFER, REQUEST, ACK at `t`; returns the bound address.
    fn dora(e: &mut Engine, t: u64, n: u8) -> Ipv4Addr {
        let offer = at(e, t, &discover(n));
        assert_eq!(
            kind(&offer),
            Some(MessageType::Offer),
            "client {n} gets an offer"
        );
        let got = yiaddr(&offer).expect("offer has an address");
        let ack = at(e, t, &select(n, got, SID));
        assert_eq!(kind(&ack), Some(MessageType::Ack), "client {n} gets an ack");
        got
    }

    #[test]
    fn dora_offers_then_binds_and_reports_only_the_ack() {
        let mut e = engine(cfg(109));
        // t=1000: DISCOVER with a host name.
        let mut d = discover(1);
        d.hostname = Some(b"Laptop.example.com".to_vec());
        let offer = at(&mut e, 1000, &d);
        assert_eq!(kind(&offer), Some(MessageType::Offer));
        assert_eq!(yiaddr(&offer), Some(ip(100)));
        assert!(offer.changes.is_empty(), "offers are not lease changes");
        assert!(e.leases().is_empty());
        assert_eq!(
            opt(&offer, OptionCode::ServerIdentifier),
            Some(DhcpOption::ServerIdentifier(SID))
        );
        assert_eq!(
            opt(&offer, OptionCode::AddressLeaseTime),
            Some(DhcpOption::AddressLeaseTime(3600))
        );
        let r = offer.reply.as_ref().expect("offer");
        assert_eq!(r.msg.opcode(), Opcode::BootReply);
        assert_eq!(r.msg.xid(), d.xid);
        assert_eq!(r.msg.chaddr(), &mac(1).bytes[..]);
        assert_eq!(r.max_size, 576);
        let direct = Dest::Direct {
            ip: ip(100),
            hwaddr: mac(1),
            ifindex: 2,
        };
        assert_eq!(r.dest, direct);

        // t=1001: REQUEST for the offered address -> ACK, one Upsert.
        let ack = at(&mut e, 1001, &select(1, ip(100), SID));
        assert_eq!(kind(&ack), Some(MessageType::Ack));
        assert_eq!(yiaddr(&ack), Some(ip(100)));
        let want = Lease {
            ip: ip(100),
            client: id(1),
            hwaddr: mac(1),
            hostname: Some("laptop".into()),
            expires: UnixTime(1001 + 3600),
            state: LeaseState::Bound,
        };
        assert_eq!(ack.changes, vec![LeaseChange::Upsert(want.clone())]);
        assert_eq!(e.leases(), vec![want]);
        assert_eq!(e.poll_at(), Some(UnixTime(4601)));
    }

    #[test]
    fn two_clients_never_get_the_same_address() {
        let mut e = engine(cfg(102));
        let a = yiaddr(&at(&mut e, 0, &discover(1)));
        let b = yiaddr(&at(&mut e, 0, &discover(2)));
        let c = yiaddr(&at(&mut e, 0, &discover(3)));
        assert!(a.is_some() && b.is_some() && c.is_some());
        assert!(a != b && b != c && a != c);
        // Client 2 asks for client 1's offered address: it keeps its own.
        let mut d = discover(2);
        d.requested_ip = a;
        assert_eq!(yiaddr(&at(&mut e, 1, &d)), b);
        // And cannot take it with a REQUEST either.
        let stolen = at(&mut e, 1, &select(2, a.unwrap_or(UNSPEC), SID));
        assert_eq!(kind(&stolen), Some(MessageType::Nak));
    }

    #[test]
    fn reservation_wins_and_is_never_given_to_others() {
        let mut e = engine(cfg(109));
        // Client 1 asks for the printer's address: it gets a pool address instead.
        let mut d = discover(1);
        d.requested_ip = Some(ip(10));
        assert_eq!(yiaddr(&at(&mut e, 0, &d)), Some(ip(100)));
        let nak = at(&mut e, 0, &reboot(1, ip(10)));
        assert_eq!(kind(&nak), Some(MessageType::Nak));
        // The printer gets its address and its configured name over the one it sends.
        let mut d = discover(PRINTER);
        d.hostname = Some(b"HP-1234".to_vec());
        assert_eq!(yiaddr(&at(&mut e, 0, &d)), Some(ip(10)));
        let mut r = select(PRINTER, ip(10), SID);
        r.hostname = Some(b"HP-1234".to_vec());
        let ack = at(&mut e, 0, &r);
        match ack.changes.as_slice() {
            [LeaseChange::Upsert(l)] => assert_eq!(l.hostname.as_deref(), Some("printer")),
            other => panic!("unexpected changes {other:?}"),
        }
        // The printer renewing a pool address it somehow holds is sent back to its reservation.
        let nak = at(&mut e, 10, &reboot(PRINTER, ip(105)));
        assert_eq!(kind(&nak), Some(MessageType::Nak));
    }

    #[test]
    fn renew_extends_the_lease_and_answers_by_unicast() {
        let mut e = engine(cfg(109));
        let got = dora(&mut e, 0, 1);
        // t=1800 (T1): unicast REQUEST with ciaddr.
        let ack = at(&mut e, 1800, &renew(1, got));
        assert_eq!(kind(&ack), Some(MessageType::Ack));
        let r = ack.reply.as_ref().expect("ack");
        assert_eq!(r.msg.ciaddr(), got);
        assert_eq!(r.msg.yiaddr(), got);
        assert_eq!(r.dest, Dest::Unicast(SocketAddrV4::new(got, 68)));
        match ack.changes.as_slice() {
            [LeaseChange::Upsert(l)] => assert_eq!(l.expires, UnixTime(1800 + 3600)),
            other => panic!("unexpected changes {other:?}"),
        }
        assert_eq!(e.poll_at(), Some(UnixTime(5400)));
        assert_eq!(bound(&e, 1), vec![got]);
    }

    #[test]
    fn rebind_recreates_a_lost_lease_but_never_takes_anothers() {
        let mut e = engine(cfg(109));
        let theirs = dora(&mut e, 0, 2);
        // t=3150 (T2): client 1 rebinds (broadcast) an address we have no lease for: dnsmasq-
        // style, it is free in our pool, so it gets it.
        let mut rb = renew(1, ip(105));
        rb.broadcast = true;
        let ack = at(&mut e, 3150, &rb);
        assert_eq!(kind(&ack), Some(MessageType::Ack));
        assert_eq!(bound(&e, 1), vec![ip(105)]);
        // Client 3 rebinds client 2's address: NAK, broadcast.
        let nak = at(&mut e, 3150, &renew(3, theirs));
        assert_eq!(kind(&nak), Some(MessageType::Nak));
        assert_eq!(
            nak.reply.as_ref().map(|r| r.dest.clone()),
            Some(Dest::Broadcast { ifindex: 2 })
        );
        assert!(nak.changes.is_empty());
        // Not authoritative: silence instead.
        let mut c = cfg(109);
        c.subnets[0].authoritative = false;
        let mut e = engine(c);
        let theirs = dora(&mut e, 0, 2);
        let quiet = at(&mut e, 10, &renew(3, theirs));
        assert!(quiet.reply.is_none() && quiet.changes.is_empty());
    }

    #[test]
    fn init_reboot_acks_own_or_free_and_naks_wrong_subnet_or_anothers() {
        let mut e = engine(cfg(109));
        let mine = dora(&mut e, 0, 1);
        let theirs = dora(&mut e, 0, 2);
        // t=100: client 1 reboots and asks for its address.
        assert_eq!(
            kind(&at(&mut e, 100, &reboot(1, mine))),
            Some(MessageType::Ack)
        );
        // Client 3 asks for client 2's address.
        assert_eq!(
            kind(&at(&mut e, 100, &reboot(3, theirs))),
            Some(MessageType::Nak)
        );
        // Client 3 comes from another network.
        let away = reboot(3, Ipv4Addr::new(192, 168, 99, 5));
        let nak = at(&mut e, 100, &away);
        assert_eq!(kind(&nak), Some(MessageType::Nak));
        assert_eq!(yiaddr(&nak), Some(UNSPEC));
        // Client 3 asks for a free pool address: fine.
        assert_eq!(
            kind(&at(&mut e, 100, &reboot(3, ip(107)))),
            Some(MessageType::Ack)
        );
        assert_eq!(bound(&e, 3), vec![ip(107)]);

        // Not authoritative: wrong network gets silence, but a stolen address still a NAK.
        let mut c = cfg(109);
        c.subnets[0].authoritative = false;
        let mut e = engine(c);
        let theirs = dora(&mut e, 0, 2);
        assert!(at(&mut e, 100, &away).reply.is_none());
        assert_eq!(
            kind(&at(&mut e, 100, &reboot(3, theirs))),
            Some(MessageType::Nak)
        );
    }

    #[test]
    fn request_for_another_address_than_offered_is_naked() {
        let mut e = engine(cfg(109));
        assert_eq!(yiaddr(&at(&mut e, 0, &discover(1))), Some(ip(100)));
        let nak = at(&mut e, 1, &select(1, ip(101), SID));
        assert_eq!(kind(&nak), Some(MessageType::Nak));
        assert!(nak.changes.is_empty());
        let r = nak.reply.as_ref().expect("nak");
        assert_eq!(r.dest, Dest::Broadcast { ifindex: 2 });
        assert_eq!(r.msg.opts().get(OptionCode::AddressLeaseTime), None);
        assert_eq!(
            opt(&nak, OptionCode::ServerIdentifier),
            Some(DhcpOption::ServerIdentifier(SID))
        );
        assert!(e.leases().is_empty());
    }

    #[test]
    fn choosing_another_server_drops_our_offer() {
        let mut e = engine(cfg(100)); // one address
        assert_eq!(yiaddr(&at(&mut e, 0, &discover(1))), Some(ip(100)));
        assert!(
            at(&mut e, 1, &discover(2)).reply.is_none(),
            "held for client 1"
        );
        // Client 1 takes 10.0.0.254's offer instead.
        let other = at(&mut e, 2, &select(1, ip(100), Ipv4Addr::new(10, 0, 0, 254)));
        assert!(other.reply.is_none() && other.changes.is_empty());
        assert_eq!(yiaddr(&at(&mut e, 3, &discover(2))), Some(ip(100)));
    }

    #[test]
    fn offer_hold_runs_out_silently() {
        let mut e = engine(cfg(100)); // one address
        assert_eq!(yiaddr(&at(&mut e, 0, &discover(1))), Some(ip(100)));
        assert!(at(&mut e, 10, &discover(2)).reply.is_none());
        assert_eq!(e.poll_at(), Some(UnixTime(60)));
        assert!(e.expire(UnixTime(59)).is_empty());
        assert!(
            e.expire(UnixTime(60)).is_empty(),
            "offers end without a change"
        );
        assert_eq!(e.poll_at(), None);
        assert_eq!(yiaddr(&at(&mut e, 61, &discover(2))), Some(ip(100)));
        // Client 1 comes back too late for its offer.
        assert_eq!(
            kind(&at(&mut e, 62, &select(1, ip(100), SID))),
            Some(MessageType::Nak)
        );
    }

    #[test]
    fn bound_lease_expires_at_its_time() {
        let mut e = engine(cfg(109));
        let got = dora(&mut e, 0, 1);
        assert_eq!(e.poll_at(), Some(UnixTime(3600)));
        assert!(e.expire(UnixTime(3599)).is_empty());
        let gone = e.expire(UnixTime(3600));
        assert_eq!(
            gone,
            vec![LeaseChange::Remove {
                ip: got,
                reason: RemoveReason::Expired
            }]
        );
        assert!(e.leases().is_empty());
        assert_eq!(e.poll_at(), None);
    }

    #[test]
    fn release_ends_only_the_clients_own_lease() {
        let mut e = engine(cfg(109));
        let got = dora(&mut e, 0, 1);
        let spoof = at(&mut e, 10, &release(2, got));
        assert!(spoof.reply.is_none() && spoof.changes.is_empty());
        assert_eq!(bound(&e, 1), vec![got]);
        let out = at(&mut e, 20, &release(1, got));
        assert!(out.reply.is_none());
        assert_eq!(
            out.changes,
            vec![LeaseChange::Remove {
                ip: got,
                reason: RemoveReason::Released
            }]
        );
        assert!(e.leases().is_empty());
    }

    #[test]
    fn declined_address_is_set_aside_until_the_hold_ends() {
        let mut e = engine(cfg(101)); // .100 and .101
        let bad = dora(&mut e, 0, 1);
        assert_eq!(bad, ip(100));
        // t=5: client 1 finds .100 in use and declines it.
        let out = at(&mut e, 5, &decline(1, bad));
        assert!(out.reply.is_none());
        match out.changes.as_slice() {
            [LeaseChange::Upsert(l)] => {
                assert_eq!(
                    (l.ip, l.state, l.expires),
                    (bad, LeaseState::Declined, UnixTime(605))
                );
            }
            other => panic!("unexpected changes {other:?}"),
        }
        assert!(bound(&e, 1).is_empty());
        // Client 1 is offered the other address, client 2 nothing.
        assert_eq!(yiaddr(&at(&mut e, 6, &discover(1))), Some(ip(101)));
        assert!(at(&mut e, 7, &discover(2)).reply.is_none());
        // Nobody may claim it meanwhile.
        assert_eq!(
            kind(&at(&mut e, 8, &reboot(2, bad))),
            Some(MessageType::Nak)
        );
        // t=605: the hold ends, reported as an expiry; then it can be offered again.
        let ended = e.expire(UnixTime(605));
        assert!(ended.contains(&LeaseChange::Remove {
            ip: bad,
            reason: RemoveReason::Expired
        }));
        assert_eq!(yiaddr(&at(&mut e, 606, &discover(2))), Some(bad));
    }

    #[test]
    fn decline_of_an_address_not_ours_is_ignored() {
        let mut e = engine(cfg(109));
        let got = dora(&mut e, 0, 1);
        let out = at(&mut e, 5, &decline(2, got));
        assert!(out.reply.is_none() && out.changes.is_empty());
        assert_eq!(bound(&e, 1), vec![got]);
    }

    #[test]
    fn inform_gets_options_without_an_address_or_lease() {
        let mut e = engine(cfg(109));
        let mut req = base(7, MessageType::Inform);
        req.ciaddr = ip(50);
        let out = at(&mut e, 0, &req);
        assert_eq!(kind(&out), Some(MessageType::Ack));
        assert!(out.changes.is_empty() && e.leases().is_empty());
        let r = out.reply.as_ref().expect("ack");
        assert_eq!(r.msg.yiaddr(), UNSPEC);
        assert_eq!(r.msg.ciaddr(), ip(50));
        assert_eq!(r.dest, Dest::Unicast(SocketAddrV4::new(ip(50), 68)));
        assert_eq!(opt(&out, OptionCode::AddressLeaseTime), None);
        assert_eq!(
            opt(&out, OptionCode::Router),
            Some(DhcpOption::Router(vec![SID]))
        );
        assert_eq!(
            opt(&out, OptionCode::DomainName),
            Some(DhcpOption::DomainName("lan".into()))
        );
    }

    #[test]
    fn returning_client_gets_its_previous_address() {
        let mut e = engine(cfg(109));
        let first = dora(&mut e, 0, 1);
        at(&mut e, 10, &release(1, first));
        // Another client comes and goes; the scan has moved on past `first`.
        let other = dora(&mut e, 20, 2);
        assert_ne!(other, first);
        // Client 1 returns and is offered its old address, not the next free one.
        assert_eq!(yiaddr(&at(&mut e, 30, &discover(1))), Some(first));
        // Same after expiry.
        let mut e = engine(cfg(109));
        let first = dora(&mut e, 0, 1);
        e.expire(UnixTime(3600));
        dora(&mut e, 3601, 2);
        assert_eq!(yiaddr(&at(&mut e, 3602, &discover(1))), Some(first));
    }

    #[test]
    fn exhausted_pool_gets_no_offer_and_warns_once_a_minute() {
        let mut e = engine(cfg(101));
        dora(&mut e, 0, 1);
        dora(&mut e, 0, 2);
        let out = at(&mut e, 100, &discover(3));
        assert!(out.reply.is_none() && out.changes.is_empty());
        assert_eq!(e.subnets[0].full_warned, Some(UnixTime(100)));
        at(&mut e, 130, &discover(3));
        assert_eq!(
            e.subnets[0].full_warned,
            Some(UnixTime(100)),
            "no second warning yet"
        );
        at(&mut e, 160, &discover(4));
        assert_eq!(e.subnets[0].full_warned, Some(UnixTime(160)));
    }

    #[test]
    fn relayed_requests_use_the_giaddr_subnet_and_go_back_to_the_relay() {
        let mut e = engine(cfg(109));
        let mut d = discover(1);
        d.giaddr = GIADDR;
        d.hops = 1;
        d.relay_info = Some(vec![1, 3, b'p', b'o', b'1']);
        let offer = e.handle(UnixTime(0), &d, &uplink());
        let got = Ipv4Addr::new(192, 168, 5, 100);
        assert_eq!(yiaddr(&offer), Some(got));
        let r = offer.reply.as_ref().expect("offer");
        assert_eq!(r.dest, Dest::Relay(SocketAddrV4::new(GIADDR, 67)));
        assert_eq!(r.msg.giaddr(), GIADDR);
        assert!(
            r.msg
                .opts()
                .get(OptionCode::RelayAgentInformation)
                .is_some()
        );
        let sid = DhcpOption::ServerIdentifier(RELAY_SID);
        assert_eq!(opt(&offer, OptionCode::ServerIdentifier), Some(sid));
        let mask = DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(opt(&offer, OptionCode::SubnetMask), Some(mask));

        let mut rq = select(1, got, RELAY_SID);
        rq.giaddr = GIADDR;
        let ack = e.handle(UnixTime(1), &rq, &uplink());
        assert_eq!(kind(&ack), Some(MessageType::Ack));
        // A NAK to a relay asks it to broadcast.
        let mut bad = reboot(2, got);
        bad.giaddr = GIADDR;
        let nak = e.handle(UnixTime(2), &bad, &uplink());
        let r = nak.reply.as_ref().expect("nak");
        assert!(r.msg.flags().broadcast());
        assert_eq!(r.dest, Dest::Relay(SocketAddrV4::new(GIADDR, 67)));
        // A relay from a network we do not serve: nothing.
        let mut lost = discover(3);
        lost.giaddr = Ipv4Addr::new(192, 168, 77, 1);
        assert!(e.handle(UnixTime(3), &lost, &uplink()).reply.is_none());
    }

    #[test]
    fn subnet_bound_to_an_interface_is_served_only_there() {
        let mut c = cfg(109);
        c.subnets[0].interface = Some("eth0".into());
        let mut e = engine(c);
        let elsewhere = Iface {
            index: 9,
            name: "eth9".into(),
            addrs: vec![(SID, 24)],
        };
        assert!(
            e.handle(UnixTime(0), &discover(1), &elsewhere)
                .reply
                .is_none()
        );
        assert!(at(&mut e, 0, &discover(1)).reply.is_some());
        let unnumbered = Iface {
            index: 4,
            name: "eth4".into(),
            addrs: vec![],
        };
        assert!(
            e.handle(UnixTime(0), &discover(1), &unnumbered)
                .reply
                .is_none()
        );
    }

    #[test]
    fn broadcast_flag_and_client_max_size_shape_the_reply() {
        let mut e = engine(cfg(109));
        let mut d = discover(1);
        d.broadcast = true;
        d.max_size = Some(1500);
        let r = at(&mut e, 0, &d).reply.expect("offer");
        assert_eq!(r.dest, Dest::Broadcast { ifindex: 2 });
        assert!(r.msg.flags().broadcast());
        assert_eq!(r.max_size, 1500);
        d.max_size = Some(300);
        assert_eq!(at(&mut e, 0, &d).reply.map(|r| r.max_size), Some(576));
    }

    #[test]
    fn moving_to_a_new_address_removes_the_old_one_first() {
        let mut e = engine(cfg(109));
        let old = dora(&mut e, 0, 1);
        let out = at(&mut e, 50, &reboot(1, ip(105)));
        assert_eq!(kind(&out), Some(MessageType::Ack));
        match out.changes.as_slice() {
            [
                LeaseChange::Remove { ip: gone, reason },
                LeaseChange::Upsert(l),
            ] => {
                assert_eq!((*gone, *reason), (old, RemoveReason::Superseded));
                assert_eq!(l.ip, ip(105));
            }
            other => panic!("unexpected changes {other:?}"),
        }
        assert_eq!(bound(&e, 1), vec![ip(105)]);
    }

    #[test]
    fn client_identifier_is_the_identity_when_sent() {
        let mut e = engine(cfg(109));
        let mut d = discover(1);
        d.client_id = Some(vec![0, b'h', b'o', b's', b't']);
        let got = yiaddr(&at(&mut e, 0, &d)).expect("offer");
        let mut r = select(1, got, SID);
        r.client_id = d.client_id.clone();
        let ack = at(&mut e, 0, &r);
        match ack.changes.as_slice() {
            [LeaseChange::Upsert(l)] => {
                assert_eq!(l.client, ClientId(vec![0, b'h', b'o', b's', b't']))
            }
            other => panic!("unexpected changes {other:?}"),
        }
        // The same MAC without the identifier is another client.
        assert_eq!(
            kind(&at(&mut e, 1, &reboot(1, got))),
            Some(MessageType::Nak)
        );
    }

    #[test]
    fn recovered_leases_are_kept_unless_their_time_is_up() {
        let live = Lease {
            ip: ip(100),
            client: id(1),
            hwaddr: mac(1),
            hostname: Some("a".into()),
            expires: UnixTime(5000),
            state: LeaseState::Bound,
        };
        let dead = Lease {
            ip: ip(101),
            client: id(2),
            expires: UnixTime(999),
            ..live.clone()
        };
        let offer = Lease {
            ip: ip(102),
            state: LeaseState::Offered,
            ..live.clone()
        };
        let e = Engine::new(
            Arc::new(cfg(109)),
            vec![live.clone(), dead, offer],
            UnixTime(1000),
        );
        assert_eq!(e.leases(), vec![live]);
        let mut e = e;
        assert_eq!(yiaddr(&at(&mut e, 1000, &discover(1))), Some(ip(100)));
        assert_eq!(yiaddr(&at(&mut e, 1000, &discover(2))), Some(ip(101)));
    }

    #[test]
    fn host_names_must_be_dns_labels() {
        assert_eq!(valid_hostname(b"Laptop"), Some("laptop".into()));
        assert_eq!(valid_hostname(b"my-pc.corp.example"), Some("my-pc".into()));
        assert_eq!(valid_hostname(b"pc7\0\0"), Some("pc7".into()));
        assert_eq!(valid_hostname(&[b'a'; 63]), Some("a".repeat(63)));
        assert_eq!(valid_hostname(&[b'a'; 64]), None);
        for bad in [
            &b""[..],
            b".lan",
            b"-pc",
            b"pc-",
            b"my pc",
            b"caf\xc3\xa9",
            b"a_b",
            b"\0",
        ] {
            assert_eq!(valid_hostname(bad), None, "{bad:?}");
        }
    }

    /// A tiny deterministic generator, so the soak test needs no extra crate.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
            xs[(self.next() % xs.len() as u64) as usize].clone()
        }
    }

    #[test]
    fn arbitrary_requests_never_panic_or_break_the_invariants() {
        let mut e = engine(cfg(105));
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let types = [
            MessageType::Discover,
            MessageType::Request,
            MessageType::Release,
            MessageType::Decline,
            MessageType::Inform,
            MessageType::Offer,
            MessageType::Unknown(200),
        ];
        let addrs = [
            UNSPEC,
            ip(0),
            ip(1),
            ip(10),
            ip(100),
            ip(103),
            ip(255),
            GIADDR,
            Ipv4Addr::BROADCAST,
        ];
        let names: [Option<&[u8]>; 4] = [None, Some(b""), Some(b"\xff\xfe"), Some(b"ok")];
        let mut acks = 0;
        for t in 0..20_000u64 {
            let n = rng.pick(&[1u8, 2, 3, 4, 5, 6, 7, 8, PRINTER]);
            let mut r = base(n, rng.pick(&types));
            r.ciaddr = rng.pick(&addrs);
            r.requested_ip = Some(rng.pick(&addrs)).filter(|a| !a.is_unspecified());
            r.server_id = rng.pick(&[None, Some(SID), Some(ip(2))]);
            r.giaddr = rng.pick(&[UNSPEC, UNSPEC, UNSPEC, GIADDR, ip(7)]);
            r.hostname = rng.pick(&names).map(<[u8]>::to_vec);
            r.client_id = rng.pick(&[None, Some(vec![]), Some(vec![n])]);
            r.hwaddr.bytes = match rng.next() % 8 {
                0 => vec![],
                1 => vec![n; 20],
                _ => r.hwaddr.bytes,
            };
            r.max_size = rng.pick(&[None, Some(0), Some(u16::MAX)]);
            let iface = rng.pick(&[0, 0, 1, 2]);
            let iface = [
                eth0(),
                uplink(),
                Iface {
                    index: 5,
                    name: "x".into(),
                    addrs: vec![],
                },
            ][iface]
                .clone();
            let now = UnixTime(t / 4);
            if kind(&e.handle(now, &r, &iface)) == Some(MessageType::Ack) {
                acks += 1;
            }
            if t % 97 == 0 {
                e.expire(now);
            }
            let leases = e.leases();
            let mut ips: Vec<_> = leases.iter().map(|l| l.ip).collect();
            ips.sort();
            ips.dedup();
            assert_eq!(ips.len(), leases.len(), "one lease per address");
            for l in leases.iter().filter(|l| l.state == LeaseState::Bound) {
                let same = leases
                    .iter()
                    .filter(|m| m.state == LeaseState::Bound && m.client == l.client);
                assert_eq!(same.count(), 1, "one bound lease per client: {l:?}");
                if l.ip == ip(10) {
                    assert_eq!(
                        l.hwaddr,
                        mac(PRINTER),
                        "reserved address only for its owner"
                    );
                }
                assert_ne!(l.ip, SID, "never our own address");
            }
        }
        assert!(
            acks > 500,
            "the soak must exercise the engine, got {acks} ACKs"
        );
    }
}
