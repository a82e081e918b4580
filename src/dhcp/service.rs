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
//! What is written, synced, rolled back or withdrawn is decided by the sans-IO commit pipeline
//! (`dhcp::pipeline`): with durability "batch" the fdatasync is shared by every batch written
//! within `batch_max_delay_ms` and their grants (ACKs with an address) and names wait for it;
//! OFFERs and NAKs leave at once. When a write or fdatasync fails, the engine's table is put back
//! to what the store holds for every address the lost changes touched, and those grants are
//! dropped: the client retries, and gets its ACK once writing works again. This file does the
//! I/O around it: the socket, the clock, the name index, DDNS, metrics.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, OptionCode};
use tracing::{debug, error, info, warn};

use crate::clock::{Clock, UnixTime};
use crate::config::Config;
use crate::dhcp::Iface;
use crate::dhcp::control::{Command, Control, ControlError, LeaseCounts, LeaseView};
use crate::dhcp::engine::{self, Engine, Outcome, Reply};
use crate::dhcp::pipeline::{Committed, Pipeline, is_grant};
use crate::dhcp::{ping, reserve, wire};
use crate::dns::names::{NameChange, SharedNames};
use crate::lease::LeaseChange;
use crate::lease::store::{LeaseStore, StoreError};
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
    /// Per message type, per subnet, journal latency: what `/metrics` adds.
    pub detail: crate::metrics::DhcpMetrics,
    /// Durable lease and name changes, for the API's event stream.
    pub events: crate::dhcp::events::Events,
}

