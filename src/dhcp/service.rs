//! The DHCP loop. Owns the engine, the journal and the socket: receive every datagram that is
//! ready (one recvmmsg), decode, run the engine, write the batch's lease changes with one journal
//! write and one fdatasync (durable before visible), publish names, then send the replies. The
//! daemon runs it on its own OS thread (`spawn_thread`), a plain blocking loop without an async
//! runtime: it sleeps in poll(2) on the socket and a wake-up eventfd (shutdown, reload, finished
//! ping checks). Journal writes and fdatasync block that thread only; requests that arrive
//! meanwhile make the next batch.
//!
//! Under load the loop reads the socket at most once per `HOLD` (2 ms): when the last batches
//! came less than two `HOLD`s apart it sleeps until `HOLD` after the last batch began instead of
//! waking for every datagram, so one wake-up, one recvmmsg and one fdatasync serve everything
//! that arrived meanwhile. A reply waits at most `HOLD` longer (DHCP clients wait seconds before
//! they retransmit); a quiet network (one request now and then) is answered at once. Measured
//! with perfdhcp at 2,000 DORA/s: 1 ms gave 54-58 us of server CPU per DORA, 2 ms 35-41 us.
//!
//! With durability "batch" the fdatasync is shared by every batch written within
//! `batch_max_delay_ms`: their grants (ACKs with an address) and names wait in `Pending` until
//! it is done; OFFERs and NAKs leave at once. When a write or fdatasync fails, the engine's
//! table is put back to what the journal holds for every address the lost changes touched, and
//! those grants are dropped: the client retries, and gets its ACK once writing works again.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, MessageType, OptionCode};
use tracing::{debug, error, info, warn};

use crate::clock::{Clock, UnixTime};
use crate::config::{Config, Durability};
use crate::dhcp::Iface;
use crate::dhcp::engine::{Engine, Outcome, Reply};
use crate::dhcp::{ping, wire};
use crate::dns::names::SharedNames;
use crate::lease::LeaseChange;
use crate::lease::journal::{Journal, JournalError};
use crate::net::{DhcpSocket, RecvBatch, RecvMeta, Wake};

/// Most datagrams taken in one batch (one journal commit).
const MAX_BATCH: usize = 256;
/// Under load, the socket is read at most this often (see the module documentation).
const HOLD: Duration = Duration::from_millis(2);

/// Counters, readable from any thread.
#[derive(Debug, Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub malformed: AtomicU64,
    pub ignored: AtomicU64,
    pub replies: AtomicU64,
    pub send_errors: AtomicU64,
    pub commits: AtomicU64,
    pub journal_errors: AtomicU64,
}

pub struct DhcpService {
    cfg: Arc<Config>,
    engine: Engine,
    journal: Journal,
    names: SharedNames,
    socket: DhcpSocket,
    clock: Arc<dyn Clock>,
    stats: Arc<Stats>,
    ifaces: HashMap<u32, Iface, crate::lease::AddrHash>,
    /// When the interface list was last read (it is re-read when an unknown index shows up).
    ifaces_read: UnixTime,
    /// The journal failed last time: refuse grants until a write works again.
    journal_broken: bool,
    /// Ping checks report here when done (`ping_check`); requests wait in their tasks, which
    /// run on `runtime` and signal `wake`.
    pings_tx: tokio::sync::mpsc::UnboundedSender<PingDone>,
    pings_rx: tokio::sync::mpsc::UnboundedReceiver<PingDone>,
    ping_seq: u16,
    runtime: Option<tokio::runtime::Handle>,
    wake: Arc<Wake>,
    /// Outbound DDNS: durable batches are handed over here (never waits).
    ddns: Option<crate::ddns::DdnsSender>,
    /// Written, not yet fsynced (durability "batch").
    pending: Pending,
    /// When the journal was last fsynced.
    last_sync: Instant,
    /// Where replies are encoded (reused).
    send_buf: Vec<u8>,
}

