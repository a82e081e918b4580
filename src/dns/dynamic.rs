//! Dynamic records: the names that RFC 2136 UPDATE and DynDNS2 write, kept beside the lease and
//! static names in `Names`, with the RFC 2136 §3.4.2 rules for applying one change, and the
//! store that serializes writers and journals every change before it becomes visible.
//! No sockets, no clock (lease expiry is compared with a `now` passed in).
//!
//! How dynamic records meet the other names of a zone: for one owner name, a type that has
//! dynamic records replaces the static or lease records of that type (a dynamic CNAME replaces
//! everything, and any dynamic record replaces a static CNAME). Only dynamic records can be
//! deleted: an update cannot remove what the config or a lease publishes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use hickory_server::proto::rr::rdata::{A, PTR};
use hickory_server::proto::rr::{Name, RData, RecordType};

use crate::clock::UnixTime;
use crate::dns::journal::{UpdateJournal, UpdateJournalError};
use crate::dns::names::{Names, SharedNames};

/// The record types an update may add and the zone answers from the dynamic store.
pub const SUPPORTED_TYPES: [RecordType; 7] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::PTR,
];

/// One dynamic resource record of an owner name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynRecord {
    pub rdata: RData,
    pub ttl: u32,
}

/// One change to the dynamic records; `name` is lowercase without trailing dot (see `key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DynOp {
    /// Add a record (or refresh its TTL if the same data is there).
    Add {
        name: String,
        ttl: u32,
        rdata: RData,
    },
    /// Delete every record of one type.
    DeleteRrset { name: String, rtype: RecordType },
    /// Delete every record of the name.
    DeleteName { name: String },
    /// Delete the record with this exact data.
    DeleteRr { name: String, rdata: RData },
}

impl DynOp {
    /// The owner name the change is about.
    pub fn name(&self) -> &str {
        match self {
            DynOp::Add { name, .. }
            | DynOp::DeleteRrset { name, .. }
            | DynOp::DeleteName { name }
            | DynOp::DeleteRr { name, .. } => name,
        }
    }
}

/// The index key of a DNS name: lowercase ASCII presentation form without trailing dot.
pub fn key(name: &Name) -> String {
    let text = name.to_lowercase().to_ascii();
    text.strip_suffix('.').unwrap_or(&text).to_string()
}

/// Dynamic records by owner name, in the order they were added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynamicRecords {
    by_name: HashMap<String, Vec<DynRecord>>,
}

impl DynamicRecords {
    /// The records of `fqdn` (lowercase, trailing dot optional); empty if none.
    pub fn records(&self, fqdn: &str) -> &[DynRecord] {
        let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn);
        self.by_name.get(fqdn).map_or(&[], Vec::as_slice)
    }

    pub fn has(&self, fqdn: &str) -> bool {
        !self.records(fqdn).is_empty()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.by_name.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// A copy holding only the records of these names (to try changes on, in O(changes)).
    pub fn subset<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> DynamicRecords {
        let mut out = DynamicRecords::default();
        for name in names {
            if let Some(list) = self.by_name.get(name) {
                out.by_name.insert(name.to_string(), list.clone());
            }
        }
        out
    }

    /// Every record as an `Add`, names sorted (for compaction and tests).
    pub fn as_adds(&self) -> Vec<DynOp> {
        let mut names: Vec<&String> = self.by_name.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|name| {
                self.by_name[name].iter().map(move |r| DynOp::Add {
                    name: name.clone(),
                    ttl: r.ttl,
                    rdata: r.rdata.clone(),
                })
            })
            .collect()
    }

    /// Apply one change by the rules of RFC 2136 §3.4.2; returns whether anything changed.
    pub fn apply(&mut self, op: &DynOp) -> bool {
        match op {
            DynOp::Add { name, ttl, rdata } => self.add(name, *ttl, rdata),
            DynOp::DeleteRrset { name, rtype } => {
                self.retain(name, |r| r.rdata.record_type() != *rtype)
            }
            DynOp::DeleteName { name } => self.by_name.remove(name).is_some(),
            DynOp::DeleteRr { name, rdata } => self.retain(name, |r| r.rdata != *rdata),
        }
    }

    fn add(&mut self, name: &str, ttl: u32, rdata: &RData) -> bool {
        let list = self.by_name.entry(name.to_string()).or_default();
        let rtype = rdata.record_type();
        let has_cname = list
            .iter()
            .any(|r| r.rdata.record_type() == RecordType::CNAME);
        if rtype == RecordType::CNAME && has_cname {
            // A name has one CNAME: the new one replaces it.
            list.retain(|r| r.rdata.record_type() != RecordType::CNAME);
        } else if (rtype == RecordType::CNAME && !list.is_empty()) || has_cname {
            // CNAME and other data cannot share a name: ignored (RFC 2136 §3.4.2.2).
            if list.is_empty() {
                self.by_name.remove(name);
            }
            return false;
        }
        if let Some(same) = list.iter_mut().find(|r| r.rdata == *rdata) {
            let changed = same.ttl != ttl;
            same.ttl = ttl;
            return changed;
        }
        list.push(DynRecord {
            rdata: rdata.clone(),
            ttl,
        });
        true
    }

    fn retain(&mut self, name: &str, keep: impl Fn(&DynRecord) -> bool) -> bool {
        let Some(list) = self.by_name.get_mut(name) else {
            return false;
        };
        let before = list.len();
        list.retain(keep);
        let changed = list.len() != before;
        if list.is_empty() {
            self.by_name.remove(name);
        }
        changed
    }

    /// The records of `fqdn` as the zone serves them: `base` (static or lease records) with
    /// every type that has dynamic records replaced by those.
    pub fn overlay(&self, fqdn: &str, base: Vec<(RData, u32)>) -> Vec<(RData, u32)> {
        let dynamic = self.records(fqdn);
        if dynamic.is_empty() {
            return base;
        }
        let cname = |d: &RData| d.record_type() == RecordType::CNAME;
        let mut out: Vec<(RData, u32)> = if dynamic.iter().any(|r| cname(&r.rdata)) {
            Vec::new()
        } else {
            base.into_iter()
                .filter(|(d, _)| {
                    !cname(d)
                        && !dynamic
                            .iter()
                            .any(|r| r.rdata.record_type() == d.record_type())
                })
                .collect()
        };
        out.extend(dynamic.iter().map(|r| (r.rdata.clone(), r.ttl)));
        out
    }
}

