//! The lease store seam: where the DHCP service makes its lease changes durable before a grant
//! leaves. The service does not know which store it has:
//!
//! - the local journal (`lease::journal`, the default): one node, the disk arbitrates nothing,
//!   every written change is accepted;
//! - a shared store (PostgreSQL, several nodes): the database arbitrates every change, so `sync`
//!   may reject some (another node holds the address), and `take_remote` hands over the changes
//!   other nodes committed so this node's table and DNS follow them.
//!
//! The protocol, from the DHCP thread (the store's one owner):
//! 1. `write(now, changes)` once per batch: the changes are queued (the journal writes them to
//!    its file without syncing). On error every change since the last `sync` is lost.
//! 2. `sync(now)` when the pending grants may wait no longer (group commit): every written
//!    change becomes durable in one step (one fdatasync, one transaction). On error every change
//!    since the last `sync` is lost. On success the returned `Synced::rejected` addresses lost a
//!    race: their changes are not durable, the service restores them from `durable` and drops
//!    their grants.
//! 3. `durable(ip)`: the lease on `ip` as the store holds it (what the engine is put back to
//!    after a lost or rejected change).
//! 4. `take_remote()`: changes committed by others since the last call, in commit order; never
//!    blocks. A store that has some calls the waker given to `set_waker` so the service's
//!    poll(2) wakes up.
//!
//! Every method is called from the DHCP thread only; a store may block it (an fdatasync, a
//! round trip to the database): requests that arrive meanwhile make the next batch.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::clock::UnixTime;
use crate::lease::journal::{Journal, JournalError};
use crate::lease::{Lease, LeaseChange};
/// The DHCP thread's wake-up, re-exported for the stores that use it.
pub use crate::wake::Wake;

/// Why a store could not take or keep a batch; every change since the last `sync` is lost.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The shared store cannot be reached or refused the transaction.
    #[error("lease database: {0}")]
    Database(String),
}

/// What a successful `sync` tells the service.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    /// Addresses whose changes the store refused (another node holds the address): restore
    /// them from `durable`, drop their grants. Always empty for the journal.
    pub rejected: Vec<Ipv4Addr>,
}

/// Where the DHCP service's lease changes become durable. See the module docs for the protocol.
pub trait LeaseStore: Send {
    /// Queue (write, without syncing) one batch's changes. `Offered` upserts are never stored.
    fn write(&mut self, now: UnixTime, changes: &[LeaseChange]) -> Result<(), StoreError>;

    /// Make every written change durable; see `Synced`.
    fn sync(&mut self, now: UnixTime) -> Result<Synced, StoreError>;

    /// The lease on `ip` as the store holds it after every durable change, if any.
    fn durable(&self, ip: Ipv4Addr) -> Option<Lease>;

    /// Changes others committed since the last call, oldest first. Never blocks.
    fn take_remote(&mut self) -> Vec<LeaseChange> {
        Vec::new()
    }

    /// Wake the service's poll(2) when remote changes wait. Called once, before the loop starts.
    fn set_waker(&mut self, _wake: Arc<Wake>) {}

    /// What the store is, for log lines ("lease journal /var/lib/leasedns/leases").
    fn describe(&self) -> String;
}

impl LeaseStore for Journal {
    fn write(&mut self, now: UnixTime, changes: &[LeaseChange]) -> Result<(), StoreError> {
        Journal::write(self, now, changes)?;
        Ok(())
    }

    fn sync(&mut self, now: UnixTime) -> Result<Synced, StoreError> {
        Journal::sync(self, Some(now))?;
        Ok(Synced::default())
    }

    fn durable(&self, ip: Ipv4Addr) -> Option<Lease> {
        Journal::durable(self, ip)
    }

    fn describe(&self) -> String {
        format!("lease journal {}", self.path().display())
    }
}

/// A store for tests: keeps durable leases in memory, fails on demand, and can reject or inject
/// changes as another node would.
#[cfg(test)]
pub mod fake {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    pub struct FakeStore {
        pub durable: HashMap<Ipv4Addr, Lease>,
        /// Written, not yet synced.
        pub pending: Vec<LeaseChange>,
        /// The next `write` fails.
        pub fail_write: bool,
        /// The next `sync` fails.
        pub fail_sync: bool,
        /// `sync` rejects changes to these addresses.
        pub taken: Vec<Ipv4Addr>,
        /// What `take_remote` hands over next.
        pub remote: Vec<LeaseChange>,
        pub syncs: u64,
    }

    fn ip_of(c: &LeaseChange) -> Ipv4Addr {
        match c {
            LeaseChange::Upsert(l) => l.ip,
            LeaseChange::Remove { ip, .. } => *ip,
        }
    }

    impl LeaseStore for FakeStore {
        fn write(&mut self, _now: UnixTime, changes: &[LeaseChange]) -> Result<(), StoreError> {
            if std::mem::take(&mut self.fail_write) {
                self.pending.clear();
                return Err(StoreError::Database("write failed (fake)".into()));
            }
            self.pending.extend(changes.iter().cloned());
            Ok(())
        }

        fn sync(&mut self, _now: UnixTime) -> Result<Synced, StoreError> {
            let pending = std::mem::take(&mut self.pending);
            if std::mem::take(&mut self.fail_sync) {
                return Err(StoreError::Database("sync failed (fake)".into()));
            }
            self.syncs += 1;
            let mut synced = Synced::default();
            for change in pending {
                let ip = ip_of(&change);
                if self.taken.contains(&ip) {
                    if !synced.rejected.contains(&ip) {
                        synced.rejected.push(ip);
                    }
                    continue;
                }
                match change {
                    LeaseChange::Upsert(l) => {
                        self.durable.insert(ip, l);
                    }
                    LeaseChange::Remove { .. } => {
                        self.durable.remove(&ip);
                    }
                }
            }
            Ok(synced)
        }

        fn durable(&self, ip: Ipv4Addr) -> Option<Lease> {
            self.durable.get(&ip).cloned()
        }

        fn take_remote(&mut self) -> Vec<LeaseChange> {
            std::mem::take(&mut self.remote)
        }

        fn describe(&self) -> String {
            "fake lease store".into()
        }
    }
}
