//! Turns lease changes into DNS update jobs: remembers which name and DHCID each bound lease
//! put in DNS, so a release, an expiry or a rename knows what to remove. Pure: no I/O, no clock.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::ddns::dhcid;
use crate::ddns::update::{Job, Op};
use crate::lease::{Lease, LeaseChange, LeaseState};

/// What one lease has in DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    fqdn: String,
    dhcid: Vec<u8>,
}

pub struct Tracker {
    /// Names are `<hostname>.<domain>`.
    domain: String,
    by_ip: HashMap<Ipv4Addr, Entry>,
}

impl Tracker {
    /// A tracker that knows the bound leases recovered at start (already in DNS, or queued).
    pub fn new(domain: &str, leases: &[Lease]) -> Tracker {
        let mut t = Tracker {
            domain: domain.to_string(),
            by_ip: HashMap::new(),
        };
        for lease in leases {
            if let Some(entry) = t.entry(lease) {
                t.by_ip.insert(lease.ip, entry);
            }
        }
        t
    }

    fn entry(&self, lease: &Lease) -> Option<Entry> {
        let host = lease.hostname.as_deref().filter(|h| !h.is_empty())?;
        if lease.state != LeaseState::Bound {
            return None;
        }
        let fqdn = format!("{host}.{}", self.domain);
        Some(Entry {
            dhcid: dhcid::for_lease(lease, &fqdn),
            fqdn,
        })
    }

    /// The jobs for a durable batch of changes, in order. A renewal with the same name and
    /// client gives none.
    pub fn jobs(&mut self, changes: &[LeaseChange]) -> Vec<Job> {
        let mut jobs = Vec::new();
        for change in changes {
            match change {
                LeaseChange::Upsert(lease) => {
                    let new = self.entry(lease);
                    let old = self.by_ip.get(&lease.ip).cloned();
                    if old == new {
                        continue;
                    }
                    if let Some(old) = old {
                        self.by_ip.remove(&lease.ip);
                        jobs.push(self.removal(lease.ip, old, lease.expires));
                    }
                    if let Some(new) = new {
                        self.by_ip.insert(lease.ip, new.clone());
                        jobs.push(job(Op::Add, lease.ip, new, lease.expires));
                    }
                }
                LeaseChange::Remove { ip, .. } => {
                    if let Some(old) = self.by_ip.remove(ip) {
                        jobs.push(self.removal(*ip, old, crate::clock::UnixTime(0)));
                    }
                }
            }
        }
        jobs
    }

    /// Removing `old` from `ip`: only the PTR when the same client now holds the name at
    /// another address (it moved), else both sides.
    fn removal(&self, ip: Ipv4Addr, old: Entry, expires: crate::clock::UnixTime) -> Job {
        let moved = self.by_ip.values().any(|e| *e == old);
        let op = if moved { Op::RemoveReverse } else { Op::Remove };
        job(op, ip, old, expires)
    }

    /// How many leases have names in DNS.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

fn job(op: Op, ip: Ipv4Addr, e: Entry, expires: crate::clock::UnixTime) -> Job {
    Job {
        op,
        fqdn: e.fqdn,
        ip,
        dhcid: e.dhcid,
        expires,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::UnixTime;
    use crate::lease::{ClientId, HwAddr, RemoveReason};

    fn lease(last: u8, mac: u8, name: Option<&str>, expires: u64) -> Lease {
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, mac]);
        Lease {
            ip: Ipv4Addr::new(10, 0, 0, last),
            client: ClientId::from_hw(&hw),
            hwaddr: hw,
            hostname: name.map(std::sync::Arc::from),
            expires: UnixTime(expires),
            state: LeaseState::Bound,
        }
    }

    fn ops(jobs: &[Job]) -> Vec<(Op, String, u8)> {
        jobs.iter()
            .map(|j| (j.op, j.fqdn.clone(), j.ip.octets()[3]))
            .collect()
    }

