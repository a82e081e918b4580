//! High availability with the PostgreSQL lease store (issue 18): two leasedns nodes on one LAN
//! share one lease set in a PostgreSQL server the test starts itself (`initdb` into a temporary
//! directory, `postgres` as user postgres in a namespace of the LAN, killed and removed on
//! drop; the host's own cluster is never used). Real clients (dhclient, udhcpc, dhcpcd) and
//! the load client; names checked with dig at both nodes; the `db` tools. In the first test the
//! database takes TLS connections only (`hostssl`, a certificate from `tests/make-certs.sh`)
//! and the nodes verify it (`tls_ca_file`). LAN indices 130 to 132.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::Signal;

use crate::clients::{Dhclient, Dhcpcd, Udhcpc};
use crate::crash::{Rng, load_until};
use crate::dhcp_load::{LoadClient, macs};
use crate::dig;
use crate::netns::{Host, Lan};
use crate::proc::{Daemon, poll, run_ok};
use crate::server::{Server, ServerOptions, leasedns_bin, render_config};

/// Lease time of the HA LANs: short, so clients renew and rebind within the test.
const LEASE_TIME: u32 = 20;
/// The database host's address on the LAN (`.3`) and the second node's (`.4`).
const DB_LAST: u8 = 3;
const NODE_B_LAST: u8 = 4;

/// A PostgreSQL server of the test's own, in the LAN's `db` namespace.
struct Postgres {
    host: Host,
    ip: Ipv4Addr,
    /// Data directory and socket directory, owned by user postgres; removed on drop.
    dir: tempfile::TempDir,
    daemon: Option<Daemon>,
    runs: u32,
    /// With TLS (only): the CA that signed the server's certificate.
    ca: Option<PathBuf>,
}

