//! The control API's names, conflicts, pools and event stream end to end (issue 16): curl
//! reads `GET /api/v1/events` (Server-Sent Events) from the LAN with the token while real
//! clients (dhclient, udhcpc) get leases, both asking for the same name: the stream shows each
//! lease (`add`, with MAC, host name, expiry and subnet) and the one name published; names
//! lists the lease name, the config record and the reservation with their sources; conflicts
//! shows the client that waits; pools counts the bound addresses. A release shows as `del`
//! in the stream, and the waiting client gets the name (a name `add` for it; conflict gone).
//! A DynDNS2 update (curl with the user's password) shows as a `record` event with its data.
//! LAN index 140.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::clients::{Dhclient, Udhcpc};
use crate::dig;
use crate::netns::Lan;
use crate::proc::{Daemon, poll};
use crate::server::{Reservation, Server, ServerOptions, logged, stop_cleanly};

const PORT: u16 = 8053;
const TOKEN: &str = "e2e-token-status-0123456789";

/// The SSE events curl saw so far, as JSON (event type, object).
fn events_seen(stream: &Daemon) -> Vec<(String, Value)> {
    let log = stream.log();
    let mut out = Vec::new();
    for block in log.split("\n\n") {
        let kind = block.lines().find_map(|l| l.strip_prefix("event: "));
        let data = block.lines().find_map(|l| l.strip_prefix("data: "));
        if let (Some(kind), Some(data)) = (kind, data)
            && let Ok(v) = serde_json::from_str::<Value>(data)
        {
            out.push((kind.to_string(), v));
        }
    }
    out
}

fn get(lan: &Lan, path: &str) -> Result<Value> {
    let url = format!("http://{}:{PORT}/api/v1/{path}", lan.server_ip());
    let auth = format!("Authorization: Bearer {TOKEN}");
    let out = crate::proc::run_ok(
        lan.probe.exec("curl").args([
            "-sS",
            "--fail-with-body",
            "--max-time",
            "20",
            "-H",
            &auth,
            &url,
        ]),
        Duration::from_secs(30),
    )?;
    serde_json::from_str(&out.stdout).with_context(|| format!("{path}: {}", out.stdout))
}

