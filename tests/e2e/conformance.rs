//! RFC 2131 / RFC 6842 conformance (issue 13): a scripted client sends, over a real socket in a
//! LAN namespace, the exact packets that exposed each fault, and the reply bytes (or their
//! absence) are checked. Also `check-config` on one client in two reservations. Knows nothing
//! of the server's code; builds packets with dhcproto and reads options from the raw bytes.

use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use dhcproto::Encodable;
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType};

use crate::dhcp_load::socket_in;
use crate::netns::{Host, Lan};
use crate::proc::run;
use crate::server::{Server, ServerOptions, leasedns_bin, logged, render_config, stop_cleanly};

/// How long a reply may take; also how long silence is waited for.
pub const REPLY_WAIT: Duration = Duration::from_millis(1500);

/// A hand-driven DHCP client on port 68 of a LAN host, sending to 255.255.255.255:67.
pub struct Scripted {
    sock: UdpSocket,
    xid: u32,
}

impl Scripted {
    pub fn new(host: &Host) -> Result<Scripted> {
        let sock = socket_in(&host.ns, "0.0.0.0:68".parse()?)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Scripted {
            sock,
            xid: 0x1300_0000,
        })
    }

    /// A message of `msg_type` from `mac`, broadcast flag set, with `opts` added.
    pub fn message(
        &mut self,
        msg_type: MessageType,
        mac: [u8; 6],
        opts: Vec<DhcpOption>,
    ) -> Message {
        self.xid = self.xid.wrapping_add(1);
        let un = Ipv4Addr::UNSPECIFIED;
        let mut msg = Message::new_with_id(self.xid, un, un, un, un, &mac);
        msg.set_flags(Flags::default().set_broadcast());
        msg.opts_mut().insert(DhcpOption::MessageType(msg_type));
        for o in opts {
            msg.opts_mut().insert(o);
        }
        msg
    }

    /// Build (see `message`) and `exchange` in one step.
    pub fn ask(
        &mut self,
        msg_type: MessageType,
        mac: [u8; 6],
        opts: Vec<DhcpOption>,
    ) -> Result<Option<Vec<u8>>> {
        let msg = self.message(msg_type, mac, opts);
        self.exchange(&msg)
    }

    /// Send `msg` (broadcast), expecting no reply.
    pub fn send(&mut self, msg: &Message) -> Result<()> {
        self.sock
            .send_to(&msg.to_vec()?, "255.255.255.255:67")
            .context("sending to the DHCP server")?;
        Ok(())
    }

    /// Send `msg` and return the raw reply with its xid, or None after `REPLY_WAIT`.
    pub fn exchange(&mut self, msg: &Message) -> Result<Option<Vec<u8>>> {
        self.send(msg)?;
        let deadline = Instant::now() + REPLY_WAIT;
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            let n = match self.sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let reply = &buf[..n];
            if n >= 240 && reply[0] == 2 && reply[4..8] == msg.xid().to_be_bytes() {
                return Ok(Some(reply.to_vec()));
            }
        }
        Ok(None)
    }
}

/// The value of option `code` in a raw reply (options area only; replies here never overload).
pub fn option(reply: &[u8], code: u8) -> Option<Vec<u8>> {
    let mut i = 240;
    while let Some(&c) = reply.get(i) {
        match c {
            0 => i += 1,
            255 => return None,
            _ => {
                let len = usize::from(*reply.get(i + 1)?);
                let value = reply.get(i + 2..i + 2 + len)?;
                if c == code {
                    return Some(value.to_vec());
                }
                i += 2 + len;
            }
        }
    }
    None
}

pub fn msg_type(reply: &[u8]) -> Option<u8> {
    option(reply, 53).and_then(|v| v.first().copied())
}
pub fn yiaddr(reply: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(reply[16], reply[17], reply[18], reply[19])
}
pub fn ciaddr(reply: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(reply[12], reply[13], reply[14], reply[15])
}

/// Reload `server` with `text` and wait until the DHCP thread has taken the new config (its
/// own log line may come after the daemon's "reloaded").
pub fn reload_dhcp(server: &mut Server, text: &str) -> Result<()> {
    let applied = |s: &Server| s.log().matches("DHCP settings reloaded").count();
    let before = applied(server);
    ensure!(server.reload(text)?, "reload rejected:\n{}", server.log());
    crate::proc::poll(Duration::from_secs(5), || {
        Ok((applied(server) > before).then_some(()))
    })
    .with_context(|| format!("the DHCP thread did not take the reload:\n{}", server.log()))
}

