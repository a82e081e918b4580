//! Operating leasedns over its control API (issue 16): runtime reservations and reload. Real
//! clients (dhclient, udhcpc) get leases; curl turns alpha's lease into a reservation and the
//! CLI reserves another address for beta's MAC; dig sees both names at once; bad bodies, bad
//! addresses, unknown fields and conflicts with the config's `[[host]]` get 4xx naming the
//! field; `POST /api/v1/reload` (and `leasedns reload`) answers with file, line and field of
//! a bad config and keeps the running one. After a restart the reservations hold: the names
//! resolve and beta, started afresh, gets its reserved address. LAN index 145.

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::api::{cli, curl, error_of};
use crate::clients::{Dhclient, Udhcpc};
use crate::dig;
use crate::netns::Lan;
use crate::server::{Reservation, Server, ServerOptions, logged, stop_cleanly};

const PORT: u16 = 8053;
const TOKEN: &str = "e2e-ops-token-0123456789abcdef";

fn options(lan: &Lan) -> Result<ServerOptions> {
    let token_file = lan.path("api.token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    Ok(ServerOptions {
        durability: "fsync",
        hosts: vec![Reservation {
            mac: "02:1d:00:aa:00:ee".into(),
            ip: lan.addr(20),
            name: "printer".into(),
        }],
        extra_toml: format!(
            "[http]\nlisten = [\"127.0.0.1:{PORT}\"]\napi = true\napi_token_file = \"{}\"\n",
            token_file.display()
        ),
        ..ServerOptions::default()
    })
}

#[test]
fn reservations_made_at_run_time_hold_across_a_restart() -> Result<()> {
    let lan = Lan::new("op", 145, 2)?;
    let mut server = Server::start(&lan, &options(&lan)?)?;
    let (alpha, mut beta, a, fixed) = logged(&server, reserve_two(&lan, &server))?;
    logged(&server, bad_requests(&lan, &server, a))?;
    logged(&server, reload_checks(&server))?;
    server.restart()?;
    logged(&server, after_restart(&lan, &server, &mut beta, a, fixed))?;
    alpha.stop()?;
    stop_cleanly(&mut server)
}

fn url(path: &str) -> String {
    format!("http://127.0.0.1:{PORT}/api/v1/{path}")
}

fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

/// POST with the token and a JSON body, from the server's namespace.
fn post(server: &Server, path: &str, body: &str) -> Result<(u16, String)> {
    let auth = auth();
    let args = [
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
    ];
    let mut args = args.to_vec();
    if !body.is_empty() {
        args.extend(["-d", body]);
    }
    curl(&server.host, &args, &url(path))
}

/// alpha's lease reserved with curl (with a new name), an address outside the pool reserved
/// for beta's MAC with the CLI; both names resolve at once.
fn reserve_two(
    lan: &Lan,
    server: &Server,
) -> Result<(Dhclient, Udhcpc, std::net::Ipv4Addr, std::net::Ipv4Addr)> {
    let srv = lan.server_ip();
    let alpha = Dhclient::new(lan, 0, "alpha")?;
    let a = alpha.obtain()?;
    let mut beta = Udhcpc::new(lan, 1, "beta")?;
    let b = beta.obtain()?;
    dig::assert_resolves(&lan.probe, srv, "alpha.lan", a)?;

    let (code, body) = post(
        server,
        &format!("leases/{a}/reserve"),
        r#"{"name":"alpha-fixed"}"#,
    )?;
    ensure!(code == 201, "{code} {body}");
    let r: Value = serde_json::from_str(&body)?;
    ensure!(
        r["ip"] == a.to_string() && r["name"] == "alpha-fixed",
        "{body}"
    );
    ensure!(
        r["mac"] == lan.clients[0].mac.as_str() && r["source"] == "api",
        "{body}"
    );
    dig::assert_resolves(&lan.probe, srv, "alpha-fixed.lan", a)?;

    let fixed = lan.addr(60);
    let beta_mac = lan.clients[1].mac.clone();
    let (ok, out, err) = cli(
        server,
        &[
            "reserve",
            &fixed.to_string(),
            "--mac",
            &beta_mac,
            "--name",
            "beta-fixed",
        ],
    )?;
    ensure!(ok, "reserve --mac: {out}{err}");
    ensure!(
        out.trim() == format!("reserved {fixed} for {beta_mac} (beta-fixed)"),
        "{out}"
    );
    dig::assert_resolves(&lan.probe, srv, "beta-fixed.lan", fixed)?;
    ensure!(
        b != fixed,
        "beta still holds its pool address until it comes back"
    );

    let (ok, table, err) = cli(server, &["reservations"])?;
    ensure!(ok, "{err}");
    let rows: Vec<&str> = table.lines().collect();
    ensure!(rows.len() == 4 && rows[0].starts_with("IP "), "{table}");
    ensure!(
        rows[1].contains("printer") && rows[1].ends_with("config"),
        "{table}"
    );
    ensure!(
        rows[2].contains("alpha-fixed") && rows[2].ends_with("api"),
        "{table}"
    );
    ensure!(
        rows[3].contains(&beta_mac) && rows[3].contains("beta-fixed"),
        "{table}"
    );
    Ok((alpha, beta, a, fixed))
}

