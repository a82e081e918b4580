//! The event bus of lease and name changes: the DHCP thread hands it every durable batch (the
//! same batches DNS and outbound DDNS get), it turns them into `Event`s and broadcasts them to
//! whoever listens (the API's `GET /api/v1/events`), keeping the latest `RECENT` for a reader
//! that just connected. Publishing never waits: a tokio broadcast send does not block, a slow
//! reader falls behind and is told how many events it missed (`Recv::Lagged`). No sockets, no
//! clock (an event carries the lease's own expiry).
//!
//! A `LeaseChange::Remove` carries only the address, so the bus keeps the last lease it saw on
//! each address: a removal then says whose lease ended, and an upsert says whether it is new
//! (`add`) or the same client's again (`renew`). It does so only once a reader opened the
//! stream (`track`, then `seed` with the table the DHCP thread reports): until then `publish`
//! costs one atomic load and the table is not copied (100,000 leases would cost some 20 MB).
//! Name events follow the lease name of each changed address (`Names::lookup_ptr`), read
//! after the batch was applied: `add` when an address gets a name, `del` when it loses one, and
//! `add` for the lease that waited for a name its holder just gave up.
//!
//! Dynamic records (RFC 2136 UPDATE, DynDNS2) come from `dns::dynamic::DynamicStore` after
//! their journal write: one `record` event per change that changed something (`add` of a
//! record; `del` of one record, of a name's records of one type, or of all its records).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::config::Config;
use crate::dhcp::control::LeaseView;
use crate::dns::dynamic::DynOp;
use crate::dns::names::{NameIndex, Names};
use crate::lease::{LeaseChange, RemoveReason};

/// Events a reader may fall behind by before it is told it lagged.
const CAPACITY: usize = 1024;
/// Events kept for readers that connect later (the status page shows them at once).
pub const RECENT: usize = 100;

/// What happened to a lease or a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A lease for a client that had none on this address; a name newly published.
    Add,
    /// The same client's lease again (renewal, or a change of its name or state).
    Renew,
    /// The lease ended (release, expiry, API, another client took the address); a name gone.
    Del,
}

/// One change, numbered from 1 in the order it became durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: u64,
    #[serde(flatten)]
    pub what: What,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum What {
    Lease {
        action: Action,
        /// For `del`: released, expired or superseded.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
        #[serde(flatten)]
        lease: LeaseView,
    },
    Name {
        action: Action,
        /// Fully qualified, lowercase, no trailing dot.
        name: String,
        ip: Ipv4Addr,
    },
    /// A dynamic record added or deleted (`add` or `del`).
    Record {
        action: Action,
        /// Fully qualified, lowercase, no trailing dot.
        name: String,
        /// The record type; absent when every record of the name was deleted.
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        rtype: Option<String>,
        /// The record data in zone-file form; absent for a delete of a whole type or name.
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ttl: Option<u32>,
    },
}

impl Event {
    /// The SSE event type: "lease", "name" or "record".
    pub fn kind(&self) -> &'static str {
        match self.what {
            What::Lease { .. } => "lease",
            What::Name { .. } => "name",
            What::Record { .. } => "record",
        }
    }
}

/// The bus. Cloned handles share it.
#[derive(Clone, Debug)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    /// Set once a reader opened the stream (`track`); until then `publish` returns at once.
    tracking: Arc<AtomicBool>,
    /// Written by the DHCP thread only (`publish`, `seed` before it starts), read by readers
    /// that connect (`recent`). std Mutex: held to update a few map entries or copy the recent
    /// list, never across `.await`; readers never hold it while sending.
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// The last lease seen on each address, with the lease name it had published. Kept only
    /// once someone opened the stream (`track`): without readers it costs nothing.
    last: HashMap<Ipv4Addr, (LeaseView, Option<String>)>,
    /// While the table is being read for `seed`: addresses whose lease ended meanwhile (the
    /// copy may still hold them).
    ended_while_seeding: Option<HashSet<Ipv4Addr>>,
    recent: VecDeque<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(CAPACITY).0,
            tracking: Arc::new(AtomicBool::new(false)),
            state: Arc::new(Mutex::new(State {
                next_id: 1,
                ..State::default()
            })),
        }
    }
}

