//! Live leases indexed by address, by client and by expiry, plus a bounded memory of the last
//! address of clients whose lease ended. Pure data structure: no clock, no I/O, no policy.
//!
//! Every change costs O(1) (hash maps) plus O(log n) (the expiry set).
//!
//! Memory: each lease is stored once (`by_ip`). The client index is keyed by a 64-bit hash of
//! the client id, not a copy of it, and holds one address inline; a lookup checks the client of
//! each address it finds, so two clients whose hashes collide only share a bucket.

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::Ipv4Addr;

use crate::clock::UnixTime;
use crate::lease::{ClientId, Lease, LeaseState};

/// How many "previous address" entries are kept by default.
pub const DEFAULT_MEMORY: usize = 4096;

/// Whether `lease` is held by `client` for allocation purposes. A declined lease belongs to no one.
pub fn held_by(lease: &Lease, client: &ClientId) -> bool {
    lease.state != LeaseState::Declined && lease.client == *client
}

#[derive(Debug)]
pub struct LeaseTable {
    /// A set keyed by each lease's own address: the address is not stored twice.
    by_ip: HashSet<ByIp>,
    /// Offered and bound leases of each client (usually one, at most a few), by the hash of the
    /// client id (see the module doc). Declined: not here.
    by_client: HashMap<u64, Addrs>,
    client_hash: RandomState,
    by_expiry: BTreeSet<(UnixTime, Ipv4Addr)>,
    previous: Previous,
    /// Addresses whose bound or declined lease ended since the table was built (at most one
    /// entry per address the pools hold); a live lease is history enough by itself.
    used: HashSet<Ipv4Addr>,
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
            by_ip: HashSet::new(),
            by_client: HashMap::new(),
            client_hash: RandomState::new(),
            by_expiry: BTreeSet::new(),
            previous: Previous::new(memory),
            used: HashSet::new(),
        }
    }

    /// Make room for `additional` more leases (bulk loading at start).
    pub fn reserve(&mut self, additional: usize) {
        self.by_ip.reserve(additional);
        self.by_client.reserve(additional);
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(&ip).map(|l| &l.0)
    }

    /// Insert `lease`, replacing (and returning) whatever lease held its address.
    pub fn insert(&mut self, lease: Lease) -> Option<Lease> {
        let old = self.unindex(lease.ip);
        if let Some(o) = &old
            && o.client != lease.client
        {
            self.remember(o);
        }
        self.by_expiry.insert((lease.expires, lease.ip));
        if lease.state != LeaseState::Declined {
            let key = self.client_hash.hash_one(&lease.client);
            match self.by_client.entry(key) {
                Entry::Occupied(mut e) => e.get_mut().insert(lease.ip),
                Entry::Vacant(e) => {
                    e.insert(Addrs::One(lease.ip));
                }
            }
        }
        self.by_ip.insert(ByIp(lease));
        old
    }

    /// Remove the lease on `ip`. A bound lease that ends is remembered as its client's previous
    /// address.
    pub fn remove(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        let old = self.unindex(ip)?;
        self.remember(&old);
        Some(old)
    }

    /// The offered and bound leases of `client`.
    pub fn by_client<'a>(&'a self, client: &'a ClientId) -> impl Iterator<Item = &'a Lease> + 'a {
        let key = self.client_hash.hash_one(client);
        let ips = self.by_client.get(&key).map_or(&[][..], Addrs::as_slice);
        ips.iter()
            .filter_map(|ip| self.get(*ip))
            .filter(move |l| l.client == *client)
    }

    /// The address `client` last held, if its lease ended and the memory still has it.
    pub fn previous(&self, client: &ClientId) -> Option<Ipv4Addr> {
        self.previous.get(client)
    }

    /// Whether `ip` has a lease now or had a bound or declined one since the table was built.
    /// An address without history may be in use by a host that never asked us (ping check).
    pub fn has_history(&self, ip: Ipv4Addr) -> bool {
        self.by_ip.contains(&ip) || self.used.contains(&ip)
    }

    /// The earliest expiry of any lease (offers and declines included).
    pub fn next_expiry(&self) -> Option<UnixTime> {
        self.by_expiry.first().map(|(t, _)| *t)
    }

    /// Leases whose time is up at `now` (`expires <= now`), oldest first.
    pub fn expired(&self, now: UnixTime) -> impl Iterator<Item = &Lease> + '_ {
        self.by_expiry
            .iter()
            .take_while(move |(t, _)| *t <= now)
            .filter_map(|(_, ip)| self.get(*ip))
    }

    /// Remove and return the oldest lease whose time is up at `now`.
    pub fn pop_expired(&mut self, now: UnixTime) -> Option<Lease> {
        let &(t, ip) = self.by_expiry.first()?;
        if t > now {
            return None;
        }
        self.remove(ip)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lease> + '_ {
        self.by_ip.iter().map(|l| &l.0)
    }

    fn unindex(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        let old = self.by_ip.take(&ip)?.0;
        self.by_expiry.remove(&(old.expires, ip));
        if old.state != LeaseState::Offered {
            self.used.insert(ip);
        }
        let key = self.client_hash.hash_one(&old.client);
        if let Some(ips) = self.by_client.get_mut(&key)
            && ips.remove(ip)
        {
            self.by_client.remove(&key);
        }
        Some(old)
    }

    fn remember(&mut self, old: &Lease) {
        if old.state == LeaseState::Bound {
            self.previous.put(old.client.clone(), old.ip);
        }
    }
}

