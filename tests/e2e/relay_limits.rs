//! Issue 14, what one port or one conflict may hold: behind a real relay (ISC dhcrelay adding
//! option 82, its circuit id naming the segment's interface) at most
//! `max_leases_per_relay_port` clients get leases, and freeing one (`leasedns release`) makes
//! room; addresses set aside by the ping check are listed (`leasedns leases --state declined`,
//! the API's `state=declined`) and an operator frees one, which the next client then gets.
//! LAN indices 151 (relay) and 152 (declined); tag "hd".

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::clients::Dhclient;
use crate::netns::{IFACE, Lan, ip};
use crate::proc::run;
use crate::relay::{segment_subnet, start_dhcrelay};
use crate::server::{Server, ServerOptions, leasedns_bin, logged, stop_cleanly};

const PORT: u16 = 8053;
const TOKEN: &str = "e2e-token-hd-0123456789abcdef";

/// `[http]` with the control API on loopback, its token in the LAN's scratch directory.
fn api_toml(lan: &Lan) -> Result<String> {
    let token_file = lan.path("api.token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    Ok(format!(
        "\n[http]\nlisten = [\"127.0.0.1:{PORT}\"]\napi = true\napi_token_file = \"{}\"\n",
        token_file.display()
    ))
}

/// `leasedns ARGS --config CONFIG` in the server's namespace; stdout, or the failure.
fn cli(server: &Server, args: &[&str]) -> Result<String> {
    let out = run(
        server
            .host
            .exec(leasedns_bin())
            .args(args)
            .arg("--config")
            .arg(&server.config),
        Duration::from_secs(30),
    )?;
    ensure!(out.status.success(), "leasedns {args:?}: {}", out.all());
    Ok(out.stdout)
}

/// The addresses `leasedns leases --json --state declined` lists.
fn declined(server: &Server) -> Result<Vec<Ipv4Addr>> {
    let body = cli(server, &["leases", "--json", "--state", "declined"])?;
    let list: Vec<Value> = serde_json::from_str(&body).with_context(|| body.clone())?;
    let mut ips = Vec::new();
    for l in &list {
        ensure!(l["state"] == "declined", "{l}");
        ips.push(l["ip"].as_str().context("ip")?.parse()?);
    }
    ips.sort();
    Ok(ips)
}

#[test]
fn one_relay_port_holds_at_most_its_limit_until_a_lease_is_freed() -> Result<()> {
    let mut lan = Lan::new("hd", 151, 0)?;
    let seg = lan.add_segment(1, 3)?;
    let opts = ServerOptions {
        global_toml: "max_leases_per_relay_port = 2\n".into(),
        extra_toml: format!("{}{}", segment_subnet(&lan, &seg), api_toml(&lan)?),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let _relay = start_dhcrelay(&lan, &seg)?;
    let client = |i: usize, name: &str| Dhclient::for_host(&lan, &seg.clients[i], name, "");
    let (first, second, third) = (client(0, "one")?, client(1, "two")?, client(2, "three")?);
    let a = logged(&server, first.obtain())?;
    logged(&server, second.obtain())?;
    // The third client behind the same relay port gets nothing.
    let refused = third.obtain();
    ensure!(refused.is_err(), "third client got {refused:?}");
    ensure!(
        server.log().contains("relay port holds its maximum"),
        "no refusal logged:\n{}",
        server.log()
    );
    // The operator ends the first lease: the port has room again.
    first.stop()?;
    let out = logged(&server, cli(&server, &["release", &a.to_string()]))?;
    ensure!(out.contains(&format!("released {a}")), "{out}");
    let c = logged(&server, third.obtain())?;
    ensure!(c >= seg.addr(&lan, 100) && c <= seg.addr(&lan, 150), "{c}");
    for cl in [&second, &third] {
        cl.stop()?;
    }
    stop_cleanly(&mut server)
}

#[test]
fn declined_addresses_are_listed_and_an_operator_frees_them() -> Result<()> {
    let lan = Lan::new("hd", 152, 2)?;
    // c1 answers pings on the allocator's first two choices: the ping check sets them aside.
    let squatted = [lan.addr(100), lan.addr(101)];
    for addr in squatted {
        let cidr = format!("{addr}/24");
        ip(&["-n", &lan.clients[1].ns, "addr", "add", &cidr, "dev", IFACE])?;
    }
    let opts = ServerOptions {
        global_toml: "ping_check = true\nping_timeout_ms = 300\n".into(),
        extra_toml: api_toml(&lan)?,
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let careful = Dhclient::new(&lan, 0, "careful")?;
    let got = logged(&server, careful.obtain())?;
    ensure!(!squatted.contains(&got), "got the squatted {got}");
    ensure!(
        logged(&server, declined(&server))? == squatted,
        "declined: {:?}",
        declined(&server)
    );
    let table = cli(&server, &["leases", "--state", "declined"])?;
    ensure!(
        squatted.iter().all(|a| table.contains(&a.to_string())) && !table.contains("bound"),
        "{table}"
    );

    // The squatter leaves; the operator frees one address, which the next client gets.
    ip(&["-n", &lan.clients[1].ns, "addr", "flush", "dev", IFACE])?;
    let out = cli(&server, &["release", &squatted[0].to_string()])?;
    ensure!(out.contains(&format!("released {}", squatted[0])), "{out}");
    ensure!(declined(&server)? == squatted[1..], "one left");
    // It asks for the freed address (option 50): granted only if no longer set aside.
    let ask = format!("send dhcp-requested-address {};", squatted[0]);
    let next = Dhclient::for_host(&lan, &lan.clients[1], "next", &ask)?;
    let got = logged(&server, next.obtain())?;
    ensure!(
        got == squatted[0],
        "next got {got}, not the freed {}",
        squatted[0]
    );
    careful.stop()?;
    next.stop()?;
    stop_cleanly(&mut server)
}