pub const OFFER: u8 = 2;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;

#[test]
fn scripted_packets_get_the_replies_rfc_2131_and_6842_ask_for() -> Result<()> {
    let lan = Lan::new("rf", 90, 0)?;
    let mut server = Server::start(&lan, &ServerOptions::default())?;
    let srv = lan.server_ip();
    let mut c = Scripted::new(&lan.probe)?;
    logged(&server, faults_2_and_4(&mut c, srv))?;
    let reboot = fault_3_and_5(&mut c, &lan, &mut server);
    logged(&server, reboot)?;
    server.check_running()?;
    stop_cleanly(&mut server)
}

/// Fault 2: option 61 in OFFER, ACK and NAK, byte for byte. Fault 4: a DISCOVER with ciaddr
/// 255.255.255.255 still gets its OFFER (broadcast, as its flag asks), with ciaddr 0.
fn faults_2_and_4(c: &mut Scripted, srv: Ipv4Addr) -> Result<()> {
    let mac = [2, 0x13, 0, 0, 0, 1];
    // An unusual identifier (type 0, free-form bytes) so nothing can rebuild it from chaddr.
    let cid = b"\x00conformance-61".to_vec();
    let id = || DhcpOption::ClientIdentifier(cid.clone());
    let mut discover = c.message(MessageType::Discover, mac, vec![id()]);
    discover.set_ciaddr(Ipv4Addr::BROADCAST);
    let offer = c
        .exchange(&discover)?
        .context("no OFFER to a DISCOVER with ciaddr 255.255.255.255")?;
    ensure!(msg_type(&offer) == Some(OFFER), "not an OFFER: {offer:?}");
    ensure!(
        ciaddr(&offer) == Ipv4Addr::UNSPECIFIED,
        "OFFER ciaddr {}",
        ciaddr(&offer)
    );
    ensure!(
        option(&offer, 61) == Some(cid.clone()),
        "OFFER option 61: {:?}",
        option(&offer, 61)
    );
    let got = yiaddr(&offer);
    let sid = DhcpOption::ServerIdentifier(srv);
    let request = c.message(
        MessageType::Request,
        mac,
        vec![id(), sid.clone(), DhcpOption::RequestedIpAddress(got)],
    );
    let ack = c.exchange(&request)?.context("no ACK")?;
    ensure!(
        msg_type(&ack) == Some(ACK) && yiaddr(&ack) == got,
        "not an ACK of {got}"
    );
    ensure!(
        option(&ack, 61) == Some(cid.clone()),
        "ACK option 61: {:?}",
        option(&ack, 61)
    );
    let wrong = Ipv4Addr::from(u32::from(got) + 1);
    let request = c.message(
        MessageType::Request,
        mac,
        vec![id(), sid, DhcpOption::RequestedIpAddress(wrong)],
    );
    let nak = c.exchange(&request)?.context("no NAK")?;
    ensure!(msg_type(&nak) == Some(NAK), "not a NAK");
    ensure!(
        option(&nak, 61) == Some(cid),
        "NAK option 61: {:?}",
        option(&nak, 61)
    );
    // Without option 61, none comes back.
    let plain = c.message(MessageType::Discover, [2, 0x13, 0, 0, 0, 2], vec![]);
    let offer = c.exchange(&plain)?.context("no OFFER")?;
    ensure!(option(&offer, 61).is_none(), "option 61 invented");
    Ok(())
}

