//! Zone transfers end to end: a real NSD secondary in the LAN's probe namespace (on a second
//! address, the one in `dns.transfer_to`), transferring `lan` and the LAN's reverse zone from
//! leasedns with TSIG key `xfr` after leasedns's signed NOTIFY, while a real dhclient gets and
//! releases a lease. dig checks who may transfer: the probe's own address unsigned is
//! REFUSED, the key or the secondary's address gets SOA ... SOA.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail, ensure};

use crate::clients::Dhclient;
use crate::dig;
use crate::netns::{Host, Lan};
use crate::proc::{Daemon, poll, run};
use crate::server::{Server, ServerOptions, stop_cleanly};

/// The TSIG secret of key `xfr`, shared by NSD and leasedns.
const SECRET: &str = "bGVhc2VkbnMtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyE=";
/// Names in the hosts file (enough for a transfer of several messages).
const HOSTS: usize = 1000;
/// How long a change may take to reach the secondary (NOTIFY, its transfer, retries).
const LAND_WAIT: Duration = Duration::from_secs(30);

/// NSD as a secondary of leasedns for `lan` and the LAN's reverse zone.
struct Nsd {
    dir: PathBuf,
    ip: Ipv4Addr,
    daemon: Option<Daemon>,
}

impl Nsd {
    fn start(lan: &Lan, ip: Ipv4Addr) -> Result<Nsd> {
        let dir = lan.path("nsd");
        std::fs::create_dir_all(&dir)?;
        let d = dir.display();
        let primary = lan.server_ip();
        let mut conf = format!(
            "server:\n  ip-address: {ip}\n  port: 53\n  username: \"\"\n  chroot: \"\"\n  \
             zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  \
             xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  \
             xfrdir: \"{d}\"\n  server-count: 1\n  verbosity: 2\n\
             remote-control:\n  control-enable: no\n\
             key:\n  name: xfr\n  algorithm: hmac-sha256\n  secret: \"{SECRET}\"\n"
        );
        for zone in ["lan".to_string(), reverse_zone(lan)] {
            conf.push_str(&format!(
                "zone:\n  name: {zone}\n  zonefile: \"{d}/{zone}.zone\"\n  \
                 allow-notify: {primary} xfr\n  request-xfr: {primary} xfr\n"
            ));
        }
        std::fs::write(dir.join("nsd.conf"), conf)?;
        let mut cmd = lan.probe.exec("nsd");
        cmd.args(["-d", "-c"]).arg(dir.join("nsd.conf"));
        let daemon = Daemon::spawn("nsd", &mut cmd, &dir.join("nsd.log"))?;
        let nsd = Nsd {
            dir,
            ip,
            daemon: Some(daemon),
        };
        // NSD answers (SERVFAIL until its first transfer) once it is up.
        poll(Duration::from_secs(15), || {
            let answer = dig::query(&lan.server, ip, "lan", "SOA")?;
            Ok((answer.status != "NOREPLY").then_some(()))
        })?;
        Ok(nsd)
    }

    fn log(&self) -> String {
        let file = std::fs::read_to_string(self.dir.join("nsd.log")).unwrap_or_default();
        let out = self.daemon.as_ref().map(Daemon::log).unwrap_or_default();
        format!("{file}{out}")
    }
}

fn reverse_zone(lan: &Lan) -> String {
    let [a, b, c] = lan.net();
    format!("{c}.{b}.{a}.in-addr.arpa")
}

/// What dig received in a transfer: the record types in order (TSIG left out) and the number
/// of TSIG records (one per signed message).
#[derive(Debug)]
struct Transfer {
    types: Vec<String>,
    signatures: usize,
}

/// `dig AXFR zone` at leasedns from `from`, over TCP; an error names dig's complaint (a refused
/// or failed transfer, a signature that does not verify).
fn axfr(from: &Host, server: Ipv4Addr, zone: &str, extra: &[&str]) -> Result<Transfer> {
    let mut cmd = from.exec("dig");
    cmd.arg(format!("@{server}"))
        .args(["+time=3", "+tries=1", "+nocmd", "+nostats"])
        .args(extra)
        .args([zone, "AXFR"]);
    let out = run(&mut cmd, Duration::from_secs(20))?;
    let text = format!("{}{}", out.stdout, out.stderr);
    if text.contains("Transfer failed") || text.contains("verify") || text.contains("BADSIG") {
        bail!("AXFR of {zone} failed: {text}");
    }
    let all: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().nth(3).map(String::from))
        .collect();
    Ok(Transfer {
        signatures: all.iter().filter(|t| *t == "TSIG").count(),
        types: all.into_iter().filter(|t| t != "TSIG").collect(),
    })
}

