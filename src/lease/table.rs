//! Live leases indexed by address, by client and by expiry, plus a bounded memory of the last
//! address of clients whose lease ended. Pure data structure: no clock, no I/O, no policy.
//!
//! Every change costs O(1) (hash tables) plus O(log n) (the expiry set).
//!
//! # Memory
//! Each lease is stored once, in one dense vector (a removal moves the last lease into the
//! hole). The address and client indexes hold only a 4-byte position in that vector (plus
//! hashbrown's control byte); a lookup compares the lease it points at, so clients whose hashes
//! collide only share a probe sequence. The expiry set holds one u64 per lease (expiry seconds
//! and address). With 100,000 leases that is about 72 + 2 x 6.6 + 20 = 105 bytes a lease
//! (measured), against 163 for a set of leases, a map of client hashes and a set of
//! (time, address) pairs.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::net::Ipv4Addr;

use hashbrown::HashTable;

use crate::clock::UnixTime;
use crate::lease::dense::{ByAddr, pos};
use crate::lease::tally::Tally;
use crate::lease::{AddrHash, ClientId, HwAddr, Lease, LeaseState};

/// How many "previous address" entries are kept by default.
pub const DEFAULT_MEMORY: usize = 4096;

/// Whether `lease` is held by `client` for allocation purposes. A declined lease belongs to no one.
pub fn held_by(lease: &Lease, client: &ClientId) -> bool {
    lease.state != LeaseState::Declined && lease.client == *client
}

#[derive(Debug)]
pub struct LeaseTable {
    /// Every lease, once, in no particular order, with the address index (positions there are
    /// what the client index holds).
    leases: ByAddr,
    /// Positions in `leases` of the offered and bound leases, by client (usually one each, at
    /// most a few). Declined: not here.
    by_client: HashTable<u32>,
    hasher: RandomState,
    /// `expiry_key` of every lease.
    by_expiry: BTreeSet<u64>,
    previous: Previous,
    /// Addresses whose bound or declined lease ended since the table was built (at most one
    /// entry per address the pools hold); a live lease is history enough by itself.
    used: HashSet<Ipv4Addr, AddrHash>,
    /// Leases removed since the table was built: an address can only become free when this
    /// grows (the allocator's "pool full" memo compares it).
    removals: u64,
    /// Offered and bound leases whose client id is not the one derived from their hardware
    /// address, counted by hardware address (only those: the map stays empty for clients that
    /// send no option 61 or the usual 01:<mac>). Bounds the client ids one chaddr may hold.
    foreign_ids: HashMap<HwAddr, u32>,
    /// Bound and declined leases per subnet (for `/metrics`).
    tally: Tally,
}

/// Whether `l` counts in `LeaseTable::foreign_ids`.
fn foreign_id(l: &Lease) -> bool {
    // `ClientId::from_hw`'s bytes (htype, then the address), compared without building it.
    let derived = l
        .client
        .as_bytes()
        .split_first()
        .is_some_and(|(t, rest)| *t == l.hwaddr.htype && rest == l.hwaddr.bytes());
    l.state != LeaseState::Declined && !derived
}

/// A lease's entry in the expiry set: expiry seconds (saturated to u32, which lasts until 2106)
/// in the high half, the address in the low half, so the set orders by (expiry, address).
fn expiry_key(lease: &Lease) -> u64 {
    let secs = u32::try_from(lease.expires.0).unwrap_or(u32::MAX);
    (u64::from(secs) << 32) | u64::from(u32::from(lease.ip))
}

/// The address of an expiry-set entry.
fn key_ip(key: u64) -> Ipv4Addr {
    Ipv4Addr::from(key as u32)
}

impl Default for LeaseTable {
    fn default() -> Self {
        LeaseTable::new()
    }
}

impl LeaseTable {
    pub fn new() -> Self {
        LeaseTable::with_memory(DEFAULT_MEMORY)
    }

