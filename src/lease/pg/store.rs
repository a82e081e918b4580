//! `PgStore`: the `LeaseStore` over PostgreSQL (see the module docs for the protocol).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use postgres::{Client, IsolationLevel, Transaction};
use tracing::{info, warn};

use super::feed::{self, CHANNEL, FeedMsg, FeedShared};
use super::rows;
use super::schema::{self, WRITE_LOCK};
use super::{PgError, PgSettings};
use crate::clock::UnixTime;
use crate::lease::store::Wake;
use crate::lease::store::{LeaseStore, StoreError, Synced};
use crate::lease::{Lease, LeaseChange, LeaseState};

/// After a failed connection attempt, the next waits this long (syncs fail at once meanwhile).
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Feed entries older than this are deleted (a node that was away longer reads every lease).
const PRUNE_EVERY: Duration = Duration::from_secs(600);
const PRUNE: &str = "
WITH gone AS (DELETE FROM lease_changes WHERE at < now() - interval '1 hour' RETURNING seq)
UPDATE feed_state SET pruned_through = greatest(pruned_through, (SELECT coalesce(max(seq), 0) FROM gone))";

/// A written change, and for a remove the lease it ends as this node saw it when the engine
/// made the change (the delete is conditional on that client: `held` may follow another node
/// before the sync).
struct Queued {
    change: LeaseChange,
    ends: Option<Lease>,
}

struct Conn {
    client: Client,
    sql: rows::Statements,
}

impl Conn {
    fn new(mut client: Client) -> Result<Conn, PgError> {
        let sql = rows::Statements::prepare(&mut client)?;
        Ok(Conn { client, sql })
    }
}

pub struct PgStore {
    settings: PgSettings,
    /// This process's id in the feed (`lease_changes.node`): host, pid and start time.
    node: String,
    /// The writing connection and its prepared statements; `None` after a failure until the
    /// next sync reconnects.
    conn: Option<Conn>,
    /// A failed attempt to connect: no new one before this.
    retry_at: Option<Instant>,
    /// The connection was lost: `held` is reconciled with the table before the next write.
    reconcile: bool,
    /// Written, not yet synced.
    queued: Vec<Queued>,
    /// The lease set as the database holds it, as far as this node knows (`durable`).
    pub(super) held: HashMap<Ipv4Addr, Lease>,
    /// The change number that set each address's entry in `held` last.
    seen: HashMap<Ipv4Addr, i64>,
    /// Every change up to this number is reflected in `held` (load, reconciliation).
    floor: i64,
    /// Changes found by reconciliation, for the next `take_remote`.
    found: Vec<LeaseChange>,
    feed_rx: Receiver<FeedMsg>,
    /// Shared with the feed thread (stop flag, waker): see `FeedShared`.
    feed: Arc<FeedShared>,
    last_prune: Instant,
}

impl PgStore {
    /// Connect, check the schema, load the live leases (expired ones left out) and start the
    /// feed after them. Blocking: call it from a plain thread, not an async task.
    pub fn open(settings: PgSettings, now: UnixTime) -> Result<(PgStore, Vec<Lease>), PgError> {
        let mut client = settings.connect()?;
        schema::check(&mut client)?;
        let (leases, seq) = read_all(&mut client)?;
        let live: Vec<Lease> = leases.into_iter().filter(|l| l.expires > now).collect();
        let node = node_id();
        let (tx, feed_rx) = channel();
        let feed = Arc::new(FeedShared {
            stop: AtomicBool::new(false),
            wake: OnceLock::new(),
        });
        feed::spawn(settings.clone(), node.clone(), seq, tx, feed.clone())
            .map_err(|e| PgError::Config(format!("starting the change feed thread: {e}")))?;
        let store = PgStore {
            settings,
            node,
            conn: Some(Conn::new(client)?),
            retry_at: None,
            reconcile: false,
            queued: Vec::new(),
            held: live.iter().map(|l| (l.ip, l.clone())).collect(),
            seen: HashMap::new(),
            floor: seq,
            found: Vec::new(),
            feed_rx,
            feed,
            last_prune: Instant::now(),
        };
        Ok((store, live))
    }

