//! Outbound DDNS end to end: a real BIND 9 primary in the LAN's probe namespace (its own config,
//! zones and journals in the LAN's scratch directory, listening only on the probe's address)
//! takes TSIG-signed RFC 2136 updates from leasedns while real dhclients come and go.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::clients::Dhclient;
use crate::dig;
use crate::netns::Lan;
use crate::proc::{Daemon, poll};
use crate::server::{Server, ServerOptions};

/// The TSIG secret shared by BIND and leasedns ("leasedns-test-key-32-bytes-long!").
const SECRET: &str = "bGVhc2VkbnMtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyE=";
/// How long an update may take to show at BIND (retries included).
const LAND_WAIT: Duration = Duration::from_secs(30);

/// BIND 9 (`named -g`) serving `lan` and the LAN's reverse zone, updatable with key `leasedns`.
struct Bind {
    dir: PathBuf,
    ip: Ipv4Addr,
    daemon: Option<Daemon>,
}

impl Bind {
    /// Writes the config and zones (not started); `taken` gets a static A record with no DHCID.
    fn prepare(lan: &Lan) -> Result<Bind> {
        let dir = lan.path("bind");
        std::fs::create_dir_all(&dir)?;
        let ip = lan.addr(2);
        let d = dir.display();
        let key = format!("key \"leasedns\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n");
        let mut conf = format!(
            "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  \
             session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n  \
             listen-on port 53 {{ {ip}; }};\n  listen-on-v6 {{ none; }};\n  recursion no;\n  \
             notify no;\n  dnssec-validation no;\n  allow-query {{ any; }};\n}};\n\
             controls {{ }};\n{key}"
        );
        for (zone, file) in [("lan", "lan.zone"), (&reverse_zone(lan), "rev.zone")] {
            let _ = writeln!(
                conf,
                "zone \"{zone}\" {{ type primary; file \"{d}/{file}\"; \
                 journal \"{d}/{file}.jnl\"; allow-update {{ key leasedns; }}; }};"
            );
        }
        std::fs::write(dir.join("named.conf"), conf)?;
        let soa =
            "$TTL 300\n@ IN SOA ns.lan. hostmaster.lan. 1 3600 600 86400 60\n@ IN NS ns.lan.\n";
        std::fs::write(
            dir.join("lan.zone"),
            format!("{soa}ns IN A {ip}\ntaken IN A {}\n", lan.addr(5)),
        )?;
        std::fs::write(dir.join("rev.zone"), soa)?;
        Ok(Bind {
            dir,
            ip,
            daemon: None,
        })
    }

    /// Starts named in the probe namespace and waits until it has loaded its zones.
    fn start(&mut self, lan: &Lan) -> Result<()> {
        let mut cmd = lan.probe.exec("named");
        cmd.args(["-g", "-4", "-c"])
            .arg(self.dir.join("named.conf"));
        let mut daemon = Daemon::spawn("named", &mut cmd, &self.dir.join("named.log"))?;
        let ready = daemon.wait_for_log("running", Duration::from_secs(15));
        self.daemon = Some(daemon);
        ready
    }

    fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }
}

fn reverse_zone(lan: &Lan) -> String {
    let [a, b, c] = lan.net();
    format!("{c}.{b}.{a}.in-addr.arpa")
}

/// leasedns options that update `bind` for `lan` and the reverse zone.
fn ddns_options(lan: &Lan, lease_time: u32) -> ServerOptions {
    let primary = format!("{}:53", lan.addr(2));
    let mut extra = String::new();
    for zone in ["lan".to_string(), reverse_zone(lan)] {
        let _ = write!(
            extra,
            "\n[[ddns_zone]]\nzone = \"{zone}\"\nprimary = \"{primary}\"\nkey_name = \"leasedns\"\n\
             key_algorithm = \"hmac-sha256\"\nkey_secret = \"{SECRET}\"\nttl = 120\n"
        );
    }
    ServerOptions {
        lease_time,
        extra_toml: extra,
        ..ServerOptions::default()
    }
}

/// The DHCID leasedns must publish for a dhclient (no option 61: htype 1 + MAC) and name.
fn expected_dhcid(mac: &str, fqdn: &str) -> Result<String> {
    let mut id = vec![1u8];
    for part in mac.split(':') {
        id.push(u8::from_str_radix(part, 16).context("MAC")?);
    }
    let rdata = leasedns::ddns::dhcid::rdata(leasedns::ddns::dhcid::ID_HWADDR, &id, fqdn);
    Ok(leasedns::ddns::dhcid::to_base64(&rdata))
}