    /// A table that remembers the previous address of at most `memory` clients.
    pub fn with_memory(memory: usize) -> Self {
        LeaseTable {
            leases: ByAddr::default(),
            by_client: HashTable::new(),
            hasher: RandomState::new(),
            by_expiry: BTreeSet::new(),
            previous: Previous::new(memory),
            used: HashSet::default(),
            removals: 0,
            foreign_ids: HashMap::new(),
            tally: Tally::default(),
        }
    }

    /// Make room for `additional` more leases (bulk loading at start).
    pub fn reserve(&mut self, additional: usize) {
        self.leases.reserve(additional);
        let LeaseTable {
            leases,
            by_client,
            hasher,
            ..
        } = self;
        by_client.reserve(additional, |&i| client_hash(hasher, leases.as_slice(), i));
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Bytes the table holds on the heap (its vectors and indexes; not host names, not the
    /// previous-address memory).
    pub fn heap_bytes(&self) -> usize {
        // A B-tree leaf holds up to 11 keys in about 100 bytes; count it half full.
        let expiry = self.by_expiry.len() * 100 / 6;
        self.leases.heap_bytes() + self.by_client.allocation_size() + expiry
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.leases.position(ip).and_then(|i| self.leases.at(i))
    }

    /// Insert `lease`, replacing (and returning) whatever lease held its address.
    pub fn insert(&mut self, lease: Lease) -> Option<Lease> {
        self.tally.count(&lease, true);
        self.count_foreign(&lease);
        self.uncount_foreign(lease.ip);
        self.by_expiry.insert(expiry_key(&lease));
        let Some(i) = self.leases.position(lease.ip) else {
            let i = self.leases.push(lease);
            self.index_client(i);
            return None;
        };
        let new_client = (lease.state != LeaseState::Declined).then_some(&lease.client);
        let old_client = self
            .leases
            .at(i)
            .map(|old| (old.state != LeaseState::Declined).then_some(&old.client));
        // The client index keeps its entry when the lease stays with the same client.
        let reindex = old_client != Some(new_client);
        if reindex {
            self.unindex_client(i);
        }
        let old = self.leases.replace(i, lease)?;
        self.tally.count(&old, false);
        if expiry_key(&old) != self.leases.at(i).map_or(0, expiry_key) {
            self.by_expiry.remove(&expiry_key(&old));
        }
        if reindex {
            self.index_client(i);
        }
        self.ended(&old);
        if self
            .leases
            .at(i)
            .is_some_and(|new| new.client != old.client)
        {
            self.remember(&old);
        }
        Some(old)
    }

    /// Remove the lease on `ip`. A bound lease that ends is remembered as its client's previous
    /// address.
    pub fn remove(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        let i = self.leases.position(ip)?;
        self.removals += 1;
        self.uncount_foreign(ip);
        self.unindex_client(i);
        let old = self.leases.swap_remove(i)?;
        self.tally.count(&old, false);
        self.by_expiry.remove(&expiry_key(&old));
        self.moved(self.leases.len(), i);
        self.ended(&old);
        self.remember(&old);
        Some(old)
    }

    /// Offered and bound leases on `hw` held under client ids other than the one derived from
    /// `hw` itself.
    pub fn foreign_ids_on(&self, hw: &HwAddr) -> u32 {
        self.foreign_ids.get(hw).copied().unwrap_or(0)
    }

    /// Count `l` (about to be stored) in `foreign_ids`, if it belongs there.
    fn count_foreign(&mut self, l: &Lease) {
        if foreign_id(l) {
            *self.foreign_ids.entry(l.hwaddr.clone()).or_insert(0) += 1;
        }
    }

    /// Take the lease now on `ip` (about to be replaced or removed) out of `foreign_ids`.
    fn uncount_foreign(&mut self, ip: Ipv4Addr) {
        if self.foreign_ids.is_empty() {
            return;
        }
        let Some(hw) = self
            .get(ip)
            .filter(|l| foreign_id(l))
            .map(|l| l.hwaddr.clone())
        else {
            return;
        };
        if let Some(n) = self.foreign_ids.get_mut(&hw) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.foreign_ids.remove(&hw);
            }
        }
    }