/// The lease name published for `ip` (static names, which no lease change moves, excluded).
fn lease_name(names: &Names, ip: Ipv4Addr) -> Option<String> {
    names
        .lookup_ptr(ip)
        .filter(|f| f.expires.is_some())
        .map(|f| f.value)
}

impl Events {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start keeping track (the first reader calls this): true when this call started it, and
    /// the caller must then `seed` the bus with the table (or `untrack` when it cannot).
    pub fn track(&self) -> bool {
        let mut state = self.lock();
        if self.tracking.swap(true, Ordering::AcqRel) {
            return false;
        }
        state.ended_while_seeding = Some(HashSet::new());
        true
    }

    /// Reading the table failed: the next reader tries again.
    pub fn untrack(&self) {
        let mut state = self.lock();
        self.tracking.store(false, Ordering::Release);
        state.ended_while_seeding = None;
        state.last.clear();
    }

    /// The lease table as it was read after `track` (the DHCP thread's answer): no events for
    /// it. Addresses changed since `track` keep what their events said.
    pub fn seed(&self, leases: Vec<LeaseView>, names: &NameIndex) {
        let names = names.read();
        let mut state = self.lock();
        let ended = state.ended_while_seeding.take().unwrap_or_default();
        for l in leases {
            if ended.contains(&l.ip) || state.last.contains_key(&l.ip) {
                continue;
            }
            let name = lease_name(&names, l.ip);
            state.last.insert(l.ip, (l, name));
        }
    }

    /// Turn a durable batch into events (after `names` applied it) and send them. Never waits
    /// for a reader; one atomic load when no one ever opened the stream.
    pub fn publish(&self, changes: &[LeaseChange], cfg: &Config, names: &NameIndex) {
        if changes.is_empty() || !self.tracking.load(Ordering::Acquire) {
            return;
        }
        let names = names.read();
        let mut state = self.lock();
        for change in changes {
            let mut out: Vec<What> = Vec::with_capacity(3);
            let (ip, now) = match change {
                LeaseChange::Upsert(l) => {
                    let view = LeaseView::new(l, cfg);
                    let same = state.last.get(&l.ip).is_some_and(|(old, _)| {
                        old.client_id == view.client_id && old.mac == view.mac
                    });
                    out.push(What::Lease {
                        action: if same { Action::Renew } else { Action::Add },
                        reason: None,
                        lease: view.clone(),
                    });
                    (l.ip, Some(view))
                }
                LeaseChange::Remove { ip, reason } => {
                    if let Some(ended) = state.ended_while_seeding.as_mut() {
                        ended.insert(*ip);
                    }
                    out.extend(state.last.get(ip).map(|(old, _)| What::Lease {
                        action: Action::Del,
                        reason: Some(reason_text(*reason)),
                        lease: old.clone(),
                    }));
                    (*ip, None)
                }
            };
            let name_now = lease_name(&names, ip);
            let name_before = state.last.get(&ip).and_then(|(_, n)| n.clone());
            if name_before != name_now {
                state.names_moved(&names, ip, name_before, name_now.clone(), &mut out);
            }
            match now {
                Some(view) => state.last.insert(ip, (view, name_now)),
                None => state.last.remove(&ip),
            };
            for what in out {
                state.send(&self.tx, what);
            }
        }
    }

    /// Dynamic-record changes that are durable and applied (the dynamic store's one writer):
    /// one `record` event each. One atomic load when no one ever opened the stream.
    pub fn publish_records(&self, ops: &[DynOp]) {
        if ops.is_empty() || !self.tracking.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        for op in ops {
            state.send(&self.tx, record_event(op));
        }
    }

    /// A reader: the recent events (oldest first) and the live ones after them. Events that
    /// arrive between the two may show up in both; `Event::id` tells them apart.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let rx = self.tx.subscribe();
        let recent = self.lock().recent.iter().cloned().collect();
        (recent, rx)
    }
}