    /// This node's id in `lease_changes.node`.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The writing connection, reconnecting (and reconciling) when it was lost.
    fn conn(&mut self) -> Result<&mut Conn, PgError> {
        if self.conn.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return Err(PgError::Schema("not connected; retrying".into()));
            }
            let mut client = match self.settings.connect() {
                Ok(c) => c,
                Err(e) => {
                    self.retry_at = Some(Instant::now() + RETRY_AFTER);
                    return Err(e);
                }
            };
            if self.reconcile {
                let (leases, seq) = read_all(&mut client)?;
                self.take_whole(leases, seq);
                self.reconcile = false;
                if let Some(w) = self.feed.wake.get() {
                    w.wake();
                }
            }
            let conn = Conn::new(client)?;
            info!("{} reachable again", self.settings.describe());
            self.retry_at = None;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Make `leases` (every row as of change `seq`) what `held` says, and queue each
    /// difference for `take_remote`.
    fn take_whole(&mut self, leases: Vec<Lease>, seq: i64) {
        let mut now: HashMap<Ipv4Addr, Lease> = leases.into_iter().map(|l| (l.ip, l)).collect();
        let mut ips: Vec<Ipv4Addr> = self.held.keys().chain(now.keys()).copied().collect();
        ips.sort_unstable();
        ips.dedup();
        for ip in ips {
            if self.seen.get(&ip).is_some_and(|&s| s >= seq) {
                continue;
            }
            let new = now.remove(&ip);
            if self.held.get(&ip) == new.as_ref() {
                continue;
            }
            self.found.push(match &new {
                Some(l) => LeaseChange::Upsert(l.clone()),
                None => LeaseChange::Remove {
                    ip,
                    reason: crate::lease::RemoveReason::Superseded,
                },
            });
            self.set(ip, new, seq);
        }
        self.floor = self.floor.max(seq);
    }

    fn set(&mut self, ip: Ipv4Addr, lease: Option<Lease>, seq: i64) {
        match lease {
            Some(l) => self.held.insert(ip, l),
            None => self.held.remove(&ip),
        };
        self.seen.insert(ip, seq);
    }

    /// The lease on `ip` as this node sees it now: after the queued changes, else as held.
    fn believed(&self, ip: Ipv4Addr) -> Option<Lease> {
        for q in self.queued.iter().rev().filter(|q| q.change.ip() == ip) {
            match &q.change {
                // Offers are never stored: they change nothing in the database.
                LeaseChange::Upsert(l) if l.state == LeaseState::Offered => {}
                LeaseChange::Upsert(l) => return Some(l.clone()),
                LeaseChange::Remove { .. } => return None,
            }
        }
        self.held.get(&ip).cloned()
    }

    /// The lost connection: fail this sync, reconnect and reconcile at the next.
    fn lost(&mut self, e: PgError) -> StoreError {
        if self.conn.take().is_some() {
            warn!(
                "{} failed, no leases granted until it works again: {e}",
                self.settings.describe()
            );
        }
        self.reconcile = true;
        StoreError::Database(e.to_string())
    }

    /// One transaction with every queued change; what the database refused, and the new
    /// state of every address touched (applied to `held` after the commit).
    fn commit(&mut self, now: UnixTime, changes: &[Queued]) -> Result<Synced, PgError> {
        let node = self.node.clone();
        let prune = self.last_prune.elapsed() >= PRUNE_EVERY;
        let mut after: HashMap<Ipv4Addr, (Option<Lease>, i64)> = HashMap::new();
        let mut synced = Synced::default();
        // Addresses the database took from a client because it was granted another (see
        // `rows::SUPERSEDE`): this node's table and DNS drop them through `take_remote`.
        let mut superseded = Vec::new();
        let Conn { client, sql } = self.conn()?;
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        let mut wrote = false;
        for Queued { change, ends } in changes {
            let ip = change.ip();
            if synced.rejected.contains(&ip) {
                continue;
            }
            let known = after.get(&ip).map_or(ends.as_ref(), |(l, _)| l.as_ref());
            match apply(&mut tx, sql, &node, change, known, now)? {
                Applied::Nothing => {}
                Applied::Done(lease, seq) => {
                    wrote = true;
                    if let Some(l) = lease.as_ref().filter(|l| l.state == LeaseState::Bound) {
                        for (freed, seq) in rows::supersede(&mut tx, sql, &node, l)? {
                            after.insert(freed, (None, seq));
                            superseded.push(freed);
                        }
                    }
                    after.insert(ip, (lease, seq));
                }
                Applied::Refused => {
                    synced.rejected.push(ip);
                    let seq: i64 = tx.query_one(rows::LAST_SEQ, &[])?.get(0);
                    after.insert(ip, (rows::current(&mut tx, ip)?, seq));
                }
            }
        }
        if wrote {
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &node])?;
        }
        if prune {
            tx.execute(PRUNE, &[])?;
        }
        tx.commit()?;
        if prune {
            self.last_prune = Instant::now();
        }
        for ip in superseded {
            if after.get(&ip).is_some_and(|(lease, _)| lease.is_none()) {
                self.found.push(LeaseChange::Remove {
                    ip,
                    reason: crate::lease::RemoveReason::Superseded,
                });
            }
        }
        for (ip, (lease, seq)) in after {
            if synced.rejected.contains(&ip) {
                // What won instead reaches the table and DNS through `take_remote` (its feed
                // entry is not newer than `seq` and will be skipped).
                self.found.push(match &lease {
                    Some(l) => LeaseChange::Upsert(l.clone()),
                    None => LeaseChange::Remove {
                        ip,
                        reason: crate::lease::RemoveReason::Superseded,
                    },
                });
            }
            self.set(ip, lease, seq);
        }
        Ok(synced)
    }
}