/// Fault 3: INIT-REBOOT from a client with no record, for a free address: silence; then ACK
/// once `init_reboot_unknown = "ack"` is loaded. Fault 5: a REQUEST with no server id, no
/// requested address and ciaddr 0 gets a NAK; an INFORM with ciaddr 0 gets nothing.
fn fault_3_and_5(c: &mut Scripted, lan: &Lan, server: &mut Server) -> Result<()> {
    let stranger = [2, 0x13, 0, 0, 0, 3];
    let free = lan.addr(150);
    let reboot = c.message(
        MessageType::Request,
        stranger,
        vec![DhcpOption::RequestedIpAddress(free)],
    );
    let r = c.exchange(&reboot)?;
    ensure!(
        r.is_none(),
        "INIT-REBOOT from an unknown client answered: {r:?}"
    );
    let bare = c.message(MessageType::Request, stranger, vec![]);
    let nak = c
        .exchange(&bare)?
        .context("no NAK to a REQUEST naming no address")?;
    ensure!(msg_type(&nak) == Some(NAK), "not a NAK: {nak:?}");
    let inform = c.message(MessageType::Inform, stranger, vec![]);
    let r = c.exchange(&inform)?;
    ensure!(r.is_none(), "INFORM without ciaddr answered: {r:?}");
    // dnsmasq's behaviour, explicitly asked for.
    let opts = ServerOptions {
        global_toml: "init_reboot_unknown = \"ack\"\n".into(),
        ..ServerOptions::default()
    };
    let text = render_config(lan, &opts, &server.lease_file);
    reload_dhcp(server, &text)?;
    let reboot = c.message(
        MessageType::Request,
        stranger,
        vec![DhcpOption::RequestedIpAddress(free)],
    );
    let ack = c
        .exchange(&reboot)?
        .context("no ACK with init_reboot_unknown = \"ack\"")?;
    ensure!(
        msg_type(&ack) == Some(ACK) && yiaddr(&ack) == free,
        "not an ACK of {free}"
    );
    Ok(())
}

/// Fault 6: check-config rejects one MAC in two reservations, naming file, line and field.
#[test]
fn check_config_rejects_one_mac_in_two_reservations() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("twice.toml");
    let text = format!(
        "domain = \"lan\"\nlease_file = \"{}\"\n[[subnet]]\nnetwork = \"10.0.0.0/24\"\n\
         pool_start = \"10.0.0.100\"\npool_end = \"10.0.0.199\"\n\
         [[host]]\nmac = \"52:54:00:aa:bb:cc\"\nip = \"10.0.0.10\"\n\
         [[host]]\nip = \"10.0.0.11\"\nmac = \"52:54:00:AA:BB:CC\"\n",
        dir.path().join("leases").display()
    );
    std::fs::write(&path, text)?;
    let out = run(
        Command::new(leasedns_bin()).arg("check-config").arg(&path),
        Duration::from_secs(10),
    )?;
    ensure!(!out.status.success(), "accepted:\n{}", out.all());
    let want = format!("{}:12: host[1].mac", path.display());
    ensure!(out.all().contains(&want), "no `{want}` in:\n{}", out.all());
    ensure!(
        out.all().contains("host[0]"),
        "the first holder is not named:\n{}",
        out.all()
    );
    Ok(())
}

/// A raw option for dhcproto (PXE's 93, 94, 97 and the like).
fn raw_opt(code: u8, data: &[u8]) -> DhcpOption {
    DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
        dhcproto::v4::OptionCode::from(code),
        data.to_vec(),
    ))
}

