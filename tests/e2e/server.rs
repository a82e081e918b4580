//! The servers under test, run in the LAN's server namespace: leasedns (config written from
//! `ServerOptions`, started until `leasedns ready`, stopped with SIGTERM, restarted on the same
//! lease file) and dnsmasq as the stand-in for the harness self-test.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::{Host, IFACE, Lan};
use crate::proc::Daemon;
use std::net::Ipv4Addr;

/// How long a server may take to become ready.
const READY_WAIT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The path of the leasedns binary built for these tests.
pub fn leasedns_bin() -> &'static str {
    env!("CARGO_BIN_EXE_leasedns")
}

/// A reservation: `[[host]]` in the config.
#[derive(Clone, Debug)]
pub struct Reservation {
    pub mac: String,
    pub ip: std::net::Ipv4Addr,
    pub name: String,
}

/// What varies between the leasedns tests.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub domain: String,
    /// `"fsync"` or `"none"`.
    pub durability: &'static str,
    pub lease_time: u32,
    pub hosts: Vec<Reservation>,
    /// TOML lines added to the `[dns]` table (e.g. `upstreams = [...]`).
    pub dns_extra: String,
    /// Raw TOML lines for the top level (before `[dns]`), e.g. `ping_check = true`.
    pub global_toml: String,
    /// Raw TOML lines appended to the LAN's own `[[subnet]]` table (keys first, then any
    /// `[[subnet.option]]` tables), e.g. `ntp_servers = ["10.50.0.1"]`.
    pub subnet_toml: String,
    /// Raw TOML appended at the end: more `[[subnet]]`, `[[class]]` or `[[host]]` tables.
    pub extra_toml: String,
    /// Where the journal goes (default: `leases.journal` in the LAN's scratch directory).
    pub lease_file: Option<PathBuf>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            domain: "lan".into(),
            durability: "none",
            lease_time: 600,
            hosts: Vec::new(),
            dns_extra: String::new(),
            global_toml: String::new(),
            subnet_toml: String::new(),
            extra_toml: String::new(),
            lease_file: None,
        }
    }
}

/// leasedns running in the server namespace.
pub struct Server {
    pub host: Host,
    pub config: PathBuf,
    pub lease_file: PathBuf,
    dir: PathBuf,
    daemon: Option<Daemon>,
    runs: u32,
    /// Log files are `<tag>.<run>.log` ("leasedns" unless `prepare_as` named another).
    tag: String,
}

impl Server {
    /// Writes the config for `lan` and starts leasedns; returns once it logged `leasedns ready`.
    pub fn start(lan: &Lan, opts: &ServerOptions) -> Result<Server> {
        let mut server = Server::prepare(lan, opts)?;
        server.spawn()?;
        Ok(server)
    }

    /// Writes the config for `lan` without starting leasedns (`launch` starts it).
    pub fn prepare(lan: &Lan, opts: &ServerOptions) -> Result<Server> {
        let lease_file = opts
            .lease_file
            .clone()
            .unwrap_or_else(|| lan.path("leases.journal"));
        let config = lan.path("leasedns.toml");
        std::fs::write(&config, render_config(lan, opts, &lease_file))?;
        // A second server on the same LAN must not read the first one's log as its own.
        let earlier = (1..)
            .take_while(|n| lan.path(&format!("leasedns.{n}.log")).exists())
            .count();
        Ok(Server {
            host: lan.server.clone(),
            config,
            lease_file,
            dir: lan.path(""),
            daemon: None,
            runs: u32::try_from(earlier).unwrap_or(u32::MAX),
            tag: "leasedns".into(),
        })
    }

    /// Writes `config_text` as `<tag>.toml` without starting leasedns; it will run on `host`
    /// (another server on the same LAN) and log to `<tag>.<run>.log`.
    pub fn prepare_as(lan: &Lan, host: &Host, tag: &str, config_text: &str) -> Result<Server> {
        let config = lan.path(&format!("{tag}.toml"));
        std::fs::write(&config, config_text)?;
        Ok(Server {
            host: host.clone(),
            config,
            lease_file: lan.path(&format!("{tag}.journal")),
            dir: lan.path(""),
            daemon: None,
            runs: 0,
            tag: tag.to_string(),
        })
    }

