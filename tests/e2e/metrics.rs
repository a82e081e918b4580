//! Prometheus `/metrics` end to end (issue 16): real clients (dhclient, udhcpc) get leases, dig
//! asks their names, then curl reads `/metrics` from the daemon's HTTP listener and the values
//! are checked (addresses assigned and total, ACKs sent, DNS responses, journal commits), the
//! whole text parsed by a Prometheus parser (`prometheus-parse`, plus a strict line check, plus
//! `promtool check metrics` when promtool is installed). Who may read: loopback by default (403
//! to the LAN), `http.metrics_from` opens it, `metrics = false` is 404; forwarding through a LAN
//! upstream shows in the forwarded, cache-hit and upstream-latency series. LAN indices 120-121.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::clients::{Dhclient, Udhcpc};
use crate::dig;
use crate::netns::{Host, Lan};
use crate::proc::run;
use crate::server::{Reservation, Server, ServerOptions, Upstream, logged, stop_cleanly};

const PORT: u16 = 8053;

/// `GET url` with curl inside `from`'s namespace: (HTTP status, body).
fn fetch(from: &Host, url: &str) -> Result<(u16, String)> {
    let out = run(
        from.exec("curl")
            .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}", url]),
        Duration::from_secs(30),
    )?;
    let text = out.stdout.clone();
    let (body, code) = text.rsplit_once('\n').context("no status from curl")?;
    let code = code
        .trim()
        .parse()
        .with_context(|| format!("curl {url}: {text}{}", out.stderr))?;
    Ok((code, body.to_string()))
}

/// The config's `[http]` table.
fn http_toml(lan: &Lan, metrics: &str) -> String {
    format!(
        "[http]\nlisten = [\"{}:{PORT}\", \"127.0.0.1:{PORT}\"]\n{metrics}\n",
        lan.server_ip()
    )
}

/// Parsed samples: metric name -> (labels as `k=v,k=v` sorted) -> value.
type Samples = HashMap<String, HashMap<String, f64>>;

/// Parse with `prometheus-parse` after a strict check of every line, so that a line the lenient
/// parser would skip fails the test instead.
fn parse(text: &str) -> Result<Samples> {
    strict_lines(text)?;
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).context("prometheus-parse")?;
    let mut out: Samples = HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map_or(f64::NAN, |b| b.count)
            }
            other => bail!("{}: unexpected {other:?}", s.metric),
        };
        out.entry(s.metric)
            .or_default()
            .insert(labels.join(","), value);
    }
    Ok(out)
}

/// Every line is a HELP, a TYPE (each family once, before its samples) or a sample of a
/// declared family with well-formed labels and a number.
fn strict_lines(text: &str) -> Result<()> {
    ensure!(text.ends_with('\n'), "the text ends with a newline");
    let mut declared: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            ensure!(rest.split_once(' ').is_some(), "HELP without text: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').context("TYPE line")?;
            ensure!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "bad type: {line}"
            );
            ensure!(
                declared.insert(name.into(), kind.into()).is_none(),
                "{name} declared twice"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').context("sample without value")?;
        ensure!(
            value == "+Inf" || value.parse::<f64>().is_ok(),
            "bad value: {line}"
        );
        let name = series.split('{').next().unwrap_or(series);
        ensure!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| declared.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        ensure!(
            declared.contains_key(family),
            "sample before its TYPE: {line}"
        );
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            check_labels(labels, line)?;
        }
    }
    Ok(())
}

/// `{k="v",...}`: label names are identifiers, quotes inside values are escaped.
fn check_labels(labels: &str, line: &str) -> Result<()> {
    let inner = labels
        .strip_prefix('{')
        .and_then(|l| l.strip_suffix('}'))
        .with_context(|| format!("labels not in braces: {line}"))?;
    for pair in inner.split("\",") {
        let (k, v) = pair.split_once("=\"").context("label k=\"v\"")?;
        ensure!(
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name: {line}"
        );
        let v = v.strip_suffix('"').unwrap_or(v);
        ensure!(
            !v.replace("\\\\", "").replace("\\\"", "").contains('"'),
            "unescaped quote: {line}"
        );
    }
    Ok(())
}

/// `promtool check metrics` (Debian's prometheus package) on the text, when it is installed.
fn promtool(text: &str, dir: &std::path::Path) -> Result<()> {
    let Ok(out) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        eprintln!("promtool not installed: checked with prometheus-parse and the line check only");
        return Ok(());
    };
    ensure!(out.status.success(), "promtool --version failed");
    let file = dir.join("metrics.txt");
    std::fs::write(&file, text)?;
    let out = run(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("promtool check metrics < \"$0\"")
            .arg(&file),
        Duration::from_secs(30),
    )?;
    ensure!(
        out.status.success(),
        "promtool check metrics: {}{}",
        out.stdout,
        out.stderr
    );
    Ok(())
}

fn value(samples: &Samples, name: &str, labels: &str) -> Result<f64> {
    samples
        .get(name)
        .and_then(|m| m.get(labels))
        .copied()
        .with_context(|| format!("no {name}{{{labels}}} in {:?}", samples.get(name)))
}

