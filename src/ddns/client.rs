//! The DDNS task: takes lease changes from the DHCP service through a channel (so DHCP replies
//! never wait on DNS), queues the jobs on disk, and sends each job's UPDATEs to its primaries
//! over UDP, one job at a time in order, retrying with exponential backoff while a primary is
//! unreachable. Owns the socket work; the pure parts live in `update`, `tracker` and `dns::tsig`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::config::{Config, DdnsZone};
use crate::ddns::dhcid;
use crate::ddns::queue::{Queue, QueueError};
use crate::ddns::tracker::Tracker;
use crate::ddns::update::{self, Job, Op, Outcome, Step};
use crate::dns::tsig;
use crate::lease::{Lease, LeaseChange};

/// How long we wait for a primary's answer to one UPDATE.
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// Backoff after a failed attempt: doubles from the first value up to the cap.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The response code we act on when the server rejected our TSIG key.
const NOTAUTH: u8 = 9;

/// The DHCP service's end of the channel: hands over each durable batch without waiting.
#[derive(Clone, Debug)]
pub struct DdnsSender(mpsc::UnboundedSender<Batch>);

/// A durable batch, and whether this node committed it (`ours`: send its updates) or another
/// node sharing the lease database did (only track its names: that node sends the updates, so
/// each change is sent once, not once per node).
#[derive(Debug)]
struct Batch {
    changes: Vec<LeaseChange>,
    ours: bool,
}

impl DdnsSender {
    /// Queues a batch this node committed; never blocks (the channel is unbounded).
    pub fn send(&self, changes: &[LeaseChange]) {
        self.pass(changes, true);
    }

    /// Hands over a batch another node committed: the names it sets or ends are tracked (a
    /// later change here updates them correctly) but no update is sent for it.
    pub fn follow(&self, changes: &[LeaseChange]) {
        self.pass(changes, false);
    }

    fn pass(&self, changes: &[LeaseChange], ours: bool) {
        let batch = Batch {
            changes: changes.to_vec(),
            ours,
        };
        if !changes.is_empty() && self.0.send(batch).is_err() {
            debug!("DDNS task has stopped; lease changes not sent");
        }
    }
}

/// Why one attempt at a job did not finish it.
enum Attempt {
    Finished,
    Retry(String),
}

pub struct DdnsTask {
    zones: Vec<DdnsZone>,
    tracker: Tracker,
    queue: Queue,
    clock: Arc<dyn Clock>,
    rx: mpsc::UnboundedReceiver<Batch>,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// Jobs in the queue, for `/metrics` (updated once per loop turn).
    depth: Arc<std::sync::atomic::AtomicU64>,
}