/// What one change did in the transaction.
enum Applied {
    /// Nothing to write (an offer; a remove of what the database does not hold for us).
    Nothing,
    /// Written as change `seq`: the address now holds this.
    Done(Option<Lease>, i64),
    /// The database refused: another client holds the address, or the lease changed.
    Refused,
}

fn apply(
    tx: &mut Transaction<'_>,
    sql: &rows::Statements,
    node: &str,
    change: &LeaseChange,
    known: Option<&Lease>,
    now: UnixTime,
) -> Result<Applied, PgError> {
    Ok(match change {
        LeaseChange::Upsert(l) if l.state == LeaseState::Offered => Applied::Nothing,
        LeaseChange::Upsert(l) => match rows::upsert(tx, sql, node, l, now)? {
            Some(seq) => Applied::Done(Some(l.clone()), seq),
            None => Applied::Refused,
        },
        LeaseChange::Remove { reason, .. } => match known {
            None => Applied::Nothing,
            Some(held) => match rows::remove(tx, sql, node, held, *reason, now)? {
                Some(seq) => Applied::Done(None, seq),
                None => Applied::Refused,
            },
        },
    })
}

/// Every lease row and the change number it reflects, from one snapshot.
fn read_all(client: &mut Client) -> Result<(Vec<Lease>, i64), PgError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let all = rows::all(&mut tx)?;
    tx.commit()?;
    Ok(all)
}

/// Host name, process id and start time: unique per running store.
fn node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "host".into(), |h| h.trim().to_string());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{host}:{}:{nanos:08x}", std::process::id())
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The feed thread sees the flag within a second and closes its connection.
        self.feed.stop.store(true, Ordering::Relaxed);
        // The client owns a runtime, which must not be dropped inside an async task (the
        // daemon may drop the store there on a start-up error): drop it on its own thread.
        if let Some(conn) = self.conn.take() {
            let _ = std::thread::Builder::new()
                .name("lease-db-close".into())
                .spawn(move || drop(conn));
        }
    }
}

impl LeaseStore for PgStore {
    fn write(&mut self, _now: UnixTime, changes: &[LeaseChange]) -> Result<(), StoreError> {
        for change in changes {
            let ends = match change {
                LeaseChange::Remove { ip, .. } => self.believed(*ip),
                LeaseChange::Upsert(_) => None,
            };
            let change = change.clone();
            self.queued.push(Queued { change, ends });
        }
        Ok(())
    }

    fn sync(&mut self, now: UnixTime) -> Result<Synced, StoreError> {
        let changes = std::mem::take(&mut self.queued);
        if changes.is_empty() {
            // Nothing to make durable (grants that need no write, as reused leases): they
            // leave even while the database is away; reconciliation waits for the next write.
            return Ok(Synced::default());
        }
        let had_client = self.conn.is_some();
        match self.commit(now, &changes) {
            Ok(synced) => Ok(synced),
            // A connection that died while idle (the database restarted) fails its first
            // statement: try once more on a new one (reconciled first, in case the failure was
            // the COMMIT's answer), so the batch's grants need not wait for the client's retry.
            Err(e) if had_client => {
                info!("{}: {e}; reconnecting", self.settings.describe());
                self.conn = None;
                self.reconcile = true;
                self.commit(now, &changes).map_err(|e| self.lost(e))
            }
            Err(e) => Err(self.lost(e)),
        }
    }

    fn durable(&self, ip: Ipv4Addr) -> Option<Lease> {
        self.held.get(&ip).cloned()
    }

    fn take_remote(&mut self) -> Vec<LeaseChange> {
        let mut out = std::mem::take(&mut self.found);
        while let Ok(msg) = self.feed_rx.try_recv() {
            match msg {
                FeedMsg::Change { seq, change } => {
                    let ip = change.ip();
                    let newer = self.seen.get(&ip).copied().unwrap_or(0).max(self.floor);
                    if seq <= newer {
                        continue;
                    }
                    let lease = match &change {
                        LeaseChange::Upsert(l) => Some(l.clone()),
                        LeaseChange::Remove { .. } => None,
                    };
                    self.set(ip, lease, seq);
                    out.push(change);
                }
                FeedMsg::Whole { seq, leases } => {
                    self.take_whole(leases, seq);
                    out.append(&mut self.found);
                }
            }
        }
        out
    }

    fn set_waker(&mut self, wake: Arc<Wake>) {
        let _ = self.feed.wake.set(wake);
    }

    fn describe(&self) -> String {
        self.settings.describe()
    }
}
