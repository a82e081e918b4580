//! Drivers for real DHCP clients in a client namespace: ISC dhclient and busybox udhcpc. Each
//! uses only its own files (config, pid, lease, hook script) and runs under `unshare --uts`, so
//! the host's resolver, lease files and host name are never touched.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::netns::{Host, IFACE, Lan};
use crate::proc::{Daemon, poll, run, run_ok, signal};

/// How long a client may take to get a lease before the test fails.
const LEASE_WAIT: Duration = Duration::from_secs(15);

/// Writes an executable shell script.
fn write_script(path: &Path, body: &str) -> Result<()> {
    fs::write(path, body)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The per-client scratch directory `<lan dir>/<ns>-<tool>`.
fn client_dir(lan: &Lan, host: &Host, tool: &str) -> Result<PathBuf> {
    let dir = lan.path(&format!("{}-{tool}", host.ns));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// ISC dhclient with its own config, pid file, lease file and `-sf` hook.
pub struct Dhclient {
    pub host: Host,
    pub hostname: String,
    cf: PathBuf,
    pf: PathBuf,
    lf: PathBuf,
    sf: PathBuf,
    /// One line per hook invocation: `reason=... new_ip_address=... new_host_name=...`.
    pub events: PathBuf,
}

impl Dhclient {
    /// Prepares (does not start) dhclient for client `index` sending host name `hostname`.
    pub fn new(lan: &Lan, index: usize, hostname: &str) -> Result<Dhclient> {
        let host = lan.clients.get(index).context("no such client")?.clone();
        Dhclient::for_host(lan, &host, hostname, "")
    }

    /// Prepares dhclient on any host (e.g. a segment's client) with `extra` lines appended to
    /// its config (e.g. more `request` options or their definitions).
    pub fn for_host(lan: &Lan, host: &Host, hostname: &str, extra: &str) -> Result<Dhclient> {
        let host = host.clone();
        let dir = client_dir(lan, &host, "dhclient")?;
        let c = Dhclient {
            cf: dir.join("dhclient.conf"),
            pf: dir.join("dhclient.pid"),
            lf: dir.join("dhclient.leases"),
            sf: dir.join("hook.sh"),
            events: dir.join("events"),
            host,
            hostname: hostname.to_string(),
        };
        fs::write(
            &c.cf,
            format!(
                "timeout 12;\nretry 1;\nsend host-name \"{hostname}\";\n\
                 request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers;\n\
                 {extra}\n"
            ),
        )?;
        write_script(&c.sf, &dhclient_hook(&c.events))?;
        Ok(c)
    }

    /// `dhclient -1`: waits for a lease (dhclient backgrounds itself once bound) and returns the
    /// address the hook put on `eth0`.
    pub fn obtain(&self) -> Result<Ipv4Addr> {
        self.obtain_verbose().map(|(ip, _)| ip)
    }

    /// Like `obtain`, also returning what dhclient printed (`DHCPNAK from ...` and so on).
    pub fn obtain_verbose(&self) -> Result<(Ipv4Addr, String)> {
        let out = run(
            &mut self.command(&["-1", "-v"]),
            LEASE_WAIT + Duration::from_secs(5),
        )?;
        if !out.status.success() {
            bail!(
                "dhclient ({}) found no lease ({}): {}\nhook: {}",
                self.hostname,
                out.status,
                out.all(),
                self.events_text()
            );
        }
        let ip = poll(Duration::from_secs(3), || self.host.ipv4()).with_context(|| {
            format!(
                "dhclient bound but eth0 has no address; hook: {}",
                self.events_text()
            )
        })?;
        Ok((ip, out.all()))
    }

    /// Waits until the hook has been called with `reason` at least `count` times; returns the
    /// last such line.
    pub fn wait_event(&self, reason: &str, count: usize, timeout: Duration) -> Result<String> {
        wait_event(&self.events, &format!("reason={reason} "), count, timeout)
    }

    /// `dhclient -r`: releases the lease (unicast DHCPRELEASE) and stops the running dhclient.
    pub fn release(&self) -> Result<()> {
        run_ok(&mut self.command(&["-r", "-v"]), Duration::from_secs(10))?;
        Ok(())
    }

    /// `dhclient -x`: stops the running dhclient without releasing (the lease file keeps the
    /// lease, as after a power cut).
    pub fn stop(&self) -> Result<()> {
        run_ok(&mut self.command(&["-x", "-v"]), Duration::from_secs(10))?;
        Ok(())
    }

    /// What the hook recorded so far.
    pub fn events_text(&self) -> String {
        fs::read_to_string(&self.events).unwrap_or_default()
    }

    fn command(&self, extra: &[&str]) -> std::process::Command {
        let mut cmd = self.host.exec("unshare");
        cmd.args(["--uts", "dhclient", "-4"]).args(extra);
        for (flag, path) in [
            ("-cf", &self.cf),
            ("-pf", &self.pf),
            ("-lf", &self.lf),
            ("-sf", &self.sf),
        ] {
            cmd.arg(flag).arg(path);
        }
        cmd.arg(IFACE);
        cmd
    }
}

impl Drop for Dhclient {
    /// Stops a still-running dhclient by the PID in its own pid file (no release).
    fn drop(&mut self) {
        let pid = fs::read_to_string(&self.pf)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(pid) = pid {
            let _ = signal(pid, Signal::SIGKILL);
        }
    }
}

/// The dhclient `-sf` hook: applies the lease with `ip` and records what dhclient passed (each
/// `name=value` followed by a space; the line ends with ` end`).
fn dhclient_hook(events: &Path) -> String {
    format!(
        r#"#!/bin/sh
# dhclient hook for the leasedns e2e tests: apply the lease with ip, record the variables.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
echo "reason=$reason new_ip_address=$new_ip_address old_ip_address=$old_ip_address new_host_name=$new_host_name new_domain_name=$new_domain_name new_domain_search=$new_domain_search new_ntp_servers=$new_ntp_servers new_interface_mtu=$new_interface_mtu new_rfc3442_classless_static_routes=$new_rfc3442_classless_static_routes new_routers=$new_routers new_domain_name_servers=$new_domain_name_servers end" >> '{events}'
case "$reason" in
    PREINIT) ip link set dev "$interface" up ;;
    BOUND|RENEW|REBIND|REBOOT)
        if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
            ip -4 addr flush dev "$interface"
        fi
        ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
    EXPIRE|FAIL|RELEASE|STOP) ip -4 addr flush dev "$interface" ;;
esac
exit 0
"#,
        events = events.display()
    )
}

