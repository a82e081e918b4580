//! Choosing an address for a client in one subnet: reservations first, then the client's own
//! lease, its previous address, the address it asked for, a free pool address, and finally the
//! oldest lease whose time is up. Pure: reads the lease table, changes nothing but the scan
//! cursor; no clock, no I/O.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::clock::UnixTime;
use crate::config::{Reservation, Subnet};
use crate::lease::table::{LeaseTable, held_by};
use crate::lease::{ClientId, HwAddr};

/// The configured reservations, indexed by address, MAC and client identifier.
#[derive(Debug, Default)]
pub struct Reservations {
    list: Vec<Reservation>,
    by_ip: HashMap<Ipv4Addr, usize, crate::lease::AddrHash>,
    by_hw: HashMap<HwAddr, usize>,
    by_client: HashMap<ClientId, usize>,
}

impl Reservations {
    /// Index `list`; where two reservations share a key, the first one wins.
    pub fn new(list: &[Reservation]) -> Self {
        let mut r = Reservations {
            list: list.to_vec(),
            ..Default::default()
        };
        for (i, res) in list.iter().enumerate() {
            r.by_ip.entry(res.ip).or_insert(i);
            if let Some(hw) = &res.hwaddr {
                r.by_hw.entry(hw.clone()).or_insert(i);
            }
            if let Some(id) = &res.client_id {
                r.by_client.entry(id.clone()).or_insert(i);
            }
        }
        r
    }

    /// The reservation of this client: by client identifier first, then by MAC.
    pub fn for_client(&self, client: &ClientId, hwaddr: &HwAddr) -> Option<&Reservation> {
        self.list.get(self.position(client, hwaddr)?)
    }

    /// Where `for_client`'s reservation sits in the list given to `new`.
    pub fn position(&self, client: &ClientId, hwaddr: &HwAddr) -> Option<usize> {
        self.by_client
            .get(client)
            .or_else(|| self.by_hw.get(hwaddr))
            .copied()
    }

    /// Whether `ip` is reserved for a client other than this one.
    pub fn reserved_for_other(&self, ip: Ipv4Addr, client: &ClientId, hwaddr: &HwAddr) -> bool {
        match self.by_ip.get(&ip).and_then(|i| self.list.get(*i)) {
            None => false,
            Some(r) => !matches(r, client, hwaddr),
        }
    }
}

fn matches(r: &Reservation, client: &ClientId, hwaddr: &HwAddr) -> bool {
    r.client_id.as_ref() == Some(client) || r.hwaddr.as_ref() == Some(hwaddr)
}

/// Who wants an address, and what it asked for.
#[derive(Clone, Copy, Debug)]
pub struct Want<'a> {
    pub client: &'a ClientId,
    pub hwaddr: &'a HwAddr,
    /// Option 50.
    pub requested: Option<Ipv4Addr>,
    /// Our own address on the segment: never handed out.
    pub server_id: Ipv4Addr,
}

/// One subnet's view for allocation: the config, the table, the reservations, the time, and
/// the range dynamic addresses come from.
#[derive(Clone, Copy, Debug)]
pub struct Pool<'a> {
    pub subnet: &'a Subnet,
    pub table: &'a LeaseTable,
    pub reservations: &'a Reservations,
    pub now: UnixTime,
    /// First and last address handed out dynamically: the subnet's pool, or a class's range.
    pub range: (Ipv4Addr, Ipv4Addr),
    /// Ranges inside `range` kept for client classes this client is not in.
    pub excluded: &'a [(Ipv4Addr, Ipv4Addr)],
    /// The free-address scan is known to find nothing (no lease was removed since the last
    /// scan of this range found none): skip it.
    pub known_full: bool,
}

impl<'a> Pool<'a> {
    /// The subnet's whole pool, nothing excluded.
    pub fn new(
        subnet: &'a Subnet,
        table: &'a LeaseTable,
        reservations: &'a Reservations,
        now: UnixTime,
    ) -> Self {
        Pool {
            subnet,
            table,
            reservations,
            now,
            range: (subnet.pool_start, subnet.pool_end),
            excluded: &[],
            known_full: false,
        }
    }

