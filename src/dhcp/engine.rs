//! The RFC 2131 state machine. Pure: takes a decoded request, the receiving interface and `now`;
//! returns the reply, where it goes, and the lease changes. No I/O, no clock.

use std::sync::Arc;

use crate::clock::UnixTime;
use crate::config::Config;
use crate::dhcp::Iface;
use crate::dhcp::dest::Dest;
use crate::dhcp::wire::Request;
use crate::lease::{Lease, LeaseChange};

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
    _cfg: Arc<Config>,
}

impl Engine {
    /// Build an engine from the config and the leases recovered from the journal.
    pub fn new(cfg: Arc<Config>, _recovered: Vec<Lease>, _now: UnixTime) -> Self {
        Engine { _cfg: cfg }
    }
    pub fn handle(&mut self, _now: UnixTime, _req: &Request, _iface: &Iface) -> Outcome {
        todo!("engine::handle")
    }
    /// End every lease (and drop every offer) whose time is up; returns the removals.
    pub fn expire(&mut self, _now: UnixTime) -> Vec<LeaseChange> {
        todo!("engine::expire")
    }
    /// When `expire` next has work to do.
    pub fn poll_at(&self) -> Option<UnixTime> {
        todo!("engine::poll_at")
    }
    /// Every bound or declined lease (for compaction and the API).
    pub fn leases(&self) -> Vec<Lease> {
        todo!("engine::leases")
    }
}