/// What BIND holds for a lease: A of the name, PTR of the address, DHCID of both.
#[derive(Debug, PartialEq, Eq)]
struct AtBind {
    a: Vec<String>,
    ptr: Vec<String>,
    dhcid: Vec<String>,
    rev_dhcid: Vec<String>,
}

fn at_bind(lan: &Lan, bind: &Bind, name: &str, ip: Ipv4Addr) -> Result<AtBind> {
    let rev = format!("{}.{}", ip.octets()[3], reverse_zone(lan));
    let records = |q: &str, t: &str| -> Result<Vec<String>> {
        let answer = dig::query(&lan.server, bind.ip, q, t)?;
        match answer.status.as_str() {
            "NOERROR" | "NXDOMAIN" => Ok(answer.records),
            other => bail!("{q} {t} at BIND: {other}"),
        }
    };
    Ok(AtBind {
        a: records(name, "A")?,
        ptr: records(&ip.to_string(), "PTR")?,
        dhcid: joined(records(name, "DHCID")?),
        rev_dhcid: joined(records(&rev, "DHCID")?),
    })
}

/// Base64 as dig may print it, in space-separated chunks, joined.
fn joined(records: Vec<String>) -> Vec<String> {
    records.into_iter().map(|r| r.replace(' ', "")).collect()
}

/// Waits until BIND holds exactly our records for `name` at `ip` with the client's DHCID.
fn wait_published(lan: &Lan, bind: &Bind, name: &str, ip: Ipv4Addr, mac: &str) -> Result<()> {
    let dhcid = expected_dhcid(mac, name)?;
    let want = AtBind {
        a: vec![ip.to_string()],
        ptr: vec![format!("{name}.")],
        dhcid: vec![dhcid.clone()],
        rev_dhcid: vec![dhcid],
    };
    poll(LAND_WAIT, || {
        let got = at_bind(lan, bind, name, ip)?;
        if got == want {
            Ok(Some(()))
        } else {
            bail!("BIND has {got:?}, want {want:?}")
        }
    })
}

/// Waits until BIND has nothing left for `name` and `ip`.
fn wait_removed(lan: &Lan, bind: &Bind, name: &str, ip: Ipv4Addr, wait: Duration) -> Result<()> {
    let empty = AtBind {
        a: vec![],
        ptr: vec![],
        dhcid: vec![],
        rev_dhcid: vec![],
    };
    poll(wait, || {
        let got = at_bind(lan, bind, name, ip)?;
        if got == empty {
            Ok(Some(()))
        } else {
            bail!("BIND still has {got:?}")
        }
    })
}

/// Adds both logs to a failed step.
fn logged<T>(server: &Server, bind: &Bind, step: Result<T>) -> Result<T> {
    step.with_context(|| {
        format!(
            "leasedns log:\n{}\nnamed log:\n{}",
            server.log(),
            bind.log()
        )
    })
}

#[test]
fn ddns_out_lease_reaches_bind_conflicts_are_left_alone_and_release_removes_it() -> Result<()> {
    let lan = Lan::new("dd", 70, 3)?;
    let mut bind = Bind::prepare(&lan)?;
    bind.start(&lan)?;
    let mut server = Server::start(&lan, &ddns_options(&lan, 600))?;

    // alpha gets a lease: A, PTR and DHCID (both sides) appear at BIND.
    let alpha = Dhclient::new(&lan, 0, "alpha")?;
    let ip = logged(&server, &bind, alpha.obtain())?;
    logged(
        &server,
        &bind,
        wait_published(&lan, &bind, "alpha.lan", ip, &lan.clients[0].mac),
    )?;

    // Another client claims "alpha": its DHCID differs, so BIND keeps the first client's A.
    let thief = Dhclient::new(&lan, 1, "alpha")?;
    let thief_ip = logged(&server, &bind, thief.obtain())?;
    ensure!(thief_ip != ip);
    // A name that BIND holds without any DHCID (a static record) is not taken either.
    let squatter = Dhclient::new(&lan, 2, "taken")?;
    let squatter_ip = logged(&server, &bind, squatter.obtain())?;
    logged(
        &server,
        &bind,
        poll(LAND_WAIT, || {
            let log = server.log();
            Ok((log.matches("belongs to another client").count() >= 2).then_some(()))
        }),
    )?;
    let a = dig::short(&lan.server, bind.ip, "alpha.lan", "A")?;
    ensure!(
        a == vec![ip.to_string()],
        "alpha.lan A is {a:?}, want [{ip}]"
    );
    let taken = dig::short(&lan.server, bind.ip, "taken.lan", "A")?;
    ensure!(
        taken == vec![lan.addr(5).to_string()],
        "taken.lan A is {taken:?}"
    );
    for other in [thief_ip, squatter_ip] {
        let ptr = dig::ptr(&lan.server, bind.ip, other)?;
        ensure!(ptr.records.is_empty(), "{other} PTR at BIND: {ptr:?}");
    }

    // alpha releases: its records leave BIND.
    alpha.release()?;
    logged(
        &server,
        &bind,
        wait_removed(&lan, &bind, "alpha.lan", ip, LAND_WAIT),
    )?;
    let status = server.stop()?;
    ensure!(status.success(), "leasedns exit {status}");
    Ok(())
}