pub struct DhcpService {
    cfg: Arc<Config>,
    engine: Engine,
    /// Where lease changes become durable (the journal, or a shared database).
    store: Box<dyn LeaseStore>,
    names: SharedNames,
    socket: DhcpSocket,
    clock: Arc<dyn Clock>,
    stats: Arc<Stats>,
    ifaces: HashMap<u32, Iface, crate::lease::AddrHash>,
    /// When the interface list was last read (it is re-read when an unknown index shows up).
    ifaces_read: UnixTime,
    /// Ping checks report here when done (`ping_check`); requests wait in their tasks, which
    /// run on `runtime` and signal `wake`.
    pings_tx: tokio::sync::mpsc::UnboundedSender<PingDone>,
    pings_rx: tokio::sync::mpsc::UnboundedReceiver<PingDone>,
    ping_seq: u16,
    runtime: Option<tokio::runtime::Handle>,
    wake: Arc<Wake>,
    /// Outbound DDNS: durable batches are handed over here (never waits).
    ddns: Option<crate::ddns::DdnsSender>,
    /// `dhcp_script`: durable batches are handed over here too (never waits).
    script: Option<crate::script::ScriptSender>,
    /// Written, not yet synced changes and the grants that wait for them.
    pipeline: Pipeline,
    /// Where replies are encoded (reused).
    send_buf: Vec<u8>,
    /// Per-subnet (bound, declined) last published to `stats` (to skip unchanged batches).
    published: Vec<(u64, u64)>,
    /// Commands from the control API (`control`), answered between batches.
    control_rx: Option<tokio::sync::mpsc::UnboundedReceiver<Command>>,
    /// The config as given and the reservations saved through the API; `cfg` merges them.
    reservations: reserve::Runtime,
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
        store: Box<dyn LeaseStore>,
        names: SharedNames,
        socket: DhcpSocket,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        let (pings_tx, pings_rx) = tokio::sync::mpsc::unbounded_channel();
        let reservations = reserve::Runtime::open(cfg.clone())?;
        let cfg = Arc::new(reservations.merged());
        Ok(DhcpService {
            cfg,
            engine,
            store,
            names,
            socket,
            clock,
            stats: Arc::default(),
            ifaces: HashMap::default(),
            ifaces_read: UnixTime(0),
            pings_tx,
            pings_rx,
            ping_seq: 0,
            runtime: None,
            wake: Arc::new(Wake::new()?),
            ddns: None,
            script: None,
            pipeline: Pipeline::new(Instant::now()),
            send_buf: Vec::with_capacity(1024),
            published: Vec::new(),
            control_rx: None,
            reservations,
        })
    }

    /// Hands every durable batch of lease changes to the outbound DDNS task.
    pub fn with_ddns(mut self, ddns: crate::ddns::DdnsSender) -> Self {
        self.ddns = Some(ddns);
        self
    }

    /// Hands every durable batch of lease changes to the `dhcp_script` task.
    pub fn with_script(mut self, script: crate::script::ScriptSender) -> Self {
        self.script = Some(script);
        self
    }

    /// The control API's handle to this service (its commands are answered between batches).
    pub fn control(&mut self) -> Control {
        let (control, rx) = Control::new(self.wake.clone());
        self.control_rx = Some(rx);
        control
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Take the settings of a reloaded config (merged with the saved reservations).
    pub fn reconfigure(&mut self, cfg: Arc<Config>) {
        self.reservations.set_base(cfg);
        let leases = self.apply_merged(self.reservations.merged());
        info!(leases, "DHCP settings reloaded");
    }

    /// Use `cfg`: the engine is rebuilt around the live leases, the named reservations are
    /// published in DNS. How many leases were kept.
    fn apply_merged(&mut self, cfg: Config) -> usize {
        let cfg = Arc::new(cfg);
        let named = crate::dns::statics::StaticRecords::of(&cfg, Vec::new()).reservations;
        self.names.apply(NameChange::Reservations(named));
        let now = self.clock.now();
        let leases = self.engine.leases();
        let kept = leases.len();
        self.engine = Engine::new(cfg.clone(), leases, now);
        self.cfg = cfg;
        self.publish_rows();
        kept
    }

    /// New per-subnet rows for `/metrics` (start, reload), then their counts.
    fn publish_rows(&mut self) {
        let rows = crate::metrics::subnet_rows(&self.cfg);
        self.stats.detail.usage.set_rows(rows);
        self.published.clear();
        self.publish();
    }

    /// Publish per-subnet usage and allocation failures for `/metrics`, once per batch; the
    /// usage lock is taken only when a count changed.
    fn publish(&mut self) {
        let detail = &self.stats.detail;
        let failed = self.engine.take_allocation_failures();
        detail.alloc_failed.fetch_add(failed, Ordering::Relaxed);
        let usage = self.engine.usage();
        if usage != self.published.as_slice() {
            detail.usage.update(usage);
            self.published.clear();
            self.published.extend_from_slice(usage);
        }
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
        self.store.set_waker(self.wake.clone());
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
        self.publish_rows();
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
            // Other nodes' committed changes first (a shared store): a request that arrived
            // with them is then answered from the newest lease set.
            self.absorb_remote();
            while let Ok(done) = self.pings_rx.try_recv() {
                pings.push(done);
            }
            if n > 0 || !pings.is_empty() || !read {
                let got = if n > 0 { Some(&batch) } else { None };
                self.process(got, std::mem::take(&mut pings));
            }
            self.answer_commands();
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
        let until_sync = self
            .pipeline
            .until_sync(self.cfg.start.durability, Instant::now());
        let timeout = self.until_next_expiry().min(until_sync);
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
        let reclaimed = changes.len() as u64;
        self.stats
            .detail
            .reclaimed
            .fetch_add(reclaimed, Ordering::Relaxed);
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
        if self
            .pipeline
            .sync_due(self.cfg.start.durability, Instant::now())
        {
            self.flush(now);
        }
        self.publish();
    }

    /// Write the batch's changes; its grants wait for the fdatasync. On failure the engine
    /// forgets every change since the last fdatasync and their grants are dropped.
    fn write(&mut self, now: UnixTime, changes: Vec<LeaseChange>, grants: Vec<Reply>) {
        // The service runs on its own thread (`spawn_thread`): blocking here holds up no one else.
        let was_broken = self.pipeline.is_broken();
        let store = self.store.as_mut();
        if let Err(e) = self
            .pipeline
            .write(&mut self.engine, store, now, changes, grants)
        {
            self.journal_failed(&e, was_broken);
        }
    }

    /// fdatasync what is written, then publish the names and send the grants it covers.
    fn flush(&mut self, now: UnixTime) {
        if !self.pipeline.is_pending() {
            return;
        }
        let (changes, was_broken) = (self.pipeline.pending_changes(), self.pipeline.is_broken());
        let started = Instant::now();
        let res = self
            .pipeline
            .sync(&mut self.engine, self.store.as_mut(), now);
        let done = Instant::now();
        self.pipeline.synced_at(done);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        let took = done.saturating_duration_since(started);
        let detail = &self.stats.detail;
        detail
            .fdatasync
            .observe(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        detail.batch_changes.observe(changes as u64);
        match res {
            Ok(Some(committed)) => self.publish_committed(now, committed),
            Ok(None) => {}
            Err(e) => self.journal_failed(&e, was_broken),
        }
    }

    /// What a sync made durable: its names enter or leave DNS, DDNS gets it, then the grants
    /// leave.
    fn publish_committed(&mut self, now: UnixTime, committed: Committed) {
        if committed.recovered {
            info!(store = %self.store.describe(), "{} writable again; granting leases", self.store_kind());
        }
        if !committed.changes.is_empty() {
            let changes = &committed.changes;
            self.names.apply(NameChange::Leases { now, changes });
        }
        if let Some(ddns) = &self.ddns {
            ddns.send(&committed.changes);
        }
        if let Some(script) = &self.script {
            // The relay of each relayed grant (dnsmasq's DNSMASQ_RELAY_ADDRESS).
            let relays = committed
                .grants
                .iter()
                .filter(|r| !r.msg.giaddr().is_unspecified())
                .map(|r| (r.msg.yiaddr(), r.msg.giaddr()))
                .collect();
            script.send(&committed.changes, relays);
        }
        self.stats
            .events
            .publish(&committed.changes, &self.cfg, &self.names);
        for r in &committed.grants {
            self.send(r);
        }
    }

    /// Answer what the control API asked since the last batch.
    fn answer_commands(&mut self) {
        let Some(mut rx) = self.control_rx.take() else {
            return;
        };
        while let Ok(command) = rx.try_recv() {
            match command {
                Command::Leases(reply) => {
                    let cfg = &self.cfg;
                    let leases = self.engine.leases();
                    let _ = reply.send(leases.iter().map(|l| LeaseView::new(l, cfg)).collect());
                }
                Command::Counts(reply) => {
                    let (bound, declined) = self
                        .engine
                        .usage()
                        .iter()
                        .fold((0, 0), |(b, d), (sb, sd)| (b + sb, d + sd));
                    let _ = reply.send(LeaseCounts { bound, declined });
                }
                Command::End { ip, reply } => {
                    let _ = reply.send(self.end_lease(ip));
                }
                Command::Reservations(reply) => {
                    let _ = reply.send(self.reservations.views(&self.cfg));
                }
                Command::Reserve { req, reply } => {
                    let lease = req.ip.and_then(|ip| self.engine.lease(ip));
                    let res = self.reservations.add(&self.cfg, req, lease.as_ref());
                    let _ = reply.send(res.map(|(view, cfg)| {
                        self.apply_merged(cfg);
                        info!(ip = %view.ip, mac = ?view.mac, name = ?view.name, "reservations changed through the API");
                        view
                    }));
                }
                Command::Unreserve { ip, reply } => {
                    let res = self.reservations.remove(ip);
                    let _ = reply.send(res.map(|(view, cfg)| {
                        self.apply_merged(cfg);
                        info!(ip = %view.ip, mac = ?view.mac, name = ?view.name, "reservations changed through the API");
                        view
                    }));
                }
            }
        }
        self.control_rx = Some(rx);
    }

    /// End the lease on `ip` as a RELEASE would: journaled and fdatasynced (with whatever else
    /// waits for it), then the name leaves DNS; only then is the answer sent.
    fn end_lease(&mut self, ip: Ipv4Addr) -> Result<Option<LeaseView>, ControlError> {
        let now = self.clock.now();
        let Some((lease, change)) = self.engine.end_lease(ip) else {
            return Ok(None);
        };
        let view = LeaseView::new(&lease, &self.cfg);
        self.write(now, vec![change], Vec::new());
        self.flush(now);
        self.publish();
        if self.pipeline.is_broken() {
            // `write` or `flush` put the lease back to what the journal holds.
            return Err(ControlError::Journal);
        }
        Ok(Some(view))
    }

    /// Apply what other nodes committed to the shared store: the table follows, and their
    /// names enter or leave DNS. Their outbound DDNS is the committing node's to send.
    fn absorb_remote(&mut self) {
        let remote = self
            .pipeline
            .absorb_remote(&mut self.engine, self.store.as_mut());
        if remote.is_empty() {
            return;
        }
        let now = self.clock.now();
        let changes = &remote;
        self.names.apply(NameChange::Leases { now, changes });
        // Outbound DDNS for these is the committing node's: the task only tracks the names.
        if let Some(ddns) = &self.ddns {
            ddns.follow(&remote);
        }
        self.stats.events.publish(&remote, &self.cfg, &self.names);
        self.publish();
    }

    /// "lease journal" or "lease database", for log lines.
    fn store_kind(&self) -> &'static str {
        if self.store.describe().starts_with("lease database") {
            "lease database"
        } else {
            "lease journal"
        }
    }

    /// Count a failed write or sync; log it when the store was working until now.
    fn journal_failed(&mut self, e: &StoreError, was_broken: bool) {
        self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
        if !was_broken {
            let (store, kind) = (self.store.describe(), self.store_kind());
            error!(%store, "{kind} write failed, not granting leases until it works: {e}");
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
        self.stats.detail.received_by_type.bump(req.msg_type);
        if !self.serves(now, meta.ifindex) {
            self.stats.ignored.fetch_add(1, Ordering::Relaxed);
            debug!(
                ifindex = meta.ifindex,
                "request on an interface we do not serve"
            );
            return;
        }
        if !engine::relay_allowed(&self.cfg, &req, *meta.src.ip()) {
            self.stats.ignored.fetch_add(1, Ordering::Relaxed);
            debug!(src = %meta.src, giaddr = %req.giaddr, hops = req.hops, "relayed request from an untrusted relay or with too many hops; dropped");
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
        match self
            .socket
            .send(bytes, &r.dest, src, self.cfg.start.client_port)
        {
            Ok(()) => {
                self.stats.replies.fetch_add(1, Ordering::Relaxed);
                if let Some(t) = r.msg.opts().msg_type() {
                    self.stats.detail.sent_by_type.bump(t);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, SocketAddrV4};
    use std::sync::Mutex;

    use dhcproto::v4::MessageType;

    use crate::clock::SystemClock;
    use crate::dhcp::test_relay::{config, exchange, free_port, relay_socket, request};
    use crate::lease::Lease;
    use crate::lease::store::Synced;
    use crate::lease::store::fake::FakeStore;

    /// The fake store, shared with the test that fails it. std Mutex: held for one call.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<FakeStore>>);

    impl Shared {
        fn lock(&self) -> std::sync::MutexGuard<'_, FakeStore> {
            self.0.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    impl LeaseStore for Shared {
        fn write(&mut self, now: UnixTime, changes: &[LeaseChange]) -> Result<(), StoreError> {
            self.lock().write(now, changes)
        }
        fn sync(&mut self, now: UnixTime) -> Result<Synced, StoreError> {
            self.lock().sync(now)
        }
        fn durable(&self, ip: Ipv4Addr) -> Option<Lease> {
            self.lock().durable(ip)
        }
        fn describe(&self) -> String {
            self.lock().describe()
        }
    }

    /// Wait (up to a minute) until `done` holds.
    fn wait_until(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn an_ack_leaves_only_once_the_store_holds_its_lease() {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let cfg = Arc::new(config(dir.path(), port, free_port()));
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let _in_runtime = rt.enter();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let now = clock.now();
        let store = Shared::default();
        let socket = DhcpSocket::bind(port).expect("bind");
        let statics = crate::dns::statics::StaticRecords::of(&cfg, Vec::new());
        let names = crate::daemon::names_for(&cfg, statics, &[], now);
        let engine = Engine::new(cfg.clone(), Vec::new(), now);
        let service = DhcpService::new(
            cfg.clone(),
            engine,
            Box::new(store.clone()),
            names,
            socket,
            clock,
        )
        .expect("service");
        let stats = service.stats();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (_reload_tx, reload_rx) = tokio::sync::watch::channel(cfg);
        let thread = service.spawn_thread(stop_rx, reload_rx).expect("thread");

        let relay = relay_socket(port);
        let server = SocketAddr::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let discover = request(MessageType::Discover, 1, None);
        let (offer, _) = exchange(&relay, server, &discover, 1, MessageType::Offer);
        let ip = offer.yiaddr();
        let sid = Ipv4Addr::LOCALHOST;
        // The store fails the REQUEST's write: its ACK must never leave.
        store.lock().fail_write = true;
        let first = request(MessageType::Request, 2, Some((ip, sid)));
        relay.send_to(&first, server).expect("send");
        wait_until(|| stats.journal_errors.load(Ordering::Relaxed) == 1);
        assert!(store.lock().durable(ip).is_none());
        // The client starts over; the store works again: the ACK leaves, the lease durable.
        let discover = request(MessageType::Discover, 3, None);
        let (offer, mut seen) = exchange(&relay, server, &discover, 3, MessageType::Offer);
        let ip = offer.yiaddr();
        let retry = request(MessageType::Request, 4, Some((ip, sid)));
        let (ack, before) = exchange(&relay, server, &retry, 4, MessageType::Ack);
        seen.extend(before);
        assert_eq!(ack.yiaddr(), ip);
        assert!(
            seen.iter().all(|r| r.xid() != 2),
            "no reply to the request whose write failed"
        );
        let lease = store.lock().durable(ip).expect("durable");
        assert_eq!(lease.hostname.as_deref(), Some("loopy"));
        assert_eq!(store.lock().syncs, 1);
        stop_tx.send(true).expect("stop");
        thread.join().expect("the thread ends cleanly");
    }
}
