//! SIGHUP reload: a good config takes effect at once (reservations, static records) and keeps
//! the leases, and a start-only setting it changes is named and waits for a restart; a bad
//! config is rejected with its line and field, and the old one keeps running. The hosts file
//! reloads all or nothing: a missing one rejects the reload, and a config without `hosts_file`
//! takes its names out of DNS.

use anyhow::{Result, ensure};

use crate::clients::Udhcpc;
use crate::dig;
use crate::netns::Lan;
use crate::server::{Reservation, Server, ServerOptions, render_config};

#[test]
fn sighup_reload_applies_a_good_config_and_keeps_the_old_one_on_a_bad_one() -> Result<()> {
    let lan = Lan::new("hu", 8, 2)?;
    let srv = lan.server_ip();
    let record = |name: &str| {
        format!(
            "\n[[dns.record]]\nname = \"{name}\"\ntype = \"A\"\nvalue = \"{}\"\n",
            lan.addr(50)
        )
    };
    let mut opts = ServerOptions {
        extra_toml: record("before"),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let mut first = Udhcpc::new(&lan, 0, "keeper")?;
    let kept_ip = first.obtain()?;
    ensure!(dig::short(&lan.probe, srv, "before.lan", "A")? == vec![lan.addr(50).to_string()]);

    // A good reload: a new record, a reservation for the second client; the lease stays.
    opts.extra_toml = record("after");
    opts.hosts = vec![Reservation {
        mac: lan.clients[1].mac.clone(),
        ip: lan.addr(10),
        name: "printer".into(),
    }];
    // With one start-only change (the TTL the DNS server copied at start): kept, and named.
    let text =
        render_config(&lan, &opts, &server.lease_file).replacen("ttl = 60\n", "ttl = 61\n", 1);
    ensure!(
        server.reload(&text)?,
        "good config rejected:\n{}",
        server.log()
    );
    ensure!(dig::short(&lan.probe, srv, "after.lan", "A")? == vec![lan.addr(50).to_string()]);
    ensure!(
        dig::a(&lan.probe, srv, "before.lan")?.is_nxdomain(),
        "old record still served"
    );
    dig::assert_resolves(&lan.probe, srv, "keeper.lan", kept_ip)?;
    let log = server.log();
    ensure!(
        log.contains("dns.ttl") && log.contains("changed; it takes effect after a restart"),
        "the start-only change is not named:\n{log}"
    );
    let mut second = Udhcpc::new(&lan, 1, "someone")?;
    ensure!(
        second.obtain()? == lan.addr(10),
        "the reloaded reservation was not used"
    );
    dig::assert_resolves(&lan.probe, srv, "printer.lan", lan.addr(10))?;

    // A bad reload: rejected naming line and field; everything keeps working as before.
    let broken = text.replace("lease_time = ", "lease_tyme = ");
    ensure!(!server.reload(&broken)?, "a broken config was accepted");
    let log = server.log();
    ensure!(
        log.contains("lease_tyme") && log.contains("unknown field"),
        "rejection does not name the field:\n{log}"
    );
    server.check_running()?;
    dig::assert_resolves(&lan.probe, srv, "printer.lan", lan.addr(10))?;
    ensure!(dig::short(&lan.probe, srv, "after.lan", "A")? == vec![lan.addr(50).to_string()]);
    first.renew()?;
    ensure!(
        lan.clients[0].ipv4()? == Some(kept_ip),
        "renewal after a rejected reload changed the address"
    );
    first.stop()?;
    second.stop()?;
    let status = server.stop()?;
    ensure!(status.success(), "leasedns exited with {status}");
    Ok(())
}

#[test]
fn sighup_reload_takes_the_hosts_file_whole_or_not_at_all() -> Result<()> {
    let lan = Lan::new("hh", 158, 0)?;
    let srv = lan.server_ip();
    let hosts = lan.path("hosts");
    std::fs::write(&hosts, format!("{} cam\n", lan.addr(40)))?;
    let record = |name: &str| {
        format!(
            "\n[[dns.record]]\nname = \"{name}\"\ntype = \"A\"\nvalue = \"{}\"\n",
            lan.addr(50)
        )
    };
    let mut opts = ServerOptions {
        dns_extra: format!("hosts_file = \"{}\"\n", hosts.display()),
        extra_toml: record("before"),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    dig::assert_resolves(&lan.probe, srv, "cam.lan", lan.addr(40))?;

    // The hosts file is gone: the whole reload is rejected, the new record included.
    std::fs::remove_file(&hosts)?;
    opts.extra_toml = record("after");
    let text = render_config(&lan, &opts, &server.lease_file);
    ensure!(
        !server.reload(&text)?,
        "a reload with a missing hosts file was accepted"
    );
    let log = server.log();
    let shown = hosts.display().to_string();
    ensure!(
        log.lines()
            .any(|l| l.contains("reload rejected") && l.contains(&shown)),
        "the rejection does not name the hosts file:\n{log}"
    );
    dig::assert_resolves(&lan.probe, srv, "cam.lan", lan.addr(40))?;
    dig::assert_resolves(&lan.probe, srv, "before.lan", lan.addr(50))?;
    ensure!(
        dig::a(&lan.probe, srv, "after.lan")?.is_nxdomain(),
        "half a reload applied"
    );

    // Without `hosts_file`: its names leave DNS, the new record arrives, in one step.
    opts.dns_extra = String::new();
    let text = render_config(&lan, &opts, &server.lease_file);
    ensure!(
        server.reload(&text)?,
        "good config rejected:\n{}",
        server.log()
    );
    ensure!(
        dig::a(&lan.probe, srv, "cam.lan")?.is_nxdomain(),
        "hosts name still served"
    );
    dig::assert_resolves(&lan.probe, srv, "after.lan", lan.addr(50))?;
    let status = server.stop()?;
    ensure!(status.success(), "leasedns exited with {status}");
    Ok(())
}