    /// Count bound and declined leases per these subnets (network, prefix length) from now on,
    /// starting with the leases already here.
    pub fn tally_subnets(&mut self, subnets: &[(Ipv4Addr, u8)]) {
        self.tally = Tally::new(subnets);
        for l in self.leases.as_slice() {
            self.tally.count(l, true);
        }
    }

    /// (bound, declined) leases per subnet given to `tally_subnets`.
    pub fn tally(&self) -> &[(u64, u64)] {
        self.tally.counts()
    }

    /// How many leases were removed since the table was built (never decreases).
    pub fn removals(&self) -> u64 {
        self.removals
    }

    /// The offered and bound leases of `client`.
    pub fn by_client<'a>(&'a self, client: &'a ClientId) -> impl Iterator<Item = &'a Lease> + 'a {
        self.by_client
            .iter_hash(self.hasher.hash_one(client))
            .filter_map(|&i| self.leases.at(i as usize))
            .filter(move |l| l.client == *client && l.state != LeaseState::Declined)
    }

    /// The address `client` last held, if its lease ended and the memory still has it.
    pub fn previous(&self, client: &ClientId) -> Option<Ipv4Addr> {
        self.previous.get(client)
    }

    /// Whether `ip` has a lease now or had a bound or declined one since the table was built.
    /// An address without history may be in use by a host that never asked us (ping check).
    pub fn has_history(&self, ip: Ipv4Addr) -> bool {
        self.leases.position(ip).is_some() || self.used.contains(&ip)
    }

    /// The earliest expiry of any lease (offers and declines included).
    pub fn next_expiry(&self) -> Option<UnixTime> {
        let key = self.by_expiry.first()?;
        self.get(key_ip(*key)).map(|l| l.expires)
    }

    /// Leases whose time is up at `now` (`expires <= now`), oldest first.
    pub fn expired(&self, now: UnixTime) -> impl Iterator<Item = &Lease> + '_ {
        self.by_expiry
            .iter()
            .map_while(|key| self.get(key_ip(*key)))
            .take_while(move |l| l.expires <= now)
    }

    /// Remove and return the oldest lease whose time is up at `now`.
    pub fn pop_expired(&mut self, now: UnixTime) -> Option<Lease> {
        let ip = key_ip(*self.by_expiry.first()?);
        if self.get(ip)?.expires > now {
            return None;
        }
        self.remove(ip)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lease> + '_ {
        self.leases.as_slice().iter()
    }

    /// Put the lease at position `i` into the client index (unless it is declined).
    fn index_client(&mut self, i: usize) {
        let LeaseTable {
            leases,
            by_client,
            hasher,
            ..
        } = self;
        let Some(lease) = leases.at(i).filter(|l| l.state != LeaseState::Declined) else {
            return;
        };
        let hash = hasher.hash_one(&lease.client);
        let leases = leases.as_slice();
        by_client.insert_unique(hash, pos(i), |&p| client_hash(hasher, leases, p));
    }

    /// Take the lease at position `i` out of the client index (if it is there).
    fn unindex_client(&mut self, i: usize) {
        let Some(lease) = self
            .leases
            .at(i)
            .filter(|l| l.state != LeaseState::Declined)
        else {
            return;
        };
        let hash = self.hasher.hash_one(&lease.client);
        if let Ok(entry) = self.by_client.find_entry(hash, |&p| p == pos(i)) {
            entry.remove();
        }
    }

    /// The lease that was at position `from` is now at `to` (after a `swap_remove`, which
    /// moved its address entry): point its client entry there.
    fn moved(&mut self, from: usize, to: usize) {
        let Some(lease) = self.leases.at(to) else {
            return;
        };
        let (from, to) = (pos(from), pos(to));
        if lease.state != LeaseState::Declined
            && let Some(p) = self
                .by_client
                .find_mut(self.hasher.hash_one(&lease.client), |&p| p == from)
        {
            *p = to;
        }
    }

    /// A lease left its address (removed or replaced): a bound or declined one is history.
    fn ended(&mut self, old: &Lease) {
        if old.state != LeaseState::Offered {
            self.used.insert(old.ip);
        }
    }

    fn remember(&mut self, old: &Lease) {
        if old.state == LeaseState::Bound {
            self.previous.put(old.client.clone(), old.ip);
        }
    }
}

