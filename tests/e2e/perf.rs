//! Restart time and memory with 100,000 leases (issue 7): time from process start to
//! `leasedns ready` on a journal of 100,000 named leases, and peak RSS (VmHWM) both after that
//! restart and after 100,000 leases were granted through the running server by a pipelined raw
//! relay client. Prints the figures; fails only well past the targets (the machine is shared).
//!
//! Run: `cargo test --release --test e2e perf:: -- --nocapture --test-threads 1`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Encodable};
use leasedns::clock::{Clock, SystemClock, UnixTime};
use leasedns::config::{Config, Durability};
use leasedns::lease::journal::Journal;
use leasedns::lease::{ClientId, HwAddr, Lease, LeaseChange, LeaseState};

use crate::dhcp_load::socket_in;
use crate::dig;
use crate::netns::{IFACE, Lan, ip};
use crate::server::{Server, ServerOptions};

const N: u32 = 100_000;
/// The time to `leasedns ready` is printed, never asserted: a busy machine decides it. The
/// restart target (under 1 s with 100,000 leases) is checked by `netns-scripts/bench.sh`, side
/// by side with the peers; this test checks what a restart must do (every lease back, its
/// name answered) and the memory it takes, which load does not change.
/// The 40 MB in release (the figure is about 30 MB: a 25% margin for a noisy day).
const HWM_LIMIT_KB: u64 = if cfg!(debug_assertions) {
    100 * 1024
} else {
    40_000
};

/// Seconds since midnight (UTC) of a time, or of a log line's RFC 3339 timestamp.
fn day_secs(t: SystemTime) -> f64 {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    secs % 86_400.0
}

fn log_day_secs(line: &str) -> Option<f64> {
    // 2026-11-22T01:17:38.976996Z
    let time = line.get(11..26)?;
    let h: f64 = time.get(0..2)?.parse().ok()?;
    let m: f64 = time.get(3..5)?.parse().ok()?;
    let s: f64 = time.get(6..)?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Launch the server and return the time from spawning it to the timestamp of its
/// `leasedns ready` line (the harness polls the log, so its own wait is coarser).
fn launch_timed(server: &mut Server) -> Result<Duration> {
    let start = day_secs(SystemTime::now());
    server.launch()?;
    let log = server.log();
    let ready = log
        .lines()
        .find(|l| l.contains("leasedns ready"))
        .and_then(log_day_secs)
        .context("no timestamp on the ready line")?;
    let secs = (ready - start).rem_euclid(86_400.0);
    Ok(Duration::from_secs_f64(secs))
}

/// CPU time the process's live threads have run (from /proc/<pid>/task/*/schedstat): less
/// sensitive to other load on the machine than wall-clock time.
fn cpu_time(pid: u32) -> Result<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat"))?;
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .context("bad schedstat")?;
    }
    Ok(Duration::from_nanos(ns))
}