/// A NUL-terminated header field (sname or file) as text.
fn field(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Network boot (issue 13): a PXE ROM's DISCOVER and REQUEST (option 60 PXEClient, 93, 94, 97,
/// asking for 66 and 67) get siaddr, sname and file from the PXE class, and the file named
/// there downloads by TFTP from siaddr (dnsmasq's TFTP server in the server namespace); an
/// iPXE request (user class iPXE) gets the iPXE class's script instead.
#[test]
fn pxe_and_ipxe_clients_get_their_boot_server_and_file() -> Result<()> {
    let lan = Lan::new("px", 91, 0)?;
    let srv = lan.server_ip();
    let root = lan.path("tftp");
    std::fs::create_dir_all(&root)?;
    let image = b"leasedns network boot test image\n".repeat(40);
    std::fs::write(root.join("undionly.kpxe"), &image)?;
    let script = format!("http://{srv}/boot.ipxe");
    let opts = ServerOptions {
        subnet_toml: format!("next_server = \"{srv}\"\n"),
        extra_toml: format!(
            "[[class]]\nname = \"ipxe\"\nuser_class = \"iPXE\"\nboot_file = \"{script}\"\n\n\
             [[class]]\nname = \"pxe\"\nvendor_class = \"PXEClient\"\nserver_name = \"boot.lan\"\n\
             boot_file = \"undionly.kpxe\"\n"
        ),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let mut tftpd = crate::proc::Daemon::spawn(
        "dnsmasq-tftp",
        lan.server.exec("dnsmasq").args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=eth0",
            "--bind-interfaces",
            "--enable-tftp",
            &format!("--tftp-root={}", root.display()),
            "--user=root",
            "--log-facility=-",
        ]),
        &lan.path("tftpd.log"),
    )?;
    tftpd.wait_for_log("TFTP root", Duration::from_secs(10))?;
    let mut c = Scripted::new(&lan.probe)?;
    let mac = [2, 0x13, 0, 0, 0, 0x91];
    let pxe = || {
        vec![
            DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
            raw_opt(93, &[0, 0]),
            raw_opt(94, &[1, 2, 1]),
            raw_opt(97, &[0; 17]),
            DhcpOption::MaxMessageSize(1260),
            DhcpOption::ParameterRequestList(
                [1, 3, 43, 60, 66, 67, 128, 129, 130, 131, 132, 133, 134, 135]
                    .map(dhcproto::v4::OptionCode::from)
                    .to_vec(),
            ),
        ]
    };
    let offer = c.ask(MessageType::Discover, mac, pxe())?;
    let offer = logged(&server, offer.context("no OFFER to the PXE DISCOVER"))?;
    let mut req = pxe();
    req.push(DhcpOption::ServerIdentifier(srv));
    req.push(DhcpOption::RequestedIpAddress(yiaddr(&offer)));
    let ack = c.ask(MessageType::Request, mac, req)?;
    let ack = logged(&server, ack.context("no ACK to the PXE REQUEST"))?;
    for (what, r) in [("OFFER", &offer), ("ACK", &ack)] {
        let siaddr = Ipv4Addr::new(r[20], r[21], r[22], r[23]);
        ensure!(siaddr == srv, "{what} siaddr {siaddr}");
        ensure!(
            field(&r[44..108]) == "boot.lan",
            "{what} sname {:?}",
            field(&r[44..108])
        );
        ensure!(
            field(&r[108..236]) == "undionly.kpxe",
            "{what} file {:?}",
            field(&r[108..236])
        );
        ensure!(
            option(r, 66).as_deref() == Some(&b"boot.lan"[..]),
            "{what} option 66"
        );
        ensure!(
            option(r, 67).as_deref() == Some(&b"undionly.kpxe"[..]),
            "{what} option 67"
        );
    }
    // What a PXE ROM does next: fetch the file from siaddr by TFTP.
    let url = format!("tftp://{srv}/{}", field(&ack[108..236]));
    let got = run(
        lan.probe
            .exec("curl")
            .args(["-s", "--max-time", "10", &url]),
        Duration::from_secs(15),
    )?;
    ensure!(got.status.success(), "TFTP download failed: {}", got.all());
    ensure!(
        got.stdout.as_bytes() == image.as_slice(),
        "TFTP download differs"
    );
    // Chain-loaded iPXE: same machine, now with user class iPXE.
    let mut ipxe = pxe();
    ipxe.push(DhcpOption::UserClass(b"\x04iPXE".to_vec()));
    let offer = c.ask(MessageType::Discover, mac, ipxe)?;
    let offer = logged(&server, offer.context("no OFFER to the iPXE DISCOVER"))?;
    ensure!(
        field(&offer[108..236]) == script,
        "iPXE file {:?}",
        field(&offer[108..236])
    );
    ensure!(Ipv4Addr::new(offer[20], offer[21], offer[22], offer[23]) == srv);
    // The grant's log line names the MAC (issue 13: logs an operator can read).
    ensure!(
        server.log().contains("02:13:00:00:00:91"),
        "no MAC in the ACK log line"
    );
    drop(tftpd);
    stop_cleanly(&mut server)
}