/// The client-index hash of the lease at position `i` (for rehashing).
fn client_hash(hasher: &RandomState, leases: &[Lease], i: u32) -> u64 {
    leases
        .get(i as usize)
        .map_or(0, |l| hasher.hash_one(&l.client))
}

/// Bounded client -> last address map; the oldest entry is forgotten first.
#[derive(Debug)]
struct Previous {
    cap: usize,
    seq: u64,
    map: HashMap<ClientId, (Ipv4Addr, u64)>,
    order: VecDeque<(u64, ClientId)>,
}

impl Previous {
    fn new(cap: usize) -> Self {
        Previous {
            cap,
            seq: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, client: &ClientId) -> Option<Ipv4Addr> {
        self.map.get(client).map(|(ip, _)| *ip)
    }

    fn put(&mut self, client: ClientId, ip: Ipv4Addr) {
        if self.cap == 0 {
            return;
        }
        self.seq += 1;
        self.map.insert(client.clone(), (ip, self.seq));
        self.order.push_back((self.seq, client));
        // Each put adds one queue entry, so the map never outgrows the queue.
        while self.order.len() > self.cap {
            if let Some((seq, old)) = self.order.pop_front()
                && self.map.get(&old).is_some_and(|(_, s)| *s == seq)
            {
                self.map.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::HwAddr;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn client(n: u8) -> ClientId {
        ClientId::from_hw(&HwAddr::ethernet([2, 0, 0, 0, 0, n]))
    }

    fn lease(n: u8, addr: u8, expires: u64, state: LeaseState) -> Lease {
        Lease {
            ip: ip(addr),
            client: client(n),
            hwaddr: HwAddr::ethernet([2, 0, 0, 0, 0, n]),
            hostname: None,
            expires: UnixTime(expires),
            state,
        }
    }

    #[test]
    fn a_lease_costs_its_own_size_plus_small_index_entries() {
        // 100,000 leases: every byte a lease is 100 kB (more with the tables' headroom).
        let mut t = LeaseTable::new();
        let n: u32 = 100_000;
        t.reserve(n as usize);
        for i in 0..n {
            let b = i.to_be_bytes();
            let hw = HwAddr::ethernet([2, 0, b[0], b[1], b[2], b[3]]);
            t.insert(Lease {
                ip: Ipv4Addr::from(0x0a00_0000 + i),
                client: ClientId::from_hw(&hw),
                hwaddr: hw,
                hostname: None,
                expires: UnixTime(1000),
                state: LeaseState::Bound,
            });
        }
        let per_lease = t.heap_bytes() / n as usize;
        assert!(per_lease <= 120, "{per_lease} bytes a lease");
        assert_eq!(t.len(), n as usize);
    }

    #[test]
    fn insert_get_by_client_and_remove_keep_indexes_in_step() {
        let mut t = LeaseTable::new();
        assert!(t.insert(lease(1, 10, 100, LeaseState::Bound)).is_none());
        assert!(t.insert(lease(1, 11, 50, LeaseState::Offered)).is_none());
        assert_eq!(t.len(), 2);
        let mut mine: Vec<_> = t.by_client(&client(1)).map(|l| l.ip).collect();
        mine.sort();
        assert_eq!(mine, vec![ip(10), ip(11)]);
        assert_eq!(t.next_expiry(), Some(UnixTime(50)));

        // Renewal at the same address moves the expiry entry, not duplicates it.
        let old = t.insert(lease(1, 10, 200, LeaseState::Bound));
        assert_eq!(old.map(|l| l.expires), Some(UnixTime(100)));
        assert_eq!(t.by_client(&client(1)).count(), 2);
        assert_eq!(t.by_expiry.len(), 2);

        assert_eq!(t.remove(ip(11)).map(|l| l.state), Some(LeaseState::Offered));
        assert_eq!(t.next_expiry(), Some(UnixTime(200)));
        assert!(t.remove(ip(11)).is_none());
        assert_eq!(t.remove(ip(10)).map(|l| l.ip), Some(ip(10)));
        assert!(t.is_empty() && t.by_client.is_empty() && t.by_expiry.is_empty());
    }

    #[test]
    fn clients_that_share_probe_groups_see_only_their_leases() {
        // 3,000 clients with two addresses each in a small table: many share hashbrown's 7-bit
        // tags and probe groups; a lookup still finds exactly the client's own leases, also
        // after removals moved leases around in the vector.
        let mut t = LeaseTable::new();
        let client_of = |c: u32| ClientId::new(&c.to_be_bytes());
        let lease_of = |c: u32, slot: u32| Lease {
            ip: Ipv4Addr::from(0x0a00_0000 + c * 2 + slot),
            client: client_of(c),
            hwaddr: HwAddr::default(),
            hostname: None,
            expires: UnixTime(100),
            state: LeaseState::Bound,
        };
        for c in 0..3000 {
            t.insert(lease_of(c, 0));
            t.insert(lease_of(c, 1));
        }
        for c in (0..3000).step_by(3) {
            t.remove(lease_of(c, 0).ip);
        }
        for c in 0..3000 {
            let mut mine: Vec<Ipv4Addr> = t.by_client(&client_of(c)).map(|l| l.ip).collect();
            mine.sort();
            let want: Vec<Ipv4Addr> = match c % 3 {
                0 => vec![lease_of(c, 1).ip],
                _ => vec![lease_of(c, 0).ip, lease_of(c, 1).ip],
            };
            assert_eq!(mine, want, "client {c}");
        }
        assert_eq!(t.by_client.len(), t.len());
    }

    #[test]
    fn random_changes_keep_every_index_in_step_with_a_plain_map() {
        // t0..t5000: inserts, replacements (other client, other state) and removals at random
        // on 64 addresses; after each, the indexes agree with a BTreeMap of the same leases.
        let mut t = LeaseTable::new();
        let mut model: std::collections::BTreeMap<Ipv4Addr, Lease> = Default::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let states = [LeaseState::Offered, LeaseState::Bound, LeaseState::Declined];
        for step in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let addr = (x % 64) as u8;
            if (x >> 8).is_multiple_of(4) {
                assert_eq!(t.remove(ip(addr)), model.remove(&ip(addr)), "step {step}");
            } else {
                let state = states[((x >> 16) % 3) as usize];
                let l = lease(((x >> 24) % 8) as u8, addr, (x >> 32) % 50, state);
                assert_eq!(t.insert(l.clone()), model.insert(l.ip, l), "step {step}");
            }
            assert_eq!(t.len(), model.len());
            for n in 0..8 {
                let mut got: Vec<_> = t.by_client(&client(n)).map(|l| l.ip).collect();
                got.sort();
                let want: Vec<_> = model
                    .values()
                    .filter(|l| held_by(l, &client(n)))
                    .map(|l| l.ip)
                    .collect();
                assert_eq!(got, want, "step {step}");
            }
            let mut order: Vec<_> = model.values().map(|l| (l.expires, l.ip)).collect();
            order.sort();
            let got: Vec<_> = t
                .expired(UnixTime(u64::MAX))
                .map(|l| (l.expires, l.ip))
                .collect();
            assert_eq!(got, order, "step {step}");
        }
    }

    #[test]
    fn expiries_past_2106_sort_last_and_stay_exact() {
        // The expiry set keeps seconds as a u32; the lease keeps the exact time.
        let mut t = LeaseTable::new();
        t.insert(lease(1, 10, u64::MAX, LeaseState::Bound));
        t.insert(lease(2, 11, 500, LeaseState::Bound));
        assert_eq!(t.next_expiry(), Some(UnixTime(500)));
        assert_eq!(t.pop_expired(UnixTime(1000)).map(|l| l.ip), Some(ip(11)));
        assert_eq!(t.next_expiry(), Some(UnixTime(u64::MAX)));
        assert!(t.pop_expired(UnixTime(u64::MAX - 1)).is_none());
        assert_eq!(t.expired(UnixTime(1 << 40)).count(), 0);
        assert_eq!(
            t.pop_expired(UnixTime(u64::MAX)).map(|l| l.ip),
            Some(ip(10))
        );
    }

    #[test]
    fn declined_leases_belong_to_no_client() {
        let mut t = LeaseTable::new();
        t.insert(lease(1, 10, 100, LeaseState::Bound));
        t.insert(lease(1, 10, 700, LeaseState::Declined));
        assert_eq!(t.by_client(&client(1)).count(), 0);
        assert!(!held_by(t.get(ip(10)).expect("declined lease"), &client(1)));
        // Declining is not the end of a bound lease the client could come back to.
        assert_eq!(t.previous(&client(1)), None);
    }

    #[test]
    fn expired_leases_come_out_oldest_first_and_only_when_due() {
        let mut t = LeaseTable::new();
        t.insert(lease(1, 10, 300, LeaseState::Bound));
        t.insert(lease(2, 11, 100, LeaseState::Bound));
        t.insert(lease(3, 12, 200, LeaseState::Offered));
        let due: Vec<_> = t.expired(UnixTime(250)).map(|l| l.ip).collect();
        assert_eq!(due, vec![ip(11), ip(12)]);
        assert!(t.pop_expired(UnixTime(99)).is_none());
        assert_eq!(t.pop_expired(UnixTime(250)).map(|l| l.ip), Some(ip(11)));
        assert_eq!(t.pop_expired(UnixTime(250)).map(|l| l.ip), Some(ip(12)));
        assert!(t.pop_expired(UnixTime(250)).is_none());
        assert_eq!(t.next_expiry(), Some(UnixTime(300)));
    }

    #[test]
    fn ended_bound_leases_are_remembered_offers_are_not() {
        let mut t = LeaseTable::new();
        t.insert(lease(1, 10, 100, LeaseState::Bound));
        t.insert(lease(2, 11, 100, LeaseState::Offered));
        t.remove(ip(10));
        t.remove(ip(11));
        assert_eq!(t.previous(&client(1)), Some(ip(10)));
        assert_eq!(t.previous(&client(2)), None);

        // An address taken over by another client ends the first client's lease too.
        t.insert(lease(3, 20, 100, LeaseState::Bound));
        t.insert(lease(4, 20, 100, LeaseState::Bound));
        assert_eq!(t.previous(&client(3)), Some(ip(20)));
    }

    #[test]
    fn history_remembers_bound_and_declined_addresses_not_offers() {
        let mut t = LeaseTable::new();
        assert!(!t.has_history(ip(10)));
        t.insert(lease(1, 10, 100, LeaseState::Offered));
        assert!(t.has_history(ip(10)), "a live offer counts while it lasts");
        t.remove(ip(10));
        assert!(
            !t.has_history(ip(10)),
            "an offer that ended leaves no history"
        );
        t.insert(lease(1, 10, 100, LeaseState::Bound));
        t.remove(ip(10));
        assert!(t.has_history(ip(10)));
        t.insert(lease(2, 11, 100, LeaseState::Declined));
        assert_eq!(t.pop_expired(UnixTime(100)).map(|l| l.ip), Some(ip(11)));
        assert!(t.has_history(ip(11)));
    }

    #[test]
    fn previous_address_memory_is_bounded_oldest_forgotten_first() {
        let mut t = LeaseTable::with_memory(2);
        for n in 1..=3 {
            t.insert(lease(n, n, 100, LeaseState::Bound));
            t.remove(ip(n));
        }
        assert_eq!(t.previous(&client(1)), None);
        assert_eq!(t.previous(&client(2)), Some(ip(2)));
        assert_eq!(t.previous(&client(3)), Some(ip(3)));

        // Re-remembering a client refreshes it; its stale queue entry does not evict it later.
        t.insert(lease(2, 9, 100, LeaseState::Bound));
        t.remove(ip(9));
        t.insert(lease(4, 4, 100, LeaseState::Bound));
        t.remove(ip(4));
        assert_eq!(t.previous(&client(2)), Some(ip(9)));
        assert_eq!(t.previous(&client(3)), None);
        assert!(t.previous.map.len() <= 2);
    }
}