/// 4xx naming the field (and the value) for every bad request; nothing changes.
fn bad_requests(lan: &Lan, server: &Server, a: std::net::Ipv4Addr) -> Result<()> {
    let cases: [(&str, &str, u16, &str); 9] = [
        (
            "reservations",
            r#"{"ip":"10.0.0.999","mac":"02:00:00:00:00:01"}"#,
            400,
            "10.0.0.999",
        ),
        (
            "reservations",
            r#"{"ip":"10.1.2.3","mac":"02:00:00:00:00:01"}"#,
            400,
            "ip: 10.1.2.3",
        ),
        (
            "reservations",
            r#"{"ip":"IP","mac":"02:00:00:00:00:01","colour":"red"}"#,
            400,
            "colour",
        ),
        (
            "reservations",
            r#"{"ip":"IP","mac":"not-a-mac"}"#,
            400,
            "mac: `not-a-mac`",
        ),
        (
            "reservations",
            r#"{"ip":"IP","mac":"02:00:00:00:00:01","name":"a b"}"#,
            400,
            "name:",
        ),
        (
            "reservations",
            r#"{"ip":"PRINTER","mac":"02:00:00:00:00:01"}"#,
            409,
            "(for printer)",
        ),
        (
            "reservations",
            r#"{"ip":"IP","mac":"02:00:00:00:00:01","name":"printer"}"#,
            409,
            "name:",
        ),
        ("reservations", "{\"ip\":", 400, "request body"),
        ("leases/IP/reserve", "", 404, "no lease on"),
    ];
    let free = lan.addr(70).to_string();
    let printer = lan.addr(20).to_string();
    for (path, body, want, says) in cases {
        let body = body.replace("PRINTER", &printer).replace("IP", &free);
        let path = path.replace("IP", &free);
        let (code, answer) = post(server, &path, &body)?;
        let e = error_of(&answer)?;
        ensure!(
            code == want && e.contains(says),
            "{path} {body}: {code} {answer}"
        );
    }
    let (code, body) = post(server, &format!("leases/{a}/reserve"), "")?;
    ensure!(
        code == 409 && error_of(&body)?.contains("already reserved"),
        "{code} {body}"
    );
    let (code, _) = curl(
        &server.host,
        &["-X", "POST"],
        &url(&format!("leases/{a}/reserve")),
    )?;
    ensure!(code == 401, "a reservation needs the token: {code}");
    let (code, body) = curl(
        &server.host,
        &["-X", "DELETE", "-H", &auth()],
        &url(&format!("reservations/{printer}")),
    )?;
    ensure!(
        code == 409 && error_of(&body)?.contains("config"),
        "{code} {body}"
    );
    let (code, body) = curl(
        &server.host,
        &["-X", "PUT", "-H", &auth()],
        &url("reservations"),
    )?;
    ensure!(code == 405, "{code} {body}");
    let (_, body) = curl(&server.host, &[], &url("reservations"))?;
    let list: Vec<Value> = serde_json::from_str(&body)?;
    ensure!(list.len() == 3, "nothing changed: {body}");
    Ok(())
}

/// `POST /api/v1/reload`: a good config reloads; a bad one answers where and why and the
/// running config stays (the names still resolve).
fn reload_checks(server: &Server) -> Result<()> {
    let good = std::fs::read_to_string(&server.config)?;
    let (code, body) = post(server, "reload", "")?;
    ensure!(code == 200 && body.contains("reloaded"), "{code} {body}");
    let bad = format!("{good}\n[[host]]\nmac = \"zz:zz\"\nip = \"10.195.0.30\"\n");
    std::fs::write(&server.config, &bad)?;
    let (code, body) = post(server, "reload", "")?;
    let v: Value = serde_json::from_str(&body)?;
    let line = bad
        .lines()
        .position(|l| l.contains("zz:zz"))
        .context("line")?
        + 1;
    ensure!(code == 400, "{code} {body}");
    ensure!(v["file"] == server.config.display().to_string(), "{body}");
    ensure!(v["line"] == line && v["field"] == "host[1].mac", "{body}");
    ensure!(v["value"] == "\"zz:zz\"", "{body}");
    ensure!(
        v["message"].as_str().is_some_and(|m| m.contains("MAC"))
            && v["error"].as_str().is_some_and(|m| m.contains("zz:zz")),
        "{body}"
    );
    // The CLI reads the same file for the API address: it reports the error itself.
    let (ok, out, err) = cli(server, &["reload"])?;
    ensure!(!ok && err.contains("host[1].mac"), "{out}{err}");
    std::fs::write(&server.config, &good)?;
    let (ok, out, err) = cli(server, &["reload"])?;
    ensure!(ok && out.contains("reloaded"), "{out}{err}");
    let (_, body) = curl(&server.host, &[], &url("reservations"))?;
    ensure!(
        body.contains("alpha-fixed") && body.contains("beta-fixed"),
        "{body}"
    );
    Ok(())
}

/// After the restart: the names resolve, beta started afresh gets its reserved address, and
/// removing that reservation takes its name out of DNS.
fn after_restart(
    lan: &Lan,
    server: &Server,
    beta: &mut Udhcpc,
    a: std::net::Ipv4Addr,
    fixed: std::net::Ipv4Addr,
) -> Result<()> {
    let srv = lan.server_ip();
    dig::assert_resolves(&lan.probe, srv, "alpha-fixed.lan", a)?;
    dig::assert_resolves(&lan.probe, srv, "beta-fixed.lan", fixed)?;
    beta.release()?;
    beta.stop()?;
    let mut again = Udhcpc::new(lan, 1, "beta")?;
    let got = again.obtain()?;
    ensure!(got == fixed, "beta got {got}, its reservation is {fixed}");
    let (ok, out, err) = cli(server, &["unreserve", &fixed.to_string()])?;
    ensure!(
        ok && out.contains(&format!("removed the reservation of {fixed}")),
        "{out}{err}"
    );
    // beta's lease keeps the name it was granted under (from the reservation).
    let (_, body) = curl(&server.host, &[], &url("reservations"))?;
    ensure!(
        !body.contains("beta-fixed") && body.contains("alpha-fixed"),
        "{body}"
    );
    again.stop()?;
    Ok(())
}
