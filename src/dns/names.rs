//! The name index that leases and static records produce: A by name, PTR by address, and the
//! static records of the config and the hosts file (A, AAAA, CNAME, MX, TXT, SRV).
//! No sockets, no files, no clock: time comes in with each change, the lease expiry is stored
//! and the zone compares it with the time it reads.
//!
//! # One writer
//! Every change is a `NameChange` (a committed lease batch, the leases recovered at start,
//! dynamic records already journaled, the static records of a (re)loaded config with its hosts
//! file already read), applied whole by `Names::change`. Shared, the index is a `NameIndex`:
//! DNS queries read it, and `NameIndex::apply` is the only way in for the DHCP thread, the
//! dynamic store and reload.
//!
//! # Who owns a name
//! - **Config beats client.** A static name (a named reservation, a `[[dns.record]]`, the
//!   hosts file) always wins; a lease asking for it is not published under it.
//! - **The first live lease keeps a name.** A lease name is published for the bound lease that
//!   asked for it first; later leases of other clients asking for the same name wait (a
//!   *conflict*, logged once and listed by `conflicts()`). When the holder's lease ends
//!   (release, decline, expiry, a new name, or a static taking the name), the earliest waiting
//!   lease that is still bound gets the name at once, A and PTR, without having to renew.
//! - **Our domain, not the client's.** A lease carries a host label (the engine keeps the
//!   first label of what the client sent); it is published as `label.<domain>`.
//! - **Invalid labels are not published** (RFC 1123: letters, digits, '-', 1 to 63 bytes).
//! - **Blocked labels are not published** (`[dns] blocked_names`, by default `wpad`, `isatap`,
//!   `localhost`): a client asking for one gets its address but no name, so it cannot take
//!   proxy auto-discovery or `localhost.<domain>` for itself. Static names are not affected.
//! - **No PTR to an unpublished name:** a lease that waits for its name has no PTR either.
//!
//! # Cost
//! A lease change costs O(1) (two hash tables: claims by address, holders by name) plus
//! O(log n) for a contested name (a BTreeMap of waiting claimants per name, kept only while
//! someone waits). A static-record rebuild visits the static names and the contested names.
//! Memory: lease names are kept by host label (every lease name is `label.<domain>`); a claim
//! shares the lease's own `Arc<str>` (one allocation per name for the lease table and the
//! index) and is 24 bytes; a published name costs 4 more (the holder's address, found by the
//! label's hash and checked against its claim). About 39 bytes a named lease with the tables'
//! control bytes and headroom, against 97 for a map of claims and a map of name slots.
//!
//! # Serial
//! The SOA serial increases with every batch that publishes, withdraws or moves a name, and
//! with every change of the static records. It never falls behind the time of the latest
//! change that carries one (`NameChange::Leases`, `Recovered`; seconds since the epoch, as a
//! u32), so it also increases across restarts.

mod view;
pub use view::NameEntry;

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use hashbrown::HashTable;
use tracing::{debug, info};

use crate::clock::UnixTime;
use crate::config::{Config, DnsRecord, RecordData};
use crate::dns::dynamic::{DynOp, DynamicRecords};
use crate::dns::statics::{StaticRecords, Statics, reservation_records};
use crate::lease::{Lease, LeaseChange, LeaseState};

/// The index as the services share it.
pub type SharedNames = Arc<NameIndex>;

/// One change to the index: the only way it changes (`Names::change`, `NameIndex::apply`).
#[derive(Debug)]
pub enum NameChange<'a> {
    /// A committed batch of lease changes at `now` (the DHCP thread, before the batch's ACKs
    /// leave; or what other nodes committed to a shared store).
    Leases {
        now: UnixTime,
        changes: &'a [LeaseChange],
    },
    /// The leases recovered at start (the bound ones are published).
    Recovered { now: UnixTime, leases: &'a [Lease] },
    /// Dynamic-record changes, already durable in the update journal.
    Dynamic(&'a [DynOp]),
    /// The dynamic records replayed from the update journal at start (replace all).
    DynamicRecovered(DynamicRecords),
    /// The static records of a config with its hosts file already read (replace all: a
    /// reload without `hosts_file` drops the host records). The domain stays.
    Statics(StaticRecords),
    /// The named reservations alone, (label, address): the config's merged with those saved
    /// through the control API (the DHCP thread, after a reservation change).
    Reservations(Vec<(String, Ipv4Addr)>),
}

/// The shared index. A std `RwLock`, not tokio's: readers (DNS queries, zone transfers, the
/// dynamic store's checks) and the one writer API (`apply`) do only synchronous work under it
/// and never hold it across `.await`; the DHCP thread, which is not async, must apply a
/// batch's names before the batch's ACKs leave, so it cannot hand the change to a task.
pub struct NameIndex {
    names: RwLock<Names>,
}

impl NameIndex {
    pub fn new(names: Names) -> SharedNames {
        Arc::new(NameIndex {
            names: RwLock::new(names),
        })
    }

    /// A consistent view for lookups. A holder that panicked (a bug) poisons the lock; the
    /// index is still whole (a change never panics half-way: no unwraps or indexing that can
    /// fail), so the lock is taken anyway, here and in `apply`, the only two places.
    pub fn read(&self) -> RwLockReadGuard<'_, Names> {
        self.names
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Apply one change under one short write lock; returns whether anything published
    /// changed (for `Dynamic`: whether any record changed).
    pub fn apply(&self, change: NameChange) -> bool {
        let mut names = self
            .names
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        names.change(change)
    }
}

/// An answer from the index: the address (or name), and when the record ends (None: static).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found<T> {
    pub value: T,
    pub expires: Option<UnixTime>,
}

/// A bound lease that asks for a valid name: it holds the name or waits for it (24 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    /// The host label (lowercase), shared with the lease's `hostname`: one allocation per name
    /// for the lease table and the index together.
    label: Arc<str>,
    ip: Ipv4Addr,
    /// The lease's expiry in Unix seconds, saturated to u32 (that lasts until 2106; a record's
    /// TTL is the smaller of the configured TTL and the time left, so this is exact enough).
    expires: u32,
}

impl Claim {
    fn expires(&self) -> UnixTime {
        UnixTime(u64::from(self.expires))
    }
}

/// Leases waiting for one name, by claim number (smaller asked earlier): each waiter's address
/// and when it started waiting.
type Waiters = BTreeMap<u64, (Ipv4Addr, UnixTime)>;

/// Who holds a name that a lease asked for and did not get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Another client's live lease, by its address.
    Lease(Ipv4Addr),
    /// A static name (config or hosts file), with its first address if it has one.
    Static(Option<IpAddr>),
}

impl Holder {
    /// The holder's address, if it has one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Holder::Lease(ip) => Some(IpAddr::V4(*ip)),
            Holder::Static(ip) => *ip,
        }
    }
}