    /// Starts leasedns (again) on the same config and lease file, until `leasedns ready`.
    pub fn launch(&mut self) -> Result<()> {
        self.spawn()
    }

    /// SIGKILL: the crash the journal must survive. Waits for the process to be gone.
    pub fn kill(&mut self) -> Result<()> {
        match self.daemon.as_mut() {
            Some(daemon) => daemon.kill().map(|_| ()),
            None => bail!("leasedns is not running"),
        }
    }

    fn spawn(&mut self) -> Result<()> {
        self.runs += 1;
        let log = self.dir.join(format!("{}.{}.log", self.tag, self.runs));
        let mut cmd = self.host.exec(leasedns_bin());
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "debug")
            .env("LEASEDNS_LOG", "info,leasedns=debug");
        let mut daemon = Daemon::spawn("leasedns", &mut cmd, &log)?;
        let ready = daemon.wait_for_log("leasedns ready", READY_WAIT);
        self.daemon = Some(daemon);
        ready
    }

    /// SIGTERM; returns the exit status (the contract: 0).
    pub fn stop(&mut self) -> Result<ExitStatus> {
        match self.daemon.as_mut() {
            Some(daemon) => daemon.terminate(STOP_WAIT),
            None => bail!("leasedns is not running"),
        }
    }

    /// Stops (requiring a clean exit) and starts again with the same config and lease file.
    pub fn restart(&mut self) -> Result<()> {
        let status = self.stop()?;
        if !status.success() {
            bail!(
                "leasedns exited with {status} on SIGTERM; log:\n{}",
                self.log()
            );
        }
        self.spawn()
    }

    /// Writes `config_text` over the config file, sends SIGHUP and waits until the log shows
    /// the outcome: `Ok(true)` reloaded, `Ok(false)` rejected (the old config stays).
    pub fn reload(&mut self, config_text: &str) -> Result<bool> {
        std::fs::write(&self.config, config_text)?;
        let daemon = self.daemon.as_mut().context("leasedns is not running")?;
        let (ok_before, bad_before) = count_reloads(&daemon.log());
        daemon.signal(nix::sys::signal::Signal::SIGHUP)?;
        crate::proc::poll(Duration::from_secs(5), || {
            let (ok, bad) = count_reloads(&daemon.log());
            Ok((ok > ok_before || bad > bad_before).then_some(ok > ok_before))
        })
        .with_context(|| format!("no reload outcome in the log:\n{}", daemon.log()))
    }

    /// Fails (with the log) if leasedns has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.daemon.as_mut() {
            Some(daemon) => daemon.check_running(),
            None => bail!("leasedns is not running"),
        }
    }

    /// The process id of the running leasedns (`ip netns exec` execs it in place).
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().and_then(Daemon::pid)
    }

    /// The log of the current (or last) run.
    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }
}

/// Runs `step`; on failure, adds the server's log to the error.
pub fn logged<T>(server: &Server, step: Result<T>) -> Result<T> {
    step.with_context(|| format!("leasedns log:\n{}", server.log()))
}

/// SIGTERM must end the daemon cleanly (exit 0).
pub fn stop_cleanly(server: &mut Server) -> Result<()> {
    let status = server.stop()?;
    if !status.success() {
        bail!(
            "leasedns exited with {status} on SIGTERM; log:\n{}",
            server.log()
        );
    }
    Ok(())
}

/// How many reloads the log shows as done and as rejected.
fn count_reloads(log: &str) -> (usize, usize) {
    (
        log.matches("reloaded ").count(),
        log.matches("reload rejected").count(),
    )
}

/// The test's top-level lines, with `user = "root"` unless it names a user: on a machine where
/// the `leasedns` user exists (the .deb installed), leasedns would otherwise drop to it and
/// find its lease file in the root-only scratch directory (`privdrop` e2e tests the drop).
fn global_toml(opts: &ServerOptions) -> String {
    if opts.global_toml.contains("user =") {
        opts.global_toml.clone()
    } else {
        format!("user = \"root\"\n{}", opts.global_toml)
    }
}