impl State {
    /// The name events of `ip`'s change: `del` of the name it had, `add` of the one it has,
    /// and `add` for a lease that waited for the name it gave up (see `dns::names`).
    fn names_moved(
        &mut self,
        names: &Names,
        ip: Ipv4Addr,
        before: Option<String>,
        now: Option<String>,
        out: &mut Vec<What>,
    ) {
        if let Some(name) = before {
            out.push(What::Name {
                action: Action::Del,
                name: name.clone(),
                ip,
            });
            if let Some(heir) = names.lookup_a(&name).map(|f| f.value)
                && heir != ip
                && let Some((_, held)) = self.last.get_mut(&heir)
            {
                *held = Some(name.clone());
                out.push(What::Name {
                    action: Action::Add,
                    name,
                    ip: heir,
                });
            }
        }
        if let Some(name) = now {
            out.push(What::Name {
                action: Action::Add,
                name,
                ip,
            });
        }
    }

    fn send(&mut self, tx: &broadcast::Sender<Event>, what: What) {
        let event = Event {
            id: self.next_id,
            what,
        };
        self.next_id += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(event.clone());
        // No reader is not an error: the event is kept in `recent` only.
        let _ = tx.send(event);
    }
}

fn record_event(op: &DynOp) -> What {
    let name = op.name().trim_end_matches('.').to_ascii_lowercase();
    let (action, rtype, data, ttl) = match op {
        DynOp::Add { ttl, rdata, .. } => (
            Action::Add,
            Some(rdata.record_type()),
            Some(rdata.to_string()),
            Some(*ttl),
        ),
        DynOp::DeleteRr { rdata, .. } => (
            Action::Del,
            Some(rdata.record_type()),
            Some(rdata.to_string()),
            None,
        ),
        DynOp::DeleteRrset { rtype, .. } => (Action::Del, Some(*rtype), None, None),
        DynOp::DeleteName { .. } => (Action::Del, None, None, None),
    };
    What::Record {
        action,
        name,
        rtype: rtype.map(|t| t.to_string()),
        data,
        ttl,
    }
}

