//! The dnsmasq-compatible `dhcp_script` end to end (issue 16): a shell script records its
//! arguments and `DNSMASQ_*` environment. Real clients make `add` (dhclient, udhcpc), `old`
//! (a written renewal) and `del` (a RELEASE), in order. Then an event the script had not
//! recorded when leasedns was killed with -9 (the script held, the lease durable) is delivered
//! after the restart, once; and a hung script is killed after `dhcp_script_timeout` and the
//! next event still delivered. LAN index 146. A client behind a relay (ISC dhcrelay) is told
//! with the relay's address in `DNSMASQ_RELAY_ADDRESS`, one on the server's segment without
//! it. LAN index 147.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::clients::{Dhclient, Udhcpc};
use crate::netns::{IFACE, Lan};
use crate::proc::poll;
use crate::relay::{segment_subnet, start_dhcrelay};
use crate::server::{Server, ServerOptions, logged, render_config, stop_cleanly};

/// Records one line per call:
/// `ARGS | CLIENT_ID | EXPIRES | REMAINING | INTERFACE | DOMAIN | RELAY`.
/// While `hold` exists it writes its pid to `held.pid` and hangs instead.
fn hook_script(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "#!/bin/sh\nif [ -e {d}/hold ]; then echo $$ > {d}/held.pid; exec sleep 120; fi\n\
         echo \"$* | $DNSMASQ_CLIENT_ID | $DNSMASQ_LEASE_EXPIRES | $DNSMASQ_TIME_REMAINING | \
         $DNSMASQ_INTERFACE | $DNSMASQ_DOMAIN | $DNSMASQ_RELAY_ADDRESS\" >> {d}/calls\n"
    )
}

fn options(lan: &Lan, timeout: u32) -> ServerOptions {
    ServerOptions {
        durability: "fsync",
        global_toml: format!(
            "renew_write_fraction = 0\ndhcp_script = \"{}\"\ndhcp_script_timeout = {timeout}\n\
             dhcp_script_on_renewal = true\n",
            lan.path("hook.sh").display()
        ),
        ..ServerOptions::default()
    }
}

