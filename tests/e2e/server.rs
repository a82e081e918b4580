//! The servers under test, run in the LAN's server namespace: leasedns (config written from
//! `ServerOptions`, started until `leasedns ready`, stopped with SIGTERM, restarted on the same
//! lease file) and dnsmasq as the stand-in for the harness self-test.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::netns::{Host, IFACE, Lan};
use crate::proc::Daemon;

/// How long a server may take to become ready.
const READY_WAIT: Duration = Duration::from_secs(10);
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
    /// TOML appended to the config as is (top-level tables such as `[[tsig_key]]`).
    pub extra: String,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            domain: "lan".into(),
            durability: "none",
            lease_time: 600,
            hosts: Vec::new(),
            extra: String::new(),
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
}

impl Server {
    /// Writes the config for `lan` and starts leasedns; returns once it logged `leasedns ready`.
    pub fn start(lan: &Lan, opts: &ServerOptions) -> Result<Server> {
        let lease_file = lan.path("leases.journal");
        let config = lan.path("leasedns.toml");
        std::fs::write(&config, render_config(lan, opts, &lease_file))?;
        let mut server = Server {
            host: lan.server.clone(),
            config,
            lease_file,
            dir: lan.path(""),
            daemon: None,
            runs: 0,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<()> {
        self.runs += 1;
        let log = self.dir.join(format!("leasedns.{}.log", self.runs));
        let mut cmd = self.host.exec(leasedns_bin());
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "debug");
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

    /// The log of the current (or last) run.
    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }
}

/// The TOML config for `lan` (format: conf/leasedns.toml).
pub fn render_config(lan: &Lan, opts: &ServerOptions, lease_file: &std::path::Path) -> String {
    let (start, end) = lan.pool();
    let srv = lan.server_ip();
    let mut s = format!(
        "domain = \"{domain}\"\ninterfaces = [\"{IFACE}\"]\nlease_file = \"{lease}\"\n\
         durability = \"{durability}\"\n\n[dns]\nlisten = [\"{srv}:53\"]\nttl = 60\n\n\
         [[subnet]]\nnetwork = \"{network}\"\npool_start = \"{start}\"\npool_end = \"{end}\"\n\
         router = \"{srv}\"\ndns_servers = [\"{srv}\"]\nlease_time = {lease_time}\ninterface = \"{IFACE}\"\n\
         authoritative = true\n",
        domain = opts.domain,
        lease = lease_file.display(),
        durability = opts.durability,
        network = lan.network(),
        lease_time = opts.lease_time,
    );
    for h in &opts.hosts {
        let _ = write!(
            s,
            "\n[[host]]\nmac = \"{}\"\nip = \"{}\"\nname = \"{}\"\n",
            h.mac, h.ip, h.name
        );
    }
    s.push('\n');
    s.push_str(&opts.extra);
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