#[test]
fn metrics_count_real_clients_queries_and_commits() -> Result<()> {
    let lan = Lan::new("mx", 120, 2)?;
    // A reservation outside the pool counts in the subnet's total (100 pool addresses + 1).
    let reserved = Reservation {
        mac: "02:00:00:00:12:34".into(),
        ip: lan.addr(50),
        name: "printer".into(),
    };
    let opts = ServerOptions {
        durability: "fsync",
        hosts: vec![reserved],
        extra_toml: http_toml(&lan, "metrics = true"),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    logged(&server, clients_then_scrape(&lan))?;
    stop_cleanly(&mut server)
}

fn clients_then_scrape(lan: &Lan) -> Result<()> {
    let srv = lan.server_ip();
    let alpha = Dhclient::new(lan, 0, "alpha")?;
    let a = alpha.obtain()?;
    let mut beta = Udhcpc::new(lan, 1, "beta")?;
    let b = beta.obtain()?;
    dig::assert_resolves(&lan.probe, srv, "alpha.lan", a)?;
    dig::assert_resolves(&lan.probe, srv, "beta.lan", b)?;

    // Loopback of the server's namespace: allowed by default.
    let (code, text) = fetch(&lan.server, &format!("http://127.0.0.1:{PORT}/metrics"))?;
    ensure!(code == 200, "loopback got {code}: {text}");
    let s = parse(&text)?;
    promtool(&text, lan.dir.path())?;
    let subnet = format!("subnet={}", lan.network());
    ensure!(value(&s, "leasedns_dhcp4_assigned_addresses", &subnet)? == 2.0);
    ensure!(value(&s, "leasedns_dhcp4_total_addresses", &subnet)? == 101.0);
    ensure!(value(&s, "leasedns_dhcp4_declined_addresses", &subnet)? == 0.0);
    // Each client: at least one DISCOVER, REQUEST and ACK (retransmissions may add more).
    let acks = value(&s, "leasedns_dhcp4_packets_sent_total", "operation=ack")?;
    let requests = value(
        &s,
        "leasedns_dhcp4_packets_received_total",
        "operation=request",
    )?;
    ensure!(
        acks >= 2.0 && requests >= acks,
        "acks {acks}, requests {requests}"
    );
    ensure!(
        value(
            &s,
            "leasedns_dhcp4_packets_received_total",
            "operation=discover"
        )? >= 2.0
    );
    ensure!(value(&s, "leasedns_dhcp4_packets_sent_total", "operation=offer")? >= 2.0);
    ensure!(value(&s, "leasedns_dhcp4_allocations_failed_total", "")? == 0.0);
    // Two A and two PTR lookups, each answered.
    let answered = value(&s, "leasedns_dns_responses_total", "")?;
    ensure!(answered >= 4.0, "DNS responses {answered}");
    // durability = "fsync": every grant's batch was fdatasynced and timed.
    let commits = value(&s, "leasedns_lease_journal_commits_total", "")?;
    let synced = value(&s, "leasedns_lease_journal_fdatasync_seconds", "")?;
    ensure!(
        commits >= 2.0 && synced == commits,
        "commits {commits}, timed {synced}"
    );
    ensure!(value(&s, "leasedns_lease_journal_write_errors_total", "")? == 0.0);

    // From the LAN (not loopback, no metrics_from): refused.
    let (code, body) = fetch(&lan.probe, &format!("http://{srv}:{PORT}/metrics"))?;
    ensure!(code == 403, "the LAN got {code}: {body}");
    alpha.stop()?;
    beta.stop()
}

#[test]
fn metrics_off_is_404_and_metrics_from_opens_it_to_the_lan() -> Result<()> {
    let lan = Lan::new("mo", 121, 1)?;
    let srv = lan.server_ip();
    let url = format!("http://{srv}:{PORT}/metrics");
    let off = ServerOptions {
        extra_toml: http_toml(&lan, "metrics = false"),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &off)?;
    let local = format!("http://127.0.0.1:{PORT}/metrics");
    let (code, _) = logged(&server, fetch(&lan.server, &local))?;
    ensure!(code == 404, "metrics = false: loopback got {code}");
    stop_cleanly(&mut server)?;

    // An upstream on the LAN: one forwarded question, then the same from the cache.
    let upstream_ip = lan.addr(53);
    lan.clients[0].add_addr(upstream_ip)?;
    let forwarded = lan.addr(77);
    let _upstream = Upstream::start(
        &lan,
        &lan.clients[0],
        upstream_ip,
        "example.test",
        forwarded,
    )?;
    let from = format!("metrics = true\nmetrics_from = [\"{}\"]", lan.network());
    let open = ServerOptions {
        extra_toml: http_toml(&lan, &from),
        dns_extra: format!("upstreams = [\"{upstream_ip}\"]"),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &open)?;
    for _ in 0..2 {
        let got = logged(
            &server,
            dig::short(&lan.probe, srv, "www.example.test", "A"),
        )?;
        ensure!(
            got == vec![forwarded.to_string()],
            "forwarded answer {got:?}"
        );
    }
    let (code, text) = logged(&server, fetch(&lan.probe, &url))?;
    ensure!(code == 200, "metrics_from the LAN: got {code}: {text}");
    let s = logged(&server, parse(&text))?;
    logged(&server, promtool(&text, lan.dir.path()))?;
    let subnet = format!("subnet={}", lan.network());
    ensure!(value(&s, "leasedns_dhcp4_assigned_addresses", &subnet)? == 0.0);
    ensure!(value(&s, "leasedns_dhcp4_total_addresses", &subnet)? == 100.0);
    ensure!(value(&s, "leasedns_dns_forwarded_total", "")? == 1.0);
    ensure!(value(&s, "leasedns_dns_cache_hits_total", "")? == 1.0);
    ensure!(
        value(&s, "leasedns_dns_upstream_seconds", "")? == 1.0,
        "one timed exchange"
    );
    ensure!(value(&s, "leasedns_dns_responses_total", "")? == 2.0);
    stop_cleanly(&mut server)
}
