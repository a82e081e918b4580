//! SIGHUP reload: a good config takes effect at once (reservations, static records) and keeps
//! the leases; a bad config is rejected with its line and field, and the old one keeps running.

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
    let text = render_config(&lan, &opts, &server.lease_file);
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
