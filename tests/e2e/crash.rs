//! Never lose a lease, end to end: kill -9 under continuous load (every ACK a client saw must be in
//! the journal, no address granted twice), a full disk (no grant that is not durable, DNS keeps
//! answering, recovery without a restart), dnsmasq lease import, and restart figures for 100,000
//! leases. Uses LAN indexes 40 to 43.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use leasedns::clock::{Clock, SystemClock};
use leasedns::config::{Config, Durability};
use leasedns::lease::journal::Journal;
use leasedns::lease::{HwAddr, Lease, LeaseState};

use crate::dhcp_load::{LoadClient, Mac, macs};
use crate::dig;
use crate::netns::Lan;
use crate::perf::write_leases;
use crate::proc::{poll, run_ok};
use crate::server::{Server, ServerOptions, leasedns_bin};

/// Kill rounds in the crash test.
const ROUNDS: u64 = 20;

/// A small deterministic generator (xorshift64), so a failing round can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The leases a restarted server would recover, read from a copy of the journal's files.
pub fn recovered(lease_file: &Path) -> Result<BTreeMap<Ipv4Addr, Lease>> {
    let copy = tempfile::tempdir()?;
    let dir = lease_file.parent().context("lease file has a directory")?;
    let name = lease_file
        .file_name()
        .context("lease file name")?
        .to_string_lossy()
        .to_string();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().to_string();
        if file.starts_with(&name) {
            std::fs::copy(entry.path(), copy.path().join(&file))?;
        }
    }
    let now = SystemClock.now();
    let (_, leases) = Journal::open(&copy.path().join(&name), Durability::None, now)?;
    Ok(leases.into_iter().map(|l| (l.ip, l)).collect())
}

/// Every ACK the load client holds is in `leases`, for the same client, for at least as long.
fn check_acks_durable(load: &LoadClient, leases: &BTreeMap<Ipv4Addr, Lease>) -> Result<()> {
    for (mac, ack) in &load.acked {
        let lease = leases
            .get(&ack.ip)
            .with_context(|| format!("ACKed {} to {mac:02x?} but the journal lost it", ack.ip))?;
        ensure!(
            lease.hwaddr == HwAddr::ethernet(*mac) && lease.state == LeaseState::Bound,
            "{} ACKed to {mac:02x?} is recovered as {lease:?}",
            ack.ip
        );
        let granted = ack.at + u64::from(ack.lease_time);
        ensure!(
            lease.expires.0 + 2 >= granted,
            "{} recovered to expire at {}, ACKed until about {granted}",
            ack.ip,
            lease.expires
        );
    }
    Ok(())
}

/// Runs the load on its own thread until `stop`; returns the client.
pub fn load_until(mut load: LoadClient, stop: Arc<AtomicBool>, seed: u64) -> Result<LoadClient> {
    let mut rng = Rng(seed | 1);
    while !stop.load(Ordering::Relaxed) {
        let i = (rng.next() % load.macs.len() as u64) as usize;
        if rng.next().is_multiple_of(10) {
            load.release(i)?;
        } else {
            load.step(i)?;
        }
    }
    load.drain();
    Ok(load)
}