/// Lease changes written to the journal and the grants that wait for their fdatasync.
#[derive(Default)]
struct Pending {
    changes: Vec<LeaseChange>,
    grants: Vec<Reply>,
}

/// A finished ping check: the request that waited for it and the answer.
struct PingDone {
    req: wire::Request,
    iface: Iface,
    ip: Ipv4Addr,
    answered: bool,
}

impl DhcpService {
    pub fn new(
        cfg: Arc<Config>,
        engine: Engine,
        journal: Journal,
        names: SharedNames,
        socket: DhcpSocket,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        let (pings_tx, pings_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut journal = journal;
        journal.set_renew_write_fraction(cfg.renew_write_fraction);
        Ok(DhcpService {
            cfg,
            engine,
            journal,
            names,
            socket,
            clock,
            stats: Arc::default(),
            ifaces: HashMap::default(),
            ifaces_read: UnixTime(0),
            journal_broken: false,
            pings_tx,
            pings_rx,
            ping_seq: 0,
            runtime: None,
            wake: Arc::new(Wake::new()?),
            ddns: None,
            pending: Pending::default(),
            last_sync: Instant::now(),
            send_buf: Vec::with_capacity(1024),
        })
    }

    /// Hands every durable batch of lease changes to the outbound DDNS task.
    pub fn with_ddns(mut self, ddns: crate::ddns::DdnsSender) -> Self {
        self.ddns = Some(ddns);
        self
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Take the settings of a reloaded config: the engine is rebuilt around the live leases.
    pub fn reconfigure(&mut self, cfg: Arc<Config>) {
        let now = self.clock.now();
        let leases = self.engine.leases();
        info!(leases = leases.len(), "DHCP settings reloaded");
        self.engine = Engine::new(cfg.clone(), leases, now);
        self.cfg = cfg;
    }

    /// Serve on a dedicated OS thread (a blocking loop, see the module documentation) until
    /// `shutdown` changes; a new config on `reload` replaces the engine's settings between
    /// batches (leases are kept). Must be called inside a tokio runtime: a small task there turns
    /// the two channels into wake-ups, and ping checks run there. Join the thread to wait for
    /// the last flush.
    pub fn spawn_thread(
        mut self,
        shutdown: crate::Shutdown,
        reload: tokio::sync::watch::Receiver<Arc<Config>>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let runtime = tokio::runtime::Handle::current();
        runtime.spawn(forward_wakes(
            shutdown.clone(),
            reload.clone(),
            self.wake.clone(),
        ));
        self.runtime = Some(runtime);
        std::thread::Builder::new()
            .name("dhcp".into())
            .spawn(move || self.serve(shutdown, reload))
    }

    /// The loop: wait, read a batch, process it; until `shutdown` changes.
    fn serve(
        mut self,
        shutdown: crate::Shutdown,
        mut reload: tokio::sync::watch::Receiver<Arc<Config>>,
    ) {
        self.refresh_ifaces(self.clock.now());
        let mut batch = RecvBatch::new(MAX_BATCH);
        let mut pings: Vec<PingDone> = Vec::new();
        // When the last two batches with datagrams began.
        let (mut last, mut before) = (None::<Instant>, None::<Instant>);
        loop {
            if !matches!(shutdown.has_changed(), Ok(false)) {
                break;
            }
            if reload.has_changed().unwrap_or(false) {
                let cfg = reload.borrow_and_update().clone();
                self.reconfigure(cfg);
            }
            let busy = matches!((last, before), (Some(l), Some(b)) if l - b < 2 * HOLD);
            let read = match last.filter(|_| busy) {
                Some(l) => {
                    std::thread::sleep((l + HOLD).saturating_duration_since(Instant::now()));
                    true
                }
                None => self.wait(),
            };
            let started = Instant::now();
            let n = if read { self.receive(&mut batch) } else { 0 };
            if n > 0 {
                (last, before) = (Some(started), last);
            } else {
                (last, before) = (None, None);
            }
            while let Ok(done) = self.pings_rx.try_recv() {
                pings.push(done);
            }
            if n > 0 || !pings.is_empty() || !read {
                let got = if n > 0 { Some(&batch) } else { None };
                self.process(got, std::mem::take(&mut pings));
            }
        }
        self.flush(self.clock.now());
        let st = &self.stats;
        info!(
            received = st.received.load(Ordering::Relaxed),
            malformed = st.malformed.load(Ordering::Relaxed),
            ignored = st.ignored.load(Ordering::Relaxed),
            replies = st.replies.load(Ordering::Relaxed),
            send_errors = st.send_errors.load(Ordering::Relaxed),
            commits = st.commits.load(Ordering::Relaxed),
            journal_errors = st.journal_errors.load(Ordering::Relaxed),
            "DHCP service stopped"
        );
    }

    /// Sleep until a datagram, a wake-up, the next lease expiry or a sync falls due; true when
    /// the socket has a datagram.
    fn wait(&self) -> bool {
        let timeout = self.until_next_expiry().min(self.until_sync());
        match self.socket.wait(&self.wake, Some(timeout)) {
            Ok(ready) => {
                if ready.woken {
                    self.wake.reset();
                }
                ready.socket
            }
            Err(e) => {
                error!("DHCP wait failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                false
            }
        }
    }

    /// Read what is ready into `batch`; how many datagrams.
    fn receive(&self, batch: &mut RecvBatch) -> usize {
        match self.socket.recv_batch(batch) {
            Ok(n) => n,
            Err(e) => {
                error!("DHCP receive failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                0
            }
        }
    }

    fn until_next_expiry(&self) -> Duration {
        let now = self.clock.now();
        match self.engine.poll_at() {
            Some(t) => Duration::from_secs(now.until(t))
                .max(Duration::from_millis(10))
                .min(Duration::from_secs(60)),
            None => Duration::from_secs(60),
        }
    }

    /// One batch (datagrams, finished pings, or only timers): expiries, engine, one journal
    /// write, then (when due) one fdatasync, names and grants.
    fn process(&mut self, batch: Option<&RecvBatch>, pings: Vec<PingDone>) {
        let now = self.clock.now();
        let mut changes = self.engine.expire(now);
        let mut replies: Vec<Reply> = Vec::new();
        for (bytes, meta) in batch.into_iter().flat_map(RecvBatch::iter) {
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            self.handle_one(now, bytes, meta, &mut changes, &mut replies);
        }
        for p in pings {
            let out = self
                .engine
                .handle_after_ping(now, &p.req, &p.iface, p.ip, p.answered);
            self.absorb(out, p.req, p.iface, &mut changes, &mut replies);
        }
        let (grants, others): (Vec<Reply>, Vec<Reply>) = replies.into_iter().partition(is_grant);
        self.write(now, changes, grants);
        for r in &others {
            self.send(r);
        }
        if self.sync_due() {
            self.flush(now);
        }
    }

    /// Write the batch's changes; its grants wait for the fdatasync. On failure the engine
    /// forgets every change since the last fdatasync and their grants are dropped.
    fn write(&mut self, now: UnixTime, changes: Vec<LeaseChange>, grants: Vec<Reply>) {
        // The service runs on its own thread (`spawn_thread`): blocking here holds up no one else.
        let res = self.journal.write(now, &changes);
        match res {
            Ok(_) => {
                self.pending.changes.extend(changes);
                self.pending.grants.extend(grants);
            }
            Err(e) => {
                let mut lost = std::mem::take(&mut self.pending.changes);
                lost.extend(changes);
                self.pending.grants.clear();
                self.forget(&lost);
                self.journal_failed(&e);
            }
        }
    }

    /// True when pending grants may not wait any longer for their fdatasync.
    fn sync_due(&self) -> bool {
        if self.pending.changes.is_empty() && self.pending.grants.is_empty() {
            return false;
        }
        self.until_sync() == Duration::ZERO
    }

    /// How long pending grants may still wait (forever when there are none).
    fn until_sync(&self) -> Duration {
        if self.pending.changes.is_empty() && self.pending.grants.is_empty() {
            return Duration::from_secs(60);
        }
        match self.cfg.durability {
            Durability::Batch { max_delay_ms } => {
                let due = self.last_sync + Duration::from_millis(u64::from(max_delay_ms));
                due.saturating_duration_since(Instant::now())
            }
            Durability::Fsync | Durability::None => Duration::ZERO,
        }
    }

    /// fdatasync what is written, then publish the names and send the grants it covers.
    fn flush(&mut self, now: UnixTime) {
        let pending = std::mem::take(&mut self.pending);
        if pending.changes.is_empty() && pending.grants.is_empty() {
            return;
        }
        let res = self.journal.sync(Some(now));
        self.last_sync = Instant::now();
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = res {
            self.forget(&pending.changes);
            self.journal_failed(&e);
            return;
        }
        if self.journal_broken {
            info!("lease journal writable again; granting leases");
            self.journal_broken = false;
        }
        if !pending.changes.is_empty() {
            match self.names.write() {
                Ok(mut names) => names.apply_at(now, &pending.changes),
                Err(poisoned) => poisoned.into_inner().apply(&pending.changes),
            }
        }
        if let Some(ddns) = &self.ddns {
            ddns.send(&pending.changes);
        }
        for r in &pending.grants {
            self.send(r);
        }
    }

    /// Put every address these lost changes touched back to what the journal holds.
    fn forget(&mut self, lost: &[LeaseChange]) {
        for change in lost {
            let ip = match change {
                LeaseChange::Upsert(l) => l.ip,
                LeaseChange::Remove { ip, .. } => *ip,
            };
            self.engine.restore(ip, self.journal.durable(ip));
        }
    }

    fn journal_failed(&mut self, e: &JournalError) {
        self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
        if !self.journal_broken {
            error!("lease journal write failed, not granting leases until it works: {e}");
            self.journal_broken = true;
        }
    }

    fn handle_one(
        &mut self,
        now: UnixTime,
        bytes: &[u8],
        meta: &RecvMeta,
        changes: &mut Vec<LeaseChange>,
        replies: &mut Vec<Reply>,
    ) {
        let req = match wire::decode(bytes) {
            Ok(req) => req,
            Err(e) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(src = %meta.src, error = %e, "dropped malformed DHCP packet");
                return;
            }
        };
        if !self.serves(now, meta.ifindex) {
            self.stats.ignored.fetch_add(1, Ordering::Relaxed);
            debug!(
                ifindex = meta.ifindex,
                "request on an interface we do not serve"
            );
            return;
        }
        let Some(iface) = self.ifaces.get(&meta.ifindex) else {
            return;
        };
        let out = self.engine.handle(now, &req, iface);
        debug!(xid = req.xid, mac = %req.hwaddr, msg = ?req.msg_type, reply = out.reply.is_some(), "handled");
        if out.ping.is_some() {
            let iface = iface.clone();
            self.absorb(out, req, iface, changes, replies);
        } else {
            changes.extend(out.changes);
            replies.extend(out.reply);
        }
    }

    /// Take an engine outcome into the batch; a ping it asks for runs as its own task and
    /// comes back through `pings_rx`, so other clients are not held up.
    fn absorb(
        &mut self,
        out: Outcome,
        req: wire::Request,
        iface: Iface,
        changes: &mut Vec<LeaseChange>,
        replies: &mut Vec<Reply>,
    ) {
        changes.extend(out.changes);
        replies.extend(out.reply);
        let Some(ip) = out.ping else {
            return;
        };
        self.ping_seq = self.ping_seq.wrapping_add(1);
        let (seq, id) = (self.ping_seq, (std::process::id() & 0xffff) as u16);
        let timeout = self.cfg.dhcp.ping_timeout;
        let tx = self.pings_tx.clone();
        let wake = self.wake.clone();
        let Some(runtime) = &self.runtime else {
            warn!(%ip, "no runtime for the ping check; offering without it");
            let _ = tx.send(PingDone {
                req,
                iface,
                ip,
                answered: false,
            });
            return;
        };
        runtime.spawn(async move {
            let answered = match ping::ping(ip, timeout, id, seq).await {
                Ok(answered) => answered,
                Err(e) => {
                    warn!(%ip, "ping check failed, offering anyway: {e}");
                    false
                }
            };
            debug!(%ip, answered, "ping check done");
            let _ = tx.send(PingDone {
                req,
                iface,
                ip,
                answered,
            });
            wake.wake();
        });
    }

    /// Whether we serve the interface with this index (the list is re-read, at most once a
    /// second, when an unknown index shows up).
    fn serves(&mut self, now: UnixTime, ifindex: u32) -> bool {
        if !self.ifaces.contains_key(&ifindex) && now.0 > self.ifaces_read.0 {
            self.refresh_ifaces(now);
        }
        self.ifaces.get(&ifindex).is_some_and(|iface| {
            self.cfg.interfaces.is_empty() || self.cfg.interfaces.contains(&iface.name)
        })
    }

    fn refresh_ifaces(&mut self, now: UnixTime) {
        self.ifaces_read = now;
        match crate::net::interfaces() {
            Ok(list) => self.ifaces = list.into_iter().map(|i| (i.index, i)).collect(),
            Err(e) => warn!("cannot list interfaces: {e}"),
        }
    }

    fn send(&mut self, r: &Reply) {
        let mut bytes = std::mem::take(&mut self.send_buf);
        self.send_encoded(r, &mut bytes);
        self.send_buf = bytes;
    }

    /// Encode `r` into `bytes` (a buffer reused from reply to reply) and send it.
    fn send_encoded(&self, r: &Reply, bytes: &mut Vec<u8>) {
        match wire::encode_into(&r.msg, r.max_size, &r.order, bytes) {
            Ok(()) => {}
            Err(e) => {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                warn!(xid = r.msg.xid(), "cannot encode reply: {e}");
                return;
            }
        };
        let src = match r.msg.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => *ip,
            _ => Ipv4Addr::UNSPECIFIED,
        };
        match self.socket.send(bytes, &r.dest, src, self.cfg.client_port) {
            Ok(()) => {
                self.stats.replies.fetch_add(1, Ordering::Relaxed);
                debug!(xid = r.msg.xid(), dest = ?r.dest, "sent");
            }
            Err(e) => {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                warn!(dest = ?r.dest, "DHCP send failed: {e}");
            }
        }
    }
}

/// Turn a change on either channel (or its end) into a wake-up of the DHCP thread, which reads
/// the channels itself.
async fn forward_wakes(
    mut shutdown: crate::Shutdown,
    mut reload: tokio::sync::watch::Receiver<Arc<Config>>,
    wake: Arc<Wake>,
) {
    loop {
        tokio::select! {
            r = shutdown.changed() => {
                wake.wake();
                if r.is_err() || *shutdown.borrow() {
                    return;
                }
            }
            r = reload.changed() => {
                wake.wake();
                if r.is_err() {
                    // No more reloads: wait for the shutdown only.
                    let _ = shutdown.changed().await;
                    wake.wake();
                    return;
                }
            }
        }
    }
}

/// An ACK that carries an address grants or extends a lease.
fn is_grant(r: &Reply) -> bool {
    r.msg.opts().msg_type() == Some(MessageType::Ack) && !r.msg.yiaddr().is_unspecified()
}
