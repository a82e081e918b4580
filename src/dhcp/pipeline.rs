//! The DHCP commit pipeline, sans-IO: a batch's lease changes go to the lease store (`write`),
//! its grants (ACKs with an address) wait until the store has made them durable (`sync`, once
//! for several batches with durability "batch": group commit), and only then come out, with the
//! changes to publish (names, DDNS), for the service to send. No sockets, no clock (time is
//! passed in), no name index: the store is a `&mut dyn LeaseStore`, the engine's table a
//! `&mut dyn Table`, and what to publish and send is returned.
//!
//! Failures never leave the table ahead of the store: when a write or sync fails, every address
//! the lost changes touched is put back to what the store holds and their grants are dropped
//! (the client retries, and gets its ACK once the store works again). Addresses the store
//! refuses (another node holds them) are put back the same way and their grants withdrawn.
//! Changes other nodes committed (`absorb_remote`) are applied to the table and returned so
//! their names follow.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::MessageType;
use tracing::warn;

use crate::clock::UnixTime;
use crate::config::Durability;
use crate::dhcp::engine::{Engine, Reply};
use crate::lease::store::{LeaseStore, StoreError};
use crate::lease::{Lease, LeaseChange};

/// What the pipeline puts back after a lost or refused change: the engine's lease table.
pub trait Table {
    /// Put the lease on `ip` back to `durable` (`None`: free).
    fn restore(&mut self, ip: Ipv4Addr, durable: Option<Lease>);
}

impl Table for Engine {
    fn restore(&mut self, ip: Ipv4Addr, durable: Option<Lease>) {
        Engine::restore(self, ip, durable);
    }
}

/// Lease changes written to the store and the grants that wait for their sync.
#[derive(Default)]
struct Pending {
    changes: Vec<LeaseChange>,
    grants: Vec<Reply>,
}

/// What a sync made durable: publish `changes` (names, DDNS), then send `grants`.
#[derive(Debug, Default)]
pub struct Committed {
    pub changes: Vec<LeaseChange>,
    pub grants: Vec<Reply>,
    /// Addresses the store refused (their changes and grants are left out).
    pub withdrawn: Vec<Ipv4Addr>,
    /// The store had failed before and works again.
    pub recovered: bool,
}

/// The written, not yet durable changes and grants, and whether the store is failing.
pub struct Pipeline {
    pending: Pending,
    /// The last write or sync failed: no grant has left since.
    broken: bool,
    /// When the store last synced (durability "batch" counts its delay from here).
    last_sync: Instant,
}

impl Pipeline {
    pub fn new(at: Instant) -> Pipeline {
        Pipeline {
            pending: Pending::default(),
            broken: false,
            last_sync: at,
        }
    }

