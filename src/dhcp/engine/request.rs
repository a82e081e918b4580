//! REQUEST in each state of RFC 2131 table 4 (SELECTING, INIT-REBOOT, RENEWING/REBINDING):
//! the checks that decide ACK, NAK or silence, and binding the lease (or reusing the stored one).

use std::net::Ipv4Addr;
use std::sync::Arc;

use dhcproto::v4::MessageType;
use tracing::{debug, info, warn};

use super::{Ctx, Engine, Outcome};
use crate::lease::table::held_by;
use crate::lease::{Lease, LeaseChange, LeaseState, RemoveReason};

impl Engine {
    pub(super) fn request(&mut self, cx: &Ctx<'_>) -> Outcome {
        let req = cx.req;
        if let Some(sid) = req.server_id {
            return self.selecting(cx, sid);
        }
        if !req.ciaddr.is_unspecified() {
            return self.confirm(cx, req.ciaddr, false);
        }
        match req.requested_ip {
            Some(ip) => self.confirm(cx, ip, true),
            // Fits no state of RFC 2131 table 4 (SELECTING and INIT-REBOOT need option 50,
            // RENEWING and REBINDING need ciaddr): the client can hold no valid address here,
            // and a NAK (section 4.3.2: the request is invalid for this network) sends it back
            // to INIT, where it DISCOVERs. A non-authoritative server stays silent.
            None => self.nak_if_authoritative(cx, "request names no address"),
        }
    }

