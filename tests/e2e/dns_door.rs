//! leasedns's DNS front door, end to end: floods from one client (junk datagrams, responses
//! sent as queries, slow forwarded questions, hundreds of TCP connections) do not stop another
//! client's queries; outsiders get REFUSED for names not ours; and the RFC faults of issue 12
//! (truncation, other classes, empty non-terminals, DO, zone transfers, apex NS and RA, CNAME
//! to an outside target, unknown TSIG keys), each driven with dig.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::dig;
use crate::netns::{Host, Lan};
use crate::proc::run;
use crate::server::{Server, ServerOptions, Upstream, logged, stop_cleanly};

/// The address the upstream gives every name under `example.test`.
const FORWARDED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

/// One client floods the server: random junk, responses sent as queries, `slow` questions
/// for distinct outside names, then `tcp` connections held open. Prints how many connections
/// it holds, then sleeps until killed.
const FLOOD: &str = r#"
import os, socket, sys, time
srv, slow, tcp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def q(name, ident, flags=0x0100):
    b = ident.to_bytes(2, 'big') + flags.to_bytes(2, 'big') + bytes([0, 1, 0, 0, 0, 0, 0, 0])
    for label in name.split('.'):
        b += bytes([len(label)]) + label.encode()
    return b + b'\x00\x00\x01\x00\x01'
for i in range(3000):
    u.sendto(os.urandom(i % 40), (srv, 53))
for i in range(3000):
    u.sendto(q('printer.lan', i, 0x8180), (srv, 53))
for i in range(slow):
    u.sendto(q('x%d.slow.test' % i, i), (srv, 53))
held = []
for i in range(tcp):
    try:
        held.append(socket.create_connection((srv, 53), timeout=1))
    except OSError:
        pass
def still_open():
    n = 0
    for c in held:
        try:
            c.setblocking(False)
            if c.recv(1) == b'':
                continue
        except BlockingIOError:
            pass
        except OSError:
            continue
        n += 1
    return n
# Connections over the cap are closed by the server: wait (up to 10 s) until they are.
deadline = time.time() + 10
open_now = still_open()
while open_now > 16 and time.time() < deadline:
    time.sleep(0.2)
    open_now = still_open()
print(open_now, flush=True)
time.sleep(60)
"#;

/// `dig @server ARGS` from `from`: its whole output.
fn dig_text(from: &Host, server: Ipv4Addr, args: &[&str]) -> Result<String> {
    let mut cmd = from.exec("dig");
    cmd.arg(format!("@{server}"))
        .args(["+time=2", "+tries=2"])
        .args(args);
    let out = run(&mut cmd, Duration::from_secs(15))?;
    Ok(out.stdout)
}

fn static_record(name: &str, rtype: &str, value: &str) -> String {
    format!("[[dns.record]]\nname = \"{name}\"\ntype = \"{rtype}\"\nvalue = \"{value}\"\n")
}

