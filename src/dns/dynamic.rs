//! Dynamic records: the names that RFC 2136 UPDATE and DynDNS2 write, kept beside the lease and
//! static names in `Names`, with the RFC 2136 §3.4.2 rules for applying one change, and the
//! store that serializes writers and journals every change before it becomes visible.
//! No sockets, no clock (lease expiry is compared with a `now` passed in).
//!
//! How dynamic records meet the other names of a zone: for one owner name, a type that has
//! dynamic records replaces the static or lease records of that type (a dynamic CNAME replaces
//! everything, and any dynamic record replaces a static CNAME) — but only records written by a
//! key or user that may override (`overrides`). Any other dynamic record never shadows what the
//! config or a lease publishes, even one written before the lease came: while the name holds
//! such records, those of its types (and a CNAME) stand aside, and come back when the lease
//! ends. Only dynamic records can be deleted: an update cannot remove what the config or a
//! lease publishes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_server::proto::rr::rdata::{A, PTR};
use hickory_server::proto::rr::{Name, RData, RecordType};

use crate::clock::UnixTime;
use crate::dns::journal::{UpdateJournal, UpdateJournalError};
use crate::dns::names::{NameChange, Names, SharedNames};

pub use crate::keys::SUPPORTED_TYPES;

/// One dynamic resource record of an owner name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynRecord {
    pub rdata: RData,
    pub ttl: u32,
    /// Written by a key or user that may override config and lease names.
    pub overrides: bool,
}