/// The TOML config for `lan` (format: conf/leasedns.toml).
pub fn render_config(lan: &Lan, opts: &ServerOptions, lease_file: &std::path::Path) -> String {
    let (start, end) = lan.pool();
    let srv = lan.server_ip();
    let mut s = format!(
        "domain = \"{domain}\"\ninterfaces = [\"{IFACE}\"]\nlease_file = \"{lease}\"\n\
         durability = \"{durability}\"\n{global}\n[dns]\nlisten = [\"{srv}:53\"]\nttl = 60\n{dns_extra}\n\
         [[subnet]]\nnetwork = \"{network}\"\npool_start = \"{start}\"\npool_end = \"{end}\"\n\
         router = \"{srv}\"\ndns_servers = [\"{srv}\"]\nlease_time = {lease_time}\ninterface = \"{IFACE}\"\n\
         authoritative = true\n",
        domain = opts.domain,
        lease = lease_file.display(),
        durability = opts.durability,
        network = lan.network(),
        lease_time = opts.lease_time,
        dns_extra = opts.dns_extra,
        global = global_toml(opts),
    );
    s.push_str(&opts.subnet_toml);
    for h in &opts.hosts {
        let _ = write!(
            s,
            "\n[[host]]\nmac = \"{}\"\nip = \"{}\"\nname = \"{}\"\n",
            h.mac, h.ip, h.name
        );
    }
    s.push('\n');
    s.push_str(&opts.extra_toml);
    s
}

/// dnsmasq as a stand-in DHCP+DNS server (harness self-test only).
pub struct Dnsmasq {
    daemon: Daemon,
}

impl Dnsmasq {
    /// Starts dnsmasq on the server's `eth0` serving the LAN's pool under `domain`.
    pub fn start(lan: &Lan, domain: &str) -> Result<Dnsmasq> {
        let (start, end) = lan.pool();
        let mut cmd = lan.server.exec("dnsmasq");
        cmd.args([
            "--no-daemon",
            "--conf-file=/dev/null",
            &format!("--interface={IFACE}"),
            "--bind-interfaces",
            "--except-interface=lo",
            &format!("--dhcp-range={start},{end},255.255.255.0,10m"),
            "--port=53",
            &format!("--domain={domain}"),
            &format!("--local=/{domain}/"),
            "--no-resolv",
            "--no-hosts",
            "--bogus-priv",
            "--dhcp-authoritative",
            "--no-ping",
            "--log-facility=-",
            "--log-dhcp",
            "--user=root",
        ]);
        cmd.arg(format!(
            "--dhcp-leasefile={}",
            lan.path("dnsmasq.leases").display()
        ));
        cmd.arg(format!("--pid-file={}", lan.path("dnsmasq.pid").display()));
        let mut daemon = Daemon::spawn("dnsmasq", &mut cmd, &lan.path("dnsmasq.log"))?;
        daemon.wait_for_log("DHCP, IP range", READY_WAIT)?;
        Ok(Dnsmasq { daemon })
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.daemon.terminate(STOP_WAIT)
    }
}

/// dnsmasq as a plain upstream DNS server on one LAN address: answers every name under
/// `domain` with `answer` (TTL 300 so a forwarder may cache it) and logs every query it sees.
pub struct Upstream {
    daemon: Daemon,
}

impl Upstream {
    pub fn start(
        lan: &Lan,
        host: &Host,
        ip: Ipv4Addr,
        domain: &str,
        answer: Ipv4Addr,
    ) -> Result<Upstream> {
        let mut cmd = host.exec("dnsmasq");
        cmd.args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            &format!("--listen-address={ip}"),
            "--bind-interfaces",
            &format!("--address=/{domain}/{answer}"),
            "--local-ttl=300",
            "--log-queries",
            "--log-facility=-",
            "--user=root",
        ]);
        cmd.arg(format!("--pid-file={}", lan.path("upstream.pid").display()));
        let mut daemon = Daemon::spawn("dnsmasq upstream", &mut cmd, &lan.path("upstream.log"))?;
        daemon.wait_for_log("started, version", READY_WAIT)?;
        Ok(Upstream { daemon })
    }

    /// How many queries for `name` (any type) reached this server.
    pub fn queries(&self, name: &str) -> usize {
        let needle = format!("] {name} from");
        self.log()
            .lines()
            .filter(|l| l.contains("query[") && l.contains(&needle))
            .count()
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }
}
