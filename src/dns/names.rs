//! The name index that leases and static records produce: A by name, PTR by address, and the
//! static records of the config and the hosts file (A, AAAA, CNAME, MX, TXT, SRV).
//! Shared read-mostly: the DHCP service applies a whole batch of changes under one write lock;
//! DNS queries take a read lock and never hold it across `.await`. No sockets, no clock: the
//! lease expiry is stored and the zone compares it with the time it reads.
//!
//! Ownership rules: a static name (config reservation, `[[dns.record]]`, hosts file) always
//! wins; a lease name is published only if no static name and no other published lease holds
//! it; a PTR exists only for a published name. Each lease change costs O(1): the statics are
//! one map rebuilt only when the hosts file is re-read; leases have two HashMaps.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, RwLock};

use tracing::{debug, info};

use crate::clock::UnixTime;
use crate::config::{Config, DnsRecord, RecordData};
use crate::dns::dynamic::{DynOp, DynamicRecords};
use crate::lease::{Lease, LeaseChange, LeaseState};

pub type SharedNames = Arc<RwLock<Names>>;

/// An answer from the index: the address (or name), and when the record ends (None: static).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found<T> {
    pub value: T,
    pub expires: Option<UnixTime>,
}

/// A published lease name: the fully qualified name and when it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Published {
    fqdn: String,
    expires: UnixTime,
}

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("hosts file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// The static records, merged from their three sources in precedence order.
#[derive(Default)]
struct Statics {
    /// Owner name (lowercase, no trailing dot) to its records, in source order.
    by_name: HashMap<String, Vec<RecordData>>,
    /// PTR target of an address: the first static name given an A or AAAA for it.
    by_ip: HashMap<IpAddr, String>,
}

impl Statics {
    fn build(reservations: &[DnsRecord], config: &[DnsRecord], hosts: &[DnsRecord]) -> Statics {
        let mut statics = Statics::default();
        for r in reservations.iter().chain(config).chain(hosts) {
            statics.add(r);
        }
        statics
    }

    fn add(&mut self, r: &DnsRecord) {
        let list = self.by_name.entry(r.name.clone()).or_default();
        let has_cname = list.iter().any(|d| matches!(d, RecordData::Cname(_)));
        let is_cname = matches!(r.data, RecordData::Cname(_));
        if (has_cname || (is_cname && !list.is_empty())) && list.first() != Some(&r.data) {
            info!(name = %r.name, "a CNAME cannot share its name with other records; ignored");
            return;
        }
        if list.contains(&r.data) {
            return;
        }
        // A host name given to two addresses keeps the first (as reservations always did).
        let ip = match r.data {
            RecordData::A(ip) => Some(IpAddr::V4(ip)),
            RecordData::Aaaa(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = ip {
            self.by_ip.entry(ip).or_insert_with(|| r.name.clone());
        }
        list.push(r.data.clone());
    }

    fn first_a(&self, fqdn: &str) -> Option<Ipv4Addr> {
        self.by_name.get(fqdn)?.iter().find_map(|d| match d {
            RecordData::A(ip) => Some(*ip),
            _ => None,
        })
    }
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
    /// Published lease names only (a lease that lost a conflict is absent).
    lease_by_ip: HashMap<Ipv4Addr, Published>,
    lease_by_name: HashMap<String, Ipv4Addr>,
    /// Records written by RFC 2136 UPDATE and DynDNS2 (see `dns::dynamic`).
    dynamic: DynamicRecords,
    serial: u32,
}

impl Names {
    /// `domain` without trailing dot; `statics` are (label, address) from config reservations.
    pub fn new(domain: &str, statics: &[(String, Ipv4Addr)]) -> Self {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut reservations: Vec<DnsRecord> = Vec::new();
        for (label, ip) in statics {
            if !is_valid_label(label) {
                info!(label = %label, %ip, "static name is not a valid DNS label; not published");
                continue;
            }
            let name = format!("{}.{}", label.to_ascii_lowercase(), domain);
            if let Some(other) = reservations.iter().find(|r| r.name == name) {
                info!(fqdn = %name, %ip, other = ?other.data, "static name already given to another address; first wins");
                continue;
            }
            reservations.push(DnsRecord {
                name,
                data: RecordData::A(*ip),
            });
        }
        let statics = Statics::build(&reservations, &[], &[]);
        Names {
            domain,
            reservations,
            config_records: Vec::new(),
            hosts_records: Vec::new(),
            statics,
            lease_by_ip: HashMap::new(),
            lease_by_name: HashMap::new(),
            dynamic: DynamicRecords::default(),
            serial: 1,
        }
    }

    /// The static (label, address) pairs of the config's named reservations.
    pub fn statics_from(cfg: &Config) -> Vec<(String, Ipv4Addr)> {
        cfg.reservations
            .iter()
            .filter_map(|r| r.name.clone().map(|n| (n, r.ip)))
            .collect()
    }

    /// A ready-to-share index for `cfg`: its domain, named reservations and `[[dns.record]]`s.
    /// The hosts file is not read here: see `load_hosts_file`.
    pub fn shared_from(cfg: &Config) -> SharedNames {
        let mut names = Names::new(&cfg.domain, &Names::statics_from(cfg));
        names.set_config_records(cfg.dns.records.clone());
        Arc::new(RwLock::new(names))
    }

    /// The local domain, lowercase, without trailing dot.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Replace the `[[dns.record]]` statics.
    pub fn set_config_records(&mut self, records: Vec<DnsRecord>) {
        self.config_records = records;
        self.rebuild_statics();
    }

    /// Replace the hosts-file statics (at start and on reload).
    pub fn set_hosts_records(&mut self, records: Vec<DnsRecord>) {
        self.hosts_records = records;
        self.rebuild_statics();
    }

    /// Rebuild the merged statics, withdraw lease names a static now owns, bump the serial.
    fn rebuild_statics(&mut self) {
        self.statics = Statics::build(
            &self.reservations,
            &self.config_records,
            &self.hosts_records,
        );
        let taken: Vec<Ipv4Addr> = self
            .lease_by_name
            .iter()
            .filter(|(name, _)| self.statics.by_name.contains_key(*name))
            .map(|(_, ip)| *ip)
            .collect();
        for ip in taken {
            self.unpublish(ip);
        }
        self.serial = self.serial.wrapping_add(1).max(1);
    }

    /// Apply a batch of lease changes in order; bumps the serial once if any name or address
    /// was published or withdrawn (an expiry-only renewal does not change the serial).
    pub fn apply(&mut self, changes: &[LeaseChange]) {
        let mut changed = false;
        for change in changes {
            changed |= match change {
                LeaseChange::Upsert(lease) => self.upsert(lease),
                LeaseChange::Remove { ip, .. } => self.unpublish(*ip),
            };
        }
        if changed {
            self.serial = self.serial.wrapping_add(1).max(1);
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
        let ip = self.lease_by_name.get(fqdn)?;
        let published = self.lease_by_ip.get(ip)?;
        Some(Found {
            value: *ip,
            expires: Some(published.expires),
        })
    }

    /// Every static record of a name (lowercase, trailing dot optional); empty if none.
    pub fn static_records(&self, fqdn: &str) -> &[RecordData] {
        let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn);
        self.statics.by_name.get(fqdn).map_or(&[], Vec::as_slice)
    }

    /// Whether a name has any record here, static, dynamic or from a live-or-not lease.
    pub fn has_name(&self, fqdn: &str) -> bool {
        self.has_static_or_lease(fqdn) || self.dynamic.has(fqdn)
    }

    /// Whether the config or a (live-or-not) lease holds a name.
    pub fn has_static_or_lease(&self, fqdn: &str) -> bool {
        let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn);
        self.statics.by_name.contains_key(fqdn) || self.lease_by_name.contains_key(fqdn)
    }

    /// The dynamic records (RFC 2136 UPDATE, DynDNS2).
    pub fn dynamic(&self) -> &DynamicRecords {
        &self.dynamic
    }

    /// Replace the dynamic records (at start, from the update journal); bumps the serial.
    pub fn set_dynamic(&mut self, records: DynamicRecords) {
        self.dynamic = records;
        self.serial = self.serial.wrapping_add(1).max(1);
    }

    /// Apply dynamic-record changes in order; bumps the serial once if any changed anything.
    pub fn apply_dynamic(&mut self, ops: &[DynOp]) -> bool {
        let mut changed = false;
        for op in ops {
            changed |= self.dynamic.apply(op);
        }
        if changed {
            self.serial = self.serial.wrapping_add(1).max(1);
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
        let published = self.lease_by_ip.get(&ip)?;
        Some(Found {
            value: published.fqdn.clone(),
            expires: Some(published.expires),
        })
    }

    /// PTR target of a static IPv6 address (from an AAAA record or the hosts file).
    pub fn lookup_ptr_v6(&self, ip: std::net::Ipv6Addr) -> Option<String> {
        self.statics.by_ip.get(&IpAddr::V6(ip)).cloned()
    }

    /// SOA serial; increases on every change.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// `label.domain` for a valid RFC 1123 label, lowercased.
    fn fqdn(&self, label: &str) -> Option<String> {
        if !is_valid_label(label) {
            return None;
        }
        Some(format!("{}.{}", label.to_ascii_lowercase(), self.domain))
    }

    /// Returns whether the published set changed.
    fn upsert(&mut self, lease: &Lease) -> bool {
        let wanted = match (&lease.state, &lease.hostname) {
            (LeaseState::Bound, Some(label)) => self.fqdn(label),
            _ => None,
        };
        let Some(fqdn) = wanted else {
            return self.unpublish(lease.ip);
        };
        if let Some(current) = self.lease_by_ip.get_mut(&lease.ip)
            && current.fqdn == fqdn
        {
            current.expires = lease.expires;
            return false;
        }
        let withdrawn = self.unpublish(lease.ip);
        withdrawn | self.publish(lease.ip, fqdn, lease.expires)
    }

    /// Publish `fqdn` for `ip` unless a static name or another lease holds the name.
    fn publish(&mut self, ip: Ipv4Addr, fqdn: String, expires: UnixTime) -> bool {
        if self.statics.by_name.contains_key(&fqdn) {
            if self.statics.first_a(&fqdn) != Some(ip) {
                info!(%fqdn, %ip, "lease name belongs to a static name; not published");
            } else {
                debug!(%fqdn, %ip, "lease name is the static name of its address; served as static");
            }
            return false;
        }
        match self.lease_by_name.entry(fqdn) {
            Entry::Occupied(held) => {
                info!(fqdn = %held.key(), %ip, holder = %held.get(), "lease name held by another lease; not published");
                false
            }
            Entry::Vacant(free) => {
                let fqdn = free.key().clone();
                free.insert(ip);
                self.lease_by_ip.insert(ip, Published { fqdn, expires });
                true
            }
        }
    }

    /// Withdraw the lease name of `ip` (its A and PTR). Returns whether one was published.
    fn unpublish(&mut self, ip: Ipv4Addr) -> bool {
        let Some(old) = self.lease_by_ip.remove(&ip) else {
            return false;
        };
        if self.lease_by_name.get(&old.fqdn) == Some(&ip) {
            self.lease_by_name.remove(&old.fqdn);
        }
        true
    }
}

/// Parse /etc/hosts text: "ADDRESS NAME [ALIAS...]", '#' starts a comment. A name without a
/// dot is a host of `domain`; a dotted name is taken as fully qualified. Bad lines are skipped
/// (and logged). Each name gets an A or AAAA; the first name of a line is its address's PTR.
pub fn parse_hosts(text: &str, domain: &str) -> Vec<DnsRecord> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(addr) = words.next() else { continue };
        let Ok(ip) = addr.parse::<IpAddr>() else {
            debug!(
                line = n + 1,
                addr, "hosts file: not an address; line skipped"
            );
            continue;
        };
        for word in words {
            let as_written = if word.contains('.') {
                format!("{}.", word.trim_end_matches('.'))
            } else {
                word.to_string()
            };
            let Some(name) = crate::config::qualify(&as_written, domain) else {
                debug!(
                    line = n + 1,
                    name = word,
                    "hosts file: not a valid name; skipped"
                );
                continue;
            };
            let data = match ip {
                IpAddr::V4(v4) => RecordData::A(v4),
                IpAddr::V6(v6) => RecordData::Aaaa(v6),
            };
            out.push(DnsRecord { name, data });
        }
    }
    out
}

/// Read the configured hosts file (if any) and install its records; returns how many. Reads
/// outside the lock, then swaps under one short write lock. Call at start and on reload.
pub fn load_hosts_file(names: &SharedNames, path: &Path) -> Result<usize, HostsError> {
    let text = std::fs::read_to_string(path).map_err(|source| HostsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let domain = names
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .domain()
        .to_string();
    let records = parse_hosts(&text, &domain);
    let count = records.len();
    names
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .set_hosts_records(records);
    info!(path = %path.display(), records = count, "hosts file loaded");
    Ok(count)
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
            hostname: name.map(str::to_string),
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
    fn hosts_text_parses_into_records() {
        let text = "# a comment\n\n10.0.0.30  tv  TV-Alias # trailing\nfd00::1 nas6\n\
                    192.0.2.1 www.example.org.\nnot-an-ip foo\n10.0.0.31 bad_name! ok\n";
        let r = parse_hosts(text, "lan");
        assert_eq!(
            r,
            vec![
                rec("tv.lan", RecordData::A(ip(30))),
                rec("tv-alias.lan", RecordData::A(ip(30))),
                rec("nas6.lan", RecordData::Aaaa("fd00::1".parse().unwrap())),
                rec(
                    "www.example.org",
                    RecordData::A(Ipv4Addr::new(192, 0, 2, 1))
                ),
                rec("ok.lan", RecordData::A(ip(31))),
            ]
        );
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
        // The hosts entry goes away: the name is free again for the next renewal.
        n.set_hosts_records(vec![]);
        assert_eq!(a(&n, "tv.lan"), None);
        n.apply(&[bound(10, Some("tv"), 2000)]);
        assert_eq!(a(&n, "tv.lan"), Some(ip(10)));
    }

    #[test]
    fn load_hosts_file_reads_and_reports_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hosts");
        std::fs::write(&path, "10.0.0.40 cam\n").expect("write");
        let shared: SharedNames = Arc::new(RwLock::new(names()));
        assert_eq!(load_hosts_file(&shared, &path).expect("load"), 1);
        assert_eq!(a(&shared.read().expect("lock"), "cam.lan"), Some(ip(40)));
        let err = load_hosts_file(&shared, &dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        // A failed reload keeps what was loaded.
        assert_eq!(a(&shared.read().expect("lock"), "cam.lan"), Some(ip(40)));
    }
}