/// Opens the queue and builds the task; `leases` are the ones recovered at start.
pub fn start(
    cfg: &Config,
    leases: &[Lease],
    clock: Arc<dyn Clock>,
) -> Result<(DdnsSender, DdnsTask), QueueError> {
    let queue = Queue::open(&cfg.start.ddns.queue_file, cfg.start.durability)?;
    if !queue.is_empty() {
        info!(pending = queue.len(), file = %cfg.start.ddns.queue_file.display(), "DDNS updates pending from the last run");
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let task = DdnsTask {
        zones: cfg.start.ddns.zones.clone(),
        tracker: Tracker::new(&cfg.start.domain, leases),
        queue,
        clock,
        rx,
        backoff: BACKOFF_FIRST,
        retry_at: None,
        depth: Arc::default(),
    };
    Ok((DdnsSender(tx), task))
}

impl DdnsTask {
    /// The queue depth as `/metrics` reads it.
    pub fn depth(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.depth.clone()
    }

    /// Runs until shutdown; then stores what is still in the channel and returns.
    pub async fn run(mut self, mut shutdown: crate::Shutdown) {
        let mut open = true;
        loop {
            let depth = self.queue.len() as u64;
            self.depth
                .store(depth, std::sync::atomic::Ordering::Relaxed);
            let ready =
                self.queue.front().is_some() && self.retry_at.is_none_or(|t| t <= Instant::now());
            if ready {
                tokio::select! {
                    _ = self.attempt_front() => {}
                    _ = shutdown.changed() => break,
                }
                continue;
            }
            let wake = self
                .retry_at
                .unwrap_or_else(|| Instant::now() + BACKOFF_MAX);
            tokio::select! {
                got = self.rx.recv(), if open => match got {
                    Some(batch) => self.take(&batch),
                    None => open = false,
                },
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.changed() => break,
            }
        }
        self.finish().await;
    }

    /// Turns a batch into jobs and queues them (with anything else already in the channel);
    /// another node's batch only moves the tracker (its jobs are that node's to send).
    fn take(&mut self, batch: &Batch) {
        let mut queued = Vec::new();
        while let Ok(more) = self.rx.try_recv() {
            queued.push(more);
        }
        let mut jobs = Vec::new();
        for batch in std::iter::once(batch).chain(&queued) {
            let more = self.tracker.jobs(&batch.changes);
            if batch.ours {
                jobs.extend(more);
            }
        }
        if jobs.is_empty() {
            return;
        }
        if let Err(e) = self.queue.push(jobs) {
            error!("DDNS queue write failed (updates kept in memory): {e}");
        }
    }

    /// At shutdown: the DHCP service may still send its last batch; store it for next time.
    async fn finish(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(500);
        while let Ok(Some(batch)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            self.take(&batch);
        }
        if !self.queue.is_empty() {
            info!(
                pending = self.queue.len(),
                "DDNS updates kept for the next start"
            );
        }
    }

    /// One attempt at the oldest job; on trouble, schedule the next attempt with backoff.
    async fn attempt_front(&mut self) {
        let Some(job) = self.queue.front().cloned() else {
            return;
        };
        match self.run_job(&job).await {
            Attempt::Finished => {
                self.backoff = BACKOFF_FIRST;
                self.retry_at = None;
                if let Err(e) = self.queue.pop() {
                    error!("DDNS queue write failed: {e}");
                }
            }
            Attempt::Retry(why) => {
                warn!(fqdn = %job.fqdn, ip = %job.ip, retry_in = ?self.backoff, "DDNS update not done: {why}");
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// Every step of one job, from the first.
    async fn run_job(&self, job: &Job) -> Attempt {
        let rev_name = update::reverse_name(job.ip);
        let fwd = update::zone_for(&self.zones, &job.fqdn);
        let rev = update::zone_for(&self.zones, &rev_name);
        let mut step = update::first_step(job.op, fwd.is_some(), rev.is_some());
        while let Some(s) = step {
            let zone = match s {
                Step::FwdAdd | Step::FwdReplace | Step::FwdRemove => fwd,
                Step::RevAdd | Step::RevRemove => rev,
            };
            let Some(zone) = zone else {
                return Attempt::Finished;
            };
            let rcode = match self.exchange(s, job, zone).await {
                Ok(rcode) => rcode,
                Err(why) => return Attempt::Retry(why),
            };
            step = match update::outcome(s, rcode, rev.is_some()) {
                Outcome::Next(next) => Some(next),
                Outcome::Done => {
                    log_done(job, zone);
                    None
                }
                Outcome::Conflict => {
                    warn!(fqdn = %job.fqdn, ip = %job.ip, primary = %zone.primary,
                        "DDNS: {} belongs to another client (its DHCID is not ours); left as it is", job.fqdn);
                    None
                }
                Outcome::Retry(why) => {
                    return Attempt::Retry(format!("{why} from {}", zone.primary));
                }
                Outcome::Fail(why) => {
                    error!(fqdn = %job.fqdn, ip = %job.ip, zone = %zone.zone, primary = %zone.primary,
                        ?s, "DDNS update refused ({why}); dropped");
                    None
                }
            };
        }
        Attempt::Finished
    }

    /// Sends one step's UPDATE and returns the response code.
    async fn exchange(&self, step: Step, job: &Job, zone: &DdnsZone) -> Result<u8, String> {
        let now = self.clock.now();
        let id = random_id();
        let ttl = update::ttl(zone.ttl, job.expires, now);
        let msg = update::message(step, job, &zone.zone, ttl, id).map_err(|e| e.to_string())?;
        let bytes = msg.to_vec().map_err(|e| format!("cannot encode: {e}"))?;
        let (bytes, mac) = match &zone.key {
            Some(key) => {
                let signed = tsig::sign(&bytes, key, now.0).map_err(|e| e.to_string())?;
                (signed.bytes, Some(signed.mac))
            }
            None => (bytes, None),
        };
        let resp = udp_exchange(zone.primary, &bytes, id).await?;
        let rcode = resp[3] & 0x0f;
        if let (Some(key), Some(mac)) = (&zone.key, mac) {
            match tsig::check_response(&resp, key, &mac, self.clock.now().0) {
                Ok(()) => {}
                // An error answer from a server that did not accept our key is not signed.
                Err(tsig::ClientError::Unsigned) if rcode != 0 => {}
                Err(e @ tsig::ClientError::ServerError(_)) => {
                    error!(primary = %zone.primary, key = %key.name, "DDNS: {e}");
                    return Ok(NOTAUTH);
                }
                Err(e) => return Err(format!("response from {}: {e}", zone.primary)),
            }
        }
        debug!(?step, fqdn = %job.fqdn, ip = %job.ip, primary = %zone.primary,
            rcode = %update::rcode_name(rcode), "DDNS answer");
        Ok(rcode)
    }
}

fn log_done(job: &Job, zone: &DdnsZone) {
    let what = match job.op {
        Op::Add => "added",
        Op::Remove | Op::RemoveReverse => "removed",
    };
    info!(fqdn = %job.fqdn, ip = %job.ip, primary = %zone.primary,
        dhcid = %dhcid::to_base64(&job.dhcid), "DDNS: {what} {} / {}", job.fqdn, job.ip);
}

fn random_id() -> u16 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        return nanos as u16;
    }
    u16::from_be_bytes(b)
}

/// One UDP request and its answer (same ID, from the primary, QR set), within `ANSWER_WAIT`.
async fn udp_exchange(primary: SocketAddr, bytes: &[u8], id: u16) -> Result<Vec<u8>, String> {
    let local: SocketAddr = match primary {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("socket: {e}"))?;
    sock.connect(primary)
        .await
        .map_err(|e| format!("{primary}: {e}"))?;
    sock.send(bytes)
        .await
        .map_err(|e| format!("{primary}: {e}"))?;
    let deadline = Instant::now() + ANSWER_WAIT;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => return Err(format!("no answer from {primary} in {ANSWER_WAIT:?}")),
            Ok(Err(e)) => return Err(format!("{primary}: {e}")),
            Ok(Ok(n)) => n,
        };
        let resp = &buf[..n];
        if n >= 12 && resp[0..2] == id.to_be_bytes() && resp[2] & 0x80 != 0 {
            return Ok(resp.to_vec());
        }
        debug!(%primary, len = n, "ignored a datagram that is not our answer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{TestClock, UnixTime};
    use crate::lease::{ClientId, HwAddr, LeaseState, RemoveReason};
    use hickory_server::proto::op::Message;
    use std::path::Path;
    use tokio::sync::watch;

    /// A primary on loopback that answers each UPDATE with the next scripted rcode (no answer
    /// at all once the script runs out) and hands every request it saw to the test.
    async fn fake_primary(script: Vec<u8>) -> (SocketAddr, mpsc::UnboundedReceiver<Message>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = sock.local_addr().expect("addr");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut script = script.into_iter();
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let _ = tx.send(Message::from_vec(&buf[..n]).expect("our request parses"));
                if let Some(rcode) = script.next() {
                    let mut resp = buf[..12].to_vec();
                    resp[2] |= 0x80;
                    resp[3] = rcode;
                    resp[4..12].fill(0);
                    let _ = sock.send_to(&resp, from).await;
                }
            }
        });
        (addr, rx)
    }

    fn config(dir: &Path, primary: SocketAddr) -> Config {
        let text = format!(
            "domain = \"lan\"\nlease_file = \"{}/leases\"\ndurability = \"none\"\n\
             [[subnet]]\nnetwork = \"10.0.0.0/24\"\npool_start = \"10.0.0.100\"\npool_end = \"10.0.0.199\"\n\
             [[ddns_zone]]\nzone = \"lan\"\nprimary = \"{primary}\"\n\
             [[ddns_zone]]\nzone = \"0.0.10.in-addr.arpa\"\nprimary = \"{primary}\"\n",
            dir.display()
        );
        Config::parse(&text, Path::new("test.toml")).expect("valid config")
    }

    fn alpha() -> Lease {
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, 1]);
        Lease {
            ip: Ipv4Addr::new(10, 0, 0, 100),
            client: ClientId::from_hw(&hw),
            hwaddr: hw,
            hostname: Some("alpha".into()),
            expires: UnixTime(1_000_600),
            state: LeaseState::Bound,
        }
    }

    /// (prerequisite types, update types) of a request, to tell the steps apart.
    fn shape(m: &Message) -> (Vec<u16>, Vec<u16>) {
        let types = |rs: &[hickory_server::proto::rr::Record]| {
            rs.iter().map(|r| u16::from(r.record_type())).collect()
        };
        (types(&m.answers), types(&m.authorities))
    }

    /// The task at t=1,000,000 with a fake primary answering `script`, for both zones.
    struct Running {
        _dir: tempfile::TempDir,
        cfg: Config,
        tx: DdnsSender,
        seen: mpsc::UnboundedReceiver<Message>,
        stop_tx: watch::Sender<bool>,
        handle: tokio::task::JoinHandle<()>,
        depth: Arc<std::sync::atomic::AtomicU64>,
    }

    async fn running(script: Vec<u8>) -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let (primary, seen) = fake_primary(script).await;
        let cfg = config(dir.path(), primary);
        let (tx, task) = start(&cfg, &[], Arc::new(TestClock::at(1_000_000))).expect("starts");
        let (stop_tx, stop_rx) = watch::channel(false);
        let depth = task.depth();
        let handle = tokio::spawn(task.run(stop_rx));
        Running {
            depth,
            _dir: dir,
            cfg,
            tx,
            seen,
            stop_tx,
            handle,
        }
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Message>) -> Message {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a request in time")
            .expect("fake primary alive")
    }

    #[tokio::test]
    async fn conflict_stops_after_the_dhcid_check_and_touches_no_ptr() {
        // YXDOMAIN to the first add, NXRRSET to the DHCID-guarded replace.
        let mut r = running(vec![6, 8]).await;

        r.tx.send(&[LeaseChange::Upsert(alpha())]);
        assert_eq!(
            shape(&next(&mut r.seen).await),
            (vec![255], vec![1, 49]),
            "add if absent"
        );
        assert_eq!(
            shape(&next(&mut r.seen).await),
            (vec![49], vec![1, 1]),
            "replace if ours"
        );
        let more = tokio::time::timeout(Duration::from_millis(500), r.seen.recv()).await;
        assert!(more.is_err(), "nothing after a conflict: {more:?}");

        let _ = r.stop_tx.send(true);
        r.handle.await.expect("task ends");
        assert!(
            Queue::open(&r.cfg.start.ddns.queue_file, r.cfg.start.durability)
                .expect("opens")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn servfail_is_retried_then_release_removes_both_sides() {
        // SERVFAIL, then the add (forward, reverse) and the removal (forward, reverse) succeed.
        let mut r = running(vec![2, 0, 0, 0, 0]).await;

        r.tx.send(&[LeaseChange::Upsert(alpha())]);
        r.tx.send(&[LeaseChange::Remove {
            ip: alpha().ip,
            reason: RemoveReason::Released,
        }]);
        let first = next(&mut r.seen).await;
        let t0 = Instant::now();
        let again = next(&mut r.seen).await;
        assert!(
            t0.elapsed() >= Duration::from_millis(900),
            "retried after the backoff"
        );
        assert_eq!(shape(&first), shape(&again));
        let rev_add = next(&mut r.seen).await;
        assert_eq!(shape(&rev_add), (vec![], vec![12, 49, 12, 49]));
        assert_eq!(rev_add.authorities[2].ttl, 300);
        assert_eq!(
            shape(&next(&mut r.seen).await),
            (vec![49], vec![1, 49]),
            "fwd remove"
        );
        assert_eq!(
            shape(&next(&mut r.seen).await),
            (vec![12], vec![12, 49]),
            "rev remove"
        );

        let _ = r.stop_tx.send(true);
        r.handle.await.expect("task ends");
    }

    #[tokio::test]
    async fn another_nodes_changes_are_tracked_but_sent_by_that_node() {
        let mut r = running(vec![0, 0]).await;
        // t0: a grant another node committed (shared lease database): no update from here.
        r.tx.follow(&[LeaseChange::Upsert(alpha())]);
        let sent = tokio::time::timeout(Duration::from_millis(500), r.seen.recv()).await;
        assert!(sent.is_err(), "followed change sent: {sent:?}");
        // t1: this node ends that lease: the removal knows the name it followed.
        r.tx.send(&[LeaseChange::Remove {
            ip: alpha().ip,
            reason: RemoveReason::Expired,
        }]);
        assert_eq!(
            shape(&next(&mut r.seen).await),
            (vec![49], vec![1, 49]),
            "fwd remove"
        );
        let _ = r.stop_tx.send(true);
        r.handle.await.expect("task ends");
    }

    #[tokio::test]
    async fn unsent_updates_are_on_disk_at_shutdown() {
        // A primary that never answers.
        let mut r = running(vec![]).await;

        r.tx.send(&[LeaseChange::Upsert(alpha())]);
        let _ = next(&mut r.seen).await;
        // `/metrics` sees the job waiting (stored before the attempt began).
        assert_eq!(r.depth.load(std::sync::atomic::Ordering::Relaxed), 1);
        let _ = r.stop_tx.send(true);
        r.tx.send(&[LeaseChange::Remove {
            ip: alpha().ip,
            reason: RemoveReason::Expired,
        }]);
        drop(r.tx);
        r.handle.await.expect("task ends");

        let mut q =
            Queue::open(&r.cfg.start.ddns.queue_file, r.cfg.start.durability).expect("opens");
        let ops: Vec<Op> = std::iter::from_fn(|| {
            let op = q.front()?.op;
            q.pop().ok()?;
            Some(op)
        })
        .collect();
        assert_eq!(ops, vec![Op::Add, Op::Remove]);
    }
}