#[test]
fn ddns_out_expired_lease_leaves_bind_after_the_lease_ends() -> Result<()> {
    let lan = Lan::new("de", 71, 1)?;
    let mut bind = Bind::prepare(&lan)?;
    bind.start(&lan)?;
    let lease_time = 20;
    let mut server = Server::start(&lan, &ddns_options(&lan, lease_time))?;

    let client = Dhclient::new(&lan, 0, "gamma")?;
    let ip = logged(&server, &bind, client.obtain())?;
    let bound_at = std::time::Instant::now();
    logged(
        &server,
        &bind,
        wait_published(&lan, &bind, "gamma.lan", ip, &lan.clients[0].mac),
    )?;
    // The client vanishes without a release (SIGKILL by its pid file).
    drop(client);
    let ttl_at_bind = dig::query(&lan.server, bind.ip, "gamma.lan", "A")?;
    ensure!(
        !ttl_at_bind.records.is_empty(),
        "gamma.lan gone before expiry"
    );
    logged(
        &server,
        &bind,
        wait_removed(
            &lan,
            &bind,
            "gamma.lan",
            ip,
            Duration::from_secs(u64::from(lease_time) + 20),
        ),
    )?;
    let gone_after = bound_at.elapsed();
    ensure!(
        gone_after >= Duration::from_secs(u64::from(lease_time) - 2),
        "removed after {gone_after:?}, before the {lease_time}s lease ended"
    );
    let status = server.stop()?;
    ensure!(status.success(), "leasedns exit {status}");
    Ok(())
}

#[test]
fn ddns_out_updates_wait_for_a_down_primary_across_a_restart() -> Result<()> {
    let lan = Lan::new("dq", 72, 2)?;
    let mut bind = Bind::prepare(&lan)?;
    let mut server = Server::start(&lan, &ddns_options(&lan, 600))?;

    // BIND is not running: DHCP still answers at once; the update waits in the queue.
    let first = Dhclient::new(&lan, 0, "delta")?;
    // The property is that the grant does not wait for DNS: the primary stays down for this
    // whole step, so a grant that waited for its update would never come (dhclient gives up).
    let first_ip = logged(&server, &bind, first.obtain())?;
    logged(
        &server,
        &bind,
        poll(LAND_WAIT, || {
            Ok(server.log().contains("DDNS update not done").then_some(()))
        }),
    )?;

    // Restart leasedns: the pending update is on disk and replayed.
    let restarted = server.restart();
    logged(&server, &bind, restarted)?;
    ensure!(
        server
            .log()
            .contains("DDNS updates pending from the last run"),
        "no pending updates after restart; log:\n{}",
        server.log()
    );
    let second = Dhclient::new(&lan, 1, "epsilon")?;
    let second_ip = logged(&server, &bind, second.obtain())?;

    // BIND comes up: both updates land (retry with backoff).
    bind.start(&lan)?;
    logged(
        &server,
        &bind,
        wait_published(&lan, &bind, "delta.lan", first_ip, &lan.clients[0].mac),
    )?;
    logged(
        &server,
        &bind,
        wait_published(&lan, &bind, "epsilon.lan", second_ip, &lan.clients[1].mac),
    )?;
    let status = server.stop()?;
    ensure!(status.success(), "leasedns exit {status}");
    Ok(())
}
