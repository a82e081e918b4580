//! The order of system calls that makes an ACK durable, watched on the real daemon (issue 14):
//! kill -9 leaves the page cache intact, so a crash test cannot see a missing fsync, but strace
//! can. leasedns runs under `strace -f`; a udhcpc client gets a lease; between the journal
//! write of that lease's record and the next datagram the same thread sends (the ACK), there
//! must be an fdatasync. Removing the fsync before replies fails this test. LAN index 102.

use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::clients::Udhcpc;
use crate::netns::Lan;
use crate::proc::{Daemon, signal};
use crate::server::{Server, ServerOptions, leasedns_bin};

/// One traced call: thread id, call name, and the line (arguments).
struct Call<'a> {
    tid: &'a str,
    name: &'a str,
    line: &'a str,
}

fn calls(trace: &str) -> Vec<Call<'_>> {
    trace
        .lines()
        .filter_map(|line| {
            let (tid, rest) = line.split_once(' ')?;
            let name = rest.trim_start().split('(').next()?;
            (!rest.trim_start().starts_with("<...")).then_some(Call { tid, name, line })
        })
        .collect()
}

#[test]
fn an_ack_leaves_only_after_the_fdatasync_that_covers_its_lease_record() -> Result<()> {
    let lan = Lan::new("do", 102, 1)?;
    let opts = ServerOptions {
        durability: "fsync",
        ..ServerOptions::default()
    };
    let server = Server::prepare(&lan, &opts)?;
    let trace = lan.path("strace.txt");
    let mut cmd = lan.server.exec("strace");
    cmd.args(["-f", "-s", "64", "-e"])
        .arg("trace=pwrite64,write,fdatasync,fsync,sendmsg,sendmmsg,sendto")
        .arg("-o")
        .arg(&trace)
        .arg(leasedns_bin())
        .args(["run", "--config"])
        .arg(&server.config)
        .env("LEASEDNS_LOG", "info");
    let mut daemon = Daemon::spawn("strace leasedns", &mut cmd, &lan.path("leasedns.log"))?;
    daemon.wait_for_log("leasedns ready", Duration::from_secs(30))?;
    let mut client = Udhcpc::new(&lan, 0, "traced")?;
    let ip = client.obtain()?;
    client.stop()?;
    // Stop leasedns itself (SIGTERM to strace would only detach it), then strace ends.
    let leasedns = std::fs::read_to_string(format!(
        "/proc/{}/task/{0}/children",
        daemon.pid().context("strace pid")?
    ))?;
    for pid in leasedns.split_whitespace().filter_map(|p| p.parse().ok()) {
        signal(pid, nix::sys::signal::Signal::SIGTERM)?;
    }
    daemon.terminate(Duration::from_secs(20))?;
    let text = std::fs::read_to_string(&trace)?;
    check_order(&text, &format!(" U {ip} ")).with_context(|| format!("strace:\n{text}"))
}

/// After the write of the record containing `needle`, the writing thread syncs before it sends.
fn check_order(trace: &str, needle: &str) -> Result<()> {
    let calls = calls(trace);
    let at = calls
        .iter()
        .position(|c| c.name.starts_with("pwrite") && c.line.contains(needle))
        .context("no journal write of the lease record")?;
    let tid = calls[at].tid;
    let mine: Vec<&Call> = calls[at..].iter().filter(|c| c.tid == tid).collect();
    let send = mine
        .iter()
        .position(|c| c.name.starts_with("send"))
        .context("the DHCP thread sent nothing after the write")?;
    ensure!(
        mine[..send]
            .iter()
            .any(|c| c.name == "fdatasync" || c.name == "fsync"),
        "a reply left before the lease record was synced"
    );
    Ok(())
}

#[test]
fn the_order_check_fails_without_the_sync() {
    let synced = "7 pwrite64(9, \"abcd1234 U 10.0.0.5 99\"..., 80, 0) = 80\n\
                  7 fdatasync(9) = 0\n7 sendmsg(5, {msg_name=...}, 0) = 300\n";
    assert!(check_order(synced, " U 10.0.0.5 ").is_ok());
    let unsynced = "7 pwrite64(9, \"abcd1234 U 10.0.0.5 99\"..., 80, 0) = 80\n\
                    8 fdatasync(9) = 0\n7 sendmsg(5, {msg_name=...}, 0) = 300\n7 fdatasync(9) = 0\n";
    assert!(check_order(unsynced, " U 10.0.0.5 ").is_err());
}