/// One change to the dynamic records; `name` is lowercase without trailing dot (see `key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DynOp {
    /// Add a record (or refresh its TTL if the same data is there). `overrides`: the writer
    /// may override config and lease names (see the module header).
    Add {
        name: String,
        ttl: u32,
        rdata: RData,
        overrides: bool,
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
    /// Every proper ancestor of a name in `by_name` (up to, not including, the root) with the
    /// number of those names below it: the empty non-terminals a dynamic name makes
    /// (`_tcp.lan` for `_x._tcp.lan`, RFC 8020). Kept in step with `by_name` by `apply`.
    ancestors: HashMap<String, usize>,
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

    /// Every owner name with dynamic records (lowercase, no trailing dot), in no order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Whether `fqdn` (lowercase, trailing dot optional) is an ancestor of a dynamic name.
    pub fn is_ancestor(&self, fqdn: &str) -> bool {
        let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn);
        self.ancestors.contains_key(fqdn)
    }

    /// Count `name`'s ancestors in (`added`) or out, after it appeared in or left `by_name`.
    fn track(&mut self, name: &str, added: bool) {
        for (i, _) in name.match_indices('.') {
            let parent = &name[i + 1..];
            if added {
                *self.ancestors.entry(parent.to_string()).or_default() += 1;
            } else if let Some(n) = self.ancestors.get_mut(parent) {
                *n -= 1;
                if *n == 0 {
                    self.ancestors.remove(parent);
                }
            }
        }
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
            if let Some(list) = self.by_name.get(name)
                && out.by_name.insert(name.to_string(), list.clone()).is_none()
            {
                out.track(name, true);
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
                    overrides: r.overrides,
                })
            })
            .collect()
    }

    /// Apply one change by the rules of RFC 2136 §3.4.2; returns whether anything changed.
    pub fn apply(&mut self, op: &DynOp) -> bool {
        let name = op.name();
        let existed = self.by_name.contains_key(name);
        let changed = self.apply_one(op);
        let exists = self.by_name.contains_key(name);
        if existed != exists {
            self.track(name, exists);
        }
        changed
    }

    fn apply_one(&mut self, op: &DynOp) -> bool {
        match op {
            DynOp::Add {
                name,
                ttl,
                rdata,
                overrides,
            } => self.add(name, *ttl, rdata, *overrides),
            DynOp::DeleteRrset { name, rtype } => {
                self.retain(name, |r| r.rdata.record_type() != *rtype)
            }
            DynOp::DeleteName { name } => self.by_name.remove(name).is_some(),
            DynOp::DeleteRr { name, rdata } => self.retain(name, |r| r.rdata != *rdata),
        }
    }

    fn add(&mut self, name: &str, ttl: u32, rdata: &RData, overrides: bool) -> bool {
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
            let changed = same.ttl != ttl || same.overrides != overrides;
            same.ttl = ttl;
            same.overrides = overrides;
            return changed;
        }
        list.push(DynRecord {
            rdata: rdata.clone(),
            ttl,
            overrides,
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
    /// every type that has dynamic records replaced by those. A dynamic record that does not
    /// `overrides` never shadows `base`: one of a type `base` has, or a CNAME beside a
    /// non-empty `base`, is left out.
    pub fn overlay(&self, fqdn: &str, base: Vec<(RData, u32)>) -> Vec<(RData, u32)> {
        let cname = |d: &RData| d.record_type() == RecordType::CNAME;
        // Whether `r` is served: it may override, or it takes nothing from `base`.
        let shadows = |r: &&DynRecord| {
            r.overrides
                || base.is_empty()
                || (!cname(&r.rdata)
                    && !base
                        .iter()
                        .any(|(d, _)| cname(d) || d.record_type() == r.rdata.record_type()))
        };
        let dynamic: Vec<&DynRecord> = self.records(fqdn).iter().filter(shadows).collect();
        if dynamic.is_empty() {
            return base;
        }
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

/// Run long synchronous work on borrowed data (a zone transfer's walk of the index) without
/// stalling an async worker's other tasks: on a multi-thread tokio runtime through
/// `block_in_place` (they move to another thread meanwhile); anywhere else directly. File I/O
/// goes to `spawn_blocking` instead (see `DynamicStore::transaction`).
pub fn off_async<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub enum StoreError<E> {
    /// The caller's checks refused the change; nothing was written.
    #[error("{0}")]
    Refused(E),
    #[error(transparent)]
    Journal(#[from] UpdateJournalError),
    /// The blocking journal write did not finish (the runtime is stopping); nothing applied.
    #[error("the DNS update journal write did not finish")]
    Stopped,
}

/// The one writer of dynamic records: a transaction computes changes from a consistent view,
/// writes them to the journal on a blocking thread (durable before visible), then applies them
/// to `names` (`NameChange::Dynamic`).
pub struct DynamicStore {
    /// tokio Mutex with an owned guard: it serializes writers from `decide` to the end of the
    /// commit, across the await of the blocking journal write (the guard travels into the
    /// blocking task and back). No std lock is held across an await.
    journal: Arc<tokio::sync::Mutex<UpdateJournal>>,
    names: SharedNames,
    /// Told of every committed change (the API's event stream; set once at start, after the
    /// DHCP service that owns the bus exists; until then changes are not told).
    committed: std::sync::OnceLock<OnCommit>,
}

/// What `DynamicStore::on_commit` calls with the changes of each committed transaction.
pub type OnCommit = Box<dyn Fn(&[DynOp]) + Send + Sync>;

impl DynamicStore {
    pub fn new(journal: UpdateJournal, names: SharedNames) -> Arc<DynamicStore> {
        Arc::new(DynamicStore {
            journal: Arc::new(tokio::sync::Mutex::new(journal)),
            names,
            committed: std::sync::OnceLock::new(),
        })
    }

    /// Call `tell` with the changes of every transaction committed from now on (the first
    /// call wins). It runs after the changes are durable and applied, and must not block.
    pub fn on_commit(&self, tell: OnCommit) {
        let _ = self.committed.set(tell);
    }

    pub fn names(&self) -> &SharedNames {
        &self.names
    }

    /// Run `decide` on the names and commit the changes it returns. Writers are serialized, so
    /// nothing changes the dynamic records between `decide` and the commit. Returns `decide`'s
    /// value with whether any record changed. The journal write and its fdatasync run on a
    /// blocking thread (never on an async worker); the caller's reply waits for them.
    pub async fn transaction<T, E>(
        &self,
        decide: impl FnOnce(&Names) -> Result<(Vec<DynOp>, T), E>,
    ) -> Result<(T, bool), StoreError<E>> {
        let journal = self.journal.clone().lock_owned().await;
        let (ops, value) = self.plan(decide).map_err(StoreError::Refused)?;
        if ops.is_empty() {
            return Ok((value, false));
        }
        let (mut journal, ops, written) = tokio::task::spawn_blocking(move || {
            let mut journal = journal;
            let written = journal.append(&ops);
            (journal, ops, written)
        })
        .await
        .map_err(|_| StoreError::Stopped)?;
        written?;
        self.names.apply(NameChange::Dynamic(&ops));
        if let Some(tell) = self.committed.get() {
            tell(&ops);
        }
        let live = self.names.read().dynamic().len();
        if journal.wants_compaction(live) {
            let records = self.names.read().dynamic().clone();
            // The changes are durable already; a failed compaction only leaves a longer file.
            let compacted = tokio::task::spawn_blocking(move || journal.compact(&records)).await;
            if let Ok(Err(e)) = compacted {
                tracing::warn!(error = %e, "cannot compact the DNS update journal");
            }
        }
        Ok((value, true))
    }

    /// `decide`'s changes, less those that would change nothing (under the read lock only).
    fn plan<T, E>(
        &self,
        decide: impl FnOnce(&Names) -> Result<(Vec<DynOp>, T), E>,
    ) -> Result<(Vec<DynOp>, T), E> {
        let names = self.names.read();
        let (ops, value) = decide(&names)?;
        // Only what would change anything is journaled (tried on a copy of the names the
        // changes touch, not of every record).
        let before = names.dynamic().subset(ops.iter().map(DynOp::name));
        let mut probe = before.clone();
        let ops: Vec<DynOp> = ops.into_iter().filter(|op| probe.apply(op)).collect();
        // A delete and an add that put back what was there change nothing either.
        let ops = if probe == before { Vec::new() } else { ops };
        Ok((ops, value))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dns::names::NameIndex;
    use crate::dns::statics::StaticRecords;
    use crate::log::fs::{LogFile, LogFs, RealFs};
    use hickory_server::proto::rr::rdata::{CNAME, TXT};
    use std::net::Ipv4Addr;

    /// The config the UPDATE tests share: printer.lan at 10.0.0.2 and a TXT at the apex.
    pub(crate) fn config_names() -> Names {
        use crate::config::{DnsRecord, RecordData};
        let mut names = Names::new("lan", &[]);
        names.change(NameChange::Statics(StaticRecords {
            reservations: vec![("printer".to_string(), Ipv4Addr::new(10, 0, 0, 2))],
            records: vec![DnsRecord {
                name: "lan".into(),
                data: RecordData::Txt(vec!["apex".into()]),
            }],
            ..StaticRecords::default()
        }));
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
            overrides: false,
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
            rdata: a(2),
            overrides: false,
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
                ttl: 30,
                overrides: false,
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
    fn ancestors_follow_the_names_through_every_change() {
        let mut d = DynamicRecords::default();
        d.apply(&add("_x._tcp.lan", txt("a")));
        d.apply(&add("_y._tcp.lan", txt("b")));
        assert!(
            d.is_ancestor("_tcp.lan") && d.is_ancestor("lan.") && !d.is_ancestor("_x._tcp.lan")
        );
        assert!(d.subset(["_y._tcp.lan"]).is_ancestor("_tcp.lan"));
        d.apply(&DynOp::DeleteName {
            name: "_x._tcp.lan".into(),
        });
        assert!(d.is_ancestor("_tcp.lan"), "_y is still below it");
        d.apply(&DynOp::DeleteRr {
            name: "_y._tcp.lan".into(),
            rdata: txt("b"),
        });
        assert!(!d.is_ancestor("_tcp.lan") && !d.is_ancestor("lan"));
        // A refused add (CNAME beside data) leaves no ancestor behind.
        d.apply(&add("h.sub.lan", cname("t.lan.")));
        d.apply(&DynOp::DeleteRrset {
            name: "h.sub.lan".into(),
            rtype: RecordType::CNAME,
        });
        assert!(!d.is_ancestor("sub.lan"));
        assert_eq!(d, DynamicRecords::default());
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
        let strong = |rdata| DynOp::Add {
            name: "h.lan".into(),
            ttl: 60,
            rdata,
            overrides: true,
        };
        d.apply(&strong(a(1)));
        assert_eq!(
            d.overlay("h.lan", base.clone()),
            vec![(txt("static"), 300), (a(1), 60)]
        );
        d.apply(&DynOp::DeleteName {
            name: "h.lan".into(),
        });
        d.apply(&strong(cname("x.lan.")));
        assert_eq!(d.overlay("h.lan", base), vec![(cname("x.lan."), 60)]);
    }

    #[test]
    fn a_name_claimed_before_the_lease_never_shadows_it_unless_the_writer_may_override() {
        use crate::lease::{ClientId, HwAddr, Lease, LeaseChange, LeaseState};
        let n = |s: &str| Name::from_ascii(s).expect("name");
        let mut names = config_names();
        let weak = |rdata| DynOp::Add {
            name: "laptop.lan".into(),
            ttl: 60,
            rdata,
            overrides: false,
        };
        // t=100: a key without may_override claims laptop.lan while nobody holds it.
        names.change(NameChange::Dynamic(&[weak(a(66)), weak(txt("mine"))]));
        assert_eq!(
            view(&names, &n("laptop.lan."), UnixTime(100)),
            vec![(a(66), 60), (txt("mine"), 60)]
        );
        // t=200: the laptop's lease arrives with that name: its A wins, the TXT stays.
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, 9]);
        names.change(NameChange::Leases {
            now: UnixTime(0),
            changes: &[LeaseChange::Upsert(Lease {
                ip: Ipv4Addr::new(10, 0, 0, 9),
                client: ClientId::from_hw(&hw),
                hwaddr: hw,
                hostname: Some("laptop".into()),
                expires: UnixTime(1000),
                state: LeaseState::Bound,
            })],
        });
        let now = UnixTime(200);
        assert_eq!(
            view(&names, &n("laptop.lan."), now),
            vec![(a(9), 0), (txt("mine"), 60)]
        );
        // A weak CNAME stands aside too; so does one at a config name.
        names.change(NameChange::Dynamic(&[DynOp::DeleteName {
            name: "laptop.lan".into(),
        }]));
        names.change(NameChange::Dynamic(&[weak(cname("elsewhere.example."))]));
        assert_eq!(view(&names, &n("laptop.lan."), now), vec![(a(9), 0)]);
        names.change(NameChange::Dynamic(&[DynOp::Add {
            name: "printer.lan".into(),
            ttl: 60,
            rdata: a(77),
            overrides: false,
        }]));
        assert_eq!(view(&names, &n("printer.lan."), now), vec![(a(2), 0)]);
        // A writer that may override does replace the lease's A.
        names.change(NameChange::Dynamic(&[DynOp::Add {
            name: "printer.lan".into(),
            ttl: 60,
            rdata: a(77),
            overrides: true,
        }]));
        assert_eq!(view(&names, &n("printer.lan."), now), vec![(a(77), 60)]);
        // t=1000: the lease is over; the weak CNAME is served again.
        assert_eq!(
            view(&names, &n("laptop.lan."), UnixTime(1000)),
            vec![(cname("elsewhere.example."), 60)]
        );
    }

    #[test]
    fn view_combines_statics_leases_and_dynamic_records() {
        use crate::lease::{ClientId, HwAddr, Lease, LeaseChange, LeaseState};
        let mut names = config_names();
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, 9]);
        names.change(NameChange::Leases {
            now: UnixTime(0),
            changes: &[LeaseChange::Upsert(Lease {
                ip: Ipv4Addr::new(10, 0, 0, 9),
                client: ClientId::from_hw(&hw),
                hwaddr: hw,
                hostname: Some("laptop".into()),
                expires: UnixTime(1000),
                state: LeaseState::Bound,
            })],
        });
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
        names.change(NameChange::Dynamic(&[add("free.lan", txt("dyn"))]));
        assert!(names.serial() > serial, "dynamic changes bump the serial");
        assert_eq!(view(&names, &n("FREE.lan."), now), vec![(txt("dyn"), 60)]);
        assert!(names.has_name("free.lan") && !names.has_static_or_lease("free.lan"));
    }

    #[tokio::test]
    async fn store_journals_only_changes_refuses_atomically_and_compacts_while_running() {
        use crate::config::Durability;
        use crate::dns::journal::UpdateJournal;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dns");
        let (journal, _) = UpdateJournal::open(&path, Durability::None).expect("open");
        let names = NameIndex::new(Names::new("lan", &[]));
        let store = DynamicStore::new(journal, names.clone());
        let set = async |last: u8| {
            let decide = |_: &Names| {
                let ops = vec![
                    DynOp::DeleteRrset {
                        name: "h.lan".into(),
                        rtype: RecordType::A,
                    },
                    add("h.lan", a(last)),
                ];
                Ok::<_, ()>((ops, ()))
            };
            store.transaction(decide).await
        };
        assert!(matches!(set(1).await, Ok(((), true))));
        assert!(
            matches!(set(1).await, Ok(((), false))),
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
        let refused = store
            .transaction(|_| Err::<(Vec<DynOp>, ()), _>("no"))
            .await;
        assert!(matches!(refused, Err(StoreError::Refused("no"))));
        // Many changes of one name: the file stays small.
        for i in 0..600u32 {
            set((i % 250) as u8).await.expect("commit");
        }
        assert!(lines() < 2 * 256 + 10, "{} lines", lines());
        let (_, records) = UpdateJournal::open(&path, Durability::None).expect("reopen");
        assert_eq!(&records, names.read().dynamic());
        assert_eq!(records.records("h.lan")[0].rdata, a((599 % 250) as u8));
    }

    /// The real file system, recording the thread of every fdatasync.
    struct Watched(Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>);

    struct WatchedFile(
        Box<dyn LogFile>,
        Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>,
    );

    impl LogFile for WatchedFile {
        fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            self.0.append(bytes)
        }
        fn sync_data(&mut self) -> std::io::Result<()> {
            self.1
                .lock()
                .expect("lock")
                .push(std::thread::current().id());
            self.0.sync_data()
        }
        fn set_len(&mut self, len: u64) -> std::io::Result<()> {
            self.0.set_len(len)
        }
    }

    impl LogFs for Watched {
        fn open_log(&self, path: &std::path::Path) -> std::io::Result<(Vec<u8>, Box<dyn LogFile>)> {
            let (bytes, file) = RealFs.open_log(path)?;
            Ok((bytes, Box::new(WatchedFile(file, self.0.clone()))))
        }
        fn replace(
            &self,
            path: &std::path::Path,
            content: &[u8],
            fsync: bool,
        ) -> Result<Box<dyn LogFile>, (std::path::PathBuf, std::io::Error)> {
            let file = RealFs.replace(path, content, fsync)?;
            Ok(Box::new(WatchedFile(file, self.0.clone())))
        }
        fn keep_damaged(&self, path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
            RealFs.keep_damaged(path, bytes)
        }
    }

    /// On a single-threaded runtime (the worker is the test's own thread) the journal's
    /// fdatasync runs on another thread, and the transaction returns only after it.
    #[tokio::test(flavor = "current_thread")]
    async fn the_journal_syncs_off_the_async_worker_before_the_commit_returns() {
        use crate::config::Durability;
        let dir = tempfile::tempdir().expect("tempdir");
        let syncs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let fs = Arc::new(Watched(syncs.clone()));
        let (journal, _) =
            UpdateJournal::open_on(fs, &dir.path().join("dns"), Durability::Fsync).expect("open");
        let names = NameIndex::new(Names::new("lan", &[]));
        let store = DynamicStore::new(journal, names.clone());
        let before = syncs.lock().expect("lock").len();
        let ops = vec![add("h.lan", a(1))];
        let done = store
            .transaction(|_| Ok::<_, ()>((ops, ())))
            .await
            .expect("commit");
        assert_eq!(done, ((), true));
        let syncs = syncs.lock().expect("lock");
        assert_eq!(
            syncs.len(),
            before + 1,
            "one fdatasync, before the commit returned"
        );
        assert_ne!(
            syncs[before],
            std::thread::current().id(),
            "synced on the worker"
        );
        assert_eq!(names.read().dynamic().records("h.lan").len(), 1);
    }
}