#[test]
fn kill_9_under_load_loses_no_acked_lease_and_grants_no_address_twice() -> Result<()> {
    let started = Instant::now();
    let lan = Lan::new("ck", 40, 0)?;
    let opts = ServerOptions {
        durability: "fsync",
        // Every renewal written: the most journal traffic per ACK.
        global_toml: "renew_write_fraction = 0\n".into(),
        ..ServerOptions::default()
    };
    let mut server = Server::prepare(&lan, &opts)?;
    let mut load = LoadClient::new(&lan.probe, macs(40, 70))?;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut loaded = Duration::ZERO;
    for round in 0..ROUNDS {
        server.launch()?;
        let stop = Arc::new(AtomicBool::new(false));
        let seed = rng.next();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || load_until(load, flag, seed));
        let kill_after = Duration::from_millis(150 + rng.next() % 600);
        std::thread::sleep(kill_after);
        server.kill()?;
        loaded += kill_after;
        stop.store(true, Ordering::Relaxed);
        load = thread
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        ensure!(
            load.violations.is_empty(),
            "round {round}: {:?}; log:\n{}",
            load.violations,
            server.log()
        );
        let leases = recovered(&server.lease_file)?;
        check_acks_durable(&load, &leases)
            .with_context(|| format!("round {round}, killed after {kill_after:?}"))?;
    }
    ensure!(load.acks > 100, "too little load: {} ACKs", load.acks);
    // The kills must also have met journals that had rotated (background snapshots).
    let compacting_runs = (1..=ROUNDS)
        .filter(|n| {
            std::fs::read_to_string(lan.path(&format!("leasedns.{n}.log")))
                .is_ok_and(|log| log.contains("lease journal compacted"))
        })
        .count();
    ensure!(compacting_runs > 0, "no run compacted its journal");
    // A last start: every client holding a lease gets it back.
    server.launch()?;
    let holders: Vec<usize> = (0..load.macs.len())
        .filter(|i| load.acked.contains_key(&load.macs[*i]))
        .collect();
    for i in holders {
        let before = load.acked[&load.macs[i]].ip;
        ensure!(
            load.step(i)?,
            "client {i} got no ACK for {before} after the restarts"
        );
        ensure!(load.acked[&load.macs[i]].ip == before, "client {i} moved");
    }
    ensure!(load.violations.is_empty(), "{:?}", load.violations);
    println!(
        "crash test: {ROUNDS} kill -9 rounds ({compacting_runs} with a compaction), {} ACKs ({} NAKs) in {:.1} s of load ({:.0} ACK/s with fsync, renewals written), {:.1} s in all",
        load.acks,
        load.naks,
        loaded.as_secs_f64(),
        load.acks as f64 / loaded.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    server.stop()?;
    Ok(())
}

/// A tiny tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Tmpfs> {
        std::fs::create_dir_all(path)?;
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(path),
            Duration::from_secs(10),
        )?;
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Fill every free byte with a file; returns its path.
    fn fill(&self) -> Result<PathBuf> {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler)?;
        let chunk = [0u8; 512];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&chunk[..1]).is_ok() {}
        Ok(filler)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

