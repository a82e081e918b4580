//! Dynamic DNS, inbound, end to end: BIND's nsupdate (RFC 2136 + TSIG) and ddclient (DynDNS2
//! over HTTP) from the probe namespace against the leasedns binary; answers checked with dig.
//! LAN indexes 60 to 62.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::dig;
use crate::netns::{Host, Lan};
use crate::proc::{Output, run};
use crate::server::{Reservation, Server, ServerOptions, leasedns_bin, logged};

/// base64 of "a shared secret for the e2e tests!" and another one.
pub(crate) const SECRET: &str = "YSBzaGFyZWQgc2VjcmV0IGZvciB0aGUgZTJlIHRlc3RzIQ==";
const OTHER_SECRET: &str = "bm90IHRoZSBzZWNyZXQgdGhlIHNlcnZlciBrbm93cw==";
const CMD: Duration = Duration::from_secs(20);

/// Two keys: "ddns" may change anything in the zone (but not what the config or a lease holds),
/// "acme" only TXT records under the `_acme-challenge` prefix.
pub(crate) fn tsig_keys() -> String {
    format!(
        "[[tsig_key]]\nname = \"ddns\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{SECRET}\"\n\
         allow = [ {{ name = \"@\", subdomains = true, types = [\"ANY\"] }} ]\n\n\
         [[tsig_key]]\nname = \"acme\"\nalgorithm = \"hmac-sha512\"\nsecret = \"{SECRET}\"\n\
         allow = [ {{ prefix = \"_acme-challenge\", types = [\"TXT\"] }} ]\n"
    )
}

fn options(lan: &Lan, extra: String) -> ServerOptions {
    ServerOptions {
        durability: "fsync",
        hosts: vec![Reservation {
            mac: "02:1d:00:aa:00:05".into(),
            ip: lan.addr(5),
            name: "printer".into(),
        }],
        extra_toml: extra,
        ..ServerOptions::default()
    }
}

