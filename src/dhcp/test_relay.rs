//! A DHCP relay agent on loopback, for tests of the service and the daemon that need no
//! namespace and no root: a config serving 127.0.0.0/24, the relay's socket on 127.0.0.2 at the
//! server's port, relayed requests, and the exchange of one with the server.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

use crate::config::Config;

/// The relay agent's address (giaddr): on loopback, so the server's reply stays there.
pub(crate) const RELAY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
pub(crate) const MAC: [u8; 6] = [0x02, 0x10, 0x20, 0x30, 0x40, 0x50];

/// A UDP port free on loopback now (the daemon binds it a moment later).
pub(crate) fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// A config serving 127.0.0.0/24 through a relay: DHCP on `dhcp_port`, DNS on 127.0.0.1 at
/// `dns_port`, the lease journal in `dir`.
pub(crate) fn config(dir: &std::path::Path, dhcp_port: u16, dns_port: u16) -> Config {
    let path = dir.join("leasedns.toml");
    let text = format!(
        r#"
domain = "lan"
lease_file = "{lease_file}"
dhcp_port = {dhcp_port}
client_port = {client_port}

[dns]
listen = ["127.0.0.1:{dns_port}"]

[[subnet]]
network = "127.0.0.0/24"
pool_start = "127.0.0.100"
pool_end = "127.0.0.149"
lease_time = 600
"#,
        lease_file = dir.join("leases").display(),
        client_port = free_port(),
    );
    std::fs::write(&path, text).expect("write config");
    Config::load(&path).expect("valid config")
}

/// The relay's socket: 127.0.0.2 on the server's port (replies to a relay go to giaddr on the
/// server port), next to the daemon's wildcard socket on the same port.
pub(crate) fn relay_socket(port: u16) -> UdpSocket {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    let at = SocketAddr::from(SocketAddrV4::new(RELAY, port));
    s.bind(&at.into()).expect("bind the relay address");
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    s
}

/// A request as a relay forwards it: giaddr set, one hop.
pub(crate) fn request(
    kind: MessageType,
    xid: u32,
    offered: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Vec<u8> {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest)
        .set_htype(HType::Eth)
        .set_xid(xid)
        .set_flags(Flags::default())
        .set_giaddr(RELAY)
        .set_hops(1)
        .set_chaddr(&MAC);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::Hostname("loopy".into()));
    o.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::DomainName,
    ]));
    if let Some((ip, server)) = offered {
        o.insert(DhcpOption::RequestedIpAddress(ip));
        o.insert(DhcpOption::ServerIdentifier(server));
    }
    let mut bytes = Vec::new();
    m.encode(&mut Encoder::new(&mut bytes)).expect("encode");
    bytes
}

/// Send `bytes` to the server until a reply of type `want` for `xid` comes back (the server
/// may still be starting); that reply, and every other reply that came meanwhile.
pub(crate) fn exchange(
    relay: &UdpSocket,
    to: SocketAddr,
    bytes: &[u8],
    xid: u32,
    want: MessageType,
) -> (Message, Vec<Message>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 1500];
    let mut others = Vec::new();
    while Instant::now() < deadline {
        relay.send_to(bytes, to).expect("send");
        let Ok((n, _)) = relay.recv_from(&mut buf) else {
            continue;
        };
        let Ok(reply) = Message::decode(&mut Decoder::new(&buf[..n])) else {
            continue;
        };
        if reply.xid() == xid && reply.opts().msg_type() == Some(want) {
            return (reply, others);
        }
        others.push(reply);
    }
    panic!("no {want:?} for xid {xid:#x}");
}