/// Issue 14 (DHCP): one MAC sending DISCOVER + DECLINE pairs for every address it is offered
/// used to put the whole pool aside; a forged RELEASE ended a victim's lease. Now a DECLINE
/// counts only from the holder of a bound lease, and a RELEASE only from the holder to our
/// server id: after the attack a real client is served and the victim keeps its name.
#[test]
fn decline_flood_and_forged_release_leave_the_pool_and_the_victim_alone() -> Result<()> {
    let lan = Lan::new("dc", 93, 2)?;
    let srv = lan.server_ip();
    let mut server = Server::start(&lan, &ServerOptions::default())?;
    let mut victim = crate::clients::Udhcpc::new(&lan, 0, "victim")?;
    let victim_ip = logged(&server, victim.obtain())?;
    let mut c = Scripted::new(&lan.probe)?;
    let attacker = [2, 0x14, 0, 0, 0, 1];
    let mut declined = std::collections::HashSet::new();
    for _ in 0..120 {
        let Some(offer) = c.ask(MessageType::Discover, attacker, vec![])? else {
            continue;
        };
        let ip = yiaddr(&offer);
        declined.insert(ip);
        let decline = c.message(
            MessageType::Decline,
            attacker,
            vec![
                DhcpOption::RequestedIpAddress(ip),
                DhcpOption::ServerIdentifier(srv),
            ],
        );
        c.send(&decline)?;
    }
    ensure!(
        declined.len() == 1,
        "the attacker was offered {} addresses",
        declined.len()
    );
    // Forged RELEASEs of the victim's lease: the victim's MAC but no server id, and the
    // victim's client id from another chaddr.
    let victim_mac: Vec<u8> = lan.clients[0]
        .mac
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&victim_mac);
    let mut forged = c.message(MessageType::Release, mac, vec![]);
    forged.set_ciaddr(victim_ip);
    ensure!(c.exchange(&forged)?.is_none());
    let mut id = vec![1];
    id.extend_from_slice(&mac);
    let mut forged = c.message(
        MessageType::Release,
        attacker,
        vec![
            DhcpOption::ClientIdentifier(id),
            DhcpOption::ServerIdentifier(srv),
        ],
    );
    forged.set_ciaddr(victim_ip);
    ensure!(c.exchange(&forged)?.is_none());
    logged(
        &server,
        crate::dig::assert_resolves(&lan.probe, srv, "victim.lan", victim_ip),
    )?;
    // A legitimate newcomer is served.
    let mut newcomer = crate::clients::Udhcpc::new(&lan, 1, "newcomer")?;
    let ip = logged(&server, newcomer.obtain())?;
    ensure!(lan.in_pool(ip) && ip != victim_ip);
    victim.stop()?;
    newcomer.stop()?;
    stop_cleanly(&mut server)
}

/// Issue 14, relay trust: a relayed DISCOVER (giaddr set, sent by unicast from port 67 as a
/// relay does) is answered to the relay; with more than `relay_max_hops` hops it is dropped;
/// once the subnet lists its relays, only those are served.
#[test]
fn relayed_requests_are_served_only_within_the_hop_limit_and_from_listed_relays() -> Result<()> {
    let lan = Lan::new("ry", 94, 0)?;
    let srv = lan.server_ip();
    let me = lan.addr(2);
    let mut opts = ServerOptions::default();
    let mut server = Server::start(&lan, &opts)?;
    let sock = socket_in(&lan.probe.ns, "0.0.0.0:67".parse()?)?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut c = Scripted::new(&lan.probe)?;
    let mut relayed = |hops: u8| -> Result<Option<Vec<u8>>> {
        let mut m = c.message(MessageType::Discover, [2, 0x14, 0, 0, 0, 9], vec![]);
        m.set_giaddr(me).set_hops(hops);
        sock.send_to(&m.to_vec()?, (srv, 67))?;
        let deadline = Instant::now() + REPLY_WAIT;
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            if let Ok(n) = sock.recv(&mut buf)
                && n >= 240
                && buf[4..8] == m.xid().to_be_bytes()
            {
                return Ok(Some(buf[..n].to_vec()));
            }
        }
        Ok(None)
    };
    let offer = relayed(1)?.context("no OFFER to a relayed DISCOVER")?;
    ensure!(msg_type(&offer) == Some(OFFER));
    ensure!(relayed(9)?.is_none(), "9 hops served");
    opts.subnet_toml = format!("relays = [\"{}\"]\n", lan.addr(77));
    let text = render_config(&lan, &opts, &server.lease_file);
    reload_dhcp(&mut server, &text)?;
    ensure!(relayed(1)?.is_none(), "an unlisted relay was served");
    opts.subnet_toml = format!("relays = [\"{me}\"]\n");
    let text = render_config(&lan, &opts, &server.lease_file);
    reload_dhcp(&mut server, &text)?;
    ensure!(relayed(1)?.is_some(), "a listed relay was not served");
    stop_cleanly(&mut server)
}