/// Peak and current resident set of a process, in kB, from /proc/<pid>/status.
fn memory_kb(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// `n` named leases on 10.64.0.0/15 in a snapshot plus a short journal (also used by the
/// crash tests' restart figures).
pub fn write_leases(lease_file: &Path, n: u32, now: UnixTime) -> Result<()> {
    let (mut journal, _) = Journal::open(lease_file, Durability::None, now)?;
    let base = u32::from(Ipv4Addr::new(10, 64, 0, 0));
    let changes: Vec<LeaseChange> = (0..n)
        .map(|i| {
            let b = i.to_be_bytes();
            let hwaddr = HwAddr::ethernet([2, 0x1f, b[0], b[1], b[2], b[3]]);
            LeaseChange::Upsert(Lease {
                ip: Ipv4Addr::from(base + i),
                client: ClientId::from_hw(&hwaddr),
                hwaddr,
                hostname: Some(format!("h{i}").into()),
                expires: now.plus(3600),
                state: LeaseState::Bound,
            })
        })
        .collect();
    for chunk in changes.chunks(1000) {
        journal.commit(chunk)?;
    }
    // The last 10% stay in the journal, the rest in the snapshot.
    journal.compact_now();
    ensure!(
        journal.wait_compacted(Duration::from_secs(30)),
        "snapshot too slow"
    );
    Ok(())
}

#[test]
fn restart_with_100k_leases_time_to_ready_and_peak_memory() -> Result<()> {
    let lan = Lan::new("pr", 46, 0)?;
    let opts = ServerOptions {
        durability: "fsync",
        ..ServerOptions::default()
    };
    let mut server = Server::prepare(&lan, &opts)?;
    let now = SystemClock.now();
    write_leases(&server.lease_file, N, now)?;
    let cfg = Arc::new(Config::load(&server.config)?);
    let t = Instant::now();
    let (journal, leases) = Journal::open(&cfg.start.lease_file, cfg.start.durability, now)?;
    let open = t.elapsed();
    ensure!(leases.len() == N as usize, "recovered {}", leases.len());
    drop((journal, leases));

    let ready = launch_timed(&mut server)?;
    let pid = server.pid().context("no pid")?;
    let cpu = cpu_time(pid)?;
    let (hwm, rss) = memory_kb(pid)?;
    dig::assert_resolves(
        &lan.probe,
        lan.server_ip(),
        "h99999.lan",
        Ipv4Addr::new(10, 65, 134, 159),
    )?;
    println!(
        "restart with {N} leases: Journal::open in-process {open:?}; binary start to \
         `leasedns ready` {ready:?} (CPU {cpu:?}); VmHWM {hwm} kB, VmRSS {rss} kB"
    );
    ensure!(hwm < HWM_LIMIT_KB, "VmHWM {hwm} kB");
    server.stop()?;
    Ok(())
}

/// The relay agent's address (on the probe) and the relayed network it serves.
const GIADDR: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const RELAYED: &str = "10.200.0.0/15";

#[test]
fn granting_100k_leases_through_the_server_peak_memory() -> Result<()> {
    let lan = Lan::new("pg", 47, 0)?;
    ip(&[
        "-n",
        &lan.probe.ns,
        "addr",
        "add",
        &format!("{GIADDR}/15"),
        "dev",
        IFACE,
    ])?;
    let probe_ip = lan.addr(2).to_string();
    ip(&[
        "-n",
        &lan.server.ns,
        "route",
        "add",
        RELAYED,
        "via",
        &probe_ip,
    ])?;
    let opts = ServerOptions {
        durability: "fsync",
        lease_time: 3600,
        extra_toml: format!(
            "\n[[subnet]]\nnetwork = \"{RELAYED}\"\npool_start = \"10.200.0.10\"\n\
             pool_end = \"10.201.255.250\"\nlease_time = 3600\nauthoritative = true\n"
        ),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let pid = server.pid().context("no pid")?;
    let sock = socket_in(&lan.probe.ns, (GIADDR, 67).into())?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    // A window of replies arrives at once: room for all of them.
    socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20)?;
    let mut relay = Relay {
        sock,
        server: (lan.server_ip(), 67),
    };
    let t = Instant::now();
    let granted = relay.grant_all(N)?;
    let acked = granted.len() as u32;
    let took = t.elapsed();
    let (hwm, rss) = memory_kb(pid)?;
    let cpu = cpu_time(pid)?;
    println!(
        "granted {acked} of {N} leases through the server in {took:?} (server CPU {cpu:?}); \
         VmHWM {hwm} kB, VmRSS {rss} kB"
    );
    ensure!(
        acked >= N * 99 / 100,
        "only {acked} ACKs; log tail:\n{}",
        tail(&server.log())
    );
    dig::assert_resolves(
        &lan.probe,
        lan.server_ip(),
        "g99999.lan",
        *granted
            .get(&(N - 1))
            .context("the last client got no ACK")?,
    )?;
    ensure!(hwm < HWM_LIMIT_KB, "VmHWM {hwm} kB");

    // The same leases, recovered from the journal the server wrote.
    server.stop()?;
    let ready = launch_timed(&mut server)?;
    let pid = server.pid().context("no pid")?;
    let (hwm, rss) = memory_kb(pid)?;
    println!(
        "restart with those leases: `leasedns ready` after {ready:?}; VmHWM {hwm} kB, VmRSS {rss} kB"
    );
    ensure!(hwm < HWM_LIMIT_KB, "VmHWM {hwm} kB after the restart");
    server.stop()?;
    Ok(())
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A relay agent speaking for many clients at once: a window of DISCOVERs, then REQUESTs for
/// every OFFER, retrying the clients that got no answer.
struct Relay {
    sock: UdpSocket,
    server: (Ipv4Addr, u16),
}

/// How many clients are in flight at once.
const WINDOW: u32 = 128;

impl Relay {
    /// DORA for clients 0..n; returns the address each client was ACKed.
    fn grant_all(&mut self, n: u32) -> Result<HashMap<u32, Ipv4Addr>> {
        let mut acked = HashMap::new();
        let mut start = 0;
        while start < n {
            let end = (start + WINDOW).min(n);
            let mut todo: Vec<u32> = (start..end).collect();
            // A loaded machine only needs more rounds: retry until every client has its ACK
            // (bounded, so that a server that stopped answering still fails the test).
            for _attempt in 0..10 {
                if todo.is_empty() {
                    break;
                }
                let offers = self.round(&todo, MessageType::Discover, &HashMap::new())?;
                let acks = self.round(&todo, MessageType::Request, &offers)?;
                todo.retain(|i| !acks.contains_key(i));
                acked.extend(acks.into_iter().map(|(i, (ip, _))| (i, ip)));
            }
            start = end;
        }
        Ok(acked)
    }

    /// Send one message per client (a REQUEST only where an offer is known) and collect the
    /// replies of the expected type by client, until all came or 2 s passed.
    fn round(
        &mut self,
        clients: &[u32],
        kind: MessageType,
        offers: &HashMap<u32, (Ipv4Addr, Ipv4Addr)>,
    ) -> Result<HashMap<u32, (Ipv4Addr, Ipv4Addr)>> {
        let mut sent = 0;
        for &i in clients {
            let offer = offers.get(&i).copied();
            if kind == MessageType::Request && offer.is_none() {
                continue;
            }
            let msg = message(i, kind, offer);
            self.sock.send_to(&msg.to_vec()?, self.server)?;
            sent += 1;
        }
        let want = match kind {
            MessageType::Discover => MessageType::Offer,
            _ => MessageType::Ack,
        };
        let mut got = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut buf = [0u8; 1500];
        while got.len() < sent && Instant::now() < deadline {
            let Ok(len) = self.sock.recv(&mut buf) else {
                continue;
            };
            let Ok(msg) = Message::from_bytes(&buf[..len]) else {
                continue;
            };
            if msg.opts().msg_type() != Some(want) || !clients.contains(&msg.xid()) {
                continue;
            }
            let sid = match msg.opts().get(OptionCode::ServerIdentifier) {
                Some(DhcpOption::ServerIdentifier(ip)) => *ip,
                _ => Ipv4Addr::UNSPECIFIED,
            };
            got.insert(msg.xid(), (msg.yiaddr(), sid));
        }
        Ok(got)
    }
}

/// A relayed message of client `i` (MAC 02:1f:<i>, host name `g<i>`, xid `i`).
fn message(i: u32, kind: MessageType, offer: Option<(Ipv4Addr, Ipv4Addr)>) -> Message {
    let b = i.to_be_bytes();
    let mac = [2, 0x1f, b[0], b[1], b[2], b[3]];
    let un = Ipv4Addr::UNSPECIFIED;
    let mut msg = Message::new_with_id(i, un, un, un, GIADDR, &mac);
    msg.set_hops(1);
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::Hostname(format!("g{i}")));
    if let Some((ip, sid)) = offer {
        opts.insert(DhcpOption::RequestedIpAddress(ip));
        opts.insert(DhcpOption::ServerIdentifier(sid));
    }
    msg
}