/// `nsupdate [-y KEY] SCRIPT` in `host`'s namespace, talking to the LAN's server in zone lan.
pub(crate) fn nsupdate(lan: &Lan, host: &Host, key: Option<&str>, body: &str) -> Result<Output> {
    let script = lan.path(&format!("nsupdate-{}.txt", rand_suffix()));
    std::fs::write(
        &script,
        format!("server {}\nzone lan.\n{body}send\n", lan.server_ip()),
    )?;
    let mut cmd = host.exec("nsupdate");
    cmd.args(["-t", "4"]);
    if let Some(key) = key {
        cmd.args(["-y", key]);
    }
    cmd.arg(&script);
    run(&mut cmd, CMD)
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn ensure_ok(out: &Output, what: &str) -> Result<()> {
    ensure!(
        out.status.success(),
        "{what}: nsupdate failed: {}",
        out.all()
    );
    Ok(())
}

fn ensure_failed_with(out: &Output, what: &str, needle: &str) -> Result<()> {
    ensure!(
        !out.status.success() && out.all().contains(needle),
        "{what}: expected a failure mentioning {needle:?}, got {}: {}",
        out.status,
        out.all()
    );
    Ok(())
}

#[test]
fn ddns_nsupdate_add_delete_prerequisite_and_restart() -> Result<()> {
    let lan = Lan::new("du", 60, 0)?;
    let mut server = Server::start(&lan, &options(&lan, tsig_keys()))?;
    let (srv, probe) = (lan.server_ip(), &lan.probe);
    let ddns = format!("hmac-sha256:ddns:{SECRET}");
    let acme = format!("hmac-sha512:acme:{SECRET}");
    let nas = lan.addr(50).to_string();

    // Signed add: dig sees it at once.
    let out = nsupdate(
        &lan,
        probe,
        Some(&ddns),
        &format!("update add nas.lan. 300 A {nas}\n"),
    )?;
    logged(&server, ensure_ok(&out, "add nas"))?;
    ensure!(dig::short(probe, srv, "nas.lan", "A")? == vec![nas.clone()]);
    let out = nsupdate(
        &lan,
        probe,
        Some(&acme),
        "update add _acme-challenge.www.lan. 60 TXT \"challenge-token\"\n",
    )?;
    logged(&server, ensure_ok(&out, "acme TXT"))?;
    ensure!(
        dig::short(probe, srv, "_acme-challenge.www.lan", "TXT")?
            == vec!["\"challenge-token\"".to_string()]
    );

    // A prerequisite that fails: "printer.lan must not exist" while the config names it.
    let out = nsupdate(
        &lan,
        probe,
        Some(&ddns),
        "prereq nxdomain printer.lan.\nupdate add other.lan. 300 A 10.9.9.9\n",
    )?;
    ensure_failed_with(&out, "prereq nxdomain", "YXDOMAIN")?;
    ensure!(
        dig::a(probe, srv, "other.lan")?.is_nxdomain(),
        "nothing was added"
    );
    // A prerequisite that holds: "nas.lan has an A record".
    let out = nsupdate(
        &lan,
        probe,
        Some(&ddns),
        "prereq yxrrset nas.lan. A\nupdate add nas.lan. 300 TXT \"storage\"\n",
    )?;
    logged(&server, ensure_ok(&out, "prereq yxrrset"))?;

    // Signed delete of the A RRset: the TXT stays, the A goes.
    let out = nsupdate(&lan, probe, Some(&ddns), "update delete nas.lan. A\n")?;
    logged(&server, ensure_ok(&out, "delete nas A"))?;
    let answer = dig::a(probe, srv, "nas.lan")?;
    ensure!(
        answer.status == "NOERROR" && answer.records.is_empty(),
        "{answer:?}"
    );

    // Restart: the dynamic records come back from the journal.
    server.restart()?;
    logged(
        &server,
        dig::short(probe, srv, "_acme-challenge.www.lan", "TXT")
            .map(|r| r == vec!["\"challenge-token\"".to_string()])
            .and_then(|same| {
                ensure!(same, "TXT lost over restart");
                Ok(())
            }),
    )?;
    ensure!(dig::short(probe, srv, "nas.lan", "TXT")? == vec!["\"storage\"".to_string()]);
    ensure!(
        dig::a(probe, srv, "nas.lan")?.records.is_empty(),
        "the deleted A stays deleted"
    );
    let status = server.stop()?;
    ensure!(status.success(), "exit {status}");
    Ok(())
}

#[test]
fn ddns_nsupdate_refusals_change_nothing() -> Result<()> {
    let lan = Lan::new("dr", 61, 0)?;
    let mut server = Server::start(&lan, &options(&lan, tsig_keys()))?;
    let (srv, probe) = (lan.server_ip(), &lan.probe);
    let add = "update add intruder.lan. 300 A 10.6.6.6\n";

    let unsigned = nsupdate(&lan, probe, None, add)?;
    ensure_failed_with(&unsigned, "unsigned", "REFUSED")?;
    // The right key name with the wrong secret: BADSIG; an unknown key name: BADKEY.
    let wrong = nsupdate(
        &lan,
        probe,
        Some(&format!("hmac-sha256:ddns:{OTHER_SECRET}")),
        add,
    )?;
    ensure!(
        !wrong.status.success(),
        "wrong secret accepted: {}",
        wrong.all()
    );
    let unknown = nsupdate(
        &lan,
        probe,
        Some(&format!("hmac-sha256:nobody:{SECRET}")),
        add,
    )?;
    ensure!(
        !unknown.status.success(),
        "unknown key accepted: {}",
        unknown.all()
    );
    // The right key, signed by a clock an hour behind: NOTAUTH with a signed BADTIME. nsupdate
    // cannot run under faketime (libfaketime and BIND's allocator clash at start), so this
    // request is signed here; a replay of a good request is refused the same way.
    logged(&server, skewed_and_replayed_requests_get_badtime(&lan))?;
    // The acme key may only write TXT under _acme-challenge: an A record is REFUSED.
    let outside = nsupdate(
        &lan,
        probe,
        Some(&format!("hmac-sha512:acme:{SECRET}")),
        add,
    )?;
    ensure_failed_with(&outside, "policy", "REFUSED")?;
    // ddns may not overwrite the config's printer (may_override = false).
    let printer = nsupdate(
        &lan,
        probe,
        Some(&format!("hmac-sha256:ddns:{SECRET}")),
        "update add printer.lan. 300 A 10.6.6.7\n",
    )?;
    ensure_failed_with(&printer, "override", "REFUSED")?;

    logged(&server, {
        let gone = dig::a(probe, srv, "intruder.lan")?;
        ensure!(gone.is_nxdomain(), "intruder.lan answers {gone:?}");
        let printer = dig::short(probe, srv, "printer.lan", "A")?;
        ensure!(
            printer == vec![lan.addr(5).to_string()],
            "printer.lan is {printer:?}"
        );
        Ok(())
    })?;
    let log = server.log();
    for needle in [
        "why=\"unsigned\"",
        "BadSig",
        "BadKey",
        "BADTIME",
        "outside the key's policy",
    ] {
        ensure!(log.contains(needle), "no {needle:?} in the log:\n{log}");
    }
    let status = server.stop()?;
    ensure!(status.success(), "exit {status}");
    Ok(())
}

/// `leasedns hash-password` with `password` on stdin.
pub(crate) fn hash_password(password: &str) -> Result<String> {
    let mut child = Command::new(leasedns_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{password}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "hash-password failed: {:?}", out);
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// ddclient 3.x, one run in the foreground with its own config and cache files.
fn ddclient(lan: &Lan, password: &str, ip: Ipv4Addr, cache: &str) -> Result<Output> {
    let conf = lan.path(&format!("ddclient-{}.conf", rand_suffix()));
    std::fs::write(
        &conf,
        format!(
            "daemon=0\nsyslog=no\nssl=no\nprotocol=dyndns2\nserver={}:8053\nlogin=router\n\
             password='{password}'\nhome.lan\n",
            lan.server_ip()
        ),
    )?;
    let mut perms = std::fs::metadata(&conf)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&conf, perms)?;
    let mut cmd = lan.probe.exec("ddclient");
    cmd.args(["-foreground", "-file"])
        .arg(&conf)
        .arg("-cache")
        .arg(lan.path(cache))
        .args(["-daemon=0", "-use=ip"])
        .arg(format!("-ip={ip}"))
        .args(["-noquiet", "-verbose"]);
    run(&mut cmd, Duration::from_secs(30))
}

/// `curl -s -u USER:PW URL` from the probe: the body.
fn curl(lan: &Lan, auth: Option<&str>, query: &str) -> Result<String> {
    let url = format!("http://{}:8053/nic/update?{query}", lan.server_ip());
    let mut cmd = lan.probe.exec("curl");
    cmd.args(["-sS", "--max-time", "10"]);
    if let Some(auth) = auth {
        cmd.args(["-u", auth]);
    }
    cmd.arg(&url);
    let out = run(&mut cmd, CMD)?;
    ensure!(out.status.success(), "curl {url}: {}", out.all());
    Ok(out.stdout)
}

#[test]
fn ddns_ddclient_good_badauth_nochg_and_curl_codes() -> Result<()> {
    let lan = Lan::new("dd", 62, 0)?;
    let hash = hash_password("router-pw")?;
    ensure!(hash.starts_with("$argon2id$"), "{hash}");
    let extra = format!(
        "[http]\nlisten = [\"{}:8053\"]\nrate_limit = 30\n\n[[dyndns_user]]\nname = \"router\"\n\
         password_hash = \"{hash}\"\nhosts = [\"home\", \"printer\"]\n",
        lan.server_ip()
    );
    let mut server = Server::start(&lan, &options(&lan, extra))?;
    let (srv, probe) = (lan.server_ip(), &lan.probe);
    let home = Ipv4Addr::new(192, 0, 2, 44);

    let first = ddclient(&lan, "router-pw", home, "cache1")?;
    ensure!(
        first.all().contains("good"),
        "ddclient did not report good: {}\nserver log:\n{}",
        first.all(),
        server.log()
    );
    logged(&server, {
        let a = dig::short(probe, srv, "home.lan", "A")?;
        ensure!(a == vec![home.to_string()], "home.lan is {a:?}");
        Ok(())
    })?;
    let bad = ddclient(&lan, "wrong-pw", Ipv4Addr::new(192, 0, 2, 45), "cache2")?;
    ensure!(
        bad.all().contains("badauth"),
        "wrong password: {}",
        bad.all()
    );
    ensure!(dig::short(probe, srv, "home.lan", "A")? == vec![home.to_string()]);
    let again = ddclient(&lan, "router-pw", home, "cache3")?;
    ensure!(
        again.all().contains("nochg"),
        "same address, fresh cache: {}",
        again.all()
    );

    // The other answers, as plain HTTP.
    let ok = Some("router:router-pw");
    ensure!(curl(&lan, None, "hostname=home.lan")? == "badauth\n");
    ensure!(curl(&lan, ok, "hostname=nas.lan&myip=192.0.2.1")? == "nohost\n");
    ensure!(curl(&lan, ok, "hostname=home&myip=192.0.2.1")? == "notfqdn\n");
    ensure!(
        curl(&lan, ok, "hostname=printer.lan&myip=192.0.2.1")? == "nohost\n",
        "config name"
    );
    // No myip: the caller's address (the probe's).
    ensure!(curl(&lan, ok, "hostname=home.lan")? == format!("good {}\n", lan.addr(2)));
    ensure!(dig::short(probe, srv, "home.lan", "A")? == vec![lan.addr(2).to_string()]);
    server.restart()?;
    ensure!(
        dig::short(probe, srv, "home.lan", "A")? == vec![lan.addr(2).to_string()],
        "kept over restart"
    );
    let status = server.stop()?;
    ensure!(status.success(), "exit {status}");
    Ok(())
}

/// One UDP exchange from inside `ns` (this thread joins the namespace, then ends).
fn udp_exchange_in(ns: &str, to: SocketAddr, bytes: Vec<u8>) -> Result<Vec<u8>> {
    let path = format!("/run/netns/{ns}");
    let exchange = std::thread::spawn(move || -> Result<Vec<u8>> {
        let netns = std::fs::File::open(&path).with_context(|| path.clone())?;
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
        sock.set_read_timeout(Some(Duration::from_secs(3)))?;
        sock.send_to(&bytes, to)?;
        let mut buf = vec![0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).context("no reply")?;
        buf.truncate(n);
        Ok(buf)
    });
    exchange
        .join()
        .map_err(|_| anyhow::anyhow!("exchange thread panicked"))?
}

fn skewed_and_replayed_requests_get_badtime(lan: &Lan) -> Result<()> {
    use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_server::proto::rr::rdata::A;
    use hickory_server::proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
    use hickory_server::proto::rr::{Name, RData, Record, RecordType};
    use leasedns::dns::tsig::{TsigKey, sign_request, verify_response};
    let key = TsigKey {
        name: Name::from_ascii("ddns.")?,
        algorithm: TsigAlgorithm::HmacSha256,
        secret: data_encoding::BASE64.decode(SECRET.as_bytes())?,
        fudge: 300,
    };
    let server = SocketAddr::new(lan.server_ip().into(), 53);
    let update = |id: u16, name: &str| -> Result<Message> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Update);
        m.add_query(Query::query(Name::from_ascii("lan.")?, RecordType::SOA));
        m.add_authority(Record::from_rdata(
            Name::from_ascii(name)?,
            300,
            RData::A(A(Ipv4Addr::new(10, 6, 6, 6))),
        ));
        Ok(m)
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let request_mac = |raw: &[u8]| -> Result<Vec<u8>> {
        match Message::from_vec(raw)?
            .additionals
            .last()
            .map(|r| r.data.clone())
        {
            Some(RData::TSIG(t)) => Ok(t.mac),
            _ => anyhow::bail!("no TSIG in our own request"),
        }
    };
    // An hour behind.
    let raw = sign_request(&update(0x5eed, "intruder.lan.")?, &key, now - 3600)
        .map_err(anyhow::Error::msg)?;
    let reply = udp_exchange_in(&lan.probe.ns, server, raw.clone())?;
    let msg = Message::from_vec(&reply)?;
    ensure!(
        msg.metadata.response_code == ResponseCode::NotAuth,
        "{msg:?}"
    );
    let tsig = verify_response(&reply, &request_mac(&raw)?, &key).map_err(anyhow::Error::msg)?;
    ensure!(tsig.error == Some(TsigError::BadTime), "{tsig:?}");
    // Signed now: applied once; the very same bytes again are a replay.
    let raw =
        sign_request(&update(0x5eee, "replayed.lan.")?, &key, now).map_err(anyhow::Error::msg)?;
    let first = Message::from_vec(&udp_exchange_in(&lan.probe.ns, server, raw.clone())?)?;
    ensure!(
        first.metadata.response_code == ResponseCode::NoError,
        "{first:?}"
    );
    let again = udp_exchange_in(&lan.probe.ns, server, raw.clone())?;
    ensure!(Message::from_vec(&again)?.metadata.response_code == ResponseCode::NotAuth);
    let tsig = verify_response(&again, &request_mac(&raw)?, &key).map_err(anyhow::Error::msg)?;
    ensure!(tsig.error == Some(TsigError::BadTime), "replay: {tsig:?}");
    // A correct MAC cut to 16 of its 32 bytes (RFC 8945 §5.2.2.1): NOTAUTH with BADTRUNC.
    let message = update(0x5eef, "truncated.lan.")?;
    let unsigned_len = message.to_vec()?.len();
    let raw = sign_request(&message, &key, now).map_err(anyhow::Error::msg)?;
    let rdlength_at = unsigned_len + 6 + 8; // owner "ddns." (6), type, class, TTL
    let mac_at = raw.len() - 6 - 32; // then original ID, error, other length
    let mut cut = raw[..mac_at + 16].to_vec();
    cut.extend_from_slice(&raw[mac_at + 32..]);
    cut[mac_at - 2..mac_at].copy_from_slice(&16u16.to_be_bytes());
    let rdlength = u16::from_be_bytes([raw[rdlength_at], raw[rdlength_at + 1]]) - 16;
    cut[rdlength_at..rdlength_at + 2].copy_from_slice(&rdlength.to_be_bytes());
    let reply = Message::from_vec(&udp_exchange_in(&lan.probe.ns, server, cut)?)?;
    ensure!(
        reply.metadata.response_code == ResponseCode::NotAuth,
        "{reply:?}"
    );
    let error = reply.additionals.last().and_then(|r| match &r.data {
        RData::TSIG(t) => t.error,
        _ => None,
    });
    ensure!(
        error == Some(TsigError::BadTrunc),
        "truncated MAC: {reply:?}"
    );
    Ok(())
}
