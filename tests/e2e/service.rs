//! leasedns under a service manager: the sd_notify protocol as systemd speaks it, with a notify
//! socket the test owns (no systemd needed). READY=1 comes only once every listener answers,
//! RELOADING=1 then READY=1 around SIGHUP, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1
//! on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::Signal;

use crate::dig;
use crate::netns::Lan;
use crate::proc::Daemon;
use crate::server::{Server, ServerOptions, leasedns_bin};

/// The next datagram that is not a watchdog ping, within `timeout`; counts the pings seen.
fn next_state(sock: &UnixDatagram, timeout: Duration, pings: &mut u32) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no notification within {timeout:?}");
        }
        sock.set_read_timeout(Some(left))?;
        let n = sock.recv(&mut buf).context("waiting for a notification")?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text == "WATCHDOG=1" {
            *pings += 1;
        } else {
            return Ok(text);
        }
    }
}

#[test]
fn sd_notify_ready_reload_watchdog_and_stopping() -> Result<()> {
    let lan = Lan::new("sd", 110, 0)?;
    let server = Server::prepare(&lan, &ServerOptions::default())?;
    let socket_path = lan.path("notify.sock");
    let sock = UnixDatagram::bind(&socket_path)?;
    let mut cmd = lan.server.exec(leasedns_bin());
    cmd.arg("run")
        .arg("--config")
        .arg(&server.config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env("LEASEDNS_LOG", "info,leasedns=debug");
    let mut daemon = Daemon::spawn("leasedns", &mut cmd, &lan.path("leasedns.sd.log"))?;
    let mut pings = 0;
    let wait = Duration::from_secs(30);
    let result = (|| -> Result<()> {
        let ready = next_state(&sock, wait, &mut pings)?;
        ensure!(
            ready.starts_with("READY=1\nSTATUS="),
            "first state {ready:?}"
        );
        // READY=1 means every listener is up: DNS answers at once, no retry.
        let soa = dig::query_with(&lan.probe, lan.server_ip(), "lan", "SOA", &["+tries=1"])?;
        ensure!(soa.status == "NOERROR", "SOA right after READY=1: {soa:?}");

        daemon.signal(Signal::SIGHUP)?;
        let reloading = next_state(&sock, wait, &mut pings)?;
        ensure!(
            reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "after SIGHUP: {reloading:?}"
        );
        let usec: u64 = reloading
            .rsplit('=')
            .next()
            .and_then(|v| v.parse().ok())
            .context("MONOTONIC_USEC is a number")?;
        ensure!(usec > 0, "MONOTONIC_USEC={usec}");
        let again = next_state(&sock, wait, &mut pings)?;
        ensure!(again.starts_with("READY=1"), "after the reload: {again:?}");

        // Pings every 200 ms (half of 400 ms): wait for a few more whatever the machine's load.
        let seen = pings;
        let deadline = Instant::now() + wait;
        while pings < seen + 3 {
            ensure!(
                Instant::now() < deadline,
                "{pings} watchdog pings in {wait:?}"
            );
            sock.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut buf = [0u8; 64];
            if let Ok(n) = sock.recv(&mut buf) {
                ensure!(&buf[..n] == b"WATCHDOG=1", "unexpected {:?}", &buf[..n]);
                pings += 1;
            }
        }

        daemon.signal(Signal::SIGTERM)?;
        let stopping = next_state(&sock, wait, &mut pings)?;
        ensure!(stopping == "STOPPING=1", "after SIGTERM: {stopping:?}");
        let status = daemon.terminate(wait)?;
        ensure!(status.success(), "exit {status}");
        Ok(())
    })();
    result.with_context(|| format!("leasedns log:\n{}", daemon.log()))
}