fn reason_text(reason: RemoveReason) -> &'static str {
    match reason {
        RemoveReason::Released => "released",
        RemoveReason::Expired => "expired",
        RemoveReason::Superseded => "superseded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::UnixTime;
    use crate::dns::names::NameChange;
    use crate::lease::{ClientId, HwAddr, Lease, LeaseState};

    fn cfg() -> Config {
        let text = "domain = \"lan\"\nlease_file = \"/nonexistent/leases\"\n\
                    [[subnet]]\nnetwork = \"10.0.0.0/24\"\n\
                    pool_start = \"10.0.0.100\"\npool_end = \"10.0.0.199\"\n";
        Config::parse(text, std::path::Path::new("test.toml")).expect("valid config")
    }

    fn lease(ip: [u8; 4], mac: u8, host: Option<&str>, expires: u64) -> Lease {
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, mac]);
        Lease {
            ip: ip.into(),
            client: ClientId::from_hw(&hw),
            hwaddr: hw,
            hostname: host.map(Arc::from),
            expires: UnixTime(expires),
            state: LeaseState::Bound,
        }
    }

    fn names_after(names: &NameIndex, changes: &[LeaseChange]) {
        let now = UnixTime(0);
        names.apply(NameChange::Leases { now, changes });
    }

    fn brief(e: &Event) -> String {
        match &e.what {
            What::Lease {
                action,
                reason,
                lease,
            } => format!(
                "{} lease {:?} {} {} {:?}",
                e.id, action, lease.ip, lease.mac, reason
            ),
            What::Name { action, name, ip } => format!("{} name {action:?} {name} {ip}", e.id),
            What::Record { action, name, .. } => format!("{} record {action:?} {name}", e.id),
        }
    }

    #[test]
    fn a_lease_life_becomes_add_renew_del_with_its_name() {
        let (cfg, names, bus) = (
            cfg(),
            NameIndex::new(Names::new("lan", &[])),
            Events::default(),
        );
        bus.track();
        let (_, mut rx) = bus.subscribe();
        let batches = [
            vec![LeaseChange::Upsert(lease(
                [10, 0, 0, 100],
                1,
                Some("pc"),
                1000,
            ))],
            vec![LeaseChange::Upsert(lease(
                [10, 0, 0, 100],
                1,
                Some("pc"),
                2000,
            ))],
            vec![LeaseChange::Remove {
                ip: [10, 0, 0, 100].into(),
                reason: RemoveReason::Released,
            }],
        ];
        for batch in &batches {
            names_after(&names, batch);
            bus.publish(batch, &cfg, &names);
        }
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push(brief(&e));
        }
        assert_eq!(
            got,
            [
                "1 lease Add 10.0.0.100 02:00:00:00:00:01 None",
                "2 name Add pc.lan 10.0.0.100",
                "3 lease Renew 10.0.0.100 02:00:00:00:00:01 None",
                "4 lease Del 10.0.0.100 02:00:00:00:00:01 Some(\"released\")",
                "5 name Del pc.lan 10.0.0.100",
            ]
        );
        let (recent, _) = bus.subscribe();
        assert_eq!(recent.len(), 5, "kept for later readers");
        let json = serde_json::to_value(&recent[3]).expect("json");
        assert_eq!(json["kind"], "lease");
        assert_eq!(json["action"], "del");
        assert_eq!(json["hostname"], "pc");
        assert_eq!(json["expires"], 2000);
        assert_eq!(json["subnet"], "10.0.0.0/24");
        assert_eq!(json["reason"], "released");
    }

    #[test]
    fn a_waiting_lease_gets_the_name_its_holder_gave_up() {
        let (cfg, names, bus) = (
            cfg(),
            NameIndex::new(Names::new("lan", &[])),
            Events::default(),
        );
        bus.track();
        let (_, mut rx) = bus.subscribe();
        let batches = [
            vec![LeaseChange::Upsert(lease(
                [10, 0, 0, 100],
                1,
                Some("pc"),
                1000,
            ))],
            vec![LeaseChange::Upsert(lease(
                [10, 0, 0, 101],
                2,
                Some("pc"),
                1000,
            ))],
            vec![LeaseChange::Remove {
                ip: [10, 0, 0, 100].into(),
                reason: RemoveReason::Expired,
            }],
        ];
        for batch in &batches {
            names_after(&names, batch);
            bus.publish(batch, &cfg, &names);
        }
        let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| brief(&e))
            .collect();
        assert_eq!(
            got,
            [
                "1 lease Add 10.0.0.100 02:00:00:00:00:01 None",
                "2 name Add pc.lan 10.0.0.100",
                "3 lease Add 10.0.0.101 02:00:00:00:00:02 None",
                "4 lease Del 10.0.0.100 02:00:00:00:00:01 Some(\"expired\")",
                "5 name Del pc.lan 10.0.0.100",
                "6 name Add pc.lan 10.0.0.101",
            ]
        );
        // The heir's name is known: its own end is a name del.
        let end = vec![LeaseChange::Remove {
            ip: [10, 0, 0, 101].into(),
            reason: RemoveReason::Released,
        }];
        names_after(&names, &end);
        bus.publish(&end, &cfg, &names);
        let last = std::iter::from_fn(|| rx.try_recv().ok()).last();
        assert_eq!(
            last.map(|e| brief(&e)).as_deref(),
            Some("8 name Del pc.lan 10.0.0.101")
        );
    }

    #[test]
    fn seeded_leases_renew_and_another_client_is_an_add() {
        let (cfg, names, bus) = (
            cfg(),
            NameIndex::new(Names::new("lan", &[])),
            Events::default(),
        );
        assert!(bus.track());
        assert!(!bus.track(), "once");
        let old = lease([10, 0, 0, 101], 1, None, 1000);
        let ended = lease([10, 0, 0, 102], 3, None, 1000);
        // The lease on .102 ends while the table is read: the copy must not bring it back.
        let end = vec![LeaseChange::Remove {
            ip: ended.ip,
            reason: RemoveReason::Released,
        }];
        bus.publish(&end, &cfg, &names);
        bus.seed(
            vec![LeaseView::new(&old, &cfg), LeaseView::new(&ended, &cfg)],
            &names,
        );
        let (_, mut rx) = bus.subscribe();
        let renew = vec![LeaseChange::Upsert(lease([10, 0, 0, 101], 1, None, 3000))];
        bus.publish(&renew, &cfg, &names);
        let other = vec![LeaseChange::Upsert(lease([10, 0, 0, 101], 2, None, 3000))];
        bus.publish(&other, &cfg, &names);
        assert!(!bus.lock().last.contains_key(&ended.ip), "not brought back");
        let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| brief(&e))
            .collect();
        assert_eq!(
            got,
            [
                "1 lease Renew 10.0.0.101 02:00:00:00:00:01 None",
                "2 lease Add 10.0.0.101 02:00:00:00:00:02 None",
            ]
        );
    }

    #[test]
    fn nothing_is_kept_until_someone_reads() {
        let (cfg, names, bus) = (
            cfg(),
            NameIndex::new(Names::new("lan", &[])),
            Events::default(),
        );
        let batch = vec![LeaseChange::Upsert(lease([10, 0, 0, 100], 1, None, 1000))];
        bus.publish(&batch, &cfg, &names);
        let (recent, _) = bus.subscribe();
        assert!(recent.is_empty() && bus.lock().last.is_empty());
        assert!(bus.track());
        bus.untrack();
        assert!(bus.track(), "a failed seed lets the next reader try again");
    }

    #[test]
    fn a_slow_reader_lags_and_the_publisher_never_waits() {
        let (cfg, names, bus) = (
            cfg(),
            NameIndex::new(Names::new("lan", &[])),
            Events::default(),
        );
        bus.track();
        let (_, mut rx) = bus.subscribe();
        for i in 0..(CAPACITY as u64 + 10) {
            let batch = vec![LeaseChange::Upsert(lease([10, 0, 0, 100], 1, None, i))];
            bus.publish(&batch, &cfg, &names);
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
        let (recent, _) = bus.subscribe();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent.last().map(|e| e.id), Some(CAPACITY as u64 + 10));
    }

    #[test]
    fn dynamic_record_changes_become_record_events() {
        use hickory_server::proto::rr::rdata::A;
        use hickory_server::proto::rr::{RData, RecordType};
        let bus = Events::default();
        let a = RData::A(A::new(192, 0, 2, 44));
        bus.publish_records(&[DynOp::Add {
            name: "home.lan.".into(),
            ttl: 60,
            rdata: a.clone(),
            overrides: false,
        }]);
        assert!(bus.subscribe().0.is_empty(), "untracked: nothing kept");
        bus.track();
        bus.publish_records(&[
            DynOp::Add {
                name: "Home.LAN.".into(),
                ttl: 60,
                rdata: a.clone(),
                overrides: false,
            },
            DynOp::DeleteRr {
                name: "home.lan".into(),
                rdata: a,
            },
            DynOp::DeleteRrset {
                name: "home.lan".into(),
                rtype: RecordType::TXT,
            },
            DynOp::DeleteName {
                name: "home.lan".into(),
            },
        ]);
        let json: Vec<String> = bus
            .subscribe()
            .0
            .iter()
            .map(|e| serde_json::to_string(e).expect("json"))
            .collect();
        assert_eq!(
            json,
            [
                r#"{"id":1,"kind":"record","action":"add","name":"home.lan","type":"A","data":"192.0.2.44","ttl":60}"#,
                r#"{"id":2,"kind":"record","action":"del","name":"home.lan","type":"A","data":"192.0.2.44"}"#,
                r#"{"id":3,"kind":"record","action":"del","name":"home.lan","type":"TXT"}"#,
                r#"{"id":4,"kind":"record","action":"del","name":"home.lan"}"#,
            ]
        );
        assert_eq!(bus.subscribe().0[0].kind(), "record");
    }
}
