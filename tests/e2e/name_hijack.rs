//! Names a client may not take (issue 14), end to end: real DHCP clients in namespaces ask for
//! `wpad` and `localhost` (busybox udhcpc `-x hostname:`), which must get addresses but no DNS
//! names, while a normal name resolves; and a name pre-claimed over RFC 2136 by a key without
//! `may_override` must not shadow the lease that later asks for it. LAN index 101.

use anyhow::{Result, ensure};

use crate::clients::Udhcpc;
use crate::ddns_in::{SECRET, ensure_ok, nsupdate, tsig_keys};
use crate::dig;
use crate::netns::Lan;
use crate::server::{Server, ServerOptions, logged, stop_cleanly};

#[test]
fn clients_cannot_claim_wpad_or_localhost_nor_be_shadowed_by_a_pre_claimed_name() -> Result<()> {
    let lan = Lan::new("nh", 101, 3)?;
    let opts = ServerOptions {
        extra_toml: tsig_keys(),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    logged(&server, hijack(&lan, &server))?;
    stop_cleanly(&mut server)
}

fn hijack(lan: &Lan, server: &Server) -> Result<()> {
    let (srv, probe) = (lan.server_ip(), &lan.probe);
    // A key without may_override claims laptop.lan before the laptop comes.
    let out = nsupdate(
        lan,
        probe,
        Some(&format!("hmac-sha256:ddns:{SECRET}")),
        "update add laptop.lan. 300 A 10.66.66.66\n",
    )?;
    ensure_ok(&out, "pre-claim laptop.lan")?;
    ensure!(dig::short(probe, srv, "laptop.lan", "A")? == ["10.66.66.66"]);

    let mut wpad = Udhcpc::new(lan, 0, "wpad")?;
    let mut localhost = Udhcpc::new(lan, 1, "localhost")?;
    let mut laptop = Udhcpc::new(lan, 2, "laptop")?;
    let wpad_ip = wpad.obtain()?;
    let localhost_ip = localhost.obtain()?;
    let laptop_ip = laptop.obtain()?;
    ensure!(
        lan.in_pool(wpad_ip) && lan.in_pool(localhost_ip),
        "both still get addresses"
    );

    // The normal name resolves to the lease, not to the pre-claimed record.
    dig::assert_resolves(probe, srv, "laptop.lan", laptop_ip)?;
    for blocked in ["wpad.lan", "localhost.lan"] {
        let answer = dig::a(probe, srv, blocked)?;
        ensure!(
            answer.is_nxdomain(),
            "{blocked} must not resolve: {answer:?}"
        );
    }
    let ptr = dig::ptr(probe, srv, wpad_ip)?;
    ensure!(ptr.records.is_empty(), "no PTR to a blocked name: {ptr:?}");
    ensure!(
        server.log().contains("client asked for a blocked name"),
        "the refusal is logged"
    );

    // When the laptop's lease ends, the dynamic record is served again.
    laptop.release()?;
    let back = crate::proc::poll(std::time::Duration::from_secs(10), || {
        let a = dig::short(probe, srv, "laptop.lan", "A")?;
        Ok((a == ["10.66.66.66"]).then_some(()))
    });
    ensure!(
        back.is_ok(),
        "the pre-claimed record returns after the lease"
    );
    Ok(())
}