/// What the secondary serves for a lease: A of the name, PTR of the address.
fn at_secondary(
    lan: &Lan,
    secondary: Ipv4Addr,
    name: &str,
    ip: Ipv4Addr,
) -> Result<(Vec<String>, Vec<String>)> {
    let a = dig::query(&lan.server, secondary, name, "A")?;
    let ptr = dig::ptr(&lan.server, secondary, ip)?;
    for answer in [&a, &ptr] {
        if !matches!(answer.status.as_str(), "NOERROR" | "NXDOMAIN") {
            bail!("secondary answered {}", answer.status);
        }
    }
    Ok((a.records, ptr.records))
}

#[test]
fn dns_xfr_secondary_follows_leases_by_notify_and_transfers_are_authorised() -> Result<()> {
    let lan = Lan::new("xf", 84, 1)?;
    let secondary_ip = lan.addr(53);
    lan.probe.add_addr(secondary_ip)?;
    // 1,000 hosts-file names: the zone is ~40 KB, so a transfer is several messages, each
    // signed over the previous one's MAC (RFC 8945 §5.3.1) for NSD and dig to verify.
    let hosts = lan.path("hosts");
    let lines: String = (0..HOSTS)
        .map(|i| format!("10.99.{}.{} host-number-{i}\n", i / 250, i % 250 + 1))
        .collect();
    std::fs::write(&hosts, lines)?;
    let options = ServerOptions {
        dns_extra: format!(
            "transfer_to = [\"{secondary_ip}\"]\ntransfer_keys = [\"xfr\"]\nhosts_file = \"{}\"\n",
            hosts.display()
        ),
        extra_toml: format!(
            "\n[[tsig_key]]\nname = \"xfr\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{SECRET}\"\n"
        ),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &options)?;
    let nsd = Nsd::start(&lan, secondary_ip)?;
    let logs = |step: Result<()>| -> Result<()> {
        step.map_err(|e| {
            e.context(format!(
                "leasedns log:\n{}\nnsd log:\n{}",
                server.log(),
                nsd.log()
            ))
        })
    };

    // Who may transfer: the probe's own address, unsigned, is refused; the key is enough from
    // there; the secondary's address is enough unsigned. Over UDP, nobody.
    let srv = lan.server_ip();
    let refused = axfr(&lan.probe, srv, "lan", &[]);
    logs(match refused {
        Err(e) if e.to_string().contains("Transfer failed") => Ok(()),
        other => Err(anyhow::anyhow!("unsigned AXFR from the probe: {other:?}")),
    })?;
    let key = format!("hmac-sha256:xfr:{SECRET}");
    let signed = axfr(&lan.probe, srv, "lan", &["-y", &key])?;
    logs(ensure_soa_to_soa(&signed.types))?;
    logs(ensure(
        signed.types.len() > HOSTS && signed.signatures >= 2,
        format!(
            "{} records in {} signed messages",
            signed.types.len(),
            signed.signatures
        ),
    ))?;
    let secondary = secondary_ip.to_string();
    let by_address = axfr(&lan.probe, srv, &reverse_zone(&lan), &["-b", &secondary])?;
    logs(ensure_soa_to_soa(&by_address.types))?;
    logs(ensure(
        by_address.signatures == 0,
        "unsigned request, signed answer",
    ))?;
    let udp = udp_axfr_rcode(&lan.probe, secondary_ip, srv)?;
    logs(ensure(udp == 5, format!("AXFR over UDP: rcode {udp}")))?;

    // The hosts-file names came over in the same (multi-message, signed) transfers.
    logs(lease_comes_and_goes(
        &lan,
        nsd.ip,
        ("host-number-999.lan", "10.99.3.250"),
    ))?;
    logs(ensure(
        server.log().contains("zone transfer"),
        "leasedns logged no zone transfer",
    ))?;
    stop_cleanly(&mut server)
}

/// BIND 9 (`named -g`) as a secondary of leasedns for `lan` and the LAN's reverse zone, with
/// key `xfr` for its transfers; it asks for IXFR once it holds a zone (BIND's default).
fn start_bind(lan: &Lan, ip: Ipv4Addr) -> Result<(Daemon, PathBuf)> {
    let dir = lan.path("bind");
    std::fs::create_dir_all(&dir)?;
    let d = dir.display();
    let primary = lan.server_ip();
    let mut conf = format!(
        "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  \
         session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n  \
         listen-on port 53 {{ {ip}; }};\n  listen-on-v6 {{ none; }};\n  recursion no;\n  \
         notify no;\n  dnssec-validation no;\n  allow-query {{ any; }};\n}};\ncontrols {{ }};\n\
         key \"xfr\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n"
    );
    for zone in ["lan".to_string(), reverse_zone(lan)] {
        conf.push_str(&format!(
            "zone \"{zone}\" {{ type secondary; primaries {{ {primary} key xfr; }}; \
             file \"{d}/{zone}.bk\"; masterfile-format text; allow-notify {{ {primary}; }}; }};\n"
        ));
    }
    std::fs::write(dir.join("named.conf"), conf)?;
    let mut cmd = lan.probe.exec("named");
    cmd.args(["-g", "-4", "-c"]).arg(dir.join("named.conf"));
    let log = dir.join("named.log");
    let mut daemon = Daemon::spawn("named", &mut cmd, &log)?;
    daemon.wait_for_log("running", Duration::from_secs(15))?;
    Ok((daemon, dir))
}

