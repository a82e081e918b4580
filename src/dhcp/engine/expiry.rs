//! Leases that end without a request: by time (`expire`, `poll_at`), by the operator
//! (`end_lease`), and put back after their change could not be made durable (`restore`).

use std::net::Ipv4Addr;

use tracing::{debug, info};

use super::Engine;
use crate::clock::UnixTime;
use crate::lease::{Lease, LeaseChange, LeaseState, RemoveReason};

impl Engine {
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
        let table = &self.table;
        self.pinging.retain(|ip, client| {
            table
                .get(*ip)
                .is_some_and(|l| l.state == LeaseState::Offered && l.client == *client)
        });
        changes
    }

    /// When `expire` next has work to do.
    pub fn poll_at(&self) -> Option<UnixTime> {
        self.table.next_expiry()
    }

    /// End the bound or declined lease on `ip` now, as the operator asked (the control API):
    /// the same removal a client's RELEASE makes. None when `ip` holds no such lease.
    pub fn end_lease(&mut self, ip: Ipv4Addr) -> Option<(Lease, LeaseChange)> {
        if self.table.get(ip)?.state == LeaseState::Offered {
            return None;
        }
        let lease = self.table.remove(ip)?;
        info!(%ip, client = %lease.client, "lease ended by the operator");
        let reason = RemoveReason::Released;
        Some((lease, LeaseChange::Remove { ip, reason }))
    }

    /// Put the lease on `ip` back to `durable` (what the journal holds; `None`: free) after its
    /// change could not be made durable, so the table never holds a lease the disk lacks.
    pub fn restore(&mut self, ip: Ipv4Addr, durable: Option<Lease>) {
        self.table.remove(ip);
        if let Some(lease) = durable {
            self.table.insert(lease);
        }
    }
}
