//! Hostile input end to end: malformed and abusive DHCP datagrams sent from a LAN host to the
//! running daemon, after which a real client must still be served and the daemon must still be
//! alive with no panic logged. Builds raw packets by hand; knows nothing of the server's code.

use std::fs::File;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};

use crate::clients::Udhcpc;
use crate::dig;
use crate::netns::Lan;
use crate::server::{Server, ServerOptions};
use crate::server::{logged, stop_cleanly};

const COOKIE: [u8; 4] = [99, 130, 83, 99];

/// Runs `f` on a new thread that has joined network namespace `ns` (only that thread moves).
pub(crate) fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).with_context(|| format!("opening {path}"))?;
            // SAFETY: setns only changes this thread's network namespace; the descriptor is
            // a valid open namespace file for the whole call.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                bail!("setns {path}: {}", std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .map_err(|_| anyhow!("sender thread panicked"))?
    })
}

/// A BOOTP header (236 bytes) with the given op, htype, hlen and a fixed chaddr.
fn header(op: u8, htype: u8, hlen: u8) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = op;
    p[1] = htype;
    p[2] = hlen;
    p[4..8].copy_from_slice(&[0x0b, 0xad, 0xf0, 0x0d]);
    p[28..34].copy_from_slice(&[0x02, 0x1d, 0xee, 0x00, 0x00, 0x01]);
    p
}

/// A full packet: `header(op, htype, hlen)`, the magic cookie, then `options` as given.
fn packet(op: u8, htype: u8, hlen: u8, options: &[u8]) -> Vec<u8> {
    let mut p = header(op, htype, hlen);
    p.extend_from_slice(&COOKIE);
    p.extend_from_slice(options);
    p
}

/// A DISCOVER (ethernet, hlen 6) with `extra` options before the end option.
fn discover_with(extra: &[u8]) -> Vec<u8> {
    let mut opts = vec![53, 1, 1];
    opts.extend_from_slice(extra);
    opts.push(255);
    packet(1, 1, 6, &opts)
}

/// Option 81 (client FQDN): flags, two obsolete rcodes, then the name as given.
fn fqdn(flags: u8, name: &[u8]) -> Vec<u8> {
    let mut o = vec![81, u8::try_from(name.len() + 3).unwrap_or(255), flags, 0, 0];
    o.extend_from_slice(name);
    o
}

