//! An unprivileged, in-process test of `daemon::serve` on loopback: the whole daemon (journal,
//! engine, DHCP thread, name index, DNS server) serves a relayed DHCP exchange sent to its DHCP
//! port on 127.0.0.1 by a "relay" on 127.0.0.2, and its DNS server then answers the granted
//! name. No namespaces, no root: ports above 1024, traffic on loopback only.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, MessageType, OptionCode};
use hickory_server::proto::op::{Message as DnsMessage, MessageType as DnsType, OpCode, Query};
use hickory_server::proto::rr::{Name, RData, RecordType};

use crate::clock::SystemClock;
use crate::dhcp::test_relay::{RELAY, config, exchange, free_port, relay_socket, request};

/// The A records the daemon's DNS server gives for `name`.
fn resolve(port: u16, name: &str) -> Vec<Ipv4Addr> {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut query = DnsMessage::new(0x4242, DnsType::Query, OpCode::Query);
    query.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        RecordType::A,
    ));
    let bytes = query.to_vec().expect("encode");
    socket.send_to(&bytes, ("127.0.0.1", port)).expect("send");
    let mut buf = [0u8; 1500];
    let (n, _) = socket.recv_from(&mut buf).expect("a DNS answer");
    let answer = DnsMessage::from_vec(&buf[..n]).expect("decode");
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[test]
fn a_relayed_request_on_loopback_gets_a_lease_and_its_name_resolves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (dhcp_port, dns_port) = (free_port(), free_port());
    let cfg = Arc::new(config(dir.path(), dhcp_port, dns_port));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let daemon = rt.spawn(super::serve(cfg, Arc::new(SystemClock)));

    let relay = relay_socket(dhcp_port);
    let server = SocketAddr::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, dhcp_port));
    let (offer, _) = exchange(
        &relay,
        server,
        &request(MessageType::Discover, 1, None),
        1,
        MessageType::Offer,
    );
    let ip = offer.yiaddr();
    assert!(
        (Ipv4Addr::new(127, 0, 0, 100)..=Ipv4Addr::new(127, 0, 0, 149)).contains(&ip),
        "offered {ip} from the relay's subnet pool"
    );
    assert_eq!(
        offer.giaddr(),
        RELAY,
        "the reply went back through the relay"
    );
    let sid = match offer.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(sid)) => *sid,
        other => panic!("no server identifier: {other:?}"),
    };
    let req = request(MessageType::Request, 2, Some((ip, sid)));
    let (ack, _) = exchange(&relay, server, &req, 2, MessageType::Ack);
    assert_eq!(ack.yiaddr(), ip);

    // Durable before visible: the lease is in the journal, and the name answers at once.
    let journal = std::fs::read_to_string(dir.path().join("leases")).expect("journal");
    assert!(journal.contains(&format!("U {ip} ")), "{journal}");
    assert_eq!(resolve(dns_port, "loopy.lan."), [ip]);
    assert!(resolve(dns_port, "nobody.lan.").is_empty());

    assert!(!daemon.is_finished(), "the daemon still serves");
    daemon.abort();
    rt.shutdown_timeout(Duration::from_secs(10));
}