/// A lease in `by_ip`: equal, hashed and looked up by its address alone.
#[derive(Debug)]
struct ByIp(Lease);

impl PartialEq for ByIp {
    fn eq(&self, other: &Self) -> bool {
        self.0.ip == other.0.ip
    }
}
impl Eq for ByIp {}
impl Hash for ByIp {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.ip.hash(state);
    }
}
impl Borrow<Ipv4Addr> for ByIp {
    fn borrow(&self) -> &Ipv4Addr {
        &self.0.ip
    }
}

/// The addresses of one client-index bucket: one inline (the usual case, no allocation), or
/// more in a boxed vector (which keeps a bucket at 16 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
// The box is the point: a `Vec` inline would make every bucket 24 bytes.
#[allow(clippy::box_collection)]
enum Addrs {
    One(Ipv4Addr),
    Many(Box<Vec<Ipv4Addr>>),
}

impl Addrs {
    fn as_slice(&self) -> &[Ipv4Addr] {
        match self {
            Addrs::One(ip) => std::slice::from_ref(ip),
            Addrs::Many(ips) => ips.as_slice(),
        }
    }

    /// Add `ip` unless it is there already.
    fn insert(&mut self, ip: Ipv4Addr) {
        match self {
            Addrs::One(first) if *first != ip => *self = Addrs::Many(Box::new(vec![*first, ip])),
            Addrs::One(_) => {}
            Addrs::Many(ips) => {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
    }

    /// Take `ip` out; true when nothing is left.
    fn remove(&mut self, ip: Ipv4Addr) -> bool {
        match self {
            Addrs::One(only) => *only == ip,
            Addrs::Many(ips) => {
                ips.retain(|x| *x != ip);
                match ips.as_slice() {
                    [] => true,
                    [last] => {
                        *self = Addrs::One(*last);
                        false
                    }
                    _ => false,
                }
            }
        }
    }
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
    fn index_entries_stay_small() {
        // 100,000 leases: every byte of an entry is 100 kB (more with the tables' headroom).
        assert!(std::mem::size_of::<Addrs>() <= 16);
        assert_eq!(std::mem::size_of::<ByIp>(), std::mem::size_of::<Lease>());
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
    fn clients_whose_hashes_collide_share_a_bucket_but_see_only_their_leases() {
        let mut t = LeaseTable::new();
        t.insert(lease(1, 10, 100, LeaseState::Bound));
        t.insert(lease(2, 11, 100, LeaseState::Bound));
        // Force the collision: client 2's address lands in client 1's bucket too.
        let key = t.client_hash.hash_one(client(1));
        t.by_client.get_mut(&key).expect("bucket").insert(ip(11));
        let mine: Vec<_> = t.by_client(&client(1)).map(|l| l.ip).collect();
        assert_eq!(mine, vec![ip(10)]);
        t.remove(ip(10));
        assert!(
            t.by_client.contains_key(&key),
            "the other address keeps the bucket"
        );
        assert_eq!(t.by_client(&client(1)).count(), 0);
        assert_eq!(t.by_client(&client(2)).count(), 1);
    }

    #[test]
    fn a_bucket_holds_one_address_inline_and_more_in_a_vector() {
        let mut a = Addrs::One(ip(1));
        a.insert(ip(1));
        assert_eq!(a, Addrs::One(ip(1)), "no duplicates");
        a.insert(ip(2));
        a.insert(ip(3));
        assert_eq!(a.as_slice(), &[ip(1), ip(2), ip(3)]);
        assert!(!a.remove(ip(2)));
        assert!(!a.remove(ip(1)));
        assert_eq!(a, Addrs::One(ip(3)), "back to inline");
        assert!(!a.remove(ip(9)), "another address leaves it alone");
        assert!(a.remove(ip(3)), "empty");
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
