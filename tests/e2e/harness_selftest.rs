//! Harness self-test: the LAN, both client drivers and the dig wrapper against dnsmasq. Proves
//! the harness without leasedns; must not depend on the daemon.

use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::clients::{Dhclient, Udhcpc};
use crate::dig;
use crate::netns::Lan;
use crate::server::Dnsmasq;

#[test]
fn harness_selftest_dnsmasq_dhclient_and_udhcpc() -> Result<()> {
    let lan = Lan::new("sd", 1, 2)?;
    let mut dnsmasq = Dnsmasq::start(&lan, "lan")?;
    let srv = lan.server_ip();
    let asker = &lan.probe;

    // dhclient on c0 as "alpha": an address from the pool, A and PTR answer.
    let alpha = Dhclient::new(&lan, 0, "alpha")?;
    let a_ip = alpha.obtain().with_context(|| dnsmasq.log())?;
    ensure!(lan.in_pool(a_ip), "alpha got {a_ip}, outside the pool");
    dig::assert_resolves(asker, srv, "alpha.lan", a_ip).with_context(|| dnsmasq.log())?;
    ensure!(dig::short(asker, srv, "alpha.lan", "A")? == vec![a_ip.to_string()]);

    // udhcpc on c1 as "beta": another address, resolvable too.
    let mut beta = Udhcpc::new(&lan, 1, "beta")?;
    let b_ip = beta
        .obtain()
        .with_context(|| format!("{}\n{}", beta.log(), dnsmasq.log()))?;
    ensure!(
        lan.in_pool(b_ip) && b_ip != a_ip,
        "beta got {b_ip} (alpha has {a_ip})"
    );
    dig::assert_resolves(asker, srv, "beta.lan", b_ip).with_context(|| dnsmasq.log())?;

    // Both release drivers make the server drop the names.
    alpha.release()?;
    dig::wait_gone(asker, srv, "alpha.lan", a_ip, Duration::from_secs(3))
        .with_context(|| dnsmasq.log())?;
    beta.release()?;
    dig::wait_gone(asker, srv, "beta.lan", b_ip, Duration::from_secs(3))
        .with_context(|| dnsmasq.log())?;
    beta.stop()?;
    ensure!(dnsmasq.stop()?.success(), "dnsmasq did not exit cleanly");
    Ok(())
}