    #[test]
    fn grant_renew_rename_release_timeline() {
        let mut t = Tracker::new("lan", &[]);
        // t=0: alpha gets .100: add.
        let jobs = t.jobs(&[LeaseChange::Upsert(lease(100, 1, Some("alpha"), 600))]);
        assert_eq!(ops(&jobs), vec![(Op::Add, "alpha.lan".into(), 100)]);
        assert_eq!(jobs[0].expires, UnixTime(600));
        assert_eq!(
            jobs[0].dhcid,
            dhcid::rdata(0, &[1, 2, 0, 0, 0, 0, 1], "alpha.lan")
        );
        // t=300: renewal, same name: nothing to send.
        assert!(
            t.jobs(&[LeaseChange::Upsert(lease(100, 1, Some("alpha"), 900))])
                .is_empty()
        );
        // t=400: renewal with a new name: remove the old, add the new.
        let jobs = t.jobs(&[LeaseChange::Upsert(lease(100, 1, Some("alpha2"), 1000))]);
        assert_eq!(
            ops(&jobs),
            vec![
                (Op::Remove, "alpha.lan".into(), 100),
                (Op::Add, "alpha2.lan".into(), 100)
            ]
        );
        // t=500: released.
        let jobs = t.jobs(&[LeaseChange::Remove {
            ip: Ipv4Addr::new(10, 0, 0, 100),
            reason: RemoveReason::Released,
        }]);
        assert_eq!(ops(&jobs), vec![(Op::Remove, "alpha2.lan".into(), 100)]);
        assert!(t.is_empty());
    }

    #[test]
    fn recovered_leases_are_known_and_expire_into_removals() {
        let mut t = Tracker::new(
            "lan",
            &[lease(101, 2, Some("beta"), 50), lease(102, 3, None, 50)],
        );
        assert_eq!(t.len(), 1, "a lease without a name has nothing in DNS");
        let jobs = t.jobs(&[
            LeaseChange::Remove {
                ip: Ipv4Addr::new(10, 0, 0, 101),
                reason: RemoveReason::Expired,
            },
            LeaseChange::Remove {
                ip: Ipv4Addr::new(10, 0, 0, 102),
                reason: RemoveReason::Expired,
            },
        ]);
        assert_eq!(ops(&jobs), vec![(Op::Remove, "beta.lan".into(), 101)]);
    }

    #[test]
    fn a_client_moving_address_keeps_its_name_and_loses_the_old_ptr() {
        let mut t = Tracker::new("lan", &[lease(100, 1, Some("alpha"), 600)]);
        let jobs = t.jobs(&[
            LeaseChange::Upsert(lease(120, 1, Some("alpha"), 700)),
            LeaseChange::Remove {
                ip: Ipv4Addr::new(10, 0, 0, 100),
                reason: RemoveReason::Superseded,
            },
        ]);
        assert_eq!(
            ops(&jobs),
            vec![
                (Op::Add, "alpha.lan".into(), 120),
                (Op::RemoveReverse, "alpha.lan".into(), 100)
            ]
        );
    }

    #[test]
    fn same_name_from_another_client_is_a_separate_claim() {
        let mut t = Tracker::new("lan", &[lease(100, 1, Some("alpha"), 600)]);
        let jobs = t.jobs(&[LeaseChange::Upsert(lease(101, 2, Some("alpha"), 600))]);
        assert_eq!(ops(&jobs), vec![(Op::Add, "alpha.lan".into(), 101)]);
        assert_ne!(jobs[0].dhcid, t.by_ip[&Ipv4Addr::new(10, 0, 0, 100)].dhcid);
        // The first client leaving removes its own records (the primary checks its DHCID).
        let jobs = t.jobs(&[LeaseChange::Remove {
            ip: Ipv4Addr::new(10, 0, 0, 100),
            reason: RemoveReason::Released,
        }]);
        assert_eq!(ops(&jobs), vec![(Op::Remove, "alpha.lan".into(), 100)]);
    }

    #[test]
    fn declined_lease_removes_what_was_there() {
        let mut t = Tracker::new("lan", &[lease(100, 1, Some("alpha"), 600)]);
        let mut declined = lease(100, 1, Some("alpha"), 600);
        declined.state = LeaseState::Declined;
        let jobs = t.jobs(&[LeaseChange::Upsert(declined)]);
        assert_eq!(ops(&jobs), vec![(Op::Remove, "alpha.lan".into(), 100)]);
    }
}