#[test]
fn dns_xfr_bind_secondary_follows_leases_with_ixfr() -> Result<()> {
    let lan = Lan::new("xb", 85, 1)?;
    let secondary_ip = lan.addr(53);
    lan.probe.add_addr(secondary_ip)?;
    let options = ServerOptions {
        dns_extra: format!("transfer_to = [\"{secondary_ip}\"]\ntransfer_keys = [\"xfr\"]\n"),
        extra_toml: format!(
            "\n[[tsig_key]]\nname = \"xfr\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{SECRET}\"\n\
             [[host]]\nmac = \"02:00:00:00:00:99\"\nip = \"{}\"\nname = \"printer\"\n",
            lan.addr(99)
        ),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &options)?;
    let (bind, _dir) = start_bind(&lan, secondary_ip)?;
    let printer = lan.addr(99).to_string();
    let step = lease_comes_and_goes(&lan, secondary_ip, ("printer.lan", &printer)).and_then(|()| {
        // After its first AXFR, BIND asks for IXFR; the AXFR-style answer (RFC 1995 §4) did.
        ensure!(
            server.log().contains("kind=IXFR"),
            "BIND never asked for IXFR"
        );
        Ok(())
    });
    step.map_err(|e| {
        e.context(format!(
            "leasedns log:\n{}\nnamed log:\n{}",
            server.log(),
            bind.log()
        ))
    })?;
    stop_cleanly(&mut server)
}

/// A dhclient lease (name `alpha`) reaches the secondary at `secondary` (A and PTR) after the
/// NOTIFY and a transfer, and leaves it after its release; `also` (a static name) is served
/// there too. (The SOA refresh is an hour and retry ten minutes: only the NOTIFY can bring a
/// change within `LAND_WAIT`.)
fn lease_comes_and_goes(lan: &Lan, secondary: Ipv4Addr, also: (&str, &str)) -> Result<()> {
    let alpha = Dhclient::new(lan, 0, "alpha")?;
    let ip = alpha.obtain()?;
    let want = (vec![ip.to_string()], vec!["alpha.lan.".to_string()]);
    poll(LAND_WAIT, || {
        let got = at_secondary(lan, secondary, "alpha.lan", ip)?;
        Ok((got == want).then_some(()))
    })
    .map_err(|e| e.context("alpha never reached the secondary"))?;
    let (name, addr) = also;
    let static_name = dig::short(&lan.server, secondary, name, "A")?;
    ensure!(
        static_name == [addr],
        "{name} at the secondary: {static_name:?}"
    );
    alpha.release()?;
    poll(LAND_WAIT, || {
        let got = at_secondary(lan, secondary, "alpha.lan", ip)?;
        Ok((got.0.is_empty() && got.1.is_empty()).then_some(()))
    })
    .map_err(|e| e.context("alpha stayed at the secondary after its release"))
}

/// The rcode of an AXFR of `lan` sent over UDP from `source` (dig always uses TCP for AXFR).
fn udp_axfr_rcode(from: &Host, source: Ipv4Addr, server: Ipv4Addr) -> Result<u8> {
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('{source}', 0))\ns.settimeout(3)\n\
         s.sendto(bytes.fromhex('abcd00000001000000000000036c616e0000fc0001'), ('{server}', 53))\n\
         print(s.recv(512)[3] & 15)\n"
    );
    let mut cmd = from.exec("python3");
    cmd.args(["-c", &script]);
    let out = run(&mut cmd, Duration::from_secs(10))?;
    Ok(out.stdout.trim().parse()?)
}

fn ensure_soa_to_soa(types: &[String]) -> Result<()> {
    ensure!(
        types.len() >= 3
            && types.first().map(String::as_str) == Some("SOA")
            && types.last().map(String::as_str) == Some("SOA")
            && types.iter().any(|t| t == "NS"),
        "transfer is not SOA, NS ... SOA: {types:?}"
    );
    Ok(())
}

fn ensure(ok: bool, what: impl Into<String>) -> Result<()> {
    if ok { Ok(()) } else { bail!(what.into()) }
}