/// `/usr/lib/postgresql/<major>/bin` (the newest installed).
fn pg_bin() -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (netns-scripts/install-test-deps.sh test)")?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop().context("no /usr/lib/postgresql/*/bin/postgres")
}

impl Postgres {
    fn start(host: &Host, ip: Ipv4Addr, tls: bool) -> Result<Postgres> {
        let bin = pg_bin()?;
        let dir = tempfile::Builder::new().prefix("leasedns-pg-").tempdir()?;
        run_ok(
            std::process::Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()),
            Duration::from_secs(10),
        )?;
        run_ok(
            std::process::Command::new("setpriv")
                .args(["--reuid=postgres", "--regid=postgres", "--clear-groups"])
                .arg(bin.join("initdb"))
                .args(["-A", "trust", "-U", "leasedns", "-D"])
                .arg(dir.path().join("data")),
            Duration::from_secs(120),
        )?;
        // initdb's trust covers loopback only: the nodes connect from the LAN (with TLS only,
        // when asked).
        let hba = dir.path().join("data/pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba)?;
        let kind = if tls { "hostssl" } else { "host" };
        rules.push_str(&format!("{kind} all leasedns 10.0.0.0/8 trust\n"));
        std::fs::write(&hba, rules)?;
        if tls {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/make-certs.sh");
            let mut make = std::process::Command::new("sh");
            make.arg(script).arg(ip.to_string()).current_dir(dir.path());
            run_ok(&mut make, Duration::from_secs(60))?;
            run_ok(
                std::process::Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(dir.path().join("server.key")),
                Duration::from_secs(10),
            )?;
        }
        let mut pg = Postgres {
            host: host.clone(),
            ip,
            ca: tls.then(|| dir.path().join("ca.pem")),
            dir,
            daemon: None,
            runs: 0,
        };
        pg.launch()?;
        Ok(pg)
    }

    /// Start the server on the existing data, until it accepts connections.
    fn launch(&mut self) -> Result<()> {
        self.runs += 1;
        let mut cmd = self.host.exec("setpriv");
        cmd.args(["--reuid=postgres", "--regid=postgres", "--clear-groups"])
            .arg(pg_bin()?.join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-k")
            .arg(self.dir.path())
            .args(["-p", "5432", "-c", &format!("listen_addresses={}", self.ip)]);
        if self.ca.is_some() {
            let dir = self.dir.path().display();
            cmd.args([
                "-c",
                "ssl=on",
                "-c",
                &format!("ssl_cert_file={dir}/server.pem"),
            ])
            .args(["-c", &format!("ssl_key_file={dir}/server.key")]);
        }
        let log = self.dir.path().join(format!("postgres.{}.log", self.runs));
        let mut daemon = Daemon::spawn("postgres", &mut cmd, &log)?;
        let ready = daemon.wait_for_log(
            "database system is ready to accept connections",
            Duration::from_secs(60),
        );
        self.daemon = Some(daemon);
        ready
    }

    /// Fast shutdown (SIGINT: sessions are ended, everything committed stays).
    fn stop(&mut self) -> Result<()> {
        let mut daemon = self.daemon.take().context("postgres is not running")?;
        daemon.signal(Signal::SIGINT)?;
        poll(Duration::from_secs(60), || {
            Ok(daemon.check_running().is_err().then_some(()))
        })
    }

    fn url(&self) -> String {
        format!("postgresql://leasedns@{}:5432/postgres", self.ip)
    }

    /// The nodes' `[lease_database]`: the URL, and with TLS the CA to verify the server with.
    fn section(&self) -> String {
        let mut toml = format!("[lease_database]\nurl = \"{}\"\n", self.url());
        if let Some(ca) = &self.ca {
            toml.push_str(&format!("tls_ca_file = \"{}\"\n", ca.display()));
        }
        toml
    }

    /// `psql -At -c SQL`: one line per row, columns separated by `|`.
    fn query(&self, sql: &str) -> Result<Vec<String>> {
        let out = run_ok(
            self.host
                .exec("psql")
                .args([
                    "-h",
                    &self.ip.to_string(),
                    "-U",
                    "leasedns",
                    "-d",
                    "postgres",
                ])
                .args(["-At", "-c", sql]),
            Duration::from_secs(30),
        )?;
        Ok(out.stdout.lines().map(str::to_string).collect())
    }

    /// The database's leases: address to (hardware address hex, expiry).
    fn leases(&self) -> Result<HashMap<Ipv4Addr, (String, u64)>> {
        let rows = self.query("SELECT host(ip), encode(hwaddr, 'hex'), expires FROM leases")?;
        let mut out = HashMap::new();
        for row in rows {
            let f: Vec<&str> = row.split('|').collect();
            ensure!(f.len() == 3, "bad row {row:?}");
            out.insert(f[0].parse()?, (f[1].to_string(), f[2].parse()?));
        }
        Ok(out)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The daemon's own drop kills the postmaster (its children follow it); the LAN's drop
        // kills anything left in the namespace; the directory goes with `dir`.
        self.daemon.take();
    }
}

/// Two leasedns nodes (`.1` and `.4`) on `lan` using `pg`.
fn nodes(lan: &Lan, node_b: &Host, pg: &Postgres) -> Result<(Server, Server)> {
    let opts = ServerOptions {
        lease_time: LEASE_TIME,
        // Every renewal written: the renewals through the surviving node show in the database.
        global_toml: "renew_write_fraction = 0\n".into(),
        extra_toml: pg.section(),
        ..ServerOptions::default()
    };
    let text_a = render_config(lan, &opts, &lan.path("node-a.journal"));
    let b_listen = format!("\"{}:53\"", lan.addr(NODE_B_LAST));
    let text_b = render_config(lan, &opts, &lan.path("node-b.journal"))
        .replace(&format!("\"{}:53\"", lan.server_ip()), &b_listen);
    let a = Server::prepare_as(lan, &lan.server, "node-a", &text_a)?;
    let b = Server::prepare_as(lan, node_b, "node-b", &text_b)?;
    let init = run_ok(
        lan.server
            .exec(leasedns_bin())
            .args(["db", "init", "--config"])
            .arg(&a.config),
        Duration::from_secs(30),
    )?;
    ensure!(init.stdout.contains("schema created"), "{}", init.all());
    Ok((a, b))
}

/// Until `name.lan` resolves to `ip` at `server` (the other node's change travels through
/// the database's change feed).
fn resolves(lan: &Lan, server: Ipv4Addr, name: &str, ip: Ipv4Addr) -> Result<()> {
    let fqdn = format!("{name}.lan");
    poll(Duration::from_secs(15), || {
        let got = dig::short(&lan.probe, server, &fqdn, "A")?;
        Ok((got == vec![ip.to_string()]).then_some(()))
    })
    .with_context(|| format!("{fqdn} does not resolve to {ip} at {server}"))
}

#[test]
fn two_nodes_share_names_survive_a_node_kill_and_database_outages() -> Result<()> {
    let mut lan = Lan::new("ha", 130, 3)?;
    let node_b = lan.add_host("srv2", NODE_B_LAST)?;
    let db_host = lan.add_host("db", DB_LAST)?;
    let mut pg = Postgres::start(&db_host, lan.addr(DB_LAST), true)?;
    let (mut a, mut b) = nodes(&lan, &node_b, &pg)?;
    a.launch()?;
    b.launch()?;
    // Both nodes reach the database over TLS with its certificate verified.
    for node in [&a, &b] {
        ensure!(
            node.log().contains("TLS, server certificate verified"),
            "{}",
            node.log()
        );
    }
    let sql = "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
               WHERE application_name = 'leasedns' AND ssl";
    let encrypted = pg.query(sql)?;
    ensure!(
        encrypted.first().and_then(|n| n.parse::<u32>().ok()) >= Some(2),
        "TLS connections of the nodes: {encrypted:?}"
    );
    let (ip_a, ip_b) = (lan.server_ip(), lan.addr(NODE_B_LAST));
    // t0: three real clients; every name resolves at both nodes, whichever granted it.
    let alpha = Dhclient::new(&lan, 0, "alpha")?;
    let mut bravo = Udhcpc::new(&lan, 1, "bravo")?;
    let mut charlie = Dhcpcd::for_host(&lan, &lan.clients[2].clone(), "charlie", "")?;
    let named = [
        ("alpha", alpha.obtain()?),
        ("bravo", bravo.obtain()?),
        ("charlie", charlie.obtain()?),
    ];
    for (name, ip) in named {
        resolves(&lan, ip_a, name, ip).with_context(|| a.log())?;
        resolves(&lan, ip_b, name, ip).with_context(|| b.log())?;
    }
    // t1: kill -9 node A. The clients renew or rebind through B: after two lease times their
    // leases are still in the database, renewed since the kill, and their names resolve at B.
    a.kill()?;
    let killed = now();
    std::thread::sleep(Duration::from_secs(u64::from(LEASE_TIME) * 2 + 5));
    let held = pg.leases()?;
    for (name, ip) in named {
        let (_, expires) = held
            .get(&ip)
            .with_context(|| format!("{name}'s lease {ip} is gone; node B:\n{}", b.log()))?;
        ensure!(
            *expires > killed + u64::from(LEASE_TIME),
            "{name}'s lease {ip} was not renewed after node A died (expires {expires}, killed {killed})"
        );
        resolves(&lan, ip_b, name, ip).with_context(|| b.log())?;
    }
    // t2: A starts again and catches up from the database.
    a.launch()?;
    for (name, ip) in named {
        resolves(&lan, ip_a, name, ip).with_context(|| a.log())?;
    }
    // t3: a PostgreSQL restart loses nothing ACKed, and the nodes reconnect by themselves.
    let before = pg.leases()?;
    pg.stop()?;
    pg.launch()?;
    let after = pg.leases()?;
    // The clients keep renewing meanwhile (between the read and the stop): the same client on
    // the same address, expiring no earlier, is what "nothing lost" means.
    for (ip, (hw, expires)) in &before {
        ensure!(
            after
                .get(ip)
                .is_some_and(|(now_hw, now_expires)| now_hw == hw && now_expires >= expires),
            "{ip}: ({hw}, {expires}) lost in the restart: now {:?}",
            after.get(ip)
        );
    }
    let mut load = LoadClient::new(&lan.probe, macs(130, 2))?;
    poll(Duration::from_secs(30), || Ok(load.step(0)?.then_some(())))
        .with_context(|| format!("no grant after the database restart; A:\n{}", a.log()))?;
    // t4: without the database no node grants anything new, DNS keeps answering...
    pg.stop()?;
    for _ in 0..3 {
        ensure!(!load.step(1)?, "a lease was granted without the database");
    }
    for (name, ip) in named {
        resolves(&lan, ip_a, name, ip)?;
        resolves(&lan, ip_b, name, ip)?;
    }
    // ...and once it is back they grant again, without a restart.
    pg.launch()?;
    poll(Duration::from_secs(30), || Ok(load.step(1)?.then_some(())))
        .with_context(|| format!("no grant after the database came back; A:\n{}", a.log()))?;
    let granted = load.acked[&load.macs[1]].ip;
    ensure!(
        pg.leases()?.contains_key(&granted),
        "{granted} not in the database"
    );
    a.check_running()?;
    b.check_running()?;
    // Whichever node met the outage said so once, and said when the database was back.
    let logs = format!("{}{}", a.log(), b.log());
    ensure!(
        logs.contains("lease database write failed, not granting leases")
            && logs.contains("reachable again"),
        "node logs:\n{logs}"
    );
    bravo.stop()?;
    charlie.stop()?;
    alpha.stop()?;
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Load rounds with one node killed (-9) in each.
const ROUNDS: u64 = 20;

#[test]
fn kill_9_rounds_under_load_grant_no_address_twice_and_lose_no_ack() -> Result<()> {
    let started = Instant::now();
    let mut lan = Lan::new("hb", 131, 0)?;
    let node_b = lan.add_host("srv2", NODE_B_LAST)?;
    let db_host = lan.add_host("db", DB_LAST)?;
    let pg = Postgres::start(&db_host, lan.addr(DB_LAST), false)?;
    let (a, b) = nodes(&lan, &node_b, &pg)?;
    let mut servers = [a, b];
    for s in &mut servers {
        s.launch()?;
    }
    let mut load = LoadClient::new(&lan.probe, macs(131, 40))?;
    // Both nodes answer every DISCOVER; one may offer what the other just granted (the
    // database refuses the REQUEST), or NAK a renewal in the moment before it follows the
    // other's change: only a conflicting ACK is a violation (NAKs are counted and printed).
    load.offers_may_conflict = true;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..ROUNDS {
        let victim = (rng.next() % 2) as usize;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, seed) = (stop.clone(), rng.next());
        let thread = std::thread::spawn(move || load_until(load, flag, seed));
        // perfdhcp beside it: 200 more clients doing DORA against both nodes (broadcast).
        let mut perf = lan.probe.exec("perfdhcp");
        perf.args([
            "-4",
            "-l",
            crate::netns::IFACE,
            "-r",
            "50",
            "-R",
            "200",
            "-p",
            "2",
        ])
        .args(["-b", &format!("mac=02:1f:83:{:02x}:00:00", round)]);
        let perf = std::thread::spawn(move || crate::proc::run(&mut perf, Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(300 + rng.next() % 700));
        servers[victim].kill()?;
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        load = thread
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        ensure!(
            load.violations.is_empty(),
            "round {round}: {:?}",
            load.violations
        );
        let perf = perf
            .join()
            .map_err(|_| anyhow::anyhow!("perfdhcp thread panicked"))??;
        ensure!(
            perf.all().contains("REQUEST-ACK"),
            "round {round}: perfdhcp printed no statistics:\n{}",
            perf.all()
        );
        check_acks_in_database(&load, &pg).with_context(|| format!("round {round}"))?;
        // The database's own view: no client holds two addresses (one address holding two
        // clients is what its primary key rules out).
        let doubled = pg.query(
            "SELECT encode(client, 'hex') FROM leases GROUP BY client HAVING count(*) > 1",
        )?;
        ensure!(
            doubled.is_empty(),
            "round {round}: clients with two leases: {doubled:?}"
        );
        servers[victim].launch()?;
    }
    ensure!(load.acks > 50, "too little load: {} ACKs", load.acks);
    let rows = pg.query("SELECT count(*) FROM leases")?;
    // How often the database refused a node's change (a race lost), over every run's log.
    let withdrawn: usize = std::fs::read_dir(lan.path(""))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("node-"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|log| log.matches("grant withdrawn").count())
        .sum();
    println!(
        "ha load: {ROUNDS} rounds, a node killed in each, load client {} ACKs, {} NAKs ({} to a client holding a lease, from a node not yet following); {} leases in the database; {withdrawn} changes refused by the database; {:.0} s",
        load.acks,
        load.naks,
        load.stale_naks,
        rows.join(""),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every lease the load client holds (its time not yet up) is in the database, for the same
/// client, at least as long as ACKed.
fn check_acks_in_database(load: &LoadClient, pg: &Postgres) -> Result<()> {
    let held = pg.leases()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    for (mac, ack) in &load.acked {
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        let granted = ack.at + u64::from(ack.lease_time);
        // A lease whose time is up (the load client does not renew every client every round)
        // may have been reclaimed and granted to another client: that is no loss.
        if granted <= now + 1 {
            continue;
        }
        let Some((hw, expires)) = held.get(&ack.ip) else {
            bail!("{} ACKed to {hex} is not in the database", ack.ip);
        };
        ensure!(
            *hw == hex,
            "{} ACKed to {hex} until {granted} (now {now}) is held by {hw}",
            ack.ip
        );
        ensure!(
            expires + 2 >= granted,
            "{} expires at {expires}, ACKed until {granted}",
            ack.ip
        );
    }
    Ok(())
}

/// Runs `leasedns db ACTION --config CONFIG` on `host`; its output, and whether it succeeded.
fn db_tool(host: &Host, action: &str, config: &std::path::Path) -> Result<(bool, String)> {
    let out = crate::proc::run(
        host.exec(leasedns_bin())
            .args(["db", action, "--config"])
            .arg(config),
        Duration::from_secs(60),
    )?;
    Ok((out.status.success(), out.all()))
}

#[test]
fn db_tools_create_the_schema_and_move_leases_between_journal_and_database() -> Result<()> {
    use leasedns::clock::{Clock, SystemClock};
    use leasedns::config::Durability;
    use leasedns::lease::journal::Journal;
    use leasedns::lease::{ClientId, HwAddr, Lease, LeaseChange, LeaseState};
    let mut lan = Lan::new("hc", 132, 0)?;
    let db_host = lan.add_host("db", DB_LAST)?;
    let pg = Postgres::start(&db_host, lan.addr(DB_LAST), false)?;
    let now = SystemClock.now();
    let leases: Vec<Lease> = (0..3u8)
        .map(|i| {
            let hw = HwAddr::ethernet([2, 0x1e, 132, 0, 0, i]);
            Lease {
                ip: lan.addr(100 + i),
                client: ClientId::from_hw(&hw),
                hwaddr: hw,
                hostname: Some(format!("host{i}").as_str().into()),
                expires: now.plus(600),
                state: LeaseState::Bound,
            }
        })
        .collect();
    let journal = lan.path("one.journal");
    let (mut j, _) = Journal::open(&journal, Durability::Fsync, now)?;
    j.commit(
        &leases
            .iter()
            .cloned()
            .map(LeaseChange::Upsert)
            .collect::<Vec<_>>(),
    )?;
    drop(j);
    let config = |file: &std::path::Path| -> Result<PathBuf> {
        let opts = ServerOptions {
            extra_toml: pg.section(),
            ..ServerOptions::default()
        };
        let path = file.with_extension("toml");
        std::fs::write(&path, render_config(&lan, &opts, file))?;
        Ok(path)
    };
    let one = config(&journal)?;
    // t0: import before init is refused with what to do; init, then a second init refused.
    let (ok, out) = db_tool(&lan.server, "import", &one)?;
    ensure!(!ok && out.contains("db init"), "{out}");
    let (ok, out) = db_tool(&lan.server, "init", &one)?;
    ensure!(ok && out.contains("schema created (version 1)"), "{out}");
    let (ok, out) = db_tool(&lan.server, "init", &one)?;
    ensure!(!ok && out.contains("db migrate"), "{out}");
    let (ok, out) = db_tool(&lan.server, "migrate", &one)?;
    ensure!(ok && out.contains("version 1 -> 1"), "{out}");
    // t1: the journal's leases go into the database.
    let (ok, out) = db_tool(&lan.server, "import", &one)?;
    ensure!(ok && out.contains("imported 3 lease(s)"), "{out}");
    let held = pg.leases()?;
    ensure!(held.len() == 3, "{held:?}");
    // t2: and back out into a new journal, lease for lease; never over a journal with leases.
    let two = lan.path("two.journal");
    let two_cfg = config(&two)?;
    let (ok, out) = db_tool(&lan.server, "export", &two_cfg)?;
    ensure!(ok && out.contains("exported 3 lease(s)"), "{out}");
    let (_, back) = Journal::open(&two, Durability::Fsync, now)?;
    ensure!(back == leases, "{back:?}\n{leases:?}");
    let (ok, out) = db_tool(&lan.server, "export", &two_cfg)?;
    ensure!(
        !ok && out.contains("holds 3 live lease(s) already"),
        "{out}"
    );
    Ok(())
}