/// A bound lease that asked for a name it does not get while the holder lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The contested name, fully qualified, lowercase, without trailing dot.
    pub name: String,
    pub holder: Holder,
    /// The address of the lease that waits.
    pub loser: Ipv4Addr,
    /// When the loser started waiting.
    pub since: UnixTime,
}

pub struct Names {
    /// The local domain, lowercase, without trailing dot.
    domain: String,
    /// Named reservations as A records (they beat everything else).
    reservations: Vec<DnsRecord>,
    /// `[[dns.record]]` entries.
    config_records: Vec<DnsRecord>,
    /// Records read from the hosts file (replaced on reload).
    hosts_records: Vec<DnsRecord>,
    statics: Statics,
    /// Every bound lease asking for a valid name, published or waiting, by (the hash of) its
    /// address.
    claims: HashTable<Claim>,
    /// The published lease name of each holder: its address, by the hash of the label (a
    /// lookup compares the label of the address's claim).
    holders: HashTable<Ipv4Addr>,
    /// The names some lease waits for (a conflict: rare), with their waiters in claim order.
    waiting: HashMap<Arc<str>, Waiters>,
    /// The claim number of each waiting lease: its key in `waiting`.
    waiter_seq: HashMap<Ipv4Addr, u64>,
    hasher: RandomState,
    /// The next claim number (from 1: a withdrawn holder goes first in line, one below the
    /// smallest waiting number).
    next_seq: u64,
    /// The time given to the latest `apply_at` (stamps conflicts, floors the serial).
    now: UnixTime,
    /// Records written by RFC 2136 UPDATE and DynDNS2 (see `dns::dynamic`).
    dynamic: DynamicRecords,
    serial: u32,
    /// Labels no lease may publish (lowercase): `[dns] blocked_names`.
    blocked: HashSet<Box<str>>,
}

impl Names {
    /// `domain` without trailing dot; `statics` are (label, address) from config reservations.
    pub fn new(domain: &str, statics: &[(String, Ipv4Addr)]) -> Self {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let reservations = reservation_records(&domain, statics);
        let statics = Statics::build(&domain, &reservations, &[], &[]);
        Names {
            domain,
            reservations,
            config_records: Vec::new(),
            hosts_records: Vec::new(),
            statics,
            claims: HashTable::new(),
            holders: HashTable::new(),
            waiting: HashMap::new(),
            waiter_seq: HashMap::new(),
            hasher: RandomState::new(),
            next_seq: 1,
            now: UnixTime(0),
            dynamic: DynamicRecords::default(),
            serial: 1,
            blocked: crate::config::DEFAULT_BLOCKED_NAMES
                .iter()
                .map(|n| Box::from(*n))
                .collect(),
        }
    }

    /// The index for `cfg` (domain, named reservations, `[[dns.record]]`s, blocked names) and
    /// the hosts file's `hosts` records.
    pub fn from_config(cfg: &Config, hosts: Vec<DnsRecord>) -> Names {
        let mut names = Names::new(&cfg.start.domain, &[]);
        names.change(NameChange::Statics(StaticRecords::of(cfg, hosts)));
        names
    }

    /// Apply one change whole: the one writer API (shared, through `NameIndex::apply`).
    /// Returns whether anything published changed (for `Dynamic`: whether any record did).
    pub fn change(&mut self, change: NameChange) -> bool {
        let serial = self.serial;
        match change {
            NameChange::Leases { now, changes } => self.apply_at(now, changes),
            NameChange::Recovered { now, leases } => self.load_leases(now, leases),
            NameChange::Dynamic(ops) => return self.apply_dynamic(ops),
            NameChange::DynamicRecovered(records) => self.set_dynamic(records),
            NameChange::Statics(statics) => self.set_statics(statics),
            NameChange::Reservations(named) => {
                self.reservations = reservation_records(&self.domain, &named);
                self.rebuild_statics();
            }
        }
        self.serial != serial
    }

    /// Labels no lease may publish from now on (lowercase labels; leases already published
    /// under a newly blocked label keep it until their next change).
    fn set_blocked_names(&mut self, labels: &[String]) {
        self.blocked = labels
            .iter()
            .map(|l| l.to_ascii_lowercase().into_boxed_str())
            .collect();
    }

    /// Take the static names of a (re)loaded config in one step (one rebuild, one serial
    /// bump at most); the domain stays (it needs a restart). Leases keep their claims.
    fn set_statics(&mut self, statics: StaticRecords) {
        self.reservations = reservation_records(&self.domain, &statics.reservations);
        self.set_blocked_names(&statics.blocked);
        self.config_records = statics.records;
        self.hosts_records = statics.hosts;
        self.rebuild_statics();
    }

    /// The local domain, lowercase, without trailing dot.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Replace the `[[dns.record]]` statics.
    #[cfg(test)]
    fn set_config_records(&mut self, records: Vec<DnsRecord>) {
        self.config_records = records;
        self.rebuild_statics();
    }

    /// Replace the hosts-file statics.
    #[cfg(test)]
    fn set_hosts_records(&mut self, records: Vec<DnsRecord>) {
        self.hosts_records = records;
        self.rebuild_statics();
    }

    /// Rebuild the merged statics; a lease name a static now owns is withdrawn (its lease
    /// waits), a name no static owns any more goes to its earliest waiting lease. Bumps the
    /// serial if the statics or the published lease names changed.
    fn rebuild_statics(&mut self) {
        let statics = Statics::build(
            &self.domain,
            &self.reservations,
            &self.config_records,
            &self.hosts_records,
        );
        let mut changed = statics.by_name != self.statics.by_name;
        self.statics = statics;
        let now_static: Vec<Arc<str>> = self
            .statics
            .by_name
            .keys()
            .filter_map(|fqdn| self.claim_of(self.holder(self.label_of(fqdn)?)?))
            .map(|claim| claim.label.clone())
            .collect();
        for label in now_static {
            changed |= self.demote(&label);
        }
        let contested: Vec<Arc<str>> = self.waiting.keys().cloned().collect();
        for label in contested {
            changed |= self.promote(&label);
        }
        if changed {
            self.bump_serial();
        }
    }

    /// `apply` at time `now`: conflicts that start in this batch are stamped with `now`, and
    /// the serial does not fall behind it.
    fn apply_at(&mut self, now: UnixTime, changes: &[LeaseChange]) {
        self.now = now;
        self.apply(changes);
    }

    /// The leases recovered at start: like `apply_at` with an upsert of each bound one, without
    /// copying them into changes.
    fn load_leases(&mut self, now: UnixTime, leases: &[Lease]) {
        self.now = now;
        let Names {
            claims,
            holders,
            hasher,
            ..
        } = self;
        claims.reserve(leases.len(), |c| hasher.hash_one(c.ip));
        holders.reserve(leases.len(), |ip| holder_hash(hasher, claims, *ip));
        let mut changed = false;
        for lease in leases.iter().filter(|l| l.state == LeaseState::Bound) {
            changed |= self.upsert(lease);
        }
        if changed {
            self.bump_serial();
        }
    }

