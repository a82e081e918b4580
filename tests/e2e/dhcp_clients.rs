//! Real clients beyond the basics: dhcpcd gets a lease and its name resolves, each client
//! (dhclient, udhcpc, dhcpcd) renews onto the same address, and dhcpcd is answered by rapid
//! commit when the subnet enables it; with ping_check, addresses that answer pings are skipped.
//! Knows nothing of the server's internals.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::clients::{Dhclient, Dhcpcd, Udhcpc, field};
use crate::dig;
use crate::netns::{IFACE, Lan, ip};
use crate::server::{Server, ServerOptions, logged, stop_cleanly};

/// A lease short enough that dhclient renews by itself (T1 = 10 s) within the test.
const SHORT_LEASE: u32 = 20;

#[test]
fn dhcpcd_gets_an_address_and_its_name_resolves() -> Result<()> {
    let lan = Lan::new("dc", 20, 1)?;
    let mut server = Server::start(&lan, &ServerOptions::default())?;
    let srv = lan.server_ip();

    // It asks for rapid commit, which this subnet does not offer: a normal four-way exchange.
    let mut client = Dhcpcd::for_host(&lan, &lan.clients[0], "zeta", "option rapid_commit")?;
    let ip = logged(&server, client.obtain())?;
    ensure!(lan.in_pool(ip), "zeta got {ip}, outside the pool");
    let log = client.log();
    ensure!(
        log.contains(&format!("offered {ip} from {srv}")),
        "no OFFER in a subnet without rapid commit; dhcpcd log:\n{log}"
    );
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "zeta.lan", ip),
    )?;
    client.stop()?;
    stop_cleanly(&mut server)
}

#[test]
fn dhclient_renews_by_itself_onto_the_same_address() -> Result<()> {
    let lan = Lan::new("rd", 21, 1)?;
    let opts = ServerOptions {
        lease_time: SHORT_LEASE,
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let srv = lan.server_ip();

    let client = Dhclient::new(&lan, 0, "renewer")?;
    let ip = logged(&server, client.obtain())?;
    // T1 is half the lease: dhclient unicasts a REQUEST after about 10 s.
    let line = logged(
        &server,
        client.wait_event("RENEW", 1, Duration::from_secs(SHORT_LEASE.into())),
    )?;
    ensure!(
        field(&line, "new_ip_address") == Some(ip),
        "renewed onto another address: {line} (had {ip})"
    );
    ensure!(lan.clients[0].ipv4()? == Some(ip), "eth0 lost {ip}");
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "renewer.lan", ip),
    )?;
    stop_cleanly(&mut server)
}

#[test]
fn udhcpc_sigusr1_renews_onto_the_same_address() -> Result<()> {
    let lan = Lan::new("ru", 22, 1)?;
    let mut server = Server::start(&lan, &ServerOptions::default())?;
    let srv = lan.server_ip();

    let mut client = Udhcpc::new(&lan, 0, "renewu")?;
    let ip = logged(&server, client.obtain()).with_context(|| client.log())?;
    for round in 1..=2 {
        let again = logged(&server, client.renew())?;
        ensure!(again == ip, "renewal {round} gave {again}, had {ip}");
    }
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "renewu.lan", ip),
    )?;
    client.stop()?;
    stop_cleanly(&mut server)
}

#[test]
fn dhcpcd_renews_onto_the_same_address() -> Result<()> {
    let lan = Lan::new("rp", 23, 1)?;
    let mut server = Server::start(&lan, &ServerOptions::default())?;
    let srv = lan.server_ip();

    let mut client = Dhcpcd::for_host(&lan, &lan.clients[0], "renewp", "")?;
    let ip = logged(&server, client.obtain())?;
    let again = logged(&server, client.renew())?;
    ensure!(again == ip, "dhcpcd renewed onto {again}, had {ip}");
    ensure!(lan.clients[0].ipv4()? == Some(ip), "eth0 lost {ip}");
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "renewp.lan", ip),
    )?;
    client.stop()?;
    stop_cleanly(&mut server)
}

#[test]
fn rapid_commit_subnet_acks_dhcpcd_discover_at_once() -> Result<()> {
    let lan = Lan::new("rq", 29, 1)?;
    let opts = ServerOptions {
        subnet_toml: "rapid_commit = true\n".into(),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let srv = lan.server_ip();

    let mut client = Dhcpcd::for_host(&lan, &lan.clients[0], "quick", "option rapid_commit")?;
    let ip = logged(&server, client.obtain())?;
    ensure!(lan.in_pool(ip), "quick got {ip}, outside the pool");
    let log = client.log();
    // Two-message exchange: dhcpcd never saw an OFFER nor sent a REQUEST.
    ensure!(
        log.contains(&format!("acknowledged {ip} from {srv}"))
            && !log.contains("offered ")
            && !log.contains("sending REQUEST"),
        "not a rapid-commit exchange; dhcpcd log:\n{log}"
    );
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "quick.lan", ip),
    )?;
    client.stop()?;
    stop_cleanly(&mut server)
}

#[test]
fn ping_check_skips_addresses_that_answer_echo() -> Result<()> {
    let lan = Lan::new("pc", 31, 2)?;
    // c1 squats on the five lowest pool addresses (the allocator's first choices) and answers
    // pings for them.
    let squatted: Vec<Ipv4Addr> = (100..=104).map(|last| lan.addr(last)).collect();
    for addr in &squatted {
        ip(&[
            "-n",
            &lan.clients[1].ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            IFACE,
        ])?;
    }
    let opts = ServerOptions {
        global_toml: "ping_check = true\nping_timeout_ms = 300\n".into(),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let srv = lan.server_ip();

    let client = Dhclient::new(&lan, 0, "careful")?;
    let got = logged(&server, client.obtain())?;
    ensure!(
        lan.in_pool(got) && !squatted.contains(&got),
        "careful got {got}, which answers pings (squatted: {squatted:?})"
    );
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "careful.lan", got),
    )?;
    stop_cleanly(&mut server)
}