#[test]
fn full_disk_stops_grants_keeps_dns_and_recovers_by_itself() -> Result<()> {
    let lan = Lan::new("fd", 41, 0)?;
    let disk = Tmpfs::mount(&lan.path("disk"), "64k")?;
    let opts = ServerOptions {
        durability: "batch",
        global_toml: "batch_max_delay_ms = 20\n".into(),
        lease_file: Some(disk.path.join("leases.journal")),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let srv = lan.server_ip();
    let mut load = LoadClient::new(&lan.probe, macs(41, 95))?;
    ensure!(
        load.step(0)?,
        "first client got no lease; log:\n{}",
        server.log()
    );
    let first = load.acked[&load.macs[0]].ip;
    dig::assert_resolves(&lan.probe, srv, "c0.lan", first)?;

    let filler = disk.fill()?;
    // The journal's last page still has room for some records: go on until a grant fails.
    let refused = (1..load.macs.len())
        .find(|&i| !load.step(i).unwrap_or(false))
        .with_context(|| {
            format!(
                "every client got an ACK on a full disk; log:\n{}",
                server.log()
            )
        })?;
    ensure!(load.violations.is_empty(), "{:?}", load.violations);
    ensure!(
        !load.step(refused)?,
        "client {refused} got an ACK on a full disk"
    );
    // DNS answers, from what was granted before.
    dig::assert_resolves(&lan.probe, srv, "c0.lan", first)?;
    // Every ACK that did leave is on the (full) disk.
    check_acks_durable(&load, &recovered(&server.lease_file)?)?;

    std::fs::remove_file(&filler)?;
    let ip = poll(Duration::from_secs(8), || {
        load.step(refused)?;
        Ok(load.acked.get(&load.macs[refused]).map(|a| a.ip))
    })
    .with_context(|| {
        format!(
            "no recovery after the disk was freed; log:\n{}",
            server.log()
        )
    })?;
    ensure!(lan.in_pool(ip), "{ip}");
    dig::assert_resolves(&lan.probe, srv, &format!("c{refused}.lan"), ip)?;
    let log = server.log();
    ensure!(
        count(&log, "lease journal write failed") == 1,
        "the failure is logged once; log:\n{log}"
    );
    ensure!(
        count(&log, "lease journal writable again") == 1,
        "log:\n{log}"
    );
    ensure!(load.violations.is_empty(), "{:?}", load.violations);
    server.stop()?;
    check_acks_durable(&load, &recovered(&server.lease_file)?)?;
    println!(
        "full disk: client {refused} refused while full, granted {ip} after the disk was freed"
    );
    Ok(())
}

#[test]
fn dnsmasq_leases_imported_resolve_after_start() -> Result<()> {
    let lan = Lan::new("im", 42, 0)?;
    let mut server = Server::prepare(&lan, &ServerOptions::default())?;
    let expiry = SystemClock.now().0 + 3600;
    let [alpha, beta] = [lan.addr(120), lan.addr(121)];
    let beta_mac: Mac = [2, 0x1e, 42, 0, 0, 7];
    let file = lan.path("dnsmasq.leases");
    std::fs::write(
        &file,
        format!(
            "{expiry} 02:1e:2a:00:01:01 {alpha} Alpha 01:02:1e:2a:00:01:01\n\
             {expiry} 02:1e:2a:00:00:07 {beta} beta *\n\
             {expiry} 02:1e:2a:00:01:03 10.99.0.5 outside *\n\
             1 02:1e:2a:00:01:04 {} expired *\n\
             duid 00:01:00:01:2c:1f:2a:3b:02:00:00:00:00:01\n",
            lan.addr(122)
        ),
    )?;
    let out = run_ok(
        Command::new(leasedns_bin())
            .arg("import-dnsmasq-leases")
            .arg(&file)
            .arg("--config")
            .arg(&server.config),
        Duration::from_secs(10),
    )?;
    ensure!(out.stdout.contains("imported 2 lease(s)"), "{}", out.all());
    server.launch()?;
    let srv = lan.server_ip();
    dig::assert_resolves(&lan.probe, srv, "alpha.lan", alpha)?;
    dig::assert_resolves(&lan.probe, srv, "beta.lan", beta)?;
    ensure!(dig::a(&lan.probe, srv, "expired.lan")?.is_nxdomain());
    // The imported client asks again and keeps its address.
    let mut load = LoadClient::new(&lan.probe, vec![beta_mac])?;
    ensure!(load.step(0)?, "log:\n{}", server.log());
    ensure!(load.acked[&beta_mac].ip == beta, "{:?}", load.acked);
    server.stop()?;
    Ok(())
}

#[test]
fn restart_with_100k_leases_prints_figures() -> Result<()> {
    const N: u32 = 100_000;
    let lan = Lan::new("rf", 43, 0)?;
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
    let t = Instant::now();
    let statics = leasedns::dns::statics::StaticRecords::of(&cfg, Vec::new());
    let names = leasedns::daemon::names_for(&cfg, statics, &leases, now);
    let named = t.elapsed();
    let count = leases.len();
    let t = Instant::now();
    let engine = leasedns::dhcp::engine::Engine::new(cfg.clone(), leases, now);
    let built = t.elapsed();
    ensure!(count == N as usize, "recovered {count}");
    drop((journal, engine, names));

    let t = Instant::now();
    server.launch()?;
    let ready = t.elapsed();
    let srv = lan.server_ip();
    dig::assert_resolves(
        &lan.probe,
        srv,
        "h99999.lan",
        Ipv4Addr::new(10, 65, 134, 159),
    )?;
    println!(
        "restart with {N} leases: Journal::open {open:?}, names {named:?}, Engine::new {built:?}; \
         binary start to `leasedns ready` {ready:?}"
    );
    server.stop()?;
    Ok(())
}