/// busybox udhcpc in the foreground with its own hook script and pid file.
pub struct Udhcpc {
    pub host: Host,
    pub hostname: String,
    daemon: Option<Daemon>,
    dir: PathBuf,
    /// One line per hook invocation: `event=... ip=... hostname=...`.
    pub events: PathBuf,
}

impl Udhcpc {
    /// Prepares (does not start) udhcpc for client `index` sending host name `hostname`.
    pub fn new(lan: &Lan, index: usize, hostname: &str) -> Result<Udhcpc> {
        let host = lan.clients.get(index).context("no such client")?.clone();
        Udhcpc::for_host(lan, &host, hostname)
    }

    /// Prepares udhcpc on any host (e.g. a segment's client).
    pub fn for_host(lan: &Lan, host: &Host, hostname: &str) -> Result<Udhcpc> {
        let host = host.clone();
        let dir = client_dir(lan, &host, "udhcpc")?;
        let events = dir.join("events");
        write_script(&dir.join("hook.sh"), &udhcpc_hook(&events))?;
        Ok(Udhcpc {
            host,
            hostname: hostname.to_string(),
            daemon: None,
            dir,
            events,
        })
    }

    /// Starts udhcpc in the foreground (it keeps running, so SIGUSR2 can release later) and
    /// returns the address the hook put on `eth0`.
    pub fn obtain(&mut self) -> Result<Ipv4Addr> {
        let mut cmd = self.host.exec("unshare");
        cmd.args([
            "--uts", "busybox", "udhcpc", "-f", "-n", "-i", IFACE, "-T", "3", "-t", "4",
        ]);
        cmd.arg("-s").arg(self.dir.join("hook.sh"));
        cmd.arg("-p").arg(self.dir.join("udhcpc.pid"));
        cmd.args(["-x", &format!("hostname:{}", self.hostname)]);
        let mut daemon = Daemon::spawn("udhcpc", &mut cmd, &self.dir.join("udhcpc.log"))?;
        let bound = daemon.wait_for_log("obtained", LEASE_WAIT);
        self.daemon = Some(daemon);
        bound.with_context(|| format!("udhcpc found no lease; hook: {}", self.events_text()))?;
        poll(Duration::from_secs(3), || self.host.ipv4()).with_context(|| {
            format!(
                "udhcpc bound but eth0 has no address; hook: {}",
                self.events_text()
            )
        })
    }

