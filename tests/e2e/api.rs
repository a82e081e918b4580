//! The JSON control API and its CLI end to end (issue 16): real clients (dhclient, udhcpc) get
//! leases; curl lists them (every field checked, filters), `leasedns leases --json` and the
//! table run in the server's namespace with the same config; curl without the token gets 401
//! from the LAN, a bad address 400, an unknown path 404, a wrong method 405; `leasedns release`
//! and curl DELETE end one lease each: dig gets NXDOMAIN at once, and after a restart the
//! leases are still gone (journaled). LAN index 125.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::clients::{Dhclient, Udhcpc};
use crate::dig;
use crate::netns::{Host, Lan};
use crate::proc::run;
use crate::server::{Server, ServerOptions, leasedns_bin, logged, stop_cleanly};

const PORT: u16 = 8053;
const TOKEN: &str = "e2e-token-0123456789abcdef";

/// curl inside `from`: (HTTP status, body). `extra`: more curl arguments.
pub fn curl(from: &Host, extra: &[&str], url: &str) -> Result<(u16, String)> {
    let out = run(
        from.exec("curl")
            .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
            .args(extra)
            .arg(url),
        Duration::from_secs(30),
    )?;
    let (body, code) = out
        .stdout
        .rsplit_once('\n')
        .context("no status from curl")?;
    let code = code
        .trim()
        .parse()
        .with_context(|| format!("curl {url}: {}{}", out.stdout, out.stderr))?;
    Ok((code, body.to_string()))
}

/// `leasedns ARGS --config CONFIG` in the server's namespace: (success, stdout, stderr).
pub fn cli(server: &Server, args: &[&str]) -> Result<(bool, String, String)> {
    let out = run(
        server
            .host
            .exec(leasedns_bin())
            .args(args)
            .arg("--config")
            .arg(&server.config),
        Duration::from_secs(30),
    )?;
    Ok((out.status.success(), out.stdout, out.stderr))
}

pub fn error_of(body: &str) -> Result<String> {
    let v: Value = serde_json::from_str(body).with_context(|| format!("not JSON: {body}"))?;
    Ok(v["error"].as_str().context("no error field")?.to_string())
}