    /// In `range` and in no excluded range.
    pub fn in_pool(&self, ip: Ipv4Addr) -> bool {
        let (start, end) = self.range;
        ip >= start && ip <= end && !self.excluded.iter().any(|(a, b)| ip >= *a && ip <= *b)
    }

    /// Choose an address for `w`; None when the pool is full. `cursor` is where the free-address
    /// scan starts (an offset into the pool); it moves past each address handed out.
    pub fn allocate(&self, w: &Want<'_>, cursor: &mut u32) -> Option<Ipv4Addr> {
        if let Some(ip) = self.reserved(w) {
            return Some(ip);
        }
        let current = self.table.by_client(w.client).map(|l| l.ip);
        if let Some(ip) = current.into_iter().find(|ip| self.poolable(*ip, w)) {
            return Some(ip);
        }
        let wished = [self.table.previous(w.client), w.requested];
        if let Some(ip) = wished
            .into_iter()
            .flatten()
            .find(|ip| self.poolable(*ip, w))
        {
            return Some(ip);
        }
        if !self.known_full
            && let Some(ip) = self.scan(w, cursor)
        {
            return Some(ip);
        }
        self.table
            .expired(self.now)
            .map(|l| l.ip)
            .find(|ip| self.base_ok(*ip, w) && self.in_pool(*ip))
    }

    /// Whether `w` may have `ip` when it asks for it outright (INIT-REBOOT, RENEWING): in the
    /// pool or reserved for it, and not live in anyone else's lease.
    pub fn may_have(&self, ip: Ipv4Addr, w: &Want<'_>) -> bool {
        let mine = self
            .reservations
            .for_client(w.client, w.hwaddr)
            .is_some_and(|r| r.ip == ip);
        self.base_ok(ip, w) && (mine || self.in_pool(ip)) && self.free_for(ip, w, true)
    }

    /// The client's reservation in this subnet, if its address is not live in another's lease.
    fn reserved(&self, w: &Want<'_>) -> Option<Ipv4Addr> {
        let r = self.reservations.for_client(w.client, w.hwaddr)?;
        (self.base_ok(r.ip, w) && self.free_for(r.ip, w, true)).then_some(r.ip)
    }

    /// A pool address that is free or already this client's.
    fn poolable(&self, ip: Ipv4Addr, w: &Want<'_>) -> bool {
        self.base_ok(ip, w) && self.in_pool(ip) && self.free_for(ip, w, false)
    }

    /// In the subnet, not its network or broadcast address, not ours, not reserved for another.
    fn base_ok(&self, ip: Ipv4Addr, w: &Want<'_>) -> bool {
        let s = self.subnet;
        let edge = s.prefix_len <= 30 && (ip == s.network || ip == s.broadcast());
        s.contains(ip)
            && !edge
            && ip != w.server_id
            && !self.reservations.reserved_for_other(ip, w.client, w.hwaddr)
    }

    /// No lease on `ip`, or this client's own, or (if `expired_ok`) one whose time is up.
    fn free_for(&self, ip: Ipv4Addr, w: &Want<'_>, expired_ok: bool) -> bool {
        match self.table.get(ip) {
            None => true,
            Some(l) => held_by(l, w.client) || (expired_ok && l.expires <= self.now),
        }
    }