    /// SIGUSR2: udhcpc sends DHCPRELEASE and deconfigures; waits until `eth0` has no address.
    pub fn release(&mut self) -> Result<()> {
        let daemon = self.daemon.as_mut().context("udhcpc is not running")?;
        daemon.check_running()?;
        daemon.signal(Signal::SIGUSR2)?;
        poll(Duration::from_secs(5), || {
            Ok(self.host.ipv4()?.is_none().then_some(()))
        })
        .with_context(|| format!("udhcpc did not deconfigure; hook: {}", self.events_text()))
    }

    /// SIGUSR1: udhcpc renews (unicast REQUEST); waits for the hook's next `renew` event and
    /// returns the address it carried.
    pub fn renew(&mut self) -> Result<Ipv4Addr> {
        let before = self.events_text().matches("event=renew ").count();
        let daemon = self.daemon.as_mut().context("udhcpc is not running")?;
        daemon.check_running()?;
        daemon.signal(Signal::SIGUSR1)?;
        let line = wait_event(&self.events, "event=renew ", before + 1, LEASE_WAIT)
            .with_context(|| format!("udhcpc did not renew; log: {}", self.log()))?;
        field(&line, "ip").context("renew event without ip")
    }

    /// Stops udhcpc without releasing.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.terminate(Duration::from_secs(5))?;
        }
        Ok(())
    }

    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }

    pub fn events_text(&self) -> String {
        fs::read_to_string(&self.events).unwrap_or_default()
    }
}

/// The udhcpc `-s` hook: applies the lease with `ip` and records what udhcpc passed.
fn udhcpc_hook(events: &Path) -> String {
    format!(
        r#"#!/bin/sh
# udhcpc hook for the leasedns e2e tests: apply the lease with ip, record the variables.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
echo "event=$1 ip=$ip mask=$mask hostname=$hostname domain=$domain" >> '{events}'
case "$1" in
    deconfig) ip -4 addr flush dev "$interface"; ip link set dev "$interface" up ;;
    bound) ip -4 addr flush dev "$interface"; ip -4 addr add "$ip/$mask" dev "$interface" ;;
    renew) ip -4 addr replace "$ip/$mask" dev "$interface" ;;
esac
exit 0
"#,
        events = events.display()
    )
}

/// Waits until `events` holds at least `count` lines starting with `prefix`; returns the last.
fn wait_event(events: &Path, prefix: &str, count: usize, timeout: Duration) -> Result<String> {
    poll(timeout, || {
        let text = fs::read_to_string(events).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
        Ok((lines.len() >= count)
            .then(|| lines.last().map(|l| l.to_string()))
            .flatten())
    })
    .with_context(|| {
        format!(
            "no {count} {prefix:?} lines in {}: {}",
            events.display(),
            fs::read_to_string(events).unwrap_or_default()
        )
    })
}

/// The address in `key=A.B.C.D` of one hook line.
pub fn field(line: &str, key: &str) -> Option<Ipv4Addr> {
    let want = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(want.as_str()))?
        .parse()
        .ok()
}