/// Every record of `name` as the zone answers it at `now`: static records or the lease's A
/// (or PTR, for a reverse name), overlaid with the dynamic records. For prerequisites.
pub fn view(names: &Names, name: &Name, now: UnixTime) -> Vec<(RData, u32)> {
    let fqdn = key(name);
    let mut base: Vec<(RData, u32)> = names
        .static_records(&fqdn)
        .iter()
        .filter_map(|d| crate::dns::zone::rdata(d).map(|r| (r, 0)))
        .collect();
    if base.is_empty()
        && let Some(found) = names.lookup_a(&fqdn)
        && found.expires.is_none_or(|e| e > now)
    {
        base.push((RData::A(A(found.value)), 0));
    }
    if base.is_empty() {
        base.extend(reverse_ptr(names, name, now).map(|ptr| (RData::PTR(PTR(ptr)), 0)));
    }
    names.dynamic().overlay(&fqdn, base)
}

/// Whether the config or a live lease publishes something at `name` (then an update needs
/// `may_override`).
pub fn owned_by_config_or_lease(names: &Names, name: &Name, now: UnixTime) -> bool {
    let fqdn = key(name);
    names.has_static_or_lease(&fqdn) || reverse_ptr(names, name, now).is_some()
}

/// The static or lease PTR target of a full reverse name.
fn reverse_ptr(names: &Names, name: &Name, now: UnixTime) -> Option<Name> {
    let net = name.parse_arpa_name().ok()?;
    let found = match (net.addr(), net.prefix_len()) {
        (IpAddr::V4(ip), 32) => names.lookup_ptr(ip)?,
        (IpAddr::V6(ip), 128) => crate::dns::names::Found {
            value: names.lookup_ptr_v6(ip)?,
            expires: None,
        },
        _ => return None,
    };
    if found.expires.is_some_and(|e| e <= now) {
        return None;
    }
    Name::from_ascii(format!("{}.", found.value)).ok()
}

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub enum StoreError<E> {
    /// The caller's checks refused the change; nothing was written.
    #[error("{0}")]
    Refused(E),
    #[error(transparent)]
    Journal(#[from] UpdateJournalError),
}

/// The one writer of dynamic records: a transaction computes changes from a consistent view,
/// writes them to the journal (durable before visible), then applies them to `names`.
pub struct DynamicStore {
    /// std Mutex: held only for synchronous work (read lock, journal write, write lock).
    journal: Mutex<UpdateJournal>,
    names: SharedNames,
}

impl DynamicStore {
    pub fn new(journal: UpdateJournal, names: SharedNames) -> Arc<DynamicStore> {
        Arc::new(DynamicStore {
            journal: Mutex::new(journal),
            names,
        })
    }

    pub fn names(&self) -> &SharedNames {
        &self.names
    }

    /// Run `decide` on the names (read-locked) and commit the changes it returns. Writers are
    /// serialized, so nothing changes the dynamic records between `decide` and the commit.
    /// Returns `decide`'s value with whether any record changed.
    pub fn transaction<T, E>(
        &self,
        decide: impl FnOnce(&Names) -> Result<(Vec<DynOp>, T), E>,
    ) -> Result<(T, bool), StoreError<E>> {
        let mut journal = self
            .journal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (ops, value) = {
            let names = self
                .names
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let (ops, value) = decide(&names).map_err(StoreError::Refused)?;
            // Only what would change anything is journaled (tried on a copy of the names the
            // changes touch, not of every record).
            let before = names.dynamic().subset(ops.iter().map(DynOp::name));
            let mut probe = before.clone();
            let ops: Vec<DynOp> = ops.into_iter().filter(|op| probe.apply(op)).collect();
            // A delete and an add that put back what was there change nothing either.
            let ops = if probe == before { Vec::new() } else { ops };
            (ops, value)
        };
        if ops.is_empty() {
            return Ok((value, false));
        }
        journal.append(&ops)?;
        let live = {
            let mut names = self
                .names
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            names.apply_dynamic(&ops);
            names.dynamic().len()
        };
        if journal.wants_compaction(live) {
            let records = self
                .names
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .dynamic()
                .clone();
            // The changes are durable already; a failed compaction only leaves a longer file.
            if let Err(e) = journal.compact(&records) {
                tracing::warn!(error = %e, "cannot compact the DNS update journal");
            }
        }
        Ok((value, true))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_server::proto::rr::rdata::{CNAME, TXT};
    use std::net::Ipv4Addr;

    /// The config the UPDATE tests share: printer.lan at 10.0.0.2 and a TXT at the apex.
    pub(crate) fn config_names() -> Names {
        use crate::config::{DnsRecord, RecordData};
        let mut names = Names::new(
            "lan",
            &[("printer".to_string(), Ipv4Addr::new(10, 0, 0, 2))],
        );
        names.set_config_records(vec![DnsRecord {
            name: "lan".into(),
            data: RecordData::Txt(vec!["apex".into()]),
        }]);
        names
    }

    fn a(last: u8) -> RData {
        RData::A(A(Ipv4Addr::new(10, 0, 0, last)))
    }

    fn txt(s: &str) -> RData {
        RData::TXT(TXT::new(vec![s.to_string()]))
    }

    fn cname(target: &str) -> RData {
        RData::CNAME(CNAME(Name::from_ascii(target).expect("name")))
    }

    fn add(name: &str, rdata: RData) -> DynOp {
        DynOp::Add {
            name: name.to_string(),
            ttl: 60,
            rdata,
        }
    }

    #[test]
    fn key_is_lowercase_without_trailing_dot() {
        let name = Name::from_ascii("_ACME-Challenge.WWW.lan.").expect("name");
        assert_eq!(key(&name), "_acme-challenge.www.lan");
    }

    #[test]
    fn add_refreshes_same_data_and_deletes_follow_rfc2136() {
        let mut d = DynamicRecords::default();
        assert!(d.apply(&add("h.lan", a(1))));
        assert!(d.apply(&add("h.lan", a(2))));
        assert!(
            !d.apply(&add("h.lan", a(2))),
            "same data, same TTL: no change"
        );
        assert!(d.apply(&DynOp::Add {
            name: "h.lan".into(),
            ttl: 30,
            rdata: a(2)
        }));
        assert!(d.apply(&add("h.lan", txt("t"))));
        assert_eq!(d.len(), 3);
        // Delete one RR, then the TXT RRset, then the whole name.
        assert!(d.apply(&DynOp::DeleteRr {
            name: "h.lan".into(),
            rdata: a(1)
        }));
        assert!(d.apply(&DynOp::DeleteRrset {
            name: "h.lan".into(),
            rtype: RecordType::TXT
        }));
        assert_eq!(
            d.records("h.lan."),
            &[DynRecord {
                rdata: a(2),
                ttl: 30
            }]
        );
        assert!(d.apply(&DynOp::DeleteName {
            name: "h.lan".into()
        }));
        assert!(d.is_empty());
        assert!(!d.apply(&DynOp::DeleteName {
            name: "h.lan".into()
        }));
    }

    #[test]
    fn cname_cannot_share_a_name_but_replaces_a_cname() {
        let mut d = DynamicRecords::default();
        d.apply(&add("h.lan", a(1)));
        assert!(!d.apply(&add("h.lan", cname("x.lan."))), "CNAME beside A");
        assert!(d.apply(&add("w.lan", cname("x.lan."))));
        assert!(!d.apply(&add("w.lan", a(1))), "A beside CNAME");
        assert!(d.apply(&add("w.lan", cname("y.lan."))));
        assert_eq!(d.records("w.lan").len(), 1);
        assert_eq!(d.records("w.lan")[0].rdata, cname("y.lan."));
    }

    #[test]
    fn overlay_replaces_base_types_that_have_dynamic_records() {
        let mut d = DynamicRecords::default();
        let base = vec![(a(9), 300), (txt("static"), 300)];
        assert_eq!(d.overlay("h.lan", base.clone()), base);
        d.apply(&add("h.lan", a(1)));
        assert_eq!(
            d.overlay("h.lan", base.clone()),
            vec![(txt("static"), 300), (a(1), 60)]
        );
        d.apply(&DynOp::DeleteName {
            name: "h.lan".into(),
        });
        d.apply(&add("h.lan", cname("x.lan.")));
        assert_eq!(d.overlay("h.lan", base), vec![(cname("x.lan."), 60)]);
    }

    #[test]
    fn view_combines_statics_leases_and_dynamic_records() {
        use crate::lease::{ClientId, HwAddr, Lease, LeaseChange, LeaseState};
        let mut names = config_names();
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, 9]);
        names.apply(&[LeaseChange::Upsert(Lease {
            ip: Ipv4Addr::new(10, 0, 0, 9),
            client: ClientId::from_hw(&hw),
            hwaddr: hw,
            hostname: Some("laptop".into()),
            expires: UnixTime(1000),
            state: LeaseState::Bound,
        })]);
        let n = |s: &str| Name::from_ascii(s).expect("name");
        let now = UnixTime(500);
        assert_eq!(view(&names, &n("printer.lan."), now), vec![(a(2), 0)]);
        assert_eq!(view(&names, &n("laptop.lan."), now), vec![(a(9), 0)]);
        assert!(view(&names, &n("laptop.lan."), UnixTime(1000)).is_empty());
        assert_eq!(
            view(&names, &n("9.0.0.10.in-addr.arpa."), now),
            vec![(RData::PTR(PTR(n("laptop.lan."))), 0)]
        );
        assert!(owned_by_config_or_lease(&names, &n("laptop.lan."), now));
        assert!(owned_by_config_or_lease(
            &names,
            &n("2.0.0.10.in-addr.arpa."),
            now
        ));
        assert!(!owned_by_config_or_lease(&names, &n("free.lan."), now));
        let serial = names.serial();
        names.apply_dynamic(&[add("free.lan", txt("dyn"))]);
        assert!(names.serial() > serial, "dynamic changes bump the serial");
        assert_eq!(view(&names, &n("FREE.lan."), now), vec![(txt("dyn"), 60)]);
        assert!(names.has_name("free.lan") && !names.has_static_or_lease("free.lan"));
    }

    #[test]
    fn store_journals_only_changes_refuses_atomically_and_compacts_while_running() {
        use crate::config::Durability;
        use crate::dns::journal::UpdateJournal;
        use std::sync::RwLock;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dns");
        let (journal, _) = UpdateJournal::open(&path, Durability::None).expect("open");
        let names = Arc::new(RwLock::new(Names::new("lan", &[])));
        let store = DynamicStore::new(journal, names.clone());
        let set = |last: u8| {
            store.transaction(|_| {
                let ops = vec![
                    DynOp::DeleteRrset {
                        name: "h.lan".into(),
                        rtype: RecordType::A,
                    },
                    add("h.lan", a(last)),
                ];
                Ok::<_, ()>((ops, ()))
            })
        };
        assert!(matches!(set(1), Ok(((), true))));
        assert!(
            matches!(set(1), Ok(((), false))),
            "same data: nothing to write"
        );
        let lines = || {
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count()
        };
        assert_eq!(
            lines(),
            2,
            "header and one add (the no-op delete was dropped)"
        );
        let refused = store.transaction(|_| Err::<(Vec<DynOp>, ()), _>("no"));
        assert!(matches!(refused, Err(StoreError::Refused("no"))));
        // Many changes of one name: the file stays small.
        for i in 0..600u32 {
            set((i % 250) as u8).expect("commit");
        }
        assert!(lines() < 2 * 256 + 10, "{} lines", lines());
        let (_, records) = UpdateJournal::open(&path, Durability::None).expect("reopen");
        assert_eq!(&records, names.read().expect("lock").dynamic());
        assert_eq!(records.records("h.lan")[0].rdata, a((599 % 250) as u8));
    }
}
