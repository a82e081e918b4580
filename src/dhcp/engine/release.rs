//! RELEASE and DECLINE (the holder ends its lease, or sets its address aside) and INFORM
//! (options for a client configured elsewhere, no lease).

use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;
use tracing::{debug, info, warn};

use super::{Ctx, Engine, Outcome};
use crate::lease::table::held_by;
use crate::lease::{Lease, LeaseChange, LeaseState, RemoveReason};

impl Engine {
    /// Whether a RELEASE or DECLINE of `ip` may end the lease there: it names us (option 54,
    /// which RFC 2131 table 5 makes a MUST for both), `ip` is in the request's subnet, and the
    /// lease is bound to this client on this hardware address (RFC 2131 section 4.3.3: the
    /// client that holds it).
    pub(super) fn holder_may_end(&self, cx: &Ctx<'_>, ip: Ipv4Addr, what: &str) -> bool {
        let req = cx.req;
        let holds = self.table.get(ip).is_some_and(|l| {
            held_by(l, &cx.client) && l.state == LeaseState::Bound && l.hwaddr == req.hwaddr
        });
        let ok = req.server_id == Some(cx.server_id) && cx.subnet.contains(ip) && holds;
        if !ok {
            debug!(xid = req.xid, client = %cx.client, mac = %req.hwaddr, %ip, server_id = ?req.server_id,
                "{what} ignored: not the holder of a lease here, or not addressed to us");
        }
        ok
    }

    pub(super) fn release(&mut self, cx: &Ctx<'_>) -> Outcome {
        let (req, client) = (cx.req, &cx.client);
        let ip = req.ciaddr;
        if !self.holder_may_end(cx, ip, "RELEASE") {
            return Outcome::default();
        }
        self.table.remove(ip);
        info!(xid = req.xid, %client, %ip, "released");
        let reason = RemoveReason::Released;
        Outcome {
            changes: vec![LeaseChange::Remove { ip, reason }],
            ..Outcome::default()
        }
    }

    pub(super) fn decline(&mut self, cx: &Ctx<'_>) -> Outcome {
        let (req, client) = (cx.req, &cx.client);
        let Some(ip) = req.requested_ip else {
            return Outcome::default();
        };
        if !self.holder_may_end(cx, ip, "DECLINE") {
            return Outcome::default();
        }
        let Some(old) = self.table.get(ip) else {
            return Outcome::default();
        };
        let lease = Lease {
            hostname: None,
            expires: cx.now.plus(u64::from(self.cfg.decline_hold)),
            state: LeaseState::Declined,
            ..old.clone()
        };
        warn!(xid = req.xid, %client, %ip, "client declined the address (in use?); set aside");
        self.table.insert(lease.clone());
        Outcome {
            changes: vec![LeaseChange::Upsert(lease)],
            ..Outcome::default()
        }
    }

    pub(super) fn inform(&mut self, cx: &Ctx<'_>) -> Outcome {
        if cx.req.ciaddr.is_unspecified() {
            // RFC 2131 table 5: an INFORM's ciaddr MUST be the client's address, and section
            // 4.3.5 sends the ACK to ciaddr. With none, the client has no address to be
            // configured on (it must DISCOVER) and there is nowhere the RFC sends the ACK.
            debug!(xid = cx.req.xid, client = %cx.client, "INFORM without ciaddr; ignored");
            return Outcome::default();
        }
        debug!(xid = cx.req.xid, client = %cx.client, ciaddr = %cx.req.ciaddr, "inform");
        let reply = self.positive(cx, MessageType::Ack, Ipv4Addr::UNSPECIFIED, None, None);
        Outcome {
            reply: Some(reply),
            ..Outcome::default()
        }
    }
}