/// dhcpcd in the foreground (`-B`) in a private mount namespace where /run is a fresh tmpfs and
/// /var/lib/dhcpcd its own directory, with its own `-c` hook and `-f` config (no hooks, no
/// resolv.conf or host name changes, no default route, no ARP probe).
pub struct Dhcpcd {
    pub host: Host,
    pub hostname: String,
    daemon: Option<Daemon>,
    dir: PathBuf,
    /// One line per hook invocation: `reason=... new_ip_address=...`.
    pub events: PathBuf,
}

impl Dhcpcd {
    /// Prepares dhcpcd on `host` sending `hostname`, with `extra` lines in its config.
    pub fn for_host(lan: &Lan, host: &Host, hostname: &str, extra: &str) -> Result<Dhcpcd> {
        let host = host.clone();
        let dir = client_dir(lan, &host, "dhcpcd")?;
        fs::create_dir_all(dir.join("lib"))?;
        let events = dir.join("events");
        fs::write(
            dir.join("dhcpcd.conf"),
            format!(
                "ipv4only\nnoarp\nnoipv4ll\nnogateway\nnohook resolv.conf\nhostname {hostname}\n\
                 option host_name, domain_name, domain_name_servers\n{extra}\n"
            ),
        )?;
        write_script(&dir.join("hook.sh"), &dhcpcd_hook(&events))?;
        Ok(Dhcpcd {
            host,
            hostname: hostname.to_string(),
            daemon: None,
            dir,
            events,
        })
    }

    /// Starts dhcpcd and returns the address it put on `eth0`.
    pub fn obtain(&mut self) -> Result<Ipv4Addr> {
        let d = self.dir.display();
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/dhcpcd && \
             mount --bind {d}/lib /var/lib/dhcpcd && \
             exec dhcpcd -B -d -4 -t 15 -f {d}/dhcpcd.conf -c {d}/hook.sh {IFACE}"
        );
        let mut cmd = self.host.exec("unshare");
        cmd.args([
            "-m",
            "--propagation",
            "private",
            "--uts",
            "sh",
            "-c",
            &script,
        ]);
        let mut daemon = Daemon::spawn("dhcpcd", &mut cmd, &self.dir.join("dhcpcd.log"))?;
        let bound = daemon.wait_for_log("leased ", LEASE_WAIT + Duration::from_secs(5));
        self.daemon = Some(daemon);
        bound.with_context(|| {
            format!(
                "dhcpcd ({}) found no lease; hook: {}",
                self.hostname,
                self.events_text()
            )
        })?;
        poll(Duration::from_secs(3), || self.host.ipv4())
            .with_context(|| format!("dhcpcd bound but eth0 has no address; log: {}", self.log()))
    }

    /// SIGUSR1: dhcpcd renews (what `dhcpcd -4 -N eth0` sends it); waits for the hook's next
    /// `RENEW` and returns its address.
    pub fn renew(&mut self) -> Result<Ipv4Addr> {
        let before = self.events_text().matches("reason=RENEW ").count();
        let daemon = self.daemon.as_mut().context("dhcpcd is not running")?;
        daemon.check_running()?;
        daemon.signal(Signal::SIGUSR1)?;
        let line = wait_event(&self.events, "reason=RENEW ", before + 1, LEASE_WAIT)
            .with_context(|| format!("dhcpcd did not renew; log: {}", self.log()))?;
        field(&line, "new_ip_address").context("RENEW event without an address")
    }

    /// Stops dhcpcd (SIGTERM: it deconfigures without releasing).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.terminate(Duration::from_secs(5))?;
        }
        Ok(())
    }

    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }

    pub fn events_text(&self) -> String {
        fs::read_to_string(&self.events).unwrap_or_default()
    }
}

/// The dhcpcd `-c` hook: records the variables (dhcpcd configures the interface itself).
fn dhcpcd_hook(events: &Path) -> String {
    format!(
        r#"#!/bin/sh
# dhcpcd hook for the leasedns e2e tests: record the variables only.
echo "reason=$reason new_ip_address=$new_ip_address new_host_name=$new_host_name new_domain_name=$new_domain_name" >> '{events}'
exit 0
"#,
        events = events.display()
    )
}
