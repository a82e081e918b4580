//! The change feed: a background thread with its own connection that LISTENs on
//! `leasedns_leases`, reads the changes other nodes committed (`lease_changes` past the last
//! one it saw, in `seq` order, which is commit order: see `schema::WRITE_LOCK`) and hands them
//! to the store over a channel, waking the DHCP thread. It also reads once a second without a
//! notification (a lost one costs at most a second), reconnects by itself, and when the
//! changes it has not seen were pruned it sends the whole lease set instead.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator as _;
use postgres::{Client, IsolationLevel};
use tracing::{info, warn};

use super::rows::{self, COLUMNS};
use super::{PgError, PgSettings};
use crate::lease::store::Wake;
use crate::lease::{Lease, LeaseChange};

/// The notification channel every committing transaction notifies.
pub const CHANNEL: &str = "leasedns_leases";

/// How long the feed waits for a notification before reading anyway, and between attempts to
/// reconnect.
const POLL: Duration = Duration::from_secs(1);

/// What the feed hands the store.
#[derive(Debug)]
pub enum FeedMsg {
    /// Another node committed this change as number `seq`.
    Change { seq: i64, change: LeaseChange },
    /// Every lease row as of change `seq` (the feed missed pruned changes).
    Whole { seq: i64, leases: Vec<Lease> },
}

/// Shared with the store: the stop flag (set when the store is dropped; the thread checks it
/// every `POLL`) and the DHCP thread's waker (set once, by `set_waker`, before the loop
/// starts; a `OnceLock` because the thread starts first and reads it later).
pub struct FeedShared {
    pub stop: AtomicBool,
    pub wake: OnceLock<Arc<Wake>>,
}

/// The thread's state: where it is in the feed.
struct Feed {
    settings: PgSettings,
    node: String,
    last: i64,
    tx: Sender<FeedMsg>,
    shared: Arc<FeedShared>,
    /// The connection failed and that was logged (once per outage).
    failing: bool,
}

/// Start the feed thread after change `last` (what the store loaded).
pub fn spawn(
    settings: PgSettings,
    node: String,
    last: i64,
    tx: Sender<FeedMsg>,
    shared: Arc<FeedShared>,
) -> std::io::Result<()> {
    let mut feed = Feed {
        settings,
        node,
        last,
        tx,
        shared,
        failing: false,
    };
    std::thread::Builder::new()
        .name("lease-feed".into())
        .spawn(move || feed.run())
        .map(|_| ())
}

impl Feed {
    fn run(&mut self) {
        while !self.shared.stop.load(Ordering::Relaxed) {
            let result = self
                .settings
                .connect()
                .and_then(|mut client| self.follow(&mut client));
            match result {
                Ok(()) => return,
                Err(e) if !self.failing => {
                    warn!("lease database change feed: {e}; retrying every second");
                    self.failing = true;
                }
                Err(_) => {}
            }
            std::thread::sleep(POLL);
        }
    }

    /// LISTEN and read changes until the store is dropped (`Ok`) or the connection fails.
    fn follow(&mut self, client: &mut Client) -> Result<(), PgError> {
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        info!(after = self.last, "lease database change feed connected");
        self.failing = false;
        loop {
            self.read(client)?;
            if self.shared.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut notes = client.notifications();
            let mut waiting = notes.timeout_iter(POLL);
            // One notification (or the timeout) is enough: `read` takes everything since.
            waiting.next()?;
            while waiting.next()?.is_some() {}
        }
    }

    /// Send every change past `last`: others' as changes, the whole set if some were pruned.
    fn read(&mut self, client: &mut Client) -> Result<(), PgError> {
        let pruned: i64 = client
            .query_one("SELECT pruned_through FROM feed_state", &[])?
            .get(0);
        if pruned > self.last {
            return self.read_whole(client);
        }
        let sql = format!(
            "SELECT seq, node, kind, {COLUMNS} FROM lease_changes WHERE seq > $1 ORDER BY seq LIMIT 10000"
        );
        let rows = client.query(&sql, &[&self.last])?;
        let mut sent = false;
        for row in &rows {
            let seq: i64 = row.get(0);
            self.last = seq;
            let node: &str = row.get(1);
            if node == self.node {
                continue;
            }
            let Some(change) = change_from(row)? else {
                continue;
            };
            sent = true;
            if self.tx.send(FeedMsg::Change { seq, change }).is_err() {
                self.shared.stop.store(true, Ordering::Relaxed);
            }
        }
        if sent {
            self.wake();
        }
        Ok(())
    }

    fn read_whole(&mut self, client: &mut Client) -> Result<(), PgError> {
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let (leases, seq) = rows::all(&mut tx)?;
        tx.commit()?;
        warn!(
            missed_after = self.last,
            now_at = seq,
            "lease database: changes this node had not read were pruned; reading every lease"
        );
        self.last = seq;
        if self.tx.send(FeedMsg::Whole { seq, leases }).is_err() {
            self.shared.stop.store(true, Ordering::Relaxed);
        }
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        if let Some(w) = self.shared.wake.get() {
            w.wake();
        }
    }
}

/// A feed row (`seq, node, kind, COLUMNS`) as a lease change.
fn change_from(row: &postgres::Row) -> Result<Option<LeaseChange>, PgError> {
    let kind: &str = row.get(2);
    if kind == "upsert" {
        return Ok(rows::lease_from(row, 3)?.map(LeaseChange::Upsert));
    }
    let IpAddr::V4(ip) = row.try_get::<_, IpAddr>(3)? else {
        return Ok(None);
    };
    Ok(Some(LeaseChange::Remove {
        ip,
        reason: rows::reason_from(kind),
    }))
}
