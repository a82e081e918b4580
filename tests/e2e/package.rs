//! leasedns as shipped: the systemd unit (`dist/leasedns.service`) passes `systemd-analyze
//! verify` with no warning, the packaged default config (`dist/leasedns.toml`) is valid, and the
//! Debian package (`netns-scripts/package-test.sh`: cargo-deb, dpkg-deb, lintian) unpacked into
//! a throwaway root serves a namespace LAN with its own binary and config. Never installs the
//! package on the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::proc::run;
use crate::server::leasedns_bin;

/// A file of the source tree.
fn source(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Where `program` is on PATH, if anywhere.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// `systemd-analyze verify` on `unit`: its stderr (empty when it has nothing to say).
fn verify(unit: &Path) -> Result<String> {
    let out = run(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .arg(unit),
        Duration::from_secs(60),
    )?;
    Ok(out.all())
}

#[test]
fn unit_file_passes_systemd_analyze_verify_without_a_warning() -> Result<()> {
    if which("systemd-analyze").is_none() {
        eprintln!("SKIPPED: systemd-analyze is not installed (Debian package systemd)");
        return Ok(());
    }
    let shipped = std::fs::read_to_string(source("dist/leasedns.service"))?;
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/leasedns run --config /etc/leasedns/leasedns.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=30",
        "User=leasedns",
        "StateDirectory=leasedns",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_RAW CAP_NET_ADMIN",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_RAW CAP_NET_ADMIN",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        ensure!(
            shipped.lines().any(|l| l == line),
            "the unit lacks {line:?}"
        );
    }
    // verify insists that ExecStart's binary exists: point it at the one just built (the
    // package test verifies the installed path inside the unpacked package).
    let dir = tempfile::tempdir()?;
    let unit = dir.path().join("leasedns.service");
    std::fs::write(&unit, shipped.replace("/usr/bin/leasedns", leasedns_bin()))?;
    let said = verify(&unit)?;
    ensure!(said.trim().is_empty(), "systemd-analyze verify:\n{said}");
    // The check can fail: an unknown key and a bad value are reported.
    std::fs::write(
        &unit,
        std::fs::read_to_string(&unit)?.replace("ProtectSystem=strict", "ProtectSystem=strictly"),
    )?;
    let said = verify(&unit)?;
    ensure!(
        said.contains("ProtectSystem") || said.contains("protect system"),
        "{said}"
    );
    Ok(())
}

#[test]
fn packaged_default_config_is_valid_and_keeps_leases_in_the_state_directory() -> Result<()> {
    let file = source("dist/leasedns.toml");
    let out = run(
        Command::new(leasedns_bin()).arg("check-config").arg(&file),
        Duration::from_secs(10),
    )?;
    ensure!(out.status.success(), "check-config: {}", out.all());
    let text = std::fs::read_to_string(&file).context("dist/leasedns.toml")?;
    ensure!(
        text.lines()
            .any(|l| l == "lease_file = \"/var/lib/leasedns/leases.journal\""),
        "the lease file is not under /var/lib/leasedns (StateDirectory=leasedns)"
    );
    Ok(())
}

/// LAN index 112: `netns-scripts/package-test.sh` builds the .deb (in its own target directory:
/// this test's `cargo test` holds the default one), checks it with dpkg-deb (and lintian when
/// installed), unpacks it into a temporary root and serves 10.162.0.0/24 (50 + 112) with the
/// unpacked binary and default config: udhcpc gets a lease, dig resolves its name, the lease
/// journal is mode 0640. The script removes its namespaces and files on any exit.
#[test]
fn deb_package_unpacked_serves_a_namespace_lan() -> Result<()> {
    ensure!(
        Command::new("cargo")
            .args(["deb", "--version"])
            .output()
            .is_ok_and(|o| o.status.success()),
        "cargo-deb is not installed: cargo install cargo-deb --locked"
    );
    let target = source("target/package-test");
    let prefix = format!("ldpk{}", std::process::id() % 100_000);
    let _guard = Namespaces(prefix.clone());
    let out = run(
        Command::new("bash")
            .arg(source("netns-scripts/package-test.sh"))
            .env("CARGO_TARGET_DIR", &target)
            .env("PKG_NET", "10.162.0")
            .env("PKG_PREFIX", &prefix),
        Duration::from_secs(2400),
    )?;
    ensure!(
        out.status.success() && out.stdout.contains("package test passed: leasedns_"),
        "package-test.sh failed ({}):\n{}",
        out.status,
        out.all()
    );
    eprintln!("{}", out.stdout.trim());
    Ok(())
}

/// The script's namespaces (`<prefix>-*`): should it be killed before its own cleanup runs,
/// the processes inside them (by PID) and the namespaces go when the test ends.
struct Namespaces(String);

impl Drop for Namespaces {
    fn drop(&mut self) {
        let Ok(list) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        let start = format!("{}-", self.0);
        for ns in String::from_utf8_lossy(&list.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|ns| ns.starts_with(&start))
        {
            if let Ok(pids) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<u32>() {
                        let _ = crate::proc::signal(pid, nix::sys::signal::Signal::SIGKILL);
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        }
    }
}
