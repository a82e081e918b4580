//! Building replies: lease time and T1/T2, DNS servers, the OFFER/ACK options and header
//! (network boot fields included), NAKs, and where each goes.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use dhcproto::v4::MessageType;
use tracing::{debug, info};

use super::{Ctx, Engine, MIN_REQUESTED_LEASE, Outcome, Reply};
use crate::config::{GrantSettings, OptionSpec};
use crate::dhcp::dest::{self, Ports};
use crate::dhcp::options::{self, LeaseTimes, ReplyOptions};
use crate::dhcp::wire::{self, ReplyMsg, Request};
use crate::lease::table::held_by;

/// The smallest message every client must accept (RFC 2131 section 2).
const MIN_MAX_SIZE: usize = 576;

impl Engine {
    /// The lease time to grant: the host's, else the class's, else the subnet's; lowered to
    /// what the client asked for (option 51), but not below `MIN_REQUESTED_LEASE`.
    pub(super) fn lease_time(&self, cx: &Ctx<'_>) -> u32 {
        let configured = cx
            .host
            .and_then(|h| h.lease_time)
            .or(cx.class.and_then(|c| c.lease_time))
            .unwrap_or(cx.subnet.lease_time);
        match cx.req.lease_time {
            Some(asked) => asked.clamp(configured.min(MIN_REQUESTED_LEASE), configured),
            None => configured,
        }
    }

    /// Options 51, 58 and 59 for a grant of `secs`: T1 and T2 as configured for the client's
    /// full lease time, scaled to `secs`.
    pub(super) fn times(&self, cx: &Ctx<'_>, secs: u32) -> LeaseTimes {
        if !self.grants {
            return LeaseTimes::standard(secs);
        }
        let full = cx
            .host
            .and_then(|h| h.lease_time)
            .or(cx.class.and_then(|c| c.lease_time))
            .unwrap_or(cx.subnet.lease_time);
        let t1 = grant_key(cx, |g| g.renew_time);
        let t2 = grant_key(cx, |g| g.rebind_time);
        LeaseTimes::scaled(secs, full, t1, t2)
    }