    /// REQUEST in SELECTING state: the client chose a server (option 54).
    pub(super) fn selecting(&mut self, cx: &Ctx<'_>, sid: Ipv4Addr) -> Outcome {
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
    pub(super) fn confirm(&mut self, cx: &Ctx<'_>, ip: Ipv4Addr, reboot: bool) -> Outcome {
        if !cx.subnet.contains(ip) {
            return self.nak_if_authoritative(cx, "address not on this segment");
        }
        let want = self.want(cx, Some(ip));
        let pool = self.pool(cx);
        if let Some(r) = cx.host
            && r.ip != ip
            && pool.may_have(r.ip, &want)
        {
            return self.nak(cx, "client has a reservation elsewhere");
        }
        if pool.may_have(ip, &want) {
            if reboot && !self.cfg.dhcp.init_reboot_ack_unknown && !self.has_record(cx, ip) {
                return self.init_reboot_unknown(cx, ip);
            }
            if self.over_mac_limit(cx) || self.over_relay_port_limit(cx) {
                return Outcome::default();
            }
            return self.ack(cx, ip);
        }
        if self
            .reservations
            .reserved_for_other(ip, &cx.client, &cx.req.hwaddr)
        {
            return self.reserved_elsewhere(cx, ip);
        }
        let taken = self.table.get(ip).is_some_and(|l| l.expires > cx.now);
        if reboot && taken {
            self.nak(cx, "address belongs to another client")
        } else {
            self.nak_if_authoritative(cx, "address not available")
        }
    }

    /// The client asks to keep `ip`, which is now reserved for another client (a reload added
    /// the reservation): NAK (whether or not authoritative: we know the address is wrong), and
    /// end the client's lease on it, so that the reserved client gets it from now on.
    pub(super) fn reserved_elsewhere(&mut self, cx: &Ctx<'_>, ip: Ipv4Addr) -> Outcome {
        let mut out = self.nak(cx, "address is reserved for another client");
        if self.table.get(ip).is_some_and(|l| held_by(l, &cx.client)) {
            warn!(
                xid = cx.req.xid,
                mac = %cx.req.hwaddr,
                client = %cx.client,
                %ip,
                "reservation conflict: lease on a reserved address ended at renewal; it goes to its reserved client"
            );
            self.end_other(ip, RemoveReason::Superseded, &mut out.changes);
        }
        out
    }

    /// Whether we know the client on `ip`: a lease (or offer) of its own there, or its
    /// reservation.
    pub(super) fn has_record(&self, cx: &Ctx<'_>, ip: Ipv4Addr) -> bool {
        self.table.get(ip).is_some_and(|l| held_by(l, &cx.client))
            || cx.host.is_some_and(|h| h.ip == ip)
    }

    /// INIT-REBOOT for a free `ip` that is not the client's (RFC 2131 section 4.3.2): a client
    /// we know by another lease asks for an incorrect address: NAK; a client we have no record
    /// of: remain silent. (`init_reboot_unknown = "ack"` ACKs both instead, as dnsmasq does.)
    pub(super) fn init_reboot_unknown(&self, cx: &Ctx<'_>, ip: Ipv4Addr) -> Outcome {
        if self.table.by_client(&cx.client).next().is_some() {
            return self.nak(cx, "requested address is not the client's lease");
        }
        debug!(xid = cx.req.xid, client = %cx.client, %ip, "INIT-REBOOT from a client we have no record of; silent");
        Outcome::default()
    }

    pub(super) fn ack(&mut self, cx: &Ctx<'_>, ip: Ipv4Addr) -> Outcome {
        let (changes, name, lease_time) = self.bind(cx, ip);
        self.note_relay_port(cx, ip);
        let reused = changes.is_empty();
        info!(
            xid = cx.req.xid,
            mac = %cx.req.hwaddr,
            host = name.as_deref().unwrap_or("-"),
            client = %cx.client,
            %ip,
            lease_time,
            reused,
            "ack"
        );
        let reply = self.positive(cx, MessageType::Ack, ip, Some(lease_time), Some(name));
        Outcome {
            reply: Some(reply),
            changes,
            ping: None,
        }
    }

    /// Bind `ip` to the client: its other leases end (superseded), a lease of another on `ip`
    /// ends, then the new lease is upserted. Returns the changes, the lease's name and the lease
    /// time granted: a renewal that may reuse the stored lease (see `reusable`) changes nothing
    /// and is granted the time the stored lease has left.
    pub(super) fn bind(
        &mut self,
        cx: &Ctx<'_>,
        ip: Ipv4Addr,
    ) -> (Vec<LeaseChange>, Option<Arc<str>>, u32) {
        let lease_time = self.lease_time(cx);
        if let Some((left, name)) = self.reusable(cx, ip, lease_time) {
            return (Vec::new(), name, left);
        }
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
            expires: cx.now.plus(u64::from(lease_time)),
            state: LeaseState::Bound,
        };
        let name = lease.hostname.clone();
        self.table.insert(lease.clone());
        changes.push(LeaseChange::Upsert(lease));
        (changes, name, lease_time)
    }

    /// Lease reuse (as Kea's cache threshold): when the client's stored lease on `ip` is bound,
    /// unchanged (hardware address and name), the client holds no other lease, and it still has
    /// at least (1 - `renew_write_fraction`) x `lease_time` left (and no more than `lease_time`),
    /// the renewal is answered with the time left and nothing is written. The stored expiry is
    /// then exactly the end of what the client was granted. Returns (time left, name).
    pub(super) fn reusable(
        &self,
        cx: &Ctx<'_>,
        ip: Ipv4Addr,
        lease_time: u32,
    ) -> Option<(u32, Option<Arc<str>>)> {
        let fraction = self.cfg.renew_write_fraction;
        if fraction <= 0.0 {
            return None;
        }
        let l = self
            .table
            .get(ip)
            .filter(|l| l.state == LeaseState::Bound)?;
        let left = u32::try_from(cx.now.until(l.expires)).ok()?;
        let enough = f64::from(left) >= (1.0 - fraction) * f64::from(lease_time);
        let same = l.state == LeaseState::Bound
            && held_by(l, &cx.client)
            && l.hwaddr == cx.req.hwaddr
            && self.hostname(cx).or_else(|| l.hostname.clone()) == l.hostname;
        let alone = self.table.by_client(&cx.client).all(|o| o.ip == ip);
        (same && alone && enough && left <= lease_time && left > 0)
            .then(|| (left, l.hostname.clone()))
    }
}