#[test]
fn dns_floods_from_one_client_do_not_starve_another() -> Result<()> {
    let lan = Lan::new("fl", 80, 1)?;
    let flooder = &lan.clients[0];
    flooder.add_addr(lan.addr(60))?;
    // Forwarding to an address where nothing answers: every outside question holds work for
    // the whole budget.
    let silent = lan.addr(54);
    let printer = lan.addr(5);
    let opts = ServerOptions {
        dns_extra: format!(
            "upstreams = [\"{silent}\"]\nupstream_timeout_ms = 2000\n{}",
            static_record("printer", "A", &printer.to_string())
        ),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let srv = lan.server_ip();

    let mut flood = flooder
        .exec("python3")
        .args(["-c", FLOOD, &srv.to_string(), "2000", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the flood")?;
    let mut line = String::new();
    BufReader::new(flood.stdout.take().context("flood stdout")?).read_line(&mut line)?;
    let held: usize = line.trim().parse().unwrap_or(usize::MAX);
    let checks = (|| -> Result<()> {
        ensure!(
            held <= 16,
            "one client holds {held} TCP connections open (cap 16 per source)"
        );
        // Another client, while the flooder still holds its connections: a static name (the
        // general handler, not the lease fast path) over UDP and over TCP.
        let udp = dig::query(&lan.probe, srv, "printer.lan", "A")?;
        ensure!(udp.records == vec![printer.to_string()], "UDP: {udp:?}");
        let tcp = dig::query_with(&lan.probe, srv, "printer.lan", "A", &["+tcp"])?;
        ensure!(tcp.records == vec![printer.to_string()], "TCP: {tcp:?}");
        server.check_running()
    })();
    // The flood is our own child: end it by its handle.
    let _ = flood.kill();
    let _ = flood.wait();
    logged(&server, checks)?;
    stop_cleanly(&mut server)
}

/// The config of the RFC test: only `.60` may recurse; static records for every case.
fn rfc_options(lan: &Lan, upstream: Ipv4Addr) -> ServerOptions {
    let printer = lan.addr(5).to_string();
    let mut records = static_record("printer", "A", &printer);
    for i in 0..120 {
        records.push_str(&static_record("many", "A", &format!("10.200.0.{i}")));
    }
    records.push_str(&static_record("_smb._tcp", "SRV", "0 0 445 printer.lan"));
    records.push_str(&static_record("alias", "CNAME", "www.example.test."));
    ServerOptions {
        dns_extra: format!(
            "upstreams = [\"{upstream}\"]\nrecursion_from = [\"{}/32\"]\n{records}",
            lan.addr(60)
        ),
        ..ServerOptions::default()
    }
}

#[test]
fn dns_answers_are_rfc_shaped_and_outsiders_are_refused() -> Result<()> {
    let lan = Lan::new("rf", 81, 2)?;
    let upstream_ip = lan.addr(53);
    lan.clients[0].add_addr(upstream_ip)?;
    let upstream = Upstream::start(
        &lan,
        &lan.clients[0],
        upstream_ip,
        "example.test",
        FORWARDED,
    )?;
    let inside = &lan.clients[1];
    inside.add_addr(lan.addr(60))?;
    let mut server = Server::start(&lan, &rfc_options(&lan, upstream_ip))?;
    let srv = lan.server_ip();
    let outside = &lan.probe;
    logged(&server, recursion_checks(inside, outside, srv))?;
    logged(&server, shape_checks(inside, srv))?;
    logged(&server, zone_checks(inside, srv))?;
    ensure!(
        upstream.queries("version.bind") == 0,
        "CHAOS version.bind went upstream:\n{}",
        upstream.log()
    );
    stop_cleanly(&mut server)
}

/// Outsiders: REFUSED for outside names, local names answered without RA. Insiders: both,
/// with RA on every answer; a local CNAME to an outside name comes with the target's address.
fn recursion_checks(inside: &Host, outside: &Host, srv: Ipv4Addr) -> Result<()> {
    let refused = dig::query(outside, srv, "www.example.test", "A")?;
    ensure!(
        refused.status == "REFUSED",
        "outsider forwarded: {refused:?}"
    );
    let local = dig::query(outside, srv, "printer.lan", "A")?;
    ensure!(
        local.status == "NOERROR" && !local.has_flag("ra"),
        "{local:?}"
    );
    let forwarded = dig::query(inside, srv, "www.example.test", "A")?;
    ensure!(
        forwarded.records == vec![FORWARDED.to_string()] && forwarded.has_flag("ra"),
        "insider: {forwarded:?}"
    );
    let local = dig::query(inside, srv, "printer.lan", "A")?;
    ensure!(local.has_flag("ra") && local.has_flag("aa"), "{local:?}");
    let alias = dig::query(inside, srv, "alias.lan", "A")?;
    ensure!(
        alias.records == vec!["www.example.test.".to_string(), FORWARDED.to_string()],
        "CNAME target not chased: {alias:?}"
    );
    Ok(())
}

/// Truncation, classes, DO, transfers, TSIG.
fn shape_checks(inside: &Host, srv: Ipv4Addr) -> Result<()> {
    for opts in [
        &["+ignore", "+noedns"][..],
        &["+ignore", "+bufsize=1232"][..],
    ] {
        let tc = dig::query_with(inside, srv, "many.lan", "A", opts)?;
        ensure!(
            tc.has_flag("tc") && tc.status == "NOERROR" && tc.records.is_empty(),
            "{opts:?}: {tc:?}"
        );
    }
    let text = dig_text(inside, srv, &["+ignore", "+bufsize=1232", "many.lan", "A"])?;
    ensure!(
        text.contains("EDNS: version: 0") && !text.contains("WARNING"),
        "truncated reply without OPT, or malformed:\n{text}"
    );
    let full = dig::query_with(inside, srv, "many.lan", "A", &["+tcp"])?;
    ensure!(
        full.records.len() == 120,
        "over TCP: {} records",
        full.records.len()
    );
    for (class, name) in [
        ("CH", "version.bind"),
        ("HS", "printer.lan"),
        ("CLASS42", "printer.lan"),
    ] {
        let text = dig_text(inside, srv, &["-c", class, name, "TXT"])?;
        ensure!(text.contains("status: REFUSED"), "class {class}:\n{text}");
    }
    let text = dig_text(inside, srv, &["+dnssec", "printer.lan", "A"])?;
    ensure!(text.contains("flags: do;"), "DO not copied:\n{text}");
    let text = dig_text(inside, srv, &["lan", "AXFR"])?;
    ensure!(text.contains("Transfer failed"), "AXFR:\n{text}");
    let text = dig_text(inside, srv, &["+tcp", "lan", "IXFR=1"])?;
    ensure!(
        text.contains("REFUSED") || text.contains("failed"),
        "IXFR:\n{text}"
    );
    let key = "hmac-sha256:nokey:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0";
    let text = dig_text(inside, srv, &["-y", key, "printer.lan", "A"])?;
    ensure!(
        text.contains("status: NOTAUTH") && text.contains("BADKEY"),
        "unknown TSIG key:\n{text}"
    );
    Ok(())
}

/// Empty non-terminals and the apex NS.
fn zone_checks(inside: &Host, srv: Ipv4Addr) -> Result<()> {
    let ent = dig::query(inside, srv, "_tcp.lan", "A")?;
    ensure!(
        ent.status == "NOERROR" && ent.records.is_empty() && ent.soa().is_some(),
        "empty non-terminal: {ent:?}"
    );
    let srv_rr = dig::query(inside, srv, "_smb._tcp.lan", "SRV")?;
    ensure!(srv_rr.records.len() == 1, "{srv_rr:?}");
    let ns = dig::query(inside, srv, "lan", "NS")?;
    ensure!(ns.records == vec!["lan.".to_string()], "apex NS: {ns:?}");
    let rev = dig::query(
        inside,
        srv,
        &format!("{}.in-addr.arpa", reverse_of(srv)),
        "NS",
    )?;
    ensure!(rev.records.len() == 1, "reverse apex NS: {rev:?}");
    Ok(())
}

/// "0.131.10" for 10.131.0.1: the reverse zone of the LAN's /24.
fn reverse_of(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}", o[2], o[1], o[0])
}

/// Opens `argv[2]` TCP connections to `argv[1]`:53, prints how many connected, holds them.
const HOLD: &str = r#"
import socket, sys, time
held = []
for i in range(int(sys.argv[2])):
    try:
        held.append(socket.create_connection((sys.argv[1], 53), timeout=2))
    except OSError:
        pass
print(len(held), flush=True)
time.sleep(60)
"#;

/// CPU time (user + system, clock ticks) of process `pid` so far.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(") ").context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

#[test]
fn dns_out_of_file_descriptors_backs_off_instead_of_spinning() -> Result<()> {
    let lan = Lan::new("fd", 82, 3)?;
    let opts = ServerOptions {
        dns_extra: static_record("printer", "A", &lan.addr(5).to_string()),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let srv = lan.server_ip();
    let pid = server.pid().context("leasedns pid")?;
    // Room for ten more descriptors: the 48 connections below run it out.
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let limit = format!("--nofile={}", open + 10);
    run(
        std::process::Command::new("prlimit").args([&format!("--pid={pid}"), &limit]),
        Duration::from_secs(5),
    )?;
    let mut holders = Vec::new();
    for (i, client) in lan.clients.iter().enumerate() {
        client.add_addr(lan.addr(60 + u8::try_from(i)?))?;
        let mut child = client
            .exec("python3")
            .args(["-c", HOLD, &srv.to_string(), "16"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a holder")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        holders.push(child);
    }
    let checks = (|| -> Result<()> {
        // Accepting fails (EMFILE) while the connections wait in the backlog: a loop that
        // retried at once would burn the core; backing off costs next to nothing.
        let t0 = cpu_ticks(pid)?;
        std::thread::sleep(Duration::from_secs(2));
        let used = cpu_ticks(pid)? - t0;
        ensure!(
            server.log().contains("cannot accept a DNS TCP connection"),
            "accept never failed: the test did not run leasedns out of descriptors"
        );
        ensure!(
            used < 60,
            "{used} ticks of CPU in 2 s while out of descriptors"
        );
        // UDP needs no descriptor: still answered.
        let udp = dig::query(&lan.probe, srv, "printer.lan", "A")?;
        ensure!(udp.records == vec![lan.addr(5).to_string()], "UDP: {udp:?}");
        server.check_running()
    })();
    for mut child in holders {
        let _ = child.kill();
        let _ = child.wait();
    }
    logged(&server, checks)?;
    // Once the holders are gone, TCP is served again.
    let tcp = crate::proc::poll(Duration::from_secs(20), || {
        let a = dig::query_with(&lan.probe, srv, "printer.lan", "A", &["+tcp"])?;
        Ok((a.status == "NOERROR").then_some(a))
    });
    logged(&server, tcp)?;
    stop_cleanly(&mut server)
}