#[test]
fn names_conflicts_pools_and_the_event_stream_follow_real_clients() -> Result<()> {
    let lan = Lan::new("st", 140, 2)?;
    let token_file = lan.path("api.token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let hash = crate::ddns_in::hash_password("router-pw")?;
    let opts = ServerOptions {
        hosts: vec![Reservation {
            mac: "02:00:00:00:01:99".into(),
            ip: lan.addr(50),
            name: "printer".into(),
        }],
        extra_toml: format!(
            "[[dns.record]]\nname = \"www\"\ntype = \"CNAME\"\nvalue = \"printer.lan\"\n\
             [http]\nlisten = [\"{}:{PORT}\"]\napi = true\napi_token_file = \"{}\"\n\
             [[dyndns_user]]\nname = \"router\"\npassword_hash = \"{hash}\"\nhosts = [\"home\"]\n",
            lan.server_ip(),
            token_file.display()
        ),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    logged(&server, follow(&lan))?;
    stop_cleanly(&mut server)
}

fn follow(lan: &Lan) -> Result<()> {
    let srv = lan.server_ip();
    let url = format!("http://{srv}:{PORT}/api/v1/events?access_token={TOKEN}");
    let mut stream = Daemon::spawn(
        "curl events",
        lan.probe
            .exec("curl")
            .args(["-sSN", "--max-time", "120", &url]),
        &lan.path("events.log"),
    )?;
    stream.wait_for_log("retry:", Duration::from_secs(20))?;
    let first = Dhclient::new(lan, 0, "dup")?;
    let a = first.obtain()?;
    let mut second = Udhcpc::new(lan, 1, "dup")?;
    let b = second.obtain()?;
    dig::assert_resolves(&lan.probe, srv, "dup.lan", a)?;

    let seen = poll(Duration::from_secs(20), || {
        let seen = events_seen(&stream);
        let leases = seen.iter().filter(|(k, _)| k == "lease").count();
        Ok((leases >= 2).then_some(seen))
    })
    .with_context(|| format!("two lease events; stream:\n{}", stream.log()))?;
    for (ip, mac) in [(a, &lan.clients[0].mac), (b, &lan.clients[1].mac)] {
        let (_, e) = seen
            .iter()
            .find(|(k, e)| k == "lease" && e["ip"] == ip.to_string())
            .with_context(|| format!("{ip} in {seen:?}"))?;
        ensure!(e["action"] == "add" && e["mac"] == mac.as_str(), "{e}");
        ensure!(
            e["hostname"] == "dup" && e["subnet"] == lan.network().as_str(),
            "{e}"
        );
        ensure!(
            e["expires"].as_u64() > Some(0) && e["id"].as_u64() > Some(0),
            "{e}"
        );
    }
    let named: Vec<&Value> = seen
        .iter()
        .filter(|(k, _)| k == "name")
        .map(|(_, e)| e)
        .collect();
    ensure!(
        named.len() == 1 && named[0]["name"] == "dup.lan" && named[0]["ip"] == a.to_string(),
        "one name published, the first client's: {named:?}"
    );

    let names = get(lan, "names")?;
    let find = |name: &str, source: &str| {
        names
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["name"] == name && n["source"] == source)
            .cloned()
    };
    let dup = find("dup.lan", "lease").context("dup.lan listed")?;
    ensure!(dup["type"] == "A" && dup["state"].is_string(), "{names}");
    ensure!(find("printer.lan", "reservation").is_some(), "{names}");
    ensure!(
        find("www.lan", "config").is_some_and(|w| w["type"] == "CNAME"),
        "{names}"
    );
    let conflicts = get(lan, "conflicts")?;
    ensure!(
        conflicts[0]["name"] == "dup.lan"
            && conflicts[0]["waiting"] == b.to_string()
            && conflicts[0]["holder"]["ip"] == a.to_string()
            && conflicts[0]["holder"]["kind"] == "lease",
        "{conflicts}"
    );
    let pools = get(lan, "pools")?;
    ensure!(
        pools[0]["subnet"] == lan.network().as_str() && pools[0]["bound"] == 2,
        "{pools}"
    );
    let size = pools[0]["size"].as_u64().context("size")?;
    ensure!(pools[0]["free"].as_u64() == Some(size - 2), "{pools}");

    // The first client releases: a del event, the name moves to the waiting client.
    first.release()?;
    let seen = poll(Duration::from_secs(20), || {
        let seen = events_seen(&stream);
        let del = seen
            .iter()
            .any(|(k, e)| k == "lease" && e["action"] == "del");
        Ok(del.then_some(seen))
    })
    .with_context(|| format!("a del event; stream:\n{}", stream.log()))?;
    let (_, del) = seen
        .iter()
        .find(|(k, e)| k == "lease" && e["action"] == "del")
        .context("del")?;
    ensure!(
        del["ip"] == a.to_string() && del["reason"] == "released",
        "{del}"
    );
    ensure!(del["mac"] == lan.clients[0].mac.as_str(), "{del}");
    dig::assert_resolves(&lan.probe, srv, "dup.lan", b)?;
    let moved = poll(Duration::from_secs(20), || {
        Ok(events_seen(&stream)
            .into_iter()
            .find(|(k, e)| k == "name" && e["action"] == "add" && e["ip"] == b.to_string()))
    })
    .with_context(|| format!("the name moves to {b}; stream:\n{}", stream.log()))?;
    ensure!(moved.1["name"] == "dup.lan", "{moved:?}");
    ensure!(
        get(lan, "conflicts")? == serde_json::json!([]),
        "conflict resolved"
    );
    second.stop()?;
    dyndns_shows_as_a_record_event(lan, &stream)?;
    stream.check_running()
}

/// A DynDNS2 update from the LAN: the stream tells the record added, with its type and data.
fn dyndns_shows_as_a_record_event(lan: &Lan, stream: &Daemon) -> Result<()> {
    let url = format!(
        "http://{}:{PORT}/nic/update?hostname=home.lan&myip=192.0.2.44",
        lan.server_ip()
    );
    let out = crate::proc::run_ok(
        lan.probe
            .exec("curl")
            .args(["-sS", "--max-time", "20", "-u", "router:router-pw", &url]),
        Duration::from_secs(30),
    )?;
    ensure!(out.stdout.starts_with("good"), "dyndns: {}", out.stdout);
    let (_, record) = poll(Duration::from_secs(20), || {
        Ok(events_seen(stream).into_iter().find(|(k, _)| k == "record"))
    })
    .with_context(|| format!("a record event; stream:\n{}", stream.log()))?;
    ensure!(
        record["action"] == "add"
            && record["name"] == "home.lan"
            && record["type"] == "A"
            && record["data"] == "192.0.2.44"
            && record["ttl"].as_u64() > Some(0),
        "{record}"
    );
    let a = dig::short(&lan.probe, lan.server_ip(), "home.lan", "A")?;
    ensure!(a == vec!["192.0.2.44".to_string()], "home.lan is {a:?}");
    Ok(())
}