/// The calls recorded so far: (arguments, the environment fields).
fn calls(lan: &Lan) -> Result<Vec<(String, Vec<String>)>> {
    let text = match std::fs::read_to_string(lan.path("calls")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(text
        .lines()
        .map(|l| {
            let mut parts = l.split(" | ").map(str::to_string);
            let args = parts.next().unwrap_or_default();
            (args, parts.collect())
        })
        .collect())
}

/// Waits until `n` calls are recorded; their arguments.
fn wait_calls(lan: &Lan, n: usize) -> Result<Vec<String>> {
    poll(Duration::from_secs(20), || {
        let got = calls(lan)?;
        Ok((got.len() >= n).then(|| got.into_iter().map(|(a, _)| a).collect()))
    })
    .with_context(|| format!("{n} script calls; have {:?}", calls(lan)))
}

#[test]
fn dhcp_script_hears_every_change_once_across_a_kill_9() -> Result<()> {
    let lan = Lan::new("op", 146, 2)?;
    std::fs::write(lan.path("hook.sh"), hook_script(&lan.path("")))?;
    std::fs::set_permissions(lan.path("hook.sh"), std::fs::Permissions::from_mode(0o755))?;
    let mut server = Server::start(&lan, &options(&lan, 30))?;
    let (alpha, a) = logged(&server, add_old_del(&lan))?;
    let step = killed_before_the_script_ran(&lan, &mut server);
    logged(&server, step)?;
    let step = a_hung_script_times_out(&lan, &mut server, &alpha, a);
    logged(&server, step)?;
    stop_cleanly(&mut server)
}

/// add (two clients), old (a renewal), del (a release), in order, with the environment.
fn add_old_del(lan: &Lan) -> Result<(Dhclient, std::net::Ipv4Addr)> {
    let (ma, mb) = (&lan.clients[0].mac, &lan.clients[1].mac);
    let alpha = Dhclient::new(lan, 0, "alpha")?;
    let a = alpha.obtain()?;
    wait_calls(lan, 1)?;
    let mut beta = Udhcpc::new(lan, 1, "beta")?;
    let b = beta.obtain()?;
    wait_calls(lan, 2)?;
    ensure!(beta.renew()? == b, "beta renewed its address");
    wait_calls(lan, 3)?;
    beta.release()?;
    let got = wait_calls(lan, 4)?;
    let want = [
        format!("add {ma} {a} alpha"),
        format!("add {mb} {b} beta"),
        format!("old {mb} {b} beta"),
        format!("del {mb} {b} beta"),
    ];
    ensure!(got == want, "calls {got:?}, wanted {want:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let (_, env) = &calls(lan)?[0];
    let mac_id = format!("01:{ma}");
    ensure!(env[0] == mac_id, "DNSMASQ_CLIENT_ID {env:?}");
    let expires: u64 = env[1].parse().context("DNSMASQ_LEASE_EXPIRES")?;
    ensure!(expires > now && expires <= now + 605, "{env:?} at {now}");
    let left: u64 = env[2].parse().context("DNSMASQ_TIME_REMAINING")?;
    ensure!((500..=600).contains(&left), "{env:?}");
    ensure!(env[3] == IFACE && env[4] == "lan", "{env:?}");
    beta.stop()?;
    Ok((alpha, a))
}

/// beta's new lease is durable but the script hangs; kill -9; the restarted daemon tells it.
fn killed_before_the_script_ran(lan: &Lan, server: &mut Server) -> Result<()> {
    let mb = &lan.clients[1].mac;
    std::fs::write(lan.path("hold"), "")?;
    let mut beta = Udhcpc::new(lan, 1, "beta")?;
    let b = beta.obtain()?;
    let held: u32 = poll(Duration::from_secs(20), || {
        Ok(std::fs::read_to_string(lan.path("held.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok()))
    })
    .context("the script was called and held")?;
    server.kill()?;
    crate::proc::signal(held, nix::sys::signal::Signal::SIGKILL)?;
    std::fs::remove_file(lan.path("hold"))?;
    std::fs::remove_file(lan.path("held.pid"))?;
    ensure!(calls(lan)?.len() == 4, "nothing recorded while held");
    server.launch()?;
    let got = wait_calls(lan, 5)?;
    ensure!(got[4] == format!("add {mb} {b} beta"), "{got:?}");
    std::thread::sleep(Duration::from_secs(1));
    ensure!(calls(lan)?.len() == 5, "told once: {:?}", calls(lan)?);
    beta.stop()?;
    Ok(())
}

/// With a 1 s timeout: a hung call is killed and logged, and the next event is delivered.
fn a_hung_script_times_out(
    lan: &Lan,
    server: &mut Server,
    alpha: &Dhclient,
    a: std::net::Ipv4Addr,
) -> Result<()> {
    let ma = &lan.clients[0].mac;
    std::fs::write(
        &server.config,
        render_config(lan, &options(lan, 1), &server.lease_file),
    )?;
    server.restart()?;
    std::fs::write(lan.path("hold"), "")?;
    let mut gamma = Udhcpc::new(lan, 1, "gamma")?;
    gamma.obtain()?;
    poll(Duration::from_secs(20), || {
        Ok(server.log().contains("dhcp_script timed out").then_some(()))
    })
    .context("the hung script was killed")?;
    std::fs::remove_file(lan.path("hold"))?;
    alpha.release()?;
    let got = wait_calls(lan, 6)?;
    ensure!(got[5] == format!("del {ma} {a} alpha"), "{got:?}");
    gamma.stop()?;
    Ok(())
}

#[test]
fn dhcp_script_names_the_relay_a_grant_came_through() -> Result<()> {
    let mut lan = Lan::new("hr", 147, 1)?;
    let seg = lan.add_segment(1, 1)?;
    std::fs::write(lan.path("hook.sh"), hook_script(&lan.path("")))?;
    std::fs::set_permissions(lan.path("hook.sh"), std::fs::Permissions::from_mode(0o755))?;
    let opts = ServerOptions {
        extra_toml: segment_subnet(&lan, &seg),
        ..options(&lan, 30)
    };
    let mut server = Server::start(&lan, &opts)?;
    let _relay = start_dhcrelay(&lan, &seg)?;
    let step = || -> Result<()> {
        let near = Dhclient::new(&lan, 0, "near")?;
        let n = near.obtain()?;
        wait_calls(&lan, 1)?;
        let far = Dhclient::for_host(&lan, &seg.clients[0], "far", "")?;
        let f = far.obtain()?;
        wait_calls(&lan, 2)?;
        let got = calls(&lan)?;
        ensure!(
            got[0].0 == format!("add {} {n} near", lan.clients[0].mac),
            "{got:?}"
        );
        ensure!(
            got[0].1.get(5).is_some_and(|r| r.is_empty()),
            "no relay: {got:?}"
        );
        ensure!(
            got[1].0 == format!("add {} {f} far", seg.clients[0].mac),
            "{got:?}"
        );
        let relay = seg.gateway(&lan).to_string();
        ensure!(got[1].1.get(5) == Some(&relay), "relay {relay}: {got:?}");
        Ok(())
    };
    logged(&server, step())?;
    stop_cleanly(&mut server)
}