    /// The first address with no lease at all, starting at `cursor` and wrapping around.
    fn scan(&self, w: &Want<'_>, cursor: &mut u32) -> Option<Ipv4Addr> {
        let start = u32::from(self.range.0);
        let end = u32::from(self.range.1);
        if end < start {
            return None;
        }
        let size = u64::from(end - start) + 1;
        let first = u64::from(*cursor) % size;
        for step in 0..size {
            let off = (first + step) % size;
            // off < size <= 2^32, and start + off <= end.
            let ip = Ipv4Addr::from(start.wrapping_add(off as u32));
            if self.table.get(ip).is_none() && self.base_ok(ip, w) && self.in_pool(ip) {
                *cursor = ((off + 1) % size) as u32;
                return Some(ip);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{Lease, LeaseState};

    const SID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }
    fn hw(n: u8) -> HwAddr {
        HwAddr::ethernet([2, 0, 0, 0, 0, n])
    }
    fn id(n: u8) -> ClientId {
        ClientId::from_hw(&hw(n))
    }
    fn subnet(first: u8, last: u8) -> Subnet {
        Subnet {
            network: ip(0),
            prefix_len: 24,
            pool_start: ip(first),
            pool_end: ip(last),
            router: None,
            dns_servers: vec![],
            lease_time: 600,
            interface: None,
            authoritative: true,
            settings: Default::default(),
        }
    }
    fn lease(n: u8, addr: u8, expires: u64, state: LeaseState) -> Lease {
        Lease {
            ip: ip(addr),
            client: id(n),
            hwaddr: hw(n),
            hostname: None,
            expires: UnixTime(expires),
            state,
        }
    }
    fn reservation(n: u8, addr: u8) -> Reservation {
        Reservation {
            hwaddr: Some(hw(n)),
            client_id: None,
            ip: ip(addr),
            name: None,
            lease_time: None,
            options: vec![],
        }
    }

    /// What client (`c`, `h`) asks of us.
    fn want<'a>(c: &'a ClientId, h: &'a HwAddr, requested: Option<Ipv4Addr>) -> Want<'a> {
        Want {
            client: c,
            hwaddr: h,
            requested,
            server_id: SID,
        }
    }

    /// Allocate for client `n` at t=100.
    fn alloc(
        s: &Subnet,
        t: &LeaseTable,
        r: &Reservations,
        n: u8,
        req: Option<u8>,
    ) -> Option<Ipv4Addr> {
        let (c, h) = (id(n), hw(n));
        let w = want(&c, &h, req.map(ip));
        let pool = Pool::new(s, t, r, UnixTime(100));
        pool.allocate(&w, &mut 0)
    }

    #[test]
    fn reservation_beats_everything_and_is_kept_from_others() {
        let s = subnet(100, 110);
        let mut t = LeaseTable::new();
        t.insert(lease(1, 105, 1000, LeaseState::Bound));
        let r = Reservations::new(&[reservation(1, 50)]);
        // Client 1 holds .105 but has a reservation outside the pool: it gets .50.
        assert_eq!(alloc(&s, &t, &r, 1, Some(106)), Some(ip(50)));
        // Client 2 asks for .50 and gets a pool address instead.
        let r = Reservations::new(&[reservation(1, 100)]);
        assert_eq!(alloc(&s, &t, &r, 2, Some(100)), Some(ip(101)));
    }

    #[test]
    fn reservation_by_client_id_matches_too() {
        let s = subnet(100, 110);
        let t = LeaseTable::new();
        let res = Reservation {
            hwaddr: None,
            client_id: Some(id(3)),
            ip: ip(20),
            name: None,
            lease_time: None,
            options: vec![],
        };
        let r = Reservations::new(&[res]);
        assert_eq!(alloc(&s, &t, &r, 3, None), Some(ip(20)));
        assert_eq!(alloc(&s, &t, &r, 4, Some(20)), Some(ip(100)));
    }

    #[test]
    fn own_lease_then_previous_then_requested_then_scan() {
        let s = subnet(100, 110);
        let r = Reservations::default();
        let mut t = LeaseTable::new();
        t.insert(lease(1, 107, 1000, LeaseState::Bound));
        assert_eq!(alloc(&s, &t, &r, 1, Some(103)), Some(ip(107)));

        // Client 2 held .104 before; it gets it back over the address it requests.
        t.insert(lease(2, 104, 50, LeaseState::Bound));
        t.remove(ip(104));
        assert_eq!(alloc(&s, &t, &r, 2, Some(103)), Some(ip(104)));

        // Client 3 asks for .103: free, in the pool, so it gets it.
        assert_eq!(alloc(&s, &t, &r, 3, Some(103)), Some(ip(103)));
        // Asking for an address out of the pool or taken: the scan decides.
        assert_eq!(alloc(&s, &t, &r, 3, Some(20)), Some(ip(100)));
        assert_eq!(alloc(&s, &t, &r, 3, Some(107)), Some(ip(100)));
    }

    #[test]
    fn scan_skips_our_own_address_and_moves_its_cursor() {
        let s = subnet(1, 3);
        let t = LeaseTable::new();
        let r = Reservations::default();
        let (c, h) = (id(1), hw(1));
        let w = want(&c, &h, None);
        let pool = Pool::new(&s, &t, &r, UnixTime(0));
        let mut cursor = 0;
        assert_eq!(pool.allocate(&w, &mut cursor), Some(ip(2)));
        assert_eq!(cursor, 2);
        assert_eq!(pool.allocate(&w, &mut cursor), Some(ip(3)));
        assert_eq!(cursor, 0);
        // A stale cursor past the pool's end wraps instead of failing.
        let mut cursor = 77;
        assert!(pool.allocate(&w, &mut cursor).is_some());
    }

    #[test]
    fn full_pool_reuses_the_oldest_lease_whose_time_is_up_else_none() {
        let s = subnet(100, 102);
        let r = Reservations::default();
        let mut t = LeaseTable::new();
        t.insert(lease(1, 100, 1000, LeaseState::Bound));
        t.insert(lease(2, 101, 90, LeaseState::Declined));
        t.insert(lease(3, 102, 80, LeaseState::Bound));
        // At t=100 both .101 and .102 are done; .102 ended first.
        assert_eq!(alloc(&s, &t, &r, 9, None), Some(ip(102)));
        t.insert(lease(3, 102, 1000, LeaseState::Bound));
        t.insert(lease(2, 101, 1000, LeaseState::Declined));
        assert_eq!(alloc(&s, &t, &r, 9, None), None);
    }

    #[test]
    fn may_have_checks_pool_reservations_and_other_leases() {
        let s = subnet(100, 110);
        let mut t = LeaseTable::new();
        t.insert(lease(2, 101, 1000, LeaseState::Bound));
        t.insert(lease(3, 102, 50, LeaseState::Bound));
        let r = Reservations::new(&[reservation(1, 20), reservation(4, 105)]);
        let (c, h) = (id(1), hw(1));
        let w = want(&c, &h, None);
        let pool = Pool::new(&s, &t, &r, UnixTime(100));
        assert!(pool.may_have(ip(100), &w));
        assert!(
            pool.may_have(ip(20), &w),
            "own reservation outside the pool"
        );
        assert!(
            pool.may_have(ip(102), &w),
            "lease of another whose time is up"
        );
        assert!(!pool.may_have(ip(101), &w), "live lease of another");
        assert!(!pool.may_have(ip(105), &w), "reserved for another");
        assert!(!pool.may_have(ip(30), &w), "outside the pool");
        assert!(!pool.may_have(SID, &w), "our own address");
        assert!(
            !pool.may_have(Ipv4Addr::new(10, 9, 0, 100), &w),
            "other subnet"
        );
    }

    #[test]
    fn class_range_and_excluded_ranges_shape_the_pool() {
        let s = subnet(100, 110);
        let t = LeaseTable::new();
        let r = Reservations::default();
        let (c, h) = (id(1), hw(1));
        let w = want(&c, &h, Some(ip(105)));
        // A non-member: .100 to .104 kept for a class; asking for .105 is fine, the scan
        // starts past the excluded range.
        let kept = [(ip(100), ip(104))];
        let mut pool = Pool::new(&s, &t, &r, UnixTime(0));
        pool.excluded = &kept;
        assert!(!pool.in_pool(ip(103)) && pool.in_pool(ip(105)));
        assert_eq!(pool.allocate(&w, &mut 0), Some(ip(105)));
        let w2 = Want {
            requested: Some(ip(101)),
            ..w
        };
        assert_eq!(
            pool.allocate(&w2, &mut 0),
            Some(ip(105)),
            "excluded even when asked"
        );
        assert!(!pool.may_have(ip(101), &w2));
        // A member allocates from its own range only, even outside the subnet's pool.
        let mut member = Pool::new(&s, &t, &r, UnixTime(0));
        member.range = (ip(200), ip(201));
        assert_eq!(member.allocate(&w2, &mut 0), Some(ip(200)));
        assert!(member.may_have(ip(201), &w2) && !member.may_have(ip(105), &w2));
    }

    #[test]
    fn empty_or_inverted_pool_gives_nothing() {
        let s = subnet(110, 100);
        let t = LeaseTable::new();
        let r = Reservations::default();
        assert_eq!(alloc(&s, &t, &r, 1, Some(105)), None);
    }
}