    /// Write one batch's changes; its grants wait for the next `sync`. On error the table
    /// forgets every change since the last sync (put back to what the store holds) and every
    /// waiting grant is dropped.
    pub fn write(
        &mut self,
        table: &mut dyn Table,
        store: &mut dyn LeaseStore,
        now: UnixTime,
        changes: Vec<LeaseChange>,
        grants: Vec<Reply>,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            // Nothing to write (a timer-only batch, a renewal that needs no write).
            self.pending.grants.extend(grants);
            return Ok(());
        }
        match store.write(now, &changes) {
            Ok(()) => {
                self.pending.changes.extend(changes);
                self.pending.grants.extend(grants);
                Ok(())
            }
            Err(e) => {
                let mut lost = std::mem::take(&mut self.pending.changes);
                lost.extend(changes);
                self.pending.grants.clear();
                forget(table, store, &lost);
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Whether changes or grants wait for a sync.
    pub fn is_pending(&self) -> bool {
        !self.pending.changes.is_empty() || !self.pending.grants.is_empty()
    }

    /// How many changes wait for the sync.
    pub fn pending_changes(&self) -> usize {
        self.pending.changes.len()
    }

    /// Whether the last write or sync failed (and none has worked since).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// How long, from `at`, the waiting grants may still wait for their sync: at once with
    /// durability "fsync" and "none", up to `batch_max_delay_ms` after the last sync with
    /// "batch"; a minute when nothing waits.
    pub fn until_sync(&self, durability: Durability, at: Instant) -> Duration {
        if !self.is_pending() {
            return Duration::from_secs(60);
        }
        match durability {
            Durability::Batch { max_delay_ms } => {
                let due = self.last_sync + Duration::from_millis(u64::from(max_delay_ms));
                due.saturating_duration_since(at)
            }
            Durability::Fsync | Durability::None => Duration::ZERO,
        }
    }

    /// Whether the waiting grants may not wait any longer (at `at`).
    pub fn sync_due(&self, durability: Durability, at: Instant) -> bool {
        self.is_pending() && self.until_sync(durability, at) == Duration::ZERO
    }

    /// The store's sync happened at `at` (after it returned, failed or not).
    pub fn synced_at(&mut self, at: Instant) {
        self.last_sync = at;
    }

    /// Make every written change durable; `None` when nothing waits. On error every change
    /// since the last sync is forgotten and its grant dropped. Refused addresses are put back
    /// and left out of what is returned.
    pub fn sync(
        &mut self,
        table: &mut dyn Table,
        store: &mut dyn LeaseStore,
        now: UnixTime,
    ) -> Result<Option<Committed>, StoreError> {
        if !self.is_pending() {
            return Ok(None);
        }
        let Pending {
            mut changes,
            mut grants,
        } = std::mem::take(&mut self.pending);
        let rejected = match store.sync(now) {
            Ok(synced) => synced.rejected,
            Err(e) => {
                forget(table, store, &changes);
                self.broken = true;
                return Err(e);
            }
        };
        for &ip in &rejected {
            warn!(%ip, "{} refused the change (another node changed this address first); grant withdrawn", store.describe());
            table.restore(ip, store.durable(ip));
        }
        if !rejected.is_empty() {
            changes.retain(|c| !rejected.contains(&change_ip(c)));
            grants.retain(|r| !rejected.contains(&r.msg.yiaddr()));
        }
        Ok(Some(Committed {
            changes,
            grants,
            withdrawn: rejected,
            recovered: std::mem::take(&mut self.broken),
        }))
    }

    /// Apply what other nodes committed to the shared store to the table; returns those
    /// changes, for their names to enter or leave DNS (their outbound DDNS is the committing
    /// node's to send).
    pub fn absorb_remote(
        &mut self,
        table: &mut dyn Table,
        store: &mut dyn LeaseStore,
    ) -> Vec<LeaseChange> {
        let remote = store.take_remote();
        for change in &remote {
            let ip = change_ip(change);
            // An address with a change waiting for its sync (durability "batch") keeps the
            // engine's state: the sync settles it (kept when the store takes it, else put back
            // to what the store holds then, which includes this remote change).
            if self.pending.changes.iter().any(|c| change_ip(c) == ip) {
                continue;
            }
            table.restore(ip, store.durable(ip));
        }
        remote
    }
}

/// Put every address these lost changes touched back to what the store holds.
fn forget(table: &mut dyn Table, store: &dyn LeaseStore, lost: &[LeaseChange]) {
    for change in lost {
        let ip = change_ip(change);
        table.restore(ip, store.durable(ip));
    }
}

/// The address a change is about.
pub fn change_ip(change: &LeaseChange) -> Ipv4Addr {
    match change {
        LeaseChange::Upsert(l) => l.ip,
        LeaseChange::Remove { ip, .. } => *ip,
    }
}

/// An ACK that carries an address grants or extends a lease: it waits for the sync.
pub fn is_grant(r: &Reply) -> bool {
    r.msg.opts().msg_type() == Some(MessageType::Ack) && !r.msg.yiaddr().is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    use dhcproto::v4::{DhcpOption, Message};

    use crate::dhcp::dest::Dest;
    use crate::dhcp::wire::ReplyMsg;
    use crate::lease::store::fake::FakeStore;
    use crate::lease::{ClientId, HwAddr, LeaseState, RemoveReason};

    const NOW: UnixTime = UnixTime(1_000);

    /// The engine's table as the pipeline leaves it: the lease on each address.
    #[derive(Debug, Default, PartialEq)]
    struct Leases(HashMap<Ipv4Addr, Lease>);

    impl Table for Leases {
        fn restore(&mut self, ip: Ipv4Addr, durable: Option<Lease>) {
            match durable {
                Some(lease) => self.0.insert(ip, lease),
                None => self.0.remove(&ip),
            };
        }
    }

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }

    fn lease(n: u8, client: u8) -> Lease {
        let hwaddr = HwAddr::ethernet([2, 0, 0, 0, 0, client]);
        Lease {
            ip: ip(n),
            client: ClientId::from_hw(&hwaddr),
            hwaddr,
            hostname: Some(Arc::from(format!("host{client}"))),
            expires: UnixTime(5_000),
            state: LeaseState::Bound,
        }
    }

    fn ack(n: u8) -> Reply {
        let mut msg = Message::default();
        msg.set_yiaddr(ip(n));
        msg.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Ack));
        Reply {
            msg: ReplyMsg::from_message(&msg).expect("reply"),
            dest: Dest::Broadcast { ifindex: 1 },
            max_size: 576,
            order: Vec::new(),
        }
    }

    /// The engine grants address `n` to client `n` (its table changes at once): the batch's
    /// change and grant.
    fn grant(table: &mut Leases, n: u8) -> (Vec<LeaseChange>, Vec<Reply>) {
        let l = lease(n, n);
        table.0.insert(l.ip, l.clone());
        (vec![LeaseChange::Upsert(l)], vec![ack(n)])
    }

    /// The engine ends the lease on `n` (a RELEASE): no grant.
    fn release(table: &mut Leases, n: u8) -> (Vec<LeaseChange>, Vec<Reply>) {
        table.0.remove(&ip(n));
        let reason = RemoveReason::Released;
        (vec![LeaseChange::Remove { ip: ip(n), reason }], Vec::new())
    }

    /// The store's durable leases, as a table.
    fn durable(store: &FakeStore) -> Leases {
        Leases(store.durable.clone())
    }

    fn granted(c: &Committed) -> Vec<Ipv4Addr> {
        c.grants.iter().map(|r| r.msg.yiaddr()).collect()
    }

    /// A store holding client 5's lease on .5, and a table that agrees.
    fn start() -> (Pipeline, Leases, FakeStore, Instant) {
        let at = Instant::now();
        let mut store = FakeStore::default();
        store.durable.insert(ip(5), lease(5, 5));
        (Pipeline::new(at), durable(&store), store, at)
    }

    #[test]
    fn batches_written_within_the_delay_share_one_sync_and_leave_in_order() {
        let (mut p, mut table, mut store, t0) = start();
        let batch = Durability::Batch { max_delay_ms: 10 };
        for n in [1, 2, 3] {
            let (changes, grants) = grant(&mut table, n);
            p.write(&mut table, &mut store, NOW, changes, grants)
                .expect("written");
        }
        assert!(!p.sync_due(batch, t0 + Duration::from_millis(4)));
        assert_eq!(
            p.until_sync(batch, t0 + Duration::from_millis(4)),
            Duration::from_millis(6)
        );
        assert!(p.sync_due(batch, t0 + Duration::from_millis(10)));
        assert!(p.sync_due(Durability::Fsync, t0), "fsync: at once");
        let c = p
            .sync(&mut table, &mut store, NOW)
            .expect("synced")
            .expect("some");
        assert_eq!(store.syncs, 1, "one sync for three batches");
        assert_eq!(granted(&c), [ip(1), ip(2), ip(3)]);
        assert_eq!(c.changes.len(), 3);
        assert!(c.withdrawn.is_empty() && !c.recovered);
        assert_eq!(table, durable(&store));
        assert!(!p.is_pending());
        assert_eq!(p.until_sync(batch, t0), Duration::from_secs(60));
        assert!(
            p.sync(&mut table, &mut store, NOW)
                .expect("nothing")
                .is_none()
        );
    }

    #[test]
    fn a_failed_write_rolls_the_table_back_and_drops_every_waiting_grant() {
        let (mut p, mut table, mut store, _) = start();
        let (changes, grants) = grant(&mut table, 1);
        p.write(&mut table, &mut store, NOW, changes, grants)
            .expect("written");
        let (mut changes, grants) = grant(&mut table, 2);
        let (ended, _) = release(&mut table, 5);
        changes.extend(ended);
        store.fail_write = true;
        p.write(&mut table, &mut store, NOW, changes, grants)
            .expect_err("the write fails");
        assert_eq!(table, durable(&store), "back to what the store holds");
        assert!(table.0.contains_key(&ip(5)), "the released lease is back");
        assert!(p.is_broken() && !p.is_pending());
        assert!(
            p.sync(&mut table, &mut store, NOW)
                .expect("nothing")
                .is_none()
        );
        // The client retries once the store works: its grant leaves, the store recovered.
        let (changes, grants) = grant(&mut table, 2);
        p.write(&mut table, &mut store, NOW, changes, grants)
            .expect("written");
        let c = p
            .sync(&mut table, &mut store, NOW)
            .expect("synced")
            .expect("some");
        assert_eq!(granted(&c), [ip(2)]);
        assert!(c.recovered && !p.is_broken());
        assert_eq!(table, durable(&store));
    }

    #[test]
    fn a_batch_without_changes_never_reaches_the_store() {
        let (mut p, mut table, mut store, _) = start();
        store.fail_write = true;
        p.write(&mut table, &mut store, NOW, Vec::new(), vec![ack(5)])
            .expect("nothing written");
        assert!(store.fail_write, "the store was not called");
        let c = p
            .sync(&mut table, &mut store, NOW)
            .expect("synced")
            .expect("some");
        assert_eq!(
            granted(&c),
            [ip(5)],
            "a grant that needed no write still waits its turn"
        );
    }

    #[test]
    fn a_failed_sync_rolls_back_every_batch_since_the_last_one() {
        let (mut p, mut table, mut store, _) = start();
        for batch in [
            grant(&mut table, 1),
            release(&mut table, 5),
            grant(&mut table, 2),
        ] {
            p.write(&mut table, &mut store, NOW, batch.0, batch.1)
                .expect("written");
        }
        store.fail_sync = true;
        p.sync(&mut table, &mut store, NOW)
            .expect_err("the sync fails");
        assert_eq!(table, durable(&store));
        assert_eq!(table.0.len(), 1, "only the lease the store held");
        assert!(p.is_broken() && !p.is_pending(), "the grants are dropped");
    }

    #[test]
    fn refused_addresses_are_restored_and_their_grants_withdrawn() {
        let (mut p, mut table, mut store, _) = start();
        // Another node holds .2 for client 42.
        store.taken.push(ip(2));
        store.durable.insert(ip(2), lease(2, 42));
        for n in [1, 2, 3] {
            let (changes, grants) = grant(&mut table, n);
            p.write(&mut table, &mut store, NOW, changes, grants)
                .expect("written");
        }
        let c = p
            .sync(&mut table, &mut store, NOW)
            .expect("synced")
            .expect("some");
        assert_eq!(granted(&c), [ip(1), ip(3)]);
        assert!(
            c.changes.iter().all(|ch| change_ip(ch) != ip(2)),
            "not published"
        );
        assert_eq!(c.withdrawn, [ip(2)]);
        assert_eq!(
            table.0.get(&ip(2)),
            Some(&lease(2, 42)),
            "the other node's lease"
        );
        assert_eq!(table, durable(&store));
    }

    #[test]
    fn changes_other_nodes_committed_reach_the_table_and_come_out_for_the_names() {
        let (mut p, mut table, mut store, _) = start();
        store.durable.insert(ip(7), lease(7, 70));
        store.durable.remove(&ip(5));
        let reason = RemoveReason::Released;
        store.remote = vec![
            LeaseChange::Upsert(lease(7, 70)),
            LeaseChange::Remove { ip: ip(5), reason },
        ];
        let remote = p.absorb_remote(&mut table, &mut store);
        assert_eq!(remote.len(), 2);
        assert_eq!(table, durable(&store));
        assert!(
            p.absorb_remote(&mut table, &mut store).is_empty(),
            "handed over once"
        );
        assert!(!p.is_pending(), "nothing of theirs is written again");
    }

    #[test]
    fn a_remote_change_waits_for_the_sync_of_a_change_written_here_to_the_same_address() {
        let (mut p, mut table, mut store, _) = start();
        // t0: this node grants .6 (durability "batch": written, not synced)...
        let (changes, grants) = grant(&mut table, 6);
        p.write(&mut table, &mut store, NOW, changes, grants)
            .expect("written");
        // ...and another node's change to .6 arrives first: the table keeps this node's.
        store.durable.insert(ip(6), lease(6, 60));
        store.remote = vec![LeaseChange::Upsert(lease(6, 60))];
        assert_eq!(p.absorb_remote(&mut table, &mut store).len(), 1);
        assert_eq!(table.0.get(&ip(6)), Some(&lease(6, 6)));
        // t1: the store refuses it at the sync: then the table follows the store.
        store.taken.push(ip(6));
        let c = p
            .sync(&mut table, &mut store, NOW)
            .expect("ok")
            .expect("some");
        assert_eq!(c.withdrawn, [ip(6)]);
        assert_eq!(table, durable(&store));
    }
}
