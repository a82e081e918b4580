//! DISCOVER: an address from the client's pool (or its reservation), the ping check before a
//! never-used address is offered, the OFFER held for the client (or rapid commit's ACK), the
//! per-MAC and per-relay-port limits, and the warning when the pool is exhausted.

use std::net::Ipv4Addr;
use std::sync::Arc;

use dhcproto::v4::MessageType;
use tracing::{debug, warn};

use super::{Ctx, Engine, Outcome, PoolKey};
use crate::clock::UnixTime;
use crate::config::Subnet;
use crate::lease::table::held_by;
use crate::lease::{ClientId, Lease, LeaseChange, LeaseState, RemoveReason};

impl Engine {
    pub(super) fn discover(&mut self, cx: &Ctx<'_>) -> Outcome {
        if self.over_mac_limit(cx) || self.over_relay_port_limit(cx) {
            return Outcome::default();
        }
        let want = self.want(cx, cx.req.requested_ip);
        let state = self.subnets.get(cx.subnet_idx);
        let mut cursor = state.map_or(0, |s| s.cursor);
        let removals = self.table.removals();
        let mut pool = self.pool(cx);
        let key: PoolKey = (pool.range, !pool.excluded.is_empty());
        pool.known_full = state.is_some_and(|s| s.full.contains(&(key, removals)));
        let scanned = !pool.known_full;
        let got = pool.allocate(&want, &mut cursor);
        if let Some(state) = self.subnets.get_mut(cx.subnet_idx) {
            state.cursor = cursor;
            if got.is_none() && scanned {
                state.failed_scans += 1;
                state.full.retain(|(k, _)| *k != key);
                state.full.push((key, removals));
            }
        }
        let Some(ip) = got else {
            self.alloc_failures += 1;
            self.pool_full(cx);
            return Outcome::default();
        };
        if self.pinging.contains_key(&ip) {
            debug!(xid = cx.req.xid, %ip, "ping of this address still running");
            return Outcome::default();
        }
        let reserved = cx.host.is_some_and(|h| h.ip == ip);
        if self.cfg.dhcp.ping_check && !reserved && !self.table.has_history(ip) {
            let mut changes = Vec::new();
            self.hold_offer(cx, ip, &mut changes);
            self.pinging.insert(ip, cx.client.clone());
            debug!(xid = cx.req.xid, client = %cx.client, %ip, "ping before offer");
            return Outcome {
                reply: None,
                changes,
                ping: Some(ip),
            };
        }
        self.offer(cx, ip)
    }

    /// Answer a DISCOVER with `ip`: an OFFER held for the client, or with rapid commit (both
    /// sides want it) an ACK and a bound lease at once.
    pub(super) fn offer(&mut self, cx: &Ctx<'_>, ip: Ipv4Addr) -> Outcome {
        if cx.req.rapid_commit && cx.subnet.settings.rapid_commit {
            return self.ack(cx, ip);
        }
        let mut changes = Vec::new();
        let name = self.hold_offer(cx, ip, &mut changes);
        debug!(xid = cx.req.xid, client = %cx.client, %ip, "offer");
        let lease_time = Some(self.lease_time(cx));
        let reply = self.positive(cx, MessageType::Offer, ip, lease_time, Some(name));
        Outcome {
            reply: Some(reply),
            changes,
            ping: None,
        }
    }

    /// Hold `ip` for the client as an offer (a bound lease of its own stays bound). The client's
    /// other offers are dropped; a lease of another whose time is up is ended. Returns the name
    /// of the lease the client now holds on `ip`.
    pub(super) fn hold_offer(
        &mut self,
        cx: &Ctx<'_>,
        ip: Ipv4Addr,
        changes: &mut Vec<LeaseChange>,
    ) -> Option<Arc<str>> {
        self.drop_offers(&cx.client, Some(ip));
        let old_name = match self.table.get(ip) {
            Some(l) if held_by(l, &cx.client) && l.state == LeaseState::Bound => {
                return l.hostname.clone();
            }
            Some(l) if held_by(l, &cx.client) => l.hostname.clone(),
            Some(_) => {
                self.end_other(ip, RemoveReason::Expired, changes);
                None
            }
            None => None,
        };
        let hold = u64::from(self.cfg.offer_hold);
        self.note_relay_port(cx, ip);
        let hostname = self.hostname(cx).or(old_name);
        self.table.insert(Lease {
            ip,
            client: cx.client.clone(),
            hwaddr: cx.req.hwaddr.clone(),
            hostname: hostname.clone(),
            expires: cx.now.plus(hold),
            state: LeaseState::Offered,
        });
        hostname
    }

