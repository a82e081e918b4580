//! The status page end to end in headless Chromium (issue 17): the browser runs on a LAN host
//! (like a phone on the network), opens `/status` from the server's LAN address, the user
//! pastes the API token; a real client (dhclient) has a lease before the page opens and
//! another (udhcpc) gets one while it is open: both rows show (the second through the live
//! event stream), with the pool bar and the events list. A click on "release" (and on "Sure?")
//! ends the first lease: its row goes and dig sees its name go. "Make static" shows the API's
//! own answer. Screenshots (desktop and phone widths) go to `target/e2e-artifacts/`. LAN 141.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::clients::{Dhclient, Udhcpc};
use crate::dig;
use crate::netns::Lan;
use crate::proc::{poll, run};
use crate::server::{Server, ServerOptions, logged, stop_cleanly};

const PORT: u16 = 8053;
const TOKEN: &str = "e2e-token-page-0123456789";

/// Where CI keeps the screenshots.
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("e2e-artifacts")
}

/// The addresses in the lease table as the page shows it.
fn rows(browser: &Browser) -> Result<Vec<String>> {
    let v = browser.eval(
        "return Array.from(document.querySelectorAll('#leases tbody tr')).map(r => r.dataset.ip)",
        json!([]),
    )?;
    Ok(serde_json::from_value(v)?)
}

fn text_of(browser: &Browser, css: &str) -> Result<String> {
    let v = browser.eval(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null",
        json!([css]),
    )?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

#[test]
fn the_status_page_shows_leases_live_and_releases_one() -> Result<()> {
    let lan = Lan::new("st", 141, 2)?;
    let token_file = lan.path("api.token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let opts = ServerOptions {
        durability: "fsync",
        extra_toml: format!(
            "[http]\nlisten = [\"{}:{PORT}\"]\napi = true\napi_token_file = \"{}\"\n",
            lan.server_ip(),
            token_file.display()
        ),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    logged(&server, drive(&lan))?;
    stop_cleanly(&mut server)
}

fn drive(lan: &Lan) -> Result<()> {
    let srv = lan.server_ip();
    let alpha = Dhclient::new(lan, 0, "alpha")?;
    let a = alpha.obtain()?;
    let browser = Browser::start(&lan.probe, lan.dir.path(), srv, (1280, 900))?;
    browser.open(&format!("http://{srv}:{PORT}/status"))?;
    // From the LAN every read needs the token: the page says so until it has one.
    let msg = poll(Duration::from_secs(30), || {
        let msg = text_of(&browser, "#msg")?;
        Ok((!msg.is_empty()).then_some(msg))
    })?;
    ensure!(msg.contains("401") && msg.contains("token"), "{msg}");
    browser.type_into("#token", TOKEN)?;
    browser.click("#save-token")?;
    let shown = poll(Duration::from_secs(30), || {
        let r = rows(&browser)?;
        Ok(r.contains(&a.to_string()).then_some(r))
    })
    .context("alpha's row")?;
    ensure!(shown.len() == 1, "{shown:?}");
    poll(Duration::from_secs(30), || {
        Ok((text_of(&browser, "#live")? == "live").then_some(()))
    })
    .context("the event stream connects")?;

    // A lease made while the page is open shows up by itself (the event stream).
    let mut beta = Udhcpc::new(lan, 1, "beta")?;
    let b = beta.obtain()?;
    poll(Duration::from_secs(30), || {
        Ok(rows(&browser)?.contains(&b.to_string()).then_some(()))
    })
    .context("beta's row arrives live")?;
    let hosts = text_of(&browser, "#leases tbody")?;
    ensure!(hosts.contains("alpha") && hosts.contains("beta"), "{hosts}");
    let pool = text_of(&browser, "#pools")?;
    ensure!(
        pool.contains(&lan.network()) && pool.contains("2 bound"),
        "{pool}"
    );
    let events = text_of(&browser, "#events")?;
    ensure!(events.contains(&format!("lease {b}")), "{events}");
    let names = text_of(&browser, "#names")?;
    ensure!(
        names.contains("alpha.lan") && names.contains("beta.lan"),
        "{names}"
    );
    // Search filters the table.
    browser.type_into("#search", "beta")?;
    ensure!(rows(&browser)? == vec![b.to_string()], "search");
    browser.eval(
        "const s = document.querySelector('#search'); s.value = ''; \
         s.dispatchEvent(new Event('input'));",
        json!([]),
    )?;
    // Sorting: by address, then the other way round.
    let by_ip = rows(&browser)?;
    browser.click("#leases th[data-key=\"ip\"]")?;
    let reversed: Vec<String> = by_ip.iter().rev().cloned().collect();
    ensure!(rows(&browser)? == reversed, "sorted descending");
    browser.click("#leases th[data-key=\"ip\"]")?;
    ensure!(rows(&browser)? == by_ip, "sorted ascending");
    let dir = artifacts();
    browser.screenshot(&dir.join("status.png"))?;

    // Release alpha from the page: two clicks (the second confirms).
    let button = format!("tr[data-ip=\"{a}\"] button.release");
    browser.click(&button)?;
    browser.click(&button)?;
    poll(Duration::from_secs(30), || {
        Ok((!rows(&browser)?.contains(&a.to_string())).then_some(()))
    })
    .context("alpha's row goes")?;
    ensure!(
        dig::a(&lan.probe, srv, "alpha.lan")?.is_nxdomain(),
        "alpha.lan left DNS"
    );
    dig::assert_resolves(&lan.probe, srv, "beta.lan", b)?;
    let events = poll(Duration::from_secs(30), || {
        let e = text_of(&browser, "#events")?;
        Ok(e.contains("del").then_some(e))
    })?;
    ensure!(events.contains(&format!("lease {a}")), "{events}");

    make_static(&browser, lan, b)?;
    browser.resize(390, 844)?;
    browser.screenshot(&dir.join("status-phone.png"))?;
    alpha.stop()?;
    beta.stop()
}

/// "Make static" shows what `POST /api/v1/leases/{ip}/reserve` answered: success, or the
/// API's own error (the same one curl gets).
fn make_static(browser: &Browser, lan: &Lan, b: std::net::Ipv4Addr) -> Result<()> {
    browser.click(&format!("tr[data-ip=\"{b}\"] button.reserve"))?;
    let msg = poll(Duration::from_secs(30), || {
        let m = text_of(browser, "#msg")?;
        let answered = m.starts_with(&format!("Make static {b}")) || m.contains("reservation");
        Ok(answered.then_some(m))
    })?;
    if msg.contains("is now a reservation") {
        return Ok(());
    }
    let url = format!(
        "http://{}:{PORT}/api/v1/leases/{b}/reserve",
        lan.server_ip()
    );
    let auth = format!("Authorization: Bearer {TOKEN}");
    let out = run(
        lan.probe.exec("curl").args([
            "-sS",
            "-X",
            "POST",
            "-H",
            &auth,
            "-w",
            "\n%{http_code}",
            &url,
        ]),
        Duration::from_secs(30),
    )?;
    let (body, code) = out.stdout.rsplit_once('\n').context("curl status")?;
    let error: Value = serde_json::from_str(body)?;
    let error = error["error"].as_str().context("an error field")?;
    ensure!(
        msg.contains(code.trim()) && msg.contains(error),
        "the page shows the API's answer ({code} {error}): {msg}"
    );
    Ok(())
}