    /// Apply a batch of lease changes in order, at the time of the latest `apply_at`; bumps the
    /// serial once if any name or address was published, withdrawn or moved (an expiry-only
    /// renewal does not change the serial).
    fn apply(&mut self, changes: &[LeaseChange]) {
        let mut changed = false;
        for change in changes {
            changed |= match change {
                LeaseChange::Upsert(lease) => self.upsert(lease),
                LeaseChange::Remove { ip, .. } => self.release(*ip),
            };
        }
        if changed {
            self.bump_serial();
        }
    }

    /// A record for a fully qualified name (lowercase, no trailing dot), e.g. "laptop.lan".
    pub fn lookup_a(&self, fqdn: &str) -> Option<Found<Ipv4Addr>> {
        let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn);
        if let Some(ip) = self.statics.first_a(fqdn) {
            return Some(Found {
                value: ip,
                expires: None,
            });
        }
        let ip = self.holder(self.label_of(fqdn)?)?;
        let claim = self.claim_of(ip)?;
        Some(Found {
            value: ip,
            expires: Some(claim.expires()),
        })
    }

    /// Every static record of a name (lowercase, trailing dot optional); empty if none.
    pub fn static_records(&self, fqdn: &str) -> &[RecordData] {
        let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn);
        self.statics.by_name.get(fqdn).map_or(&[], Vec::as_slice)
    }

    /// Whether a name has any record here: static, dynamic, or a published lease name.
    pub fn has_name(&self, fqdn: &str) -> bool {
        self.has_static_or_lease(fqdn) || self.dynamic.has(fqdn)
    }

    /// Whether a name is the ancestor of static or dynamic names (an empty non-terminal when
    /// it has no records of its own).
    pub fn is_interior(&self, fqdn: &str) -> bool {
        let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn);
        self.statics.interior.contains(fqdn) || self.dynamic.is_ancestor(fqdn)
    }

    /// Whether the config or a published lease holds a name.
    pub fn has_static_or_lease(&self, fqdn: &str) -> bool {
        let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn);
        self.statics.by_name.contains_key(fqdn)
            || self
                .label_of(fqdn)
                .is_some_and(|label| self.holder(label).is_some())
    }

    /// The dynamic records (RFC 2136 UPDATE, DynDNS2).
    pub fn dynamic(&self) -> &DynamicRecords {
        &self.dynamic
    }

    /// Replace the dynamic records (at start, from the update journal); bumps the serial.
    fn set_dynamic(&mut self, records: DynamicRecords) {
        self.dynamic = records;
        self.bump_serial();
    }

    /// Apply dynamic-record changes in order; bumps the serial once if any changed anything.
    fn apply_dynamic(&mut self, ops: &[DynOp]) -> bool {
        let mut changed = false;
        for op in ops {
            changed |= self.dynamic.apply(op);
        }
        if changed {
            self.bump_serial();
        }
        changed
    }

    /// PTR target (fully qualified, no trailing dot) for an address.
    pub fn lookup_ptr(&self, ip: Ipv4Addr) -> Option<Found<String>> {
        if let Some(fqdn) = self.statics.by_ip.get(&IpAddr::V4(ip)) {
            return Some(Found {
                value: fqdn.clone(),
                expires: None,
            });
        }
        let claim = self.published(ip)?;
        Some(Found {
            value: self.fqdn_of(&claim.label),
            expires: Some(claim.expires()),
        })
    }

    /// PTR target of a static IPv6 address (from an AAAA record or the hosts file).
    pub fn lookup_ptr_v6(&self, ip: std::net::Ipv6Addr) -> Option<String> {
        self.statics.by_ip.get(&IpAddr::V6(ip)).cloned()
    }

    /// Every owner name that may have records (static, published lease, dynamic), and every
    /// address with a static or lease PTR, unsorted and possibly repeated: what a zone
    /// transfer walks (each name is then answered as a query for it would be). O(n).
    pub fn owner_names(&self) -> (Vec<String>, Vec<IpAddr>) {
        let mut names: Vec<String> = self.statics.by_name.keys().cloned().collect();
        let mut addrs: Vec<IpAddr> = self.statics.by_ip.keys().copied().collect();
        for ip in self.holders.iter() {
            if let Some(claim) = self.claim_of(*ip) {
                names.push(self.fqdn_of(&claim.label));
                addrs.push(IpAddr::V4(*ip));
            }
        }
        names.extend(self.dynamic.names().map(String::from));
        (names, addrs)
    }

    /// SOA serial; increases on every change.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Every lease waiting for a name that another lease or a static name holds, oldest
    /// first. A lease asking for the static name of its own address is not a conflict.
    pub fn conflicts(&self) -> Vec<Conflict> {
        let mut out = Vec::new();
        for (label, waiting) in &self.waiting {
            let fqdn = self.fqdn_of(label);
            let holder = match (self.statics.by_name.contains_key(&fqdn), self.holder(label)) {
                (true, _) => Holder::Static(self.statics.first_addr(&fqdn)),
                (false, Some(ip)) => Holder::Lease(ip),
                (false, None) => continue,
            };
            for (ip, since) in waiting.values() {
                if holder == Holder::Static(Some(IpAddr::V4(*ip))) {
                    continue;
                }
                out.push(Conflict {
                    name: fqdn.clone(),
                    holder: holder.clone(),
                    loser: *ip,
                    since: *since,
                });
            }
        }
        out.sort_by(|a, b| (a.since, &a.name, a.loser).cmp(&(b.since, &b.name, b.loser)));
        out
    }

    /// The label a lease asks for: its own (shared, no copy) when it is a valid lowercase
    /// RFC 1123 label, a lowercased copy of a valid one in other case, None for an invalid one.
    fn label(hostname: &Arc<str>) -> Option<Arc<str>> {
        if !is_valid_label(hostname) {
            return None;
        }
        if hostname.bytes().any(|b| b.is_ascii_uppercase()) {
            return Some(Arc::from(hostname.to_ascii_lowercase()));
        }
        Some(hostname.clone())
    }

    /// `label.domain`.
    fn fqdn_of(&self, label: &str) -> String {
        let mut fqdn = String::with_capacity(label.len() + 1 + self.domain.len());
        fqdn.push_str(label);
        fqdn.push('.');
        fqdn.push_str(&self.domain);
        fqdn
    }

    /// The label part of a lease name `label.domain` (lowercase, no trailing dot).
    fn label_of<'a>(&self, fqdn: &'a str) -> Option<&'a str> {
        fqdn.strip_suffix(self.domain.as_str())?.strip_suffix('.')
    }

    /// Whether a static record owns the lease name of `label`.
    fn is_static(&self, label: &str) -> bool {
        self.statics.labels.contains(label)
    }

    /// The claim of `ip` if it holds its name.
    fn published(&self, ip: Ipv4Addr) -> Option<&Claim> {
        let claim = self.claim_of(ip)?;
        (self.holder(&claim.label) == Some(ip)).then_some(claim)
    }

    /// The claim of the lease on `ip`, published or waiting.
    fn claim_of(&self, ip: Ipv4Addr) -> Option<&Claim> {
        claim_in(&self.hasher, &self.claims, ip)
    }

    /// The address of the lease that holds (publishes) `label`.
    fn holder(&self, label: &str) -> Option<Ipv4Addr> {
        let (claims, hasher) = (&self.claims, &self.hasher);
        let found = self.holders.find(hasher.hash_one(label), |ip| {
            claim_in(hasher, claims, *ip).is_some_and(|c| *c.label == *label)
        });
        found.copied()
    }

    /// Publish `label` for `ip` (whose claim is in `claims`; nobody holds `label`).
    fn set_holder(&mut self, label: &str, ip: Ipv4Addr) {
        let Names {
            claims,
            holders,
            hasher,
            ..
        } = self;
        let hash = hasher.hash_one(label);
        holders.insert_unique(hash, ip, |ip| holder_hash(hasher, claims, *ip));
    }

    /// Withdraw `label`'s holder (call while its claim is still in `claims`).
    fn unset_holder(&mut self, label: &str) {
        let (claims, hasher) = (&self.claims, &self.hasher);
        let found = self.holders.find_entry(hasher.hash_one(label), |ip| {
            claim_in(hasher, claims, *ip).is_some_and(|c| *c.label == *label)
        });
        if let Ok(entry) = found {
            entry.remove();
        }
    }

    /// `ip` waits for `label` with claim number `seq`, since `since`.
    fn add_waiter(&mut self, label: &Arc<str>, seq: u64, ip: Ipv4Addr, since: UnixTime) {
        match self.waiting.get_mut(&**label) {
            Some(waiters) => {
                waiters.insert(seq, (ip, since));
            }
            None => {
                self.waiting
                    .insert(label.clone(), BTreeMap::from([(seq, (ip, since))]));
            }
        }
        self.waiter_seq.insert(ip, seq);
    }

    /// Take `ip` out of the waiters of `label`; false if it was not waiting.
    fn remove_waiter(&mut self, label: &str, ip: Ipv4Addr) -> bool {
        let Some(seq) = self.waiter_seq.remove(&ip) else {
            return false;
        };
        if let Some(waiters) = self.waiting.get_mut(label) {
            waiters.remove(&seq);
            if waiters.is_empty() {
                self.waiting.remove(label);
            }
        }
        true
    }

    /// The earliest waiter of `label`, taken out of the waiters.
    fn pop_waiter(&mut self, label: &str) -> Option<Ipv4Addr> {
        let waiters = self.waiting.get_mut(label)?;
        let first = waiters.pop_first().map(|(_, (ip, _))| ip);
        if waiters.is_empty() {
            self.waiting.remove(label);
        }
        if let Some(ip) = first {
            self.waiter_seq.remove(&ip);
        }
        first
    }

    fn bump_serial(&mut self) {
        let by_time = u32::try_from(self.now.0).unwrap_or(u32::MAX);
        self.serial = self.serial.wrapping_add(1).max(by_time).max(1);
    }

    /// Returns whether the published set changed.
    fn upsert(&mut self, lease: &Lease) -> bool {
        let wanted = match (&lease.state, &lease.hostname) {
            (LeaseState::Bound, Some(hostname)) => Names::label(hostname),
            _ => None,
        };
        let wanted = wanted.filter(|label| {
            let blocked = self.blocked.contains(&**label);
            if blocked {
                info!(ip = %lease.ip, label = %label, "client asked for a blocked name; not published");
            }
            !blocked
        });
        let Some(label) = wanted else {
            return self.release(lease.ip);
        };
        let expires = u32::try_from(lease.expires.0).unwrap_or(u32::MAX);
        let ip = lease.ip;
        if let Some(claim) = self
            .claims
            .find_mut(self.hasher.hash_one(ip), |c| c.ip == ip)
            && *claim.label == *label
        {
            // A renewal: same name, published or still waiting; only the expiry moves.
            claim.expires = expires;
            return false;
        }
        let released = self.release(ip);
        released | self.claim(ip, label, expires)
    }

    /// `ip` (which has no claim) asks for `label`: it gets the name if nobody holds it, else it
    /// waits (a conflict, logged here, once). Returns whether the name was published.
    fn claim(&mut self, ip: Ipv4Addr, label: Arc<str>, expires: u32) -> bool {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let claim = Claim {
            label: label.clone(),
            ip,
            expires,
        };
        let hasher = &self.hasher;
        self.claims
            .insert_unique(hasher.hash_one(ip), claim, |c| hasher.hash_one(c.ip));
        match (self.is_static(&label), self.holder(&label)) {
            (false, None) => {
                self.set_holder(&label, ip);
                true
            }
            (false, Some(holder)) => {
                self.add_waiter(&label, seq, ip, self.now);
                let fqdn = self.fqdn_of(&label);
                info!(%fqdn, %ip, %holder, "name conflict: the name is held by another live lease; this lease waits for it");
                false
            }
            (true, _) => {
                self.add_waiter(&label, seq, ip, self.now);
                let fqdn = self.fqdn_of(&label);
                if self.statics.first_a(&fqdn) == Some(ip) {
                    debug!(%fqdn, %ip, "lease name is the static name of its address; served as static");
                } else {
                    info!(%fqdn, %ip, "name conflict: the name is static; this lease is not published");
                }
                false
            }
        }
    }

    /// The lease on `ip` no longer asks for its name: withdraw it (A and PTR) if it held it,
    /// and hand the name to the earliest waiting lease. Returns whether anything published
    /// changed.
    fn release(&mut self, ip: Ipv4Addr) -> bool {
        let Some(label) = self.claim_of(ip).map(|c| c.label.clone()) else {
            return false;
        };
        let held = !self.remove_waiter(&label, ip) && self.holder(&label) == Some(ip);
        if held {
            self.unset_holder(&label);
        }
        let hash = self.hasher.hash_one(ip);
        if let Ok(entry) = self.claims.find_entry(hash, |c| c.ip == ip) {
            entry.remove();
        }
        if held {
            self.promote(&label);
        }
        held
    }

    /// Give a free, non-static name to its earliest waiting lease. Returns whether a lease was
    /// published.
    fn promote(&mut self, label: &str) -> bool {
        if self.is_static(label) || self.holder(label).is_some() {
            return false;
        }
        let Some(ip) = self.pop_waiter(label) else {
            return false;
        };
        self.set_holder(label, ip);
        let fqdn = self.fqdn_of(label);
        info!(%fqdn, %ip, "name conflict resolved: the name passes to the lease that waited longest");
        true
    }

    /// A static name now owns `label`'s name: its lease holder (if any) is withdrawn and waits
    /// first in line (it asked before every waiter). Returns whether a lease was withdrawn.
    fn demote(&mut self, label: &Arc<str>) -> bool {
        let Some(ip) = self.holder(label) else {
            return false;
        };
        self.unset_holder(label);
        let waiters = self.waiting.get(&**label);
        let first = waiters
            .and_then(|w| w.first_key_value())
            .map(|(seq, _)| *seq);
        let seq = match first.and_then(|s| s.checked_sub(1)) {
            Some(before) => before,
            None => {
                self.next_seq = self.next_seq.wrapping_add(1);
                self.next_seq.wrapping_sub(1)
            }
        };
        self.add_waiter(label, seq, ip, self.now);
        let fqdn = self.fqdn_of(label);
        info!(%fqdn, %ip, "name conflict: a static record now owns this lease name; withdrawn");
        true
    }
}