/// Every hostile datagram, with a label for failure messages.
fn hostile_packets() -> Vec<(&'static str, Vec<u8>)> {
    let valid = discover_with(&[12, 4, b'e', b'v', b'i', b'l']);
    let mut many_options = vec![53, 1, 1];
    for i in 0..4000u32 {
        // Unknown site-specific codes 224..=254, two bytes each: 16 kB of options.
        many_options.extend_from_slice(&[224 + (i % 31) as u8, 2, i as u8, (i >> 8) as u8]);
    }
    many_options.push(255);
    let mut repeated_names = vec![53, 1, 1];
    for _ in 0..3000 {
        repeated_names.extend_from_slice(&[12, 1, b'x']);
    }
    repeated_names.push(255);
    let mut overload = packet(1, 1, 6, &[53, 1, 1, 52, 1, 3, 255]);
    // sname and file claim options, one running past the end of the field.
    overload[44..48].copy_from_slice(&[12, 200, b'a', b'b']);
    overload[108..112].copy_from_slice(&[15, 250, b'c', 0xff]);
    vec![
        ("zero-length", Vec::new()),
        ("one byte", vec![1]),
        ("truncated header", valid[..100].to_vec()),
        ("header without cookie", valid[..236].to_vec()),
        ("bad magic cookie", {
            let mut p = valid.clone();
            p[236..240].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
            p
        }),
        ("hlen 17", packet(1, 1, 17, &[53, 1, 1, 255])),
        ("hlen 255", packet(1, 1, 255, &[53, 1, 1, 255])),
        ("hlen 0 htype 0", packet(1, 0, 0, &[53, 1, 1, 255])),
        ("op 3", packet(3, 1, 6, &[53, 1, 1, 255])),
        (
            "option past the end",
            packet(1, 1, 6, &[53, 1, 1, 12, 200, b'a', b'b']),
        ),
        (
            "option code without length",
            packet(1, 1, 6, &[53, 1, 1, 12]),
        ),
        ("no end option, only pads", packet(1, 1, 6, &[0u8; 2000])),
        ("message type length 0", packet(1, 1, 6, &[53, 0, 255])),
        (
            "message type length 2",
            packet(1, 1, 6, &[53, 2, 1, 1, 255]),
        ),
        ("message type 200", packet(1, 1, 6, &[53, 1, 200, 255])),
        (
            "no message type (BOOTP)",
            packet(1, 1, 6, &[12, 3, b'b', b'o', b'o', 255]),
        ),
        ("thousands of options", packet(1, 1, 6, &many_options)),
        ("3000 host names", packet(1, 1, 6, &repeated_names)),
        (
            "non-UTF-8 host name",
            discover_with(&[12, 5, 0xff, 0xfe, 0xc3, 0x28, 0x80]),
        ),
        ("host name of NULs", discover_with(&[12, 3, 0, 0, 0])),
        (
            "BOOTREPLY offer",
            packet(2, 1, 6, &[53, 1, 2, 54, 4, 10, 0, 0, 1, 255]),
        ),
        ("BOOTREPLY discover", packet(2, 1, 6, &[53, 1, 1, 255])),
        (
            "fqdn E=0 ascii",
            discover_with(&fqdn(0x01, b"evil.example")),
        ),
        (
            "fqdn E=0 non-UTF-8",
            discover_with(&fqdn(0x01, &[0xc3, 0x28, 0xff])),
        ),
        (
            "fqdn E=1 label past end",
            discover_with(&fqdn(0x05, &[63, b'a', b'b'])),
        ),
        (
            "fqdn E=1 pointer",
            discover_with(&fqdn(0x05, &[0xc0, 0x00])),
        ),
        ("fqdn length 0", discover_with(&[81, 0])),
        ("requested ip length 3", discover_with(&[50, 3, 10, 0, 0])),
        (
            "server id length 0",
            packet(1, 1, 6, &[53, 1, 3, 54, 0, 255]),
        ),
        ("request for 255.255.255.255", {
            packet(1, 1, 6, &[53, 1, 3, 50, 4, 255, 255, 255, 255, 255])
        }),
        ("max size 0", discover_with(&[57, 2, 0, 0])),
        ("client id length 0", discover_with(&[61, 0])),
        ("parameter list of 255", {
            let mut o = vec![55, 255];
            o.extend(0..=254u8);
            discover_with(&o)
        }),
        (
            "relay info past the end",
            packet(1, 1, 6, &[53, 1, 1, 82, 6, 1, 9, b'x', 255]),
        ),
        ("overloaded sname and file", overload),
        ("foreign giaddr", {
            let mut p = valid.clone();
            p[24..28].copy_from_slice(&[192, 0, 2, 77]);
            p
        }),
        ("all 0xff, 1400 bytes", vec![0xff; 1400]),
        ("valid discover last", valid),
    ]
}

#[test]
fn hostile_packets_leave_the_server_alive_and_serving() -> Result<()> {
    let lan = Lan::new("ho", 28, 1)?;
    let mut server = Server::start(&lan, &ServerOptions::default())?;
    let srv = lan.server_ip();
    let from = lan.addr(2);
    let broadcast = lan.addr(255);

    let packets = hostile_packets();
    let sent = in_netns(&lan.probe.ns, || {
        let sock = UdpSocket::bind(SocketAddrV4::new(from, 0))?;
        sock.set_broadcast(true)?;
        let mut sent = 0;
        for (what, p) in &packets {
            // Unicast to the server and to the LAN's broadcast address.
            for to in [srv, broadcast] {
                sock.send_to(p, SocketAddrV4::new(to, 67))
                    .with_context(|| format!("sending {what} to {to}"))?;
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(sent)
    })?;
    ensure!(sent == packets.len() * 2);

    // A real client right after is served, and its name resolves.
    let mut client = Udhcpc::new(&lan, 0, "survivor")?;
    let ip = logged(&server, client.obtain()).with_context(|| client.log())?;
    ensure!(lan.in_pool(ip), "survivor got {ip}, outside the pool");
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "survivor.lan", ip),
    )?;
    server.check_running()?;
    let log = server.log();
    ensure!(!log.contains("panicked"), "leasedns panicked:\n{log}");
    // Each certainly malformed datagram is dropped and logged (each sent twice): zero-length,
    // one byte, truncated header, header without cookie, bad cookie, hlen 17, hlen 255, an
    // option running past the end.
    let dropped = log.matches("dropped malformed DHCP packet").count();
    ensure!(
        dropped >= 16,
        "only {dropped} malformed packets logged as dropped:\n{log}"
    );
    // Nothing hostile became a name: offers are not leases, and no REQUEST followed.
    let evil = dig::a(&lan.probe, srv, "evil.lan")?;
    ensure!(evil.is_nxdomain(), "evil.lan answers {evil:?}");
    client.stop()?;
    stop_cleanly(&mut server)
}