    /// DNS servers to announce: the subnet's; when it names none (key absent), our own address
    /// if the DNS server answers on it, port 53 (or on 0.0.0.0:53 / [::]:53).
    pub(super) fn dns_servers<'a>(&self, cx: &Ctx<'a>) -> Cow<'a, [Ipv4Addr]> {
        let s = cx.subnet;
        if !s.dns_servers.is_empty() || !s.settings.dns_servers_default {
            return Cow::Borrowed(&s.dns_servers);
        }
        let ours = self.cfg.start.dns.listen.iter().any(|a| {
            a.port() == 53
                && match a.ip() {
                    IpAddr::V4(ip) => ip == cx.server_id || ip.is_unspecified(),
                    IpAddr::V6(ip) => ip.is_unspecified(),
                }
        });
        if ours {
            Cow::Owned(vec![cx.server_id])
        } else {
            Cow::Borrowed(&[])
        }
    }

    pub(super) fn nak_if_authoritative(&self, cx: &Ctx<'_>, why: &str) -> Outcome {
        if cx.subnet.authoritative {
            self.nak(cx, why)
        } else {
            debug!(xid = cx.req.xid, client = %cx.client, why, "not authoritative; silent");
            Outcome::default()
        }
    }

    pub(super) fn nak(&self, cx: &Ctx<'_>, why: &str) -> Outcome {
        info!(xid = cx.req.xid, client = %cx.client, why, "nak");
        let req = cx.req;
        let relayed = !req.giaddr.is_unspecified();
        let mut msg = reply_header(req, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED);
        if relayed {
            msg.flags = BROADCAST;
        }
        msg.opts = options::nak(
            cx.server_id,
            req.client_id.as_deref(),
            req.relay_info.as_deref(),
        );
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
            order: Vec::new(),
        };
        Outcome {
            reply: Some(reply),
            ..Outcome::default()
        }
    }

    /// An OFFER or ACK for `yiaddr` (unspecified for INFORM, which has no lease time).
    /// `held_name`: the name of the lease the client holds on `yiaddr`, when the caller knows
    /// it (else the table is asked).
    pub(super) fn positive(
        &self,
        cx: &Ctx<'_>,
        msg_type: MessageType,
        yiaddr: Ipv4Addr,
        lease_time: Option<u32>,
        held_name: Option<Option<Arc<str>>>,
    ) -> Reply {
        let req = cx.req;
        // ciaddr is echoed only in an ACK to a REQUEST or INFORM (RFC 2131 table 3); a
        // DISCOVER's (OFFER, or rapid commit's ACK) is 0.
        let ciaddr = if msg_type == MessageType::Ack && req.msg_type != MessageType::Discover {
            req.ciaddr
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        let mut msg = reply_header(req, ciaddr, yiaddr);
        let held = held_name.unwrap_or_else(|| {
            self.table
                .get(yiaddr)
                .filter(|l| held_by(l, &cx.client))
                .and_then(|l| l.hostname.clone())
        });
        let name = held.or_else(|| self.hostname(cx));
        let fqdn = req
            .fqdn
            .as_deref()
            .and_then(wire::parse_fqdn)
            .zip(name.as_deref())
            .map(|(f, label)| options::fqdn_reply(&f, label, &self.cfg.start.domain));
        let dns = self.dns_servers(cx);
        let none: &[OptionSpec] = &[];
        let custom = [
            cx.subnet.settings.options.as_slice(),
            cx.class.map_or(none, |c| c.options.as_slice()),
            cx.host.map_or(none, |h| h.options.as_slice()),
        ];
        msg.opts = options::reply(&ReplyOptions {
            msg_type,
            server_id: cx.server_id,
            subnet: cx.subnet,
            domain: &self.cfg.start.domain,
            lease_time: lease_time.map(|secs| self.times(cx, secs)),
            client_id: req.client_id.as_deref(),
            relay_info: req.relay_info.as_deref(),
            params: &req.params,
            dns_servers: &dns,
            custom: &custom,
            hostname: name.as_deref(),
            fqdn: fqdn.as_deref(),
            server_name: self
                .grants
                .then(|| grant_key(cx, |g| g.server_name.as_deref()))
                .flatten(),
            boot_file: self
                .grants
                .then(|| grant_key(cx, |g| g.boot_file.as_deref()))
                .flatten(),
            rapid_commit: msg_type == MessageType::Ack && req.msg_type == MessageType::Discover,
        });
        if self.grants {
            boot_fields(cx, &mut msg);
        }
        let dest = dest::choose(req, yiaddr, false, cx.iface.index, self.ports());
        Reply {
            msg,
            dest,
            max_size: max_size(req),
            order: req.params.clone(),
        }
    }

    pub(super) fn ports(&self) -> Ports {
        Ports {
            server: self.cfg.start.dhcp_port,
            client: self.cfg.start.client_port,
        }
    }
}

/// A grant setting for this client: its host's, else its class's, else its subnet's.
pub(super) fn grant_key<'a, T>(
    cx: &Ctx<'a>,
    key: impl Fn(&'a GrantSettings) -> Option<T>,
) -> Option<T> {
    cx.host_grant
        .and_then(&key)
        .or_else(|| cx.class.and_then(|c| key(&c.grant)))
        .or_else(|| key(&cx.subnet.settings.grant))
}

/// Network boot in the header: siaddr (next server), `sname` and `file`, as configured.
pub(super) fn boot_fields(cx: &Ctx<'_>, msg: &mut ReplyMsg) {
    if let Some(next) = grant_key(cx, |g| g.next_server) {
        msg.siaddr = next;
    }
    if let Some(name) = grant_key(cx, |g| g.server_name.as_deref()) {
        msg.sname = name.as_bytes().to_vec();
    }
    if let Some(file) = grant_key(cx, |g| g.boot_file.as_deref()) {
        msg.file = file.as_bytes().to_vec();
    }
}

/// The broadcast bit of the flags field.
const BROADCAST: u16 = 0x8000;

/// A BOOTREPLY header answering `req`: xid, flags, htype, chaddr and giaddr copied.
pub(super) fn reply_header(req: &Request, ciaddr: Ipv4Addr, yiaddr: Ipv4Addr) -> ReplyMsg {
    ReplyMsg {
        htype: req.htype,
        xid: req.xid,
        flags: if req.broadcast { BROADCAST } else { 0 },
        ciaddr,
        yiaddr,
        giaddr: req.giaddr,
        chaddr: req.hwaddr.clone(),
        ..ReplyMsg::default()
    }
}

pub(super) fn max_size(req: &Request) -> usize {
    req.max_size
        .map_or(MIN_MAX_SIZE, usize::from)
        .max(MIN_MAX_SIZE)
}