/// The claim of `ip` in `claims` (hashed by address with `hasher`).
fn claim_in<'a>(
    hasher: &RandomState,
    claims: &'a HashTable<Claim>,
    ip: Ipv4Addr,
) -> Option<&'a Claim> {
    claims.find(hasher.hash_one(ip), |c| c.ip == ip)
}

/// The `holders` hash of `ip`: that of its claim's label (for rehashing).
fn holder_hash(hasher: &RandomState, claims: &HashTable<Claim>, ip: Ipv4Addr) -> u64 {
    claim_in(hasher, claims, ip).map_or(0, |c| hasher.hash_one(&*c.label))
}

/// RFC 1123 host label: 1 to 63 letters, digits and hyphens, not starting or ending with '-'.
pub fn is_valid_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::statics::StaticRecords;
    use crate::lease::{ClientId, HwAddr, RemoveReason};

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn bound(last: u8, name: Option<&str>, expires: u64) -> LeaseChange {
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, last]);
        LeaseChange::Upsert(Lease {
            ip: ip(last),
            client: ClientId::from_hw(&hw),
            hwaddr: hw,
            hostname: name.map(Arc::from),
            expires: UnixTime(expires),
            state: LeaseState::Bound,
        })
    }

    fn declined(last: u8, name: &str) -> LeaseChange {
        let LeaseChange::Upsert(mut lease) = bound(last, Some(name), 500) else {
            unreachable!("bound() builds an upsert")
        };
        lease.state = LeaseState::Declined;
        LeaseChange::Upsert(lease)
    }

    fn remove(last: u8) -> LeaseChange {
        LeaseChange::Remove {
            ip: ip(last),
            reason: RemoveReason::Released,
        }
    }

    fn names() -> Names {
        Names::new("Lan.", &[("printer".to_string(), ip(2))])
    }

    fn a(n: &Names, fqdn: &str) -> Option<Ipv4Addr> {
        n.lookup_a(fqdn).map(|f| f.value)
    }

    fn ptr(n: &Names, last: u8) -> Option<String> {
        n.lookup_ptr(ip(last)).map(|f| f.value)
    }

    #[test]
    fn recovered_leases_load_like_upserts_of_the_bound_ones() {
        let changes = [
            bound(10, Some("laptop"), 900),
            declined(11, "ghost"),
            bound(12, Some("laptop"), 900),
            bound(13, Some("printer"), 900),
        ];
        let leases: Vec<Lease> = changes
            .iter()
            .filter_map(|c| match c {
                LeaseChange::Upsert(l) => Some(l.clone()),
                LeaseChange::Remove { .. } => None,
            })
            .collect();
        let (mut loaded, mut applied) = (names(), names());
        loaded.load_leases(UnixTime(100), &leases);
        applied.apply_at(UnixTime(100), &changes);
        assert_eq!(
            a(&loaded, "laptop.lan"),
            Some(ip(10)),
            "first claimant keeps it"
        );
        assert_eq!(a(&loaded, "ghost.lan"), None, "declined: not published");
        assert_eq!(
            ptr(&loaded, 13),
            None,
            "a static name is not given to a lease"
        );
        assert_eq!(loaded.conflicts(), applied.conflicts());
        assert_eq!(loaded.serial(), applied.serial());
    }

    #[test]
    fn bound_lease_publishes_a_and_ptr_with_its_expiry() {
        let mut n = names();
        n.apply(&[bound(10, Some("Laptop"), 1000)]);
        assert_eq!(
            n.lookup_a("laptop.lan"),
            Some(Found {
                value: ip(10),
                expires: Some(UnixTime(1000))
            })
        );
        assert_eq!(n.lookup_a("laptop.lan."), n.lookup_a("laptop.lan"));
        assert_eq!(ptr(&n, 10).as_deref(), Some("laptop.lan"));
        assert_eq!(
            n.lookup_ptr(ip(10)).and_then(|f| f.expires),
            Some(UnixTime(1000))
        );
    }

    #[test]
    fn static_names_resolve_without_expiry() {
        let n = names();
        assert_eq!(n.domain(), "lan");
        assert_eq!(
            n.lookup_a("printer.lan"),
            Some(Found {
                value: ip(2),
                expires: None
            })
        );
        assert_eq!(
            n.lookup_ptr(ip(2)),
            Some(Found {
                value: "printer.lan".to_string(),
                expires: None
            })
        );
        assert_eq!(a(&n, "nothing.lan"), None);
        assert_eq!(ptr(&n, 3), None);
    }

    #[test]
    fn remove_unpublishes_name_and_ptr() {
        let mut n = names();
        n.apply(&[bound(10, Some("laptop"), 1000)]);
        n.apply(&[remove(10)]);
        assert_eq!(a(&n, "laptop.lan"), None);
        assert_eq!(ptr(&n, 10), None);
    }

    #[test]
    fn rename_moves_the_name_and_frees_the_old_one() {
        let mut n = names();
        n.apply(&[bound(10, Some("old"), 1000)]);
        n.apply(&[bound(10, Some("new"), 2000)]);
        assert_eq!(a(&n, "old.lan"), None);
        assert_eq!(a(&n, "new.lan"), Some(ip(10)));
        assert_eq!(ptr(&n, 10).as_deref(), Some("new.lan"));
        // The old name is free for another client now.
        n.apply(&[bound(11, Some("old"), 1000)]);
        assert_eq!(a(&n, "old.lan"), Some(ip(11)));
    }

    #[test]
    fn blocked_names_are_never_published_for_a_lease() {
        let mut n = names();
        n.apply(&[
            bound(10, Some("wpad"), 1000),
            bound(11, Some("LocalHost"), 1000),
            bound(12, Some("isatap"), 1000),
            bound(13, Some("laptop"), 1000),
        ]);
        for blocked in ["wpad.lan", "localhost.lan", "isatap.lan"] {
            assert_eq!(a(&n, blocked), None, "{blocked}");
        }
        assert_eq!((ptr(&n, 10), ptr(&n, 11)), (None, None));
        assert_eq!(a(&n, "laptop.lan"), Some(ip(13)));
        // A configured list replaces the defaults; it applies to the next change of a lease.
        n.set_blocked_names(&["Laptop".to_string()]);
        n.apply(&[
            bound(14, Some("wpad"), 1000),
            bound(13, Some("laptop"), 2000),
        ]);
        assert_eq!(a(&n, "wpad.lan"), Some(ip(14)));
        n.apply(&[
            bound(13, Some("other"), 2000),
            bound(15, Some("laptop"), 2000),
        ]);
        assert_eq!(a(&n, "laptop.lan"), None);
    }

    #[test]
    fn losing_the_hostname_or_declining_unpublishes() {
        let mut n = names();
        n.apply(&[
            bound(10, Some("laptop"), 1000),
            bound(11, Some("phone"), 1000),
        ]);
        n.apply(&[bound(10, None, 2000), declined(11, "phone")]);
        assert_eq!(a(&n, "laptop.lan"), None);
        assert_eq!(a(&n, "phone.lan"), None);
        assert_eq!(ptr(&n, 10), None);
        assert_eq!(ptr(&n, 11), None);
    }

    #[test]
    fn declined_lease_is_never_published() {
        let mut n = names();
        n.apply(&[declined(12, "bad")]);
        assert_eq!(a(&n, "bad.lan"), None);
        assert_eq!(ptr(&n, 12), None);
        assert_eq!(n.serial(), 1);
    }

    #[test]
    fn static_name_beats_a_lease_claiming_it() {
        let mut n = names();
        n.apply(&[bound(10, Some("printer"), 1000)]);
        assert_eq!(a(&n, "printer.lan"), Some(ip(2)));
        assert_eq!(ptr(&n, 10), None, "no PTR to a name the lease does not own");
        assert_eq!(ptr(&n, 2).as_deref(), Some("printer.lan"));
    }

    #[test]
    fn second_claimant_of_a_name_is_not_published() {
        let mut n = names();
        n.apply(&[bound(10, Some("laptop"), 1000)]);
        let serial = n.serial();
        n.apply(&[bound(11, Some("laptop"), 1000)]);
        assert_eq!(a(&n, "laptop.lan"), Some(ip(10)));
        assert_eq!(ptr(&n, 11), None);
        assert_eq!(n.serial(), serial, "nothing changed");
        // The loser's removal must not take the winner's name with it.
        n.apply(&[remove(11)]);
        assert_eq!(a(&n, "laptop.lan"), Some(ip(10)));
        assert_eq!(ptr(&n, 10).as_deref(), Some("laptop.lan"));
    }

    #[test]
    fn renewal_with_same_name_updates_expiry_only() {
        let mut n = names();
        n.apply(&[bound(10, Some("laptop"), 1000)]);
        let serial = n.serial();
        n.apply(&[bound(10, Some("LAPTOP"), 5000)]);
        assert_eq!(
            n.lookup_a("laptop.lan").and_then(|f| f.expires),
            Some(UnixTime(5000))
        );
        assert_eq!(n.serial(), serial);
    }

    #[test]
    fn serial_increases_once_per_changing_batch() {
        let mut n = names();
        let s0 = n.serial();
        n.apply(&[bound(10, Some("a"), 1000), bound(11, Some("b"), 1000)]);
        let s1 = n.serial();
        assert_eq!(s1, s0 + 1);
        n.apply(&[remove(10)]);
        assert!(n.serial() > s1);
        let s2 = n.serial();
        n.apply(&[remove(10), bound(13, None, 1000)]);
        assert_eq!(n.serial(), s2, "no-op batch keeps the serial");
    }

    #[test]
    fn invalid_labels_are_not_published() {
        let mut n = Names::new("lan", &[("bad.name".to_string(), ip(3))]);
        n.apply(&[
            bound(10, Some("-x"), 1000),
            bound(11, Some(""), 1000),
            bound(12, Some("a.b"), 1000),
        ]);
        assert_eq!(a(&n, "bad.name.lan"), None);
        assert_eq!(a(&n, "a.b.lan"), None);
        assert_eq!(ptr(&n, 3), None);
        assert_eq!(ptr(&n, 10), None);
        assert!(is_valid_label("a-1"));
        assert!(!is_valid_label(&"x".repeat(64)));
    }

    fn rec(name: &str, data: RecordData) -> DnsRecord {
        DnsRecord {
            name: name.to_string(),
            data,
        }
    }

    #[test]
    fn static_records_give_ptr_to_the_first_name_and_beat_leases() {
        let mut n = names();
        n.set_config_records(vec![
            rec("nas.lan", RecordData::A(ip(20))),
            rec("www.lan", RecordData::Cname("nas.lan".to_string())),
            // A CNAME cannot share a name: this A is dropped.
            rec("www.lan", RecordData::A(ip(21))),
            rec("lan", RecordData::Txt(vec!["t".to_string()])),
        ]);
        n.set_hosts_records(vec![
            rec("nas-alias.lan", RecordData::A(ip(20))),
            rec("printer.lan", RecordData::A(ip(99))),
        ]);
        assert_eq!(
            ptr(&n, 20).as_deref(),
            Some("nas.lan"),
            "first name wins the PTR"
        );
        assert_eq!(a(&n, "nas-alias.lan"), Some(ip(20)));
        assert_eq!(
            a(&n, "printer.lan"),
            Some(ip(2)),
            "the reservation comes first"
        );
        assert_eq!(
            n.static_records("www.lan"),
            &[RecordData::Cname("nas.lan".to_string())]
        );
        assert!(n.has_name("lan.") && !n.has_name("ghost.lan"));
        // A client asking for a static name does not get it.
        n.apply(&[bound(10, Some("nas"), 1000)]);
        assert_eq!(a(&n, "nas.lan"), Some(ip(20)));
        assert_eq!(ptr(&n, 10), None);
    }

    #[test]
    fn reloading_hosts_bumps_serial_and_withdraws_lease_names_it_takes() {
        let mut n = names();
        n.apply(&[bound(10, Some("tv"), 1000)]);
        assert_eq!(a(&n, "tv.lan"), Some(ip(10)));
        let serial = n.serial();
        // t: the hosts file now names tv at another address; the static wins.
        n.set_hosts_records(vec![rec("tv.lan", RecordData::A(ip(30)))]);
        assert!(n.serial() > serial);
        assert_eq!(a(&n, "tv.lan"), Some(ip(30)));
        assert_eq!(ptr(&n, 10), None, "the lease lost its name and its PTR");
        assert_eq!(ptr(&n, 30).as_deref(), Some("tv.lan"));
        // The hosts entry goes away: the lease that asked for the name gets it back at once.
        let serial = n.serial();
        n.set_hosts_records(vec![]);
        assert_eq!(a(&n, "tv.lan"), Some(ip(10)));
        assert_eq!(ptr(&n, 10).as_deref(), Some("tv.lan"));
        assert!(n.serial() > serial);
    }

    /// The statics of `names()` (printer at .2) with `records` and `hosts`.
    fn statics(records: Vec<DnsRecord>, hosts: Vec<DnsRecord>) -> NameChange<'static> {
        NameChange::Statics(StaticRecords {
            reservations: vec![("printer".to_string(), ip(2))],
            records,
            hosts,
            blocked: vec!["wpad".to_string()],
        })
    }

    #[test]
    fn a_statics_change_replaces_every_static_record_in_one_step() {
        let mut n = names();
        let leases = [bound(10, Some("cam"), 1000), bound(11, Some("tv"), 1000)];
        n.change(NameChange::Leases {
            now: UnixTime(100),
            changes: &leases,
        });
        // Start: the hosts file names cam (the lease waits), the config names www.
        let www = rec("www.lan", RecordData::A(ip(50)));
        let cam = rec("cam.lan", RecordData::A(ip(40)));
        assert!(n.change(statics(vec![www.clone()], vec![cam])));
        assert_eq!(
            (a(&n, "cam.lan"), a(&n, "www.lan")),
            (Some(ip(40)), Some(ip(50)))
        );
        assert_eq!(a(&n, "tv.lan"), Some(ip(11)));
        // A reload without the hosts file: its records go, the lease gets cam back, one bump.
        let serial = n.serial();
        assert!(n.change(statics(vec![www.clone()], Vec::new())));
        assert_eq!(n.serial(), serial.wrapping_add(1).max(100));
        assert_eq!(a(&n, "cam.lan"), Some(ip(10)));
        assert_eq!(ptr(&n, 40), None);
        // The same statics again change nothing.
        assert!(!n.change(statics(vec![www], Vec::new())));
        assert_eq!(a(&n, "printer.lan"), Some(ip(2)), "reservations stay");
    }

    #[test]
    fn the_shared_index_applies_changes_and_reads_them_back() {
        let shared = NameIndex::new(names());
        let changes = [bound(10, Some("laptop"), 1000)];
        let change = || NameChange::Leases {
            now: UnixTime(1_700_000_000),
            changes: &changes,
        };
        assert!(shared.apply(change()));
        assert!(!shared.apply(change()), "a renewal publishes nothing new");
        let names = shared.read();
        assert_eq!(a(&names, "laptop.lan"), Some(ip(10)));
        assert_eq!(
            names.serial(),
            1_700_000_000,
            "the serial follows the time passed in"
        );
    }

    fn expired(last: u8) -> LeaseChange {
        LeaseChange::Remove {
            ip: ip(last),
            reason: RemoveReason::Expired,
        }
    }

    fn conflict(name: &str, holder: Holder, loser: u8, since: u64) -> Conflict {
        Conflict {
            name: name.to_string(),
            holder,
            loser: ip(loser),
            since: UnixTime(since),
        }
    }

    #[test]
    fn waiting_claimant_gets_the_name_when_the_holder_releases() {
        let mut n = names();
        // t=100: .10 takes "laptop"; t=110: .11 asks for it too and waits.
        n.apply_at(UnixTime(100), &[bound(10, Some("laptop"), 1000)]);
        n.apply_at(UnixTime(110), &[bound(11, Some("laptop"), 1200)]);
        assert_eq!(a(&n, "laptop.lan"), Some(ip(10)));
        assert_eq!(
            ptr(&n, 11),
            None,
            "no PTR to a name the lease does not hold"
        );
        assert_eq!(
            n.conflicts(),
            vec![conflict("laptop.lan", Holder::Lease(ip(10)), 11, 110)]
        );
        // t=120: .10 releases. .11 gets the name at once, A and PTR, without renewing.
        let serial = n.serial();
        n.apply_at(UnixTime(120), &[remove(10)]);
        assert_eq!(
            n.lookup_a("laptop.lan"),
            Some(Found {
                value: ip(11),
                expires: Some(UnixTime(1200))
            })
        );
        assert_eq!(ptr(&n, 11).as_deref(), Some("laptop.lan"));
        assert_eq!(ptr(&n, 10), None);
        assert!(n.serial() > serial);
        assert!(n.conflicts().is_empty());
        // .10 comes back asking for the name: now it is the one that waits.
        n.apply_at(UnixTime(130), &[bound(10, Some("laptop"), 2000)]);
        assert_eq!(a(&n, "laptop.lan"), Some(ip(11)));
        assert_eq!(
            n.conflicts(),
            vec![conflict("laptop.lan", Holder::Lease(ip(11)), 10, 130)]
        );
    }

    #[test]
    fn the_earliest_claimant_still_bound_is_next() {
        let mut n = names();
        n.apply_at(
            UnixTime(100),
            &[
                bound(10, Some("pc"), 1000),
                bound(11, Some("pc"), 1000),
                bound(12, Some("pc"), 1000),
                bound(13, Some("pc"), 1000),
            ],
        );
        // .11 (the earliest waiter) leaves; .12's renewal keeps its place ahead of .13.
        n.apply_at(UnixTime(200), &[remove(11), bound(12, Some("PC"), 3000)]);
        assert_eq!(n.conflicts().len(), 2);
        // The holder's lease expires: .12 is next, with its renewed expiry.
        n.apply_at(UnixTime(1000), &[expired(10)]);
        assert_eq!(
            n.lookup_a("pc.lan"),
            Some(Found {
                value: ip(12),
                expires: Some(UnixTime(3000))
            })
        );
        assert_eq!(
            n.conflicts(),
            vec![conflict("pc.lan", Holder::Lease(ip(12)), 13, 100)]
        );
        // .12 is declined; then .13 holds the name and nobody waits.
        n.apply_at(UnixTime(1100), &[declined(12, "pc")]);
        assert_eq!(a(&n, "pc.lan"), Some(ip(13)));
        assert_eq!(ptr(&n, 13).as_deref(), Some("pc.lan"));
        assert!(n.conflicts().is_empty());
        n.apply(&[remove(13)]);
        assert_eq!(a(&n, "pc.lan"), None);
        assert!(
            n.holders.is_empty()
                && n.waiting.is_empty()
                && n.waiter_seq.is_empty()
                && n.claims.is_empty(),
            "nothing left behind"
        );
    }

    #[test]
    fn a_holder_that_renames_hands_its_old_name_on() {
        let mut n = names();
        n.apply(&[bound(10, Some("old"), 1000), bound(11, Some("old"), 1000)]);
        n.apply(&[bound(10, Some("new"), 1000)]);
        assert_eq!(a(&n, "new.lan"), Some(ip(10)));
        assert_eq!(a(&n, "old.lan"), Some(ip(11)));
        assert_eq!(ptr(&n, 11).as_deref(), Some("old.lan"));
        // A waiter that renames stops waiting: it takes its new name.
        n.apply(&[bound(12, Some("new"), 1000)]);
        n.apply(&[bound(12, Some("other"), 1000)]);
        assert_eq!(a(&n, "other.lan"), Some(ip(12)));
        assert!(n.conflicts().is_empty());
        // A waiter that drops its host name stops waiting too.
        n.apply(&[bound(13, Some("new"), 1000), bound(13, None, 1000)]);
        n.apply(&[remove(10)]);
        assert_eq!(a(&n, "new.lan"), None);
    }

    #[test]
    fn a_static_name_takes_a_lease_name_and_gives_it_back() {
        let mut n = names();
        n.apply_at(
            UnixTime(100),
            &[bound(10, Some("tv"), 1000), bound(11, Some("tv"), 1000)],
        );
        // t=150: the config now names tv; the lease holder is withdrawn and waits first.
        n.apply_at(UnixTime(150), &[]);
        n.set_config_records(vec![rec("tv.lan", RecordData::A(ip(30)))]);
        assert_eq!(a(&n, "tv.lan"), Some(ip(30)));
        assert_eq!(ptr(&n, 10), None);
        let static_holder = Holder::Static(Some(IpAddr::V4(ip(30))));
        assert_eq!(
            n.conflicts(),
            vec![
                conflict("tv.lan", static_holder.clone(), 11, 100),
                conflict("tv.lan", static_holder, 10, 150),
            ]
        );
        assert_eq!(n.conflicts()[0].holder.ip(), Some(IpAddr::V4(ip(30))));
        // The record goes: the earliest claimant (.10) gets the name back.
        n.set_config_records(vec![]);
        assert_eq!(a(&n, "tv.lan"), Some(ip(10)));
        assert_eq!(ptr(&n, 10).as_deref(), Some("tv.lan"));
    }

    #[test]
    fn a_lease_for_its_own_static_name_is_no_conflict() {
        let mut n = names();
        n.apply(&[
            bound(2, Some("printer"), 1000),
            bound(10, Some("printer"), 1000),
        ]);
        assert_eq!(
            n.conflicts(),
            vec![conflict(
                "printer.lan",
                Holder::Static(Some(IpAddr::V4(ip(2)))),
                10,
                0
            )]
        );
        assert_eq!(ptr(&n, 2).as_deref(), Some("printer.lan"));
        assert_eq!(ptr(&n, 10), None);
    }

    #[test]
    fn serial_follows_every_change_and_never_falls_behind_the_clock() {
        let mut n = names();
        let s0 = n.serial();
        // Same statics again: no change, same serial.
        n.set_config_records(vec![]);
        assert_eq!(n.serial(), s0);
        n.set_hosts_records(vec![rec("cam.lan", RecordData::A(ip(40)))]);
        let s1 = n.serial();
        assert!(s1 > s0);
        n.set_hosts_records(vec![rec("cam.lan", RecordData::A(ip(41)))]);
        assert!(n.serial() > s1, "a changed address is a change");
        // A lease batch at t=1_700_000_000 makes the serial at least that (restarts).
        n.apply_at(
            UnixTime(1_700_000_000),
            &[bound(10, Some("a"), 1_700_000_600)],
        );
        assert_eq!(n.serial(), 1_700_000_000);
        n.apply_at(
            UnixTime(1_700_000_000),
            &[bound(11, Some("b"), 1_700_000_600)],
        );
        assert_eq!(n.serial(), 1_700_000_001);
        // A waiter that is promoted is a change; a waiter that joins is not.
        n.apply_at(
            UnixTime(1_700_000_000),
            &[bound(12, Some("a"), 1_700_000_600)],
        );
        assert_eq!(n.serial(), 1_700_000_001);
        n.apply_at(UnixTime(1_700_000_000), &[remove(10)]);
        assert_eq!(n.serial(), 1_700_000_002);
    }

    #[test]
    fn a_named_lease_costs_a_claim_and_a_holder_entry() {
        // 100,000 named leases at start: 24 + 4 bytes each plus the tables' control bytes and
        // headroom (39 in all); the names themselves are the leases' own allocations.
        assert_eq!(std::mem::size_of::<Claim>(), 24);
        let n: u32 = 100_000;
        let leases: Vec<Lease> = (0..n)
            .map(|i| {
                let b = i.to_be_bytes();
                let hw = HwAddr::ethernet([2, 0, b[0], b[1], b[2], b[3]]);
                Lease {
                    ip: Ipv4Addr::from(0x0a40_0000 + i),
                    client: ClientId::from_hw(&hw),
                    hwaddr: hw,
                    hostname: Some(Arc::from(format!("h{i}"))),
                    expires: UnixTime(5000),
                    state: LeaseState::Bound,
                }
            })
            .collect();
        let mut n_idx = Names::new("lan", &[]);
        n_idx.load_leases(UnixTime(100), &leases);
        let bytes = n_idx.claims.allocation_size() + n_idx.holders.allocation_size();
        assert!(
            bytes / n as usize <= 40,
            "{} bytes a lease",
            bytes / n as usize
        );
        assert_eq!(
            a(&n_idx, "h99999.lan"),
            Some(Ipv4Addr::from(0x0a40_0000 + n - 1))
        );
        assert_eq!(
            leases
                .iter()
                .map(|l| Arc::strong_count(l.hostname.as_ref().expect("named")))
                .max(),
            Some(2),
            "the index shares each lease's name, no copy"
        );
    }

    #[test]
    fn many_waiters_cost_log_n_per_change() {
        // 20k leases all asking for one name: each change is a map operation, so this runs in
        // well under a second even unoptimised (a rescan per change would take minutes).
        let mut n = Names::new("lan", &[]);
        let lease = |i: u32, name: Option<&str>| {
            let hw = HwAddr::ethernet([2, 0, 0, 0, 0, 0]);
            LeaseChange::Upsert(Lease {
                ip: Ipv4Addr::from(0x0a00_0000 + i),
                client: ClientId::from_hw(&hw),
                hwaddr: hw,
                hostname: name.map(Arc::from),
                expires: UnixTime(5000),
                state: LeaseState::Bound,
            })
        };
        let batch: Vec<LeaseChange> = (0..20_000).map(|i| lease(i, Some("x"))).collect();
        n.apply(&batch);
        for i in 0..19_999 {
            n.apply(&[lease(i, None)]);
            assert_eq!(
                n.lookup_a("x.lan").map(|f| f.value),
                Some(Ipv4Addr::from(0x0a00_0000 + i + 1))
            );
        }
        assert!(n.conflicts().is_empty());
    }
}
