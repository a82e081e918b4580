//! leasedns end to end: real dhclient and udhcpc on a namespace LAN get leases from the daemon,
//! and the names they send resolve (A and PTR) until the lease is released.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::clients::{Dhclient, Udhcpc};
use crate::dig;
use crate::netns::Lan;
use crate::server::{Reservation, Server, ServerOptions, logged, stop_cleanly};

/// How long a released name may linger in DNS.
const GONE_WAIT: Duration = Duration::from_secs(3);

#[test]
fn leasedns_dhclient_name_resolves_and_release_removes_it() -> Result<()> {
    let lan = Lan::new("dh", 2, 1)?;
    let mut server = Server::start(&lan, &ServerOptions::default())?;
    let srv = lan.server_ip();

    let client = Dhclient::new(&lan, 0, "alpha")?;
    let ip = logged(&server, client.obtain())?;
    ensure!(lan.in_pool(ip), "alpha got {ip}, outside the pool");
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "alpha.lan", ip),
    )?;

    client.release()?;
    logged(
        &server,
        dig::wait_gone(&lan.probe, srv, "alpha.lan", ip, GONE_WAIT),
    )?;
    stop_cleanly(&mut server)
}

#[test]
fn leasedns_udhcpc_name_resolves_and_sigusr2_release_removes_it() -> Result<()> {
    let lan = Lan::new("ud", 3, 1)?;
    let mut server = Server::start(&lan, &ServerOptions::default())?;
    let srv = lan.server_ip();

    let mut client = Udhcpc::new(&lan, 0, "beta")?;
    let ip = logged(&server, client.obtain()).with_context(|| client.log())?;
    ensure!(lan.in_pool(ip), "beta got {ip}, outside the pool");
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "beta.lan", ip),
    )?;

    client.release()?;
    logged(
        &server,
        dig::wait_gone(&lan.probe, srv, "beta.lan", ip, GONE_WAIT),
    )?;
    client.stop()?;
    stop_cleanly(&mut server)
}

#[test]
fn leasedns_restart_on_same_lease_file_keeps_names() -> Result<()> {
    let lan = Lan::new("rs", 4, 1)?;
    let opts = ServerOptions {
        durability: "fsync",
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let srv = lan.server_ip();

    let client = Dhclient::new(&lan, 0, "gamma")?;
    let ip = logged(&server, client.obtain())?;
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "gamma.lan", ip),
    )?;

    let on_disk = [
        server.lease_file.clone(),
        server.lease_file.with_extension("journal.snapshot"),
    ]
    .iter()
    .filter_map(|p| std::fs::metadata(p).ok())
    .map(|m| m.len())
    .sum::<u64>();
    ensure!(
        on_disk > 0,
        "nothing in {} after an ACK with fsync",
        server.lease_file.display()
    );

    // SIGTERM, start again on the same journal: the name answers as soon as it is ready.
    server.restart()?;
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "gamma.lan", ip),
    )
    .context("the lease did not survive a restart")?;
    stop_cleanly(&mut server)
}

#[test]
fn leasedns_reservation_gets_fixed_address_and_config_name() -> Result<()> {
    let lan = Lan::new("rv", 5, 1)?;
    let fixed = lan.addr(10);
    let opts = ServerOptions {
        hosts: vec![Reservation {
            mac: lan.clients[0].mac.clone(),
            ip: fixed,
            name: "printer".into(),
        }],
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let srv = lan.server_ip();

    // The client sends its own name; the configured one wins.
    let client = Dhclient::new(&lan, 0, "someclient")?;
    let ip = logged(&server, client.obtain())?;
    ensure!(ip == fixed, "reserved client got {ip}, expected {fixed}");
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "printer.lan", fixed),
    )?;
    stop_cleanly(&mut server)
}

#[test]
fn leasedns_two_clients_at_once_get_distinct_addresses_and_names() -> Result<()> {
    let lan = Lan::new("tw", 6, 2)?;
    let mut server = Server::start(&lan, &ServerOptions::default())?;
    let srv = lan.server_ip();

    let first = Dhclient::new(&lan, 0, "delta")?;
    let mut second = Udhcpc::new(&lan, 1, "epsilon")?;
    let (first_ip, second_ip): (Result<Ipv4Addr>, Result<Ipv4Addr>) = std::thread::scope(|s| {
        let handle = s.spawn(|| first.obtain());
        let second_ip = second.obtain();
        let first_ip = handle
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("dhclient thread panicked")));
        (first_ip, second_ip)
    });
    let (first_ip, second_ip) = (logged(&server, first_ip)?, logged(&server, second_ip)?);
    ensure!(first_ip != second_ip, "both clients got {first_ip}");
    ensure!(
        lan.in_pool(first_ip) && lan.in_pool(second_ip),
        "{first_ip} or {second_ip} outside the pool"
    );
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "delta.lan", first_ip),
    )?;
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "epsilon.lan", second_ip),
    )?;
    second.stop()?;
    stop_cleanly(&mut server)
}

/// The TTL dig shows for `name` A (second column of the answer line).
fn a_ttl(lan: &Lan, server: Ipv4Addr, name: &str) -> Result<u32> {
    let out = lan
        .probe
        .exec("dig")
        .args([
            &format!("@{server}"),
            name,
            "A",
            "+noall",
            "+answer",
            "+time=1",
            "+tries=2",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| !l.starts_with(';') && !l.trim().is_empty())
        .with_context(|| format!("no answer for {name}: {text}"))?;
    let ttl = line.split_whitespace().nth(1).context("no TTL column")?;
    Ok(ttl.parse()?)
}

#[test]
fn leasedns_expired_lease_leaves_dns_and_ttl_never_outlives_it() -> Result<()> {
    let lan = Lan::new("ex", 7, 1)?;
    let opts = ServerOptions {
        lease_time: 12,
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let srv = lan.server_ip();

    let mut client = Udhcpc::new(&lan, 0, "zeta")?;
    let ip = logged(&server, client.obtain())?;
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "zeta.lan", ip),
    )?;
    let ttl = a_ttl(&lan, srv, "zeta.lan")?;
    ensure!(ttl <= 12, "TTL {ttl} is longer than the 12 s lease");

    // The client vanishes without a RELEASE: the name must go when the lease runs out.
    client.stop()?;
    logged(
        &server,
        dig::wait_gone(&lan.probe, srv, "zeta.lan", ip, Duration::from_secs(20)),
    )
    .context("the name outlived its lease")?;
    stop_cleanly(&mut server)
}