    /// Issue 14: one chaddr presenting many client ids could hold the whole pool. A client
    /// without a lease whose id is not the one derived from its chaddr gets nothing while that
    /// chaddr already carries `max_client_ids_per_mac` such leases.
    pub(super) fn over_mac_limit(&self, cx: &Ctx<'_>) -> bool {
        let max = self.cfg.dhcp.max_client_ids_per_mac;
        let hw = &cx.req.hwaddr;
        let over = max > 0
            && self.table.foreign_ids_on(hw) >= max
            && cx.client != ClientId::from_hw(hw)
            && self.table.by_client(&cx.client).next().is_none();
        if over {
            debug!(xid = cx.req.xid, mac = %hw, client = %cx.client, max, "too many client ids on one MAC; ignored");
        }
        over
    }

    /// Issue 14: one relay agent port (option 82 circuit id per relay, or remote id) holds at
    /// most `max_leases_per_relay_port` live offers and leases; a client without a lease behind
    /// a full port gets nothing. Clients that hold a lease are never refused (renewals).
    pub(super) fn over_relay_port_limit(&mut self, cx: &Ctx<'_>) -> bool {
        let max = self.cfg.dhcp.max_leases_per_relay_port;
        let Some(info) = cx.req.relay_info.as_deref().filter(|_| max > 0) else {
            return false;
        };
        if self.table.by_client(&cx.client).next().is_some() {
            return false;
        }
        let full = (self.relay_ports).full_port(&self.table, cx.now, cx.req.giaddr, info, max);
        if let Some(port) = &full {
            debug!(xid = cx.req.xid, client = %cx.client, %port, max, "relay port holds its maximum of leases; ignored");
        }
        full.is_some()
    }

    /// Remember the relay agent port `ip` went out through (when the limit is on).
    pub(super) fn note_relay_port(&mut self, cx: &Ctx<'_>, ip: Ipv4Addr) {
        if let (Some(info), 1..) = (
            cx.req.relay_info.as_deref(),
            self.cfg.dhcp.max_leases_per_relay_port,
        ) {
            self.relay_ports.note(cx.req.giaddr, info, ip, &cx.client);
        }
    }

    /// Log that the pool is full, at most once per `exhausted_warn_interval` per subnet.
    pub(super) fn pool_full(&mut self, cx: &Ctx<'_>) -> bool {
        let every = u64::from(self.cfg.dhcp.exhausted_warn_interval);
        let Some(state) = self.subnets.get_mut(cx.subnet_idx) else {
            return false;
        };
        let due = state.full_warned.is_none_or(|t| cx.now >= t.plus(every));
        if due {
            state.full_warned = Some(cx.now);
            let subnet = format!("{}/{}", cx.subnet.network, cx.subnet.prefix_len);
            let class = cx
                .class
                .filter(|c| c.pool.is_some())
                .map(|c| c.name.as_str());
            // Which addresses are put aside (declined, or answered a ping), so that an operator
            // sees why: one pass over the table, at most once per warning interval.
            let declined = self.declined_in(cx.subnet);
            let shown: Vec<String> = declined
                .iter()
                .take(16)
                .map(|(ip, until)| format!("{ip} until {until}"))
                .collect();
            warn!(%subnet, class, declined = declined.len(), set_aside = %shown.join(", "), "address pool exhausted; no offer");
        }
        due
    }

    /// The declined (set aside) addresses of `subnet`, with the end of their hold.
    pub(super) fn declined_in(&self, subnet: &Subnet) -> Vec<(Ipv4Addr, UnixTime)> {
        let mut out: Vec<_> = self
            .table
            .iter()
            .filter(|l| l.state == LeaseState::Declined && subnet.contains(l.ip))
            .map(|l| (l.ip, l.expires))
            .collect();
        out.sort_unstable();
        out
    }
}
