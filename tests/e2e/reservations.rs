//! Reservations that win after a reload (issue 13): real udhcpc clients, a SIGHUP that reserves
//! one client's address for the other client, and renewals (SIGUSR1) that hand it over.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use nix::sys::signal::Signal;

use crate::clients::{Udhcpc, field};
use crate::dig;
use crate::netns::Lan;
use crate::proc::{poll, signal};
use crate::server::{Reservation, Server, ServerOptions, logged, render_config, stop_cleanly};

/// How long a renewal that is NAKed may take to end in a new lease (udhcpc waits 3 s after a
/// NAK before it DISCOVERs).
const REBIND_WAIT: Duration = Duration::from_secs(30);

/// SIGUSR1 to a running udhcpc (through its pid file); returns the address of the next `bound`
/// event (a NAKed renewal ends in a new DISCOVER and a `bound`).
fn renew_until_bound(c: &Udhcpc) -> Result<std::net::Ipv4Addr> {
    let dir = c.events.parent().context("events file has no directory")?;
    let pid: u32 = std::fs::read_to_string(dir.join("udhcpc.pid"))?
        .trim()
        .parse()?;
    let bound = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("event=bound "))
            .count()
    };
    let before = bound(&c.events_text());
    signal(pid, Signal::SIGUSR1)?;
    poll(REBIND_WAIT, || {
        let text = c.events_text();
        Ok((bound(&text) > before)
            .then(|| {
                text.lines()
                    .rev()
                    .find(|l| l.starts_with("event=bound "))
                    .and_then(|l| field(l, "ip"))
            })
            .flatten())
    })
    .with_context(|| format!("no new lease after a renewal; hook: {}", c.events_text()))
}

#[test]
fn a_reloaded_reservation_takes_its_address_from_the_holder_at_the_next_renewals() -> Result<()> {
    let lan = Lan::new("rw", 92, 2)?;
    let srv = lan.server_ip();
    let mut opts = ServerOptions::default();
    let mut server = Server::start(&lan, &opts)?;
    let mut holder = Udhcpc::new(&lan, 0, "holder")?;
    let held = logged(&server, holder.obtain())?;
    let mut owner = Udhcpc::new(&lan, 1, "owner")?;
    let before = logged(&server, owner.obtain())?;
    ensure!(held != before);

    // SIGHUP: the address the holder has is now reserved for the other client.
    opts.hosts = vec![Reservation {
        mac: lan.clients[1].mac.clone(),
        ip: held,
        name: "owner".into(),
    }];
    let text = render_config(&lan, &opts, &server.lease_file);
    crate::conformance::reload_dhcp(&mut server, &text)?;
    let log = server.log();
    ensure!(
        log.contains("reserved address is leased to another client"),
        "conflict not logged:\n{log}"
    );
    // The holder renews: NAKed, it DISCOVERs and gets another address.
    let moved = logged(&server, renew_until_bound(&holder))?;
    ensure!(moved != held, "the holder kept the reserved address {held}");
    ensure!(lan.in_pool(moved), "the holder got {moved}");
    // The reserved client renews its old address: NAKed, it DISCOVERs and gets its reservation.
    let got = logged(&server, renew_until_bound(&owner))?;
    ensure!(got == held, "the reserved client got {got}, not {held}");
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "owner.lan", held),
    )?;
    let log = server.log();
    ensure!(
        log.contains("address is reserved for another client")
            && log.contains("client has a reservation elsewhere"),
        "NAK reasons not logged:\n{log}"
    );
    // The grant's log line names the MAC and the host name (not only the client id).
    let mac = lan.clients[1].mac.to_lowercase();
    ensure!(
        log.lines().any(|l| l.contains(" ack")
            && l.contains(&mac)
            && l.contains("owner")
            && l.contains(&held.to_string())),
        "no ACK line naming {mac} and owner:\n{log}"
    );
    holder.stop()?;
    owner.stop()?;
    stop_cleanly(&mut server)
}

/// Issue 13, fault 1, as reported: a client bound with a short lease and left alone, leasedns
/// restarted cleanly (SIGTERM, start) and then killed and started again: the name still
/// answers after each restart, and leaves DNS when the granted lease ends, not later (the old
/// padded expiry kept it 50 % of the lease time longer).
#[test]
fn after_restarts_a_name_leaves_dns_when_the_granted_lease_ends() -> Result<()> {
    let lan = Lan::new("nl", 95, 1)?;
    let srv = lan.server_ip();
    let lease = 20u64;
    let opts = ServerOptions {
        lease_time: lease as u32,
        durability: "fsync",
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let mut client = Udhcpc::new(&lan, 0, "brief")?;
    let ip = logged(&server, client.obtain())?;
    // The ACK came before `obtain` returned: the lease ends before `end`.
    let end = std::time::Instant::now() + Duration::from_secs(lease);
    client.stop()?;
    server.restart()?;
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "brief.lan", ip),
    )?;
    server.kill()?;
    server.launch()?;
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "brief.lan", ip),
    )?;
    let slack = Duration::from_secs(3);
    let wait = end.saturating_duration_since(std::time::Instant::now()) + slack;
    logged(
        &server,
        dig::wait_gone(&lan.probe, srv, "brief.lan", ip, wait),
    )
    .context("the name outlived the lease")?;
    stop_cleanly(&mut server)
}