#[test]
fn api_and_cli_list_and_end_leases_of_real_clients() -> Result<()> {
    let lan = Lan::new("ap", 125, 2)?;
    let token_file = lan.path("api.token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let opts = ServerOptions {
        durability: "fsync",
        extra_toml: format!(
            "[http]\nlisten = [\"{}:{PORT}\", \"127.0.0.1:{PORT}\"]\napi = true\napi_token_file = \"{}\"\n",
            lan.server_ip(),
            token_file.display()
        ),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let ended = logged(&server, list_then_end(&lan, &server))?;
    server.restart()?;
    logged(&server, still_gone(&lan, &server, ended))?;
    stop_cleanly(&mut server)
}

/// Both clients listed and checked; two leases ended (CLI and curl). Returns their addresses.
fn list_then_end(lan: &Lan, server: &Server) -> Result<[std::net::Ipv4Addr; 2]> {
    let srv = lan.server_ip();
    let alpha = Dhclient::new(lan, 0, "alpha")?;
    let a = alpha.obtain()?;
    let mut beta = Udhcpc::new(lan, 1, "beta")?;
    let b = beta.obtain()?;
    dig::assert_resolves(&lan.probe, srv, "alpha.lan", a)?;
    dig::assert_resolves(&lan.probe, srv, "beta.lan", b)?;
    let base = format!("http://{srv}:{PORT}/api/v1");
    let auth = format!("Authorization: Bearer {TOKEN}");

    // From the LAN: no token, 401; with it, the list.
    let (code, body) = curl(&lan.probe, &[], &format!("{base}/leases"))?;
    ensure!(code == 401, "no token from the LAN: {code} {body}");
    error_of(&body)?;
    let (code, body) = curl(&lan.probe, &["-H", &auth], &format!("{base}/leases"))?;
    ensure!(code == 200, "{code} {body}");
    let list: Vec<Value> = serde_json::from_str(&body)?;
    ensure!(list.len() == 2, "two leases: {body}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    for (ip, host) in [(a, "alpha"), (b, "beta")] {
        let l = list
            .iter()
            .find(|l| l["ip"] == ip.to_string())
            .with_context(|| format!("{ip} listed: {body}"))?;
        ensure!(l["hostname"] == host && l["state"] == "bound", "{l}");
        ensure!(l["subnet"] == lan.network().as_str(), "{l}");
        let mac = l["mac"].as_str().context("mac")?;
        ensure!(mac.len() == 17 && mac.split(':').count() == 6, "{l}");
        ensure!(!l["client_id"].as_str().context("client_id")?.is_empty());
        let expires = l["expires"].as_u64().context("expires")?;
        ensure!(expires > now && expires <= now + 600 + 5, "{l} at {now}");
    }
    // Filters, from loopback without a token (reads from loopback need none).
    let local = format!("http://127.0.0.1:{PORT}/api/v1");
    let (code, body) = curl(&server.host, &[], &format!("{local}/leases?hostname=beta"))?;
    ensure!(code == 200, "{code} {body}");
    let only: Vec<Value> = serde_json::from_str(&body)?;
    ensure!(only.len() == 1 && only[0]["ip"] == b.to_string(), "{body}");
    let (_, body) = curl(&server.host, &[], &format!("{local}/leases?state=declined"))?;
    ensure!(body == "[]", "{body}");
    let (code, body) = curl(&server.host, &[], &format!("{local}/leases/{a}"))?;
    ensure!(code == 200 && body.contains("\"alpha\""), "{code} {body}");
    let (code, body) = curl(&server.host, &[], &format!("{local}/status"))?;
    let status: Value = serde_json::from_str(&body)?;
    ensure!(code == 200 && status["leases"]["bound"] == 2, "{body}");
    ensure!(status["dhcp"]["replies"].as_u64() >= Some(4), "{body}");
    ensure!(status["version"] == env!("CARGO_PKG_VERSION"), "{body}");

    // Bad requests.
    let (code, body) = curl(&server.host, &[], &format!("{local}/leases/10.0.0.999"))?;
    ensure!(
        code == 400 && error_of(&body)?.contains("10.0.0.999"),
        "{code} {body}"
    );
    let (code, body) = curl(&server.host, &[], &format!("{local}/nothing"))?;
    ensure!(code == 404 && !error_of(&body)?.is_empty(), "{code} {body}");
    let (code, body) = curl(&server.host, &["-X", "POST"], &format!("{local}/leases"))?;
    ensure!(code == 405, "{code} {body}");
    let (code, body) = curl(
        &server.host,
        &["-X", "DELETE"],
        &format!("{local}/leases/{a}"),
    )?;
    ensure!(
        code == 401,
        "a change needs the token even from loopback: {code} {body}"
    );
    let wrong = "Authorization: Bearer e2e-token-0123456789abcdeX";
    let (code, _) = curl(
        &lan.probe,
        &["-X", "DELETE", "-H", wrong],
        &format!("{base}/leases/{a}"),
    )?;
    ensure!(code == 401, "wrong token: {code}");
    let unleased = lan.addr(250);
    let (code, body) = curl(
        &lan.probe,
        &["-X", "DELETE", "-H", &auth],
        &format!("{base}/leases/{unleased}"),
    )?;
    ensure!(code == 404, "{code} {body}");
    dig::assert_resolves(&lan.probe, srv, "alpha.lan", a)?;

    // The CLI in the server's namespace, reading the same config.
    let (ok, out, err) = cli(server, &["leases", "--json"])?;
    ensure!(ok, "leases --json: {err}");
    let cli_list: Vec<Value> = serde_json::from_str(&out)?;
    ensure!(cli_list == list, "the CLI lists what curl did: {out}");
    let (ok, table, err) = cli(server, &["leases"])?;
    ensure!(ok && table.starts_with("IP "), "{table}{err}");
    ensure!(
        table.contains(&a.to_string()) && table.contains("alpha"),
        "{table}"
    );
    let (ok, out, err) = cli(server, &["status"])?;
    ensure!(ok && out.contains("uptime_seconds"), "{out}{err}");

    // End alpha's lease with the CLI: its name is gone at once.
    let (ok, out, err) = cli(server, &["release", &a.to_string()])?;
    ensure!(ok && out.contains(&format!("released {a}")), "{out}{err}");
    ensure!(
        dig::a(&lan.probe, srv, "alpha.lan")?.is_nxdomain(),
        "alpha.lan gone"
    );
    let (ok, _, err) = cli(server, &["release", &a.to_string()])?;
    ensure!(!ok && err.contains("404"), "ended once: {err}");
    let (ok, _, err) = cli(server, &["release", "nonsense"])?;
    ensure!(!ok && err.contains("nonsense"), "{err}");
    // End beta's with curl DELETE: the answer is the ended lease.
    let (code, body) = curl(
        &lan.probe,
        &["-X", "DELETE", "-H", &auth],
        &format!("{base}/leases/{b}"),
    )?;
    let gone: Value = serde_json::from_str(&body)?;
    ensure!(code == 200 && gone["hostname"] == "beta", "{code} {body}");
    ensure!(
        dig::a(&lan.probe, srv, "beta.lan")?.is_nxdomain(),
        "beta.lan gone"
    );
    let (_, body) = curl(&server.host, &[], &format!("{local}/leases"))?;
    ensure!(body == "[]", "{body}");
    // The clients stop without releasing: only the API ended their leases.
    alpha.stop()?;
    beta.stop()?;
    Ok([a, b])
}

/// After the restart: no lease, no name.
fn still_gone(lan: &Lan, server: &Server, ended: [std::net::Ipv4Addr; 2]) -> Result<()> {
    let (code, body) = curl(
        &server.host,
        &[],
        &format!("http://127.0.0.1:{PORT}/api/v1/leases"),
    )?;
    ensure!(code == 200 && body == "[]", "after restart: {code} {body}");
    for ip in ended {
        let (code, _) = curl(
            &server.host,
            &[],
            &format!("http://127.0.0.1:{PORT}/api/v1/leases/{ip}"),
        )?;
        ensure!(code == 404, "{ip}: {code}");
    }
    for name in ["alpha.lan", "beta.lan"] {
        ensure!(
            dig::a(&lan.probe, lan.server_ip(), name)?.is_nxdomain(),
            "{name} after restart"
        );
    }
    Ok(())
}
