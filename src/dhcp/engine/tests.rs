//! The engine through `Engine::handle`: every message type and client state, with the config
//! knobs that change them (reservations, classes, relays, ping check, limits, lease reuse).

use super::*;
use crate::config::{DnsConfig, Durability, Reservation};
use crate::lease::HwAddr;
use dhcproto::v4::{DhcpOption, OptionCode};
use std::net::SocketAddrV4;
use std::path::PathBuf;

const SID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const RELAY_SID: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
const GIADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 5, 1);
const UNSPEC: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const PRINTER: u8 = 50;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}
fn mac(n: u8) -> HwAddr {
    HwAddr::ethernet([0x52, 0x54, 0, 0, 0, n])
}
fn id(n: u8) -> ClientId {
    ClientId::from_hw(&mac(n))
}

fn subnet(net: Ipv4Addr, first: Ipv4Addr, last: Ipv4Addr) -> Subnet {
    Subnet {
        network: net,
        prefix_len: 24,
        pool_start: first,
        pool_end: last,
        router: Some(Ipv4Addr::from(u32::from(net) + 1)),
        dns_servers: vec![Ipv4Addr::from(u32::from(net) + 1)],
        lease_time: 3600,
        interface: None,
        authoritative: true,
        settings: Default::default(),
    }
}

/// 10.0.0.0/24 with pool .100 to `last`, a relayed 192.168.5.0/24, and client 50 (the
/// printer) reserved at 10.0.0.10.
fn cfg(last: u8) -> Config {
    Config {
        path: PathBuf::from("test.toml"),
        start: crate::config::Startup {
            domain: "lan".into(),
            dhcp_port: 67,
            client_port: 68,
            arp_entries: true,
            lease_file: PathBuf::from("/nonexistent"),
            durability: Durability::None,
            dns: Default::default(),
            ddns: Default::default(),
            run_as: Default::default(),
            dhcp_script: None,
            lease_database: None,
        },
        interfaces: vec![],
        renew_write_fraction: 0.5,
        offer_hold: 60,
        decline_hold: 600,
        dns: DnsConfig::default(),
        subnets: vec![
            subnet(ip(0), ip(100), ip(last)),
            subnet(
                Ipv4Addr::new(192, 168, 5, 0),
                Ipv4Addr::new(192, 168, 5, 100),
                Ipv4Addr::new(192, 168, 5, 199),
            ),
        ],
        reservations: vec![Reservation {
            hwaddr: Some(mac(PRINTER)),
            client_id: None,
            ip: ip(10),
            name: Some("printer".into()),
            lease_time: None,
            options: vec![],
        }],
        dhcp: Default::default(),
    }
}

fn engine(cfg: Config) -> Engine {
    Engine::new(Arc::new(cfg), vec![], UnixTime(0))
}

fn eth0() -> Iface {
    Iface {
        index: 2,
        name: "eth0".into(),
        addrs: vec![(SID, 24)],
    }
}
fn uplink() -> Iface {
    Iface {
        index: 3,
        name: "eth1".into(),
        addrs: vec![(RELAY_SID, 30)],
    }
}

fn base(n: u8, msg_type: MessageType) -> Request {
    Request {
        htype: 1,
        hops: 0,
        xid: 0x1000 + u32::from(n),
        secs: 0,
        broadcast: false,
        ciaddr: UNSPEC,
        yiaddr: UNSPEC,
        siaddr: UNSPEC,
        giaddr: UNSPEC,
        hwaddr: mac(n),
        msg_type,
        client_id: None,
        requested_ip: None,
        server_id: None,
        hostname: None,
        params: vec![1, 3, 6, 15],
        max_size: None,
        lease_time: None,
        relay_info: None,
        vendor_class: None,
        fqdn: None,
        user_class: None,
        rapid_commit: false,
    }
}
fn discover(n: u8) -> Request {
    base(n, MessageType::Discover)
}
/// REQUEST in SELECTING state: option 54 and option 50.
fn select(n: u8, want: Ipv4Addr, sid: Ipv4Addr) -> Request {
    Request {
        server_id: Some(sid),
        requested_ip: Some(want),
        ..base(n, MessageType::Request)
    }
}
/// REQUEST in INIT-REBOOT state: option 50 only.
fn reboot(n: u8, want: Ipv4Addr) -> Request {
    Request {
        requested_ip: Some(want),
        ..base(n, MessageType::Request)
    }
}
/// REQUEST in RENEWING (or, broadcast, REBINDING) state: ciaddr only.
fn renew(n: u8, have: Ipv4Addr) -> Request {
    Request {
        ciaddr: have,
        ..base(n, MessageType::Request)
    }
}
fn release(n: u8, have: Ipv4Addr) -> Request {
    Request {
        ciaddr: have,
        server_id: Some(SID),
        ..base(n, MessageType::Release)
    }
}
fn decline(n: u8, bad: Ipv4Addr) -> Request {
    Request {
        requested_ip: Some(bad),
        server_id: Some(SID),
        ..base(n, MessageType::Decline)
    }
}

fn at(e: &mut Engine, t: u64, req: &Request) -> Outcome {
    e.handle(UnixTime(t), req, &eth0())
}
fn kind(o: &Outcome) -> Option<MessageType> {
    o.reply.as_ref().and_then(|r| r.msg.opts().msg_type())
}
fn yiaddr(o: &Outcome) -> Option<Ipv4Addr> {
    o.reply.as_ref().map(|r| r.msg.yiaddr())
}
fn opt(o: &Outcome, code: OptionCode) -> Option<DhcpOption> {
    o.reply.as_ref().and_then(|r| r.msg.opts().typed(code))
}
fn bound(e: &Engine, n: u8) -> Vec<Ipv4Addr> {
    let c = id(n);
    let l = e.leases();
    l.iter()
        .filter(|l| l.client == c && l.state == LeaseState::Bound)
        .map(|l| l.ip)
        .collect()
}

/// DISCOVER, OFFER, REQUEST, ACK at `t`; returns the bound address.
fn dora(e: &mut Engine, t: u64, n: u8) -> Ipv4Addr {
    let offer = at(e, t, &discover(n));
    assert_eq!(
        kind(&offer),
        Some(MessageType::Offer),
        "client {n} gets an offer"
    );
    let got = yiaddr(&offer).expect("offer has an address");
    let ack = at(e, t, &select(n, got, SID));
    assert_eq!(kind(&ack), Some(MessageType::Ack), "client {n} gets an ack");
    got
}

#[test]
fn dora_offers_then_binds_and_reports_only_the_ack() {
    let mut e = engine(cfg(109));
    // t=1000: DISCOVER with a host name.
    let mut d = discover(1);
    d.hostname = Some(b"Laptop.example.com".to_vec());
    let offer = at(&mut e, 1000, &d);
    assert_eq!(kind(&offer), Some(MessageType::Offer));
    assert_eq!(yiaddr(&offer), Some(ip(100)));
    assert!(offer.changes.is_empty(), "offers are not lease changes");
    assert!(e.leases().is_empty());
    assert_eq!(
        opt(&offer, OptionCode::ServerIdentifier),
        Some(DhcpOption::ServerIdentifier(SID))
    );
    assert_eq!(
        opt(&offer, OptionCode::AddressLeaseTime),
        Some(DhcpOption::AddressLeaseTime(3600))
    );
    let r = offer.reply.as_ref().expect("offer");
    assert_eq!(r.msg.opcode(), dhcproto::v4::Opcode::BootReply);
    assert_eq!(r.msg.xid(), d.xid);
    assert_eq!(r.msg.chaddr(), mac(1).bytes());
    assert_eq!(r.max_size, 576);
    let direct = Dest::Direct {
        ip: ip(100),
        hwaddr: mac(1),
        ifindex: 2,
    };
    assert_eq!(r.dest, direct);

    // t=1001: REQUEST for the offered address -> ACK, one Upsert.
    let ack = at(&mut e, 1001, &select(1, ip(100), SID));
    assert_eq!(kind(&ack), Some(MessageType::Ack));
    assert_eq!(yiaddr(&ack), Some(ip(100)));
    let want = Lease {
        ip: ip(100),
        client: id(1),
        hwaddr: mac(1),
        hostname: Some("laptop".into()),
        expires: UnixTime(1001 + 3600),
        state: LeaseState::Bound,
    };
    assert_eq!(ack.changes, vec![LeaseChange::Upsert(want.clone())]);
    assert_eq!(e.leases(), vec![want]);
    assert_eq!(e.poll_at(), Some(UnixTime(4601)));
}

#[test]
fn two_clients_never_get_the_same_address() {
    let mut e = engine(cfg(102));
    let a = yiaddr(&at(&mut e, 0, &discover(1)));
    let b = yiaddr(&at(&mut e, 0, &discover(2)));
    let c = yiaddr(&at(&mut e, 0, &discover(3)));
    assert!(a.is_some() && b.is_some() && c.is_some());
    assert!(a != b && b != c && a != c);
    // Client 2 asks for client 1's offered address: it keeps its own.
    let mut d = discover(2);
    d.requested_ip = a;
    assert_eq!(yiaddr(&at(&mut e, 1, &d)), b);
    // And cannot take it with a REQUEST either.
    let stolen = at(&mut e, 1, &select(2, a.unwrap_or(UNSPEC), SID));
    assert_eq!(kind(&stolen), Some(MessageType::Nak));
}

#[test]
fn reservation_wins_and_is_never_given_to_others() {
    let mut e = engine(cfg(109));
    // Client 1 asks for the printer's address: it gets a pool address instead.
    let mut d = discover(1);
    d.requested_ip = Some(ip(10));
    assert_eq!(yiaddr(&at(&mut e, 0, &d)), Some(ip(100)));
    let nak = at(&mut e, 0, &reboot(1, ip(10)));
    assert_eq!(kind(&nak), Some(MessageType::Nak));
    // The printer gets its address and its configured name over the one it sends.
    let mut d = discover(PRINTER);
    d.hostname = Some(b"HP-1234".to_vec());
    assert_eq!(yiaddr(&at(&mut e, 0, &d)), Some(ip(10)));
    let mut r = select(PRINTER, ip(10), SID);
    r.hostname = Some(b"HP-1234".to_vec());
    let ack = at(&mut e, 0, &r);
    match ack.changes.as_slice() {
        [LeaseChange::Upsert(l)] => assert_eq!(l.hostname.as_deref(), Some("printer")),
        other => panic!("unexpected changes {other:?}"),
    }
    // The printer renewing a pool address it somehow holds is sent back to its reservation.
    let nak = at(&mut e, 10, &reboot(PRINTER, ip(105)));
    assert_eq!(kind(&nak), Some(MessageType::Nak));
}

#[test]
fn renew_extends_the_lease_and_answers_by_unicast() {
    let mut e = engine(cfg(109));
    let got = dora(&mut e, 0, 1);
    // t=1800 (T1): unicast REQUEST with ciaddr: half the lease is left, so the stored lease
    // is reused (nothing written) and granted for the 1800 s it has left.
    let reused = at(&mut e, 1800, &renew(1, got));
    assert!(reused.changes.is_empty());
    assert_eq!(lease_secs(&reused), 1800);
    // t=1801: less than half is left: a new lease, written.
    let ack = at(&mut e, 1801, &renew(1, got));
    assert_eq!(kind(&ack), Some(MessageType::Ack));
    let r = ack.reply.as_ref().expect("ack");
    assert_eq!(r.msg.ciaddr(), got);
    assert_eq!(r.msg.yiaddr(), got);
    assert_eq!(r.dest, Dest::Unicast(SocketAddrV4::new(got, 68)));
    match ack.changes.as_slice() {
        [LeaseChange::Upsert(l)] => assert_eq!(l.expires, UnixTime(1801 + 3600)),
        other => panic!("unexpected changes {other:?}"),
    }
    assert_eq!(e.poll_at(), Some(UnixTime(5401)));
    assert_eq!(bound(&e, 1), vec![got]);
}

#[test]
fn rebind_recreates_a_lost_lease_but_never_takes_anothers() {
    let mut e = engine(cfg(109));
    let theirs = dora(&mut e, 0, 2);
    // t=3150 (T2): client 1 rebinds (broadcast) an address we have no lease for: dnsmasq-
    // style, it is free in our pool, so it gets it.
    let mut rb = renew(1, ip(105));
    rb.broadcast = true;
    let ack = at(&mut e, 3150, &rb);
    assert_eq!(kind(&ack), Some(MessageType::Ack));
    assert_eq!(bound(&e, 1), vec![ip(105)]);
    // Client 3 rebinds client 2's address: NAK, broadcast.
    let nak = at(&mut e, 3150, &renew(3, theirs));
    assert_eq!(kind(&nak), Some(MessageType::Nak));
    assert_eq!(
        nak.reply.as_ref().map(|r| r.dest.clone()),
        Some(Dest::Broadcast { ifindex: 2 })
    );
    assert!(nak.changes.is_empty());
    // Not authoritative: silence instead.
    let mut c = cfg(109);
    c.subnets[0].authoritative = false;
    let mut e = engine(c);
    let theirs = dora(&mut e, 0, 2);
    let quiet = at(&mut e, 10, &renew(3, theirs));
    assert!(quiet.reply.is_none() && quiet.changes.is_empty());
}

#[test]
fn init_reboot_acks_own_or_free_and_naks_wrong_subnet_or_anothers() {
    let mut e = engine(cfg(109));
    let mine = dora(&mut e, 0, 1);
    let theirs = dora(&mut e, 0, 2);
    // t=100: client 1 reboots and asks for its address.
    assert_eq!(
        kind(&at(&mut e, 100, &reboot(1, mine))),
        Some(MessageType::Ack)
    );
    // Client 3 asks for client 2's address.
    assert_eq!(
        kind(&at(&mut e, 100, &reboot(3, theirs))),
        Some(MessageType::Nak)
    );
    // Client 3 comes from another network.
    let away = reboot(3, Ipv4Addr::new(192, 168, 99, 5));
    let nak = at(&mut e, 100, &away);
    assert_eq!(kind(&nak), Some(MessageType::Nak));
    assert_eq!(yiaddr(&nak), Some(UNSPEC));
    // Client 3, of which we have no record, asks for a free pool address: silence (RFC 2131
    // section 4.3.2, issue 13 fault 3).
    let unknown = at(&mut e, 100, &reboot(3, ip(107)));
    assert!(unknown.reply.is_none() && unknown.changes.is_empty());
    assert!(bound(&e, 3).is_empty());
    // The printer's reservation is a record: its INIT-REBOOT is ACKed.
    assert_eq!(
        kind(&at(&mut e, 100, &reboot(PRINTER, ip(10)))),
        Some(MessageType::Ack)
    );
    // With init_reboot_unknown = "ack" (dnsmasq): ACKed.
    let mut c = cfg(109);
    c.dhcp.init_reboot_ack_unknown = true;
    let mut lax = engine(c);
    assert_eq!(
        kind(&at(&mut lax, 100, &reboot(3, ip(107)))),
        Some(MessageType::Ack)
    );
    assert_eq!(bound(&lax, 3), vec![ip(107)]);

    // Not authoritative: wrong network gets silence, but a stolen address still a NAK.
    let mut c = cfg(109);
    c.subnets[0].authoritative = false;
    let mut e = engine(c);
    let theirs = dora(&mut e, 0, 2);
    assert!(at(&mut e, 100, &away).reply.is_none());
    assert_eq!(
        kind(&at(&mut e, 100, &reboot(3, theirs))),
        Some(MessageType::Nak)
    );
}

#[test]
fn request_for_another_address_than_offered_is_naked() {
    let mut e = engine(cfg(109));
    assert_eq!(yiaddr(&at(&mut e, 0, &discover(1))), Some(ip(100)));
    let nak = at(&mut e, 1, &select(1, ip(101), SID));
    assert_eq!(kind(&nak), Some(MessageType::Nak));
    assert!(nak.changes.is_empty());
    let r = nak.reply.as_ref().expect("nak");
    assert_eq!(r.dest, Dest::Broadcast { ifindex: 2 });
    assert!(
        !r.msg
            .opts()
            .contains(u8::from(OptionCode::AddressLeaseTime))
    );
    assert_eq!(
        opt(&nak, OptionCode::ServerIdentifier),
        Some(DhcpOption::ServerIdentifier(SID))
    );
    assert!(e.leases().is_empty());
}

#[test]
fn choosing_another_server_drops_our_offer() {
    let mut e = engine(cfg(100)); // one address
    assert_eq!(yiaddr(&at(&mut e, 0, &discover(1))), Some(ip(100)));
    assert!(
        at(&mut e, 1, &discover(2)).reply.is_none(),
        "held for client 1"
    );
    // Client 1 takes 10.0.0.254's offer instead.
    let other = at(&mut e, 2, &select(1, ip(100), Ipv4Addr::new(10, 0, 0, 254)));
    assert!(other.reply.is_none() && other.changes.is_empty());
    assert_eq!(yiaddr(&at(&mut e, 3, &discover(2))), Some(ip(100)));
}

#[test]
fn offer_hold_runs_out_silently() {
    let mut e = engine(cfg(100)); // one address
    assert_eq!(yiaddr(&at(&mut e, 0, &discover(1))), Some(ip(100)));
    assert!(at(&mut e, 10, &discover(2)).reply.is_none());
    assert_eq!(e.poll_at(), Some(UnixTime(60)));
    assert!(e.expire(UnixTime(59)).is_empty());
    assert!(
        e.expire(UnixTime(60)).is_empty(),
        "offers end without a change"
    );
    assert_eq!(e.poll_at(), None);
    assert_eq!(yiaddr(&at(&mut e, 61, &discover(2))), Some(ip(100)));
    // Client 1 comes back too late for its offer.
    assert_eq!(
        kind(&at(&mut e, 62, &select(1, ip(100), SID))),
        Some(MessageType::Nak)
    );
}

#[test]
fn bound_lease_expires_at_its_time() {
    let mut e = engine(cfg(109));
    let got = dora(&mut e, 0, 1);
    assert_eq!(e.poll_at(), Some(UnixTime(3600)));
    assert!(e.expire(UnixTime(3599)).is_empty());
    let gone = e.expire(UnixTime(3600));
    assert_eq!(
        gone,
        vec![LeaseChange::Remove {
            ip: got,
            reason: RemoveReason::Expired
        }]
    );
    assert!(e.leases().is_empty());
    assert_eq!(e.poll_at(), None);
}

#[test]
fn release_ends_only_the_clients_own_lease() {
    let mut e = engine(cfg(109));
    let got = dora(&mut e, 0, 1);
    let spoof = at(&mut e, 10, &release(2, got));
    assert!(spoof.reply.is_none() && spoof.changes.is_empty());
    assert_eq!(bound(&e, 1), vec![got]);
    let out = at(&mut e, 20, &release(1, got));
    assert!(out.reply.is_none());
    assert_eq!(
        out.changes,
        vec![LeaseChange::Remove {
            ip: got,
            reason: RemoveReason::Released
        }]
    );
    assert!(e.leases().is_empty());
}

#[test]
fn the_operator_ends_a_lease_as_a_release_would() {
    let mut e = engine(cfg(109));
    let got = dora(&mut e, 0, 1);
    assert_eq!(e.end_lease(ip(50)), None, "no lease there");
    let (lease, change) = e.end_lease(got).expect("ended");
    assert_eq!((lease.ip, lease.state), (got, LeaseState::Bound));
    assert_eq!(
        change,
        LeaseChange::Remove {
            ip: got,
            reason: RemoveReason::Released
        }
    );
    assert!(e.leases().is_empty());
    assert_eq!(e.usage()[0], (0, 0), "the address is free again");
    assert_eq!(e.end_lease(got), None, "ended once");
    // An offer is not a lease: there is nothing to end.
    let _ = at(&mut e, 30, &discover(2));
    let offered = e.table.iter().next().map(|l| l.ip).expect("offered");
    assert_eq!(e.end_lease(offered), None);
}

#[test]
fn declined_address_is_set_aside_until_the_hold_ends() {
    let mut e = engine(cfg(101)); // .100 and .101
    let bad = dora(&mut e, 0, 1);
    assert_eq!(bad, ip(100));
    // t=5: client 1 finds .100 in use and declines it.
    let out = at(&mut e, 5, &decline(1, bad));
    assert!(out.reply.is_none());
    match out.changes.as_slice() {
        [LeaseChange::Upsert(l)] => {
            assert_eq!(
                (l.ip, l.state, l.expires),
                (bad, LeaseState::Declined, UnixTime(605))
            );
        }
        other => panic!("unexpected changes {other:?}"),
    }
    assert!(bound(&e, 1).is_empty());
    // Client 1 is offered the other address, client 2 nothing.
    assert_eq!(yiaddr(&at(&mut e, 6, &discover(1))), Some(ip(101)));
    assert!(at(&mut e, 7, &discover(2)).reply.is_none());
    // Nobody may claim it meanwhile.
    assert_eq!(
        kind(&at(&mut e, 8, &reboot(2, bad))),
        Some(MessageType::Nak)
    );
    // t=605: the hold ends, reported as an expiry; then it can be offered again.
    let ended = e.expire(UnixTime(605));
    assert!(ended.contains(&LeaseChange::Remove {
        ip: bad,
        reason: RemoveReason::Expired
    }));
    assert_eq!(yiaddr(&at(&mut e, 606, &discover(2))), Some(bad));
}

#[test]
fn decline_of_an_address_not_ours_is_ignored() {
    let mut e = engine(cfg(109));
    let got = dora(&mut e, 0, 1);
    let out = at(&mut e, 5, &decline(2, got));
    assert!(out.reply.is_none() && out.changes.is_empty());
    assert_eq!(bound(&e, 1), vec![got]);
}

#[test]
fn inform_gets_options_without_an_address_or_lease() {
    let mut e = engine(cfg(109));
    let mut req = base(7, MessageType::Inform);
    req.ciaddr = ip(50);
    let out = at(&mut e, 0, &req);
    assert_eq!(kind(&out), Some(MessageType::Ack));
    assert!(out.changes.is_empty() && e.leases().is_empty());
    let r = out.reply.as_ref().expect("ack");
    assert_eq!(r.msg.yiaddr(), UNSPEC);
    assert_eq!(r.msg.ciaddr(), ip(50));
    assert_eq!(r.dest, Dest::Unicast(SocketAddrV4::new(ip(50), 68)));
    assert_eq!(opt(&out, OptionCode::AddressLeaseTime), None);
    assert_eq!(
        opt(&out, OptionCode::Router),
        Some(DhcpOption::Router(vec![SID]))
    );
    assert_eq!(
        opt(&out, OptionCode::DomainName),
        Some(DhcpOption::DomainName("lan".into()))
    );
}

#[test]
fn returning_client_gets_its_previous_address() {
    let mut e = engine(cfg(109));
    let first = dora(&mut e, 0, 1);
    at(&mut e, 10, &release(1, first));
    // Another client comes and goes; the scan has moved on past `first`.
    let other = dora(&mut e, 20, 2);
    assert_ne!(other, first);
    // Client 1 returns and is offered its old address, not the next free one.
    assert_eq!(yiaddr(&at(&mut e, 30, &discover(1))), Some(first));
    // Same after expiry.
    let mut e = engine(cfg(109));
    let first = dora(&mut e, 0, 1);
    e.expire(UnixTime(3600));
    dora(&mut e, 3601, 2);
    assert_eq!(yiaddr(&at(&mut e, 3602, &discover(1))), Some(first));
}

#[test]
fn exhausted_pool_gets_no_offer_and_warns_once_a_minute() {
    let mut e = engine(cfg(101));
    dora(&mut e, 0, 1);
    dora(&mut e, 0, 2);
    let out = at(&mut e, 100, &discover(3));
    assert!(out.reply.is_none() && out.changes.is_empty());
    assert_eq!(e.subnets[0].full_warned, Some(UnixTime(100)));
    at(&mut e, 130, &discover(3));
    assert_eq!(
        e.subnets[0].full_warned,
        Some(UnixTime(100)),
        "no second warning yet"
    );
    at(&mut e, 160, &discover(4));
    assert_eq!(e.subnets[0].full_warned, Some(UnixTime(160)));
}

#[test]
fn relayed_requests_use_the_giaddr_subnet_and_go_back_to_the_relay() {
    let mut e = engine(cfg(109));
    let mut d = discover(1);
    d.giaddr = GIADDR;
    d.hops = 1;
    d.relay_info = Some(vec![1, 3, b'p', b'o', b'1']);
    let offer = e.handle(UnixTime(0), &d, &uplink());
    let got = Ipv4Addr::new(192, 168, 5, 100);
    assert_eq!(yiaddr(&offer), Some(got));
    let r = offer.reply.as_ref().expect("offer");
    assert_eq!(r.dest, Dest::Relay(SocketAddrV4::new(GIADDR, 67)));
    assert_eq!(r.msg.giaddr(), GIADDR);
    assert!(r.msg.opts().contains(82));
    let sid = DhcpOption::ServerIdentifier(RELAY_SID);
    assert_eq!(opt(&offer, OptionCode::ServerIdentifier), Some(sid));
    let mask = DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0));
    assert_eq!(opt(&offer, OptionCode::SubnetMask), Some(mask));

    let mut rq = select(1, got, RELAY_SID);
    rq.giaddr = GIADDR;
    let ack = e.handle(UnixTime(1), &rq, &uplink());
    assert_eq!(kind(&ack), Some(MessageType::Ack));
    // A NAK to a relay asks it to broadcast.
    let mut bad = reboot(2, got);
    bad.giaddr = GIADDR;
    let nak = e.handle(UnixTime(2), &bad, &uplink());
    let r = nak.reply.as_ref().expect("nak");
    assert!(r.msg.flags().broadcast());
    assert_eq!(r.dest, Dest::Relay(SocketAddrV4::new(GIADDR, 67)));
    // A relay from a network we do not serve: nothing.
    let mut lost = discover(3);
    lost.giaddr = Ipv4Addr::new(192, 168, 77, 1);
    assert!(e.handle(UnixTime(3), &lost, &uplink()).reply.is_none());
}

#[test]
fn subnet_bound_to_an_interface_is_served_only_there() {
    let mut c = cfg(109);
    c.subnets[0].interface = Some("eth0".into());
    let mut e = engine(c);
    let elsewhere = Iface {
        index: 9,
        name: "eth9".into(),
        addrs: vec![(SID, 24)],
    };
    assert!(
        e.handle(UnixTime(0), &discover(1), &elsewhere)
            .reply
            .is_none()
    );
    assert!(at(&mut e, 0, &discover(1)).reply.is_some());
    let unnumbered = Iface {
        index: 4,
        name: "eth4".into(),
        addrs: vec![],
    };
    assert!(
        e.handle(UnixTime(0), &discover(1), &unnumbered)
            .reply
            .is_none()
    );
}

#[test]
fn broadcast_flag_and_client_max_size_shape_the_reply() {
    let mut e = engine(cfg(109));
    let mut d = discover(1);
    d.broadcast = true;
    d.max_size = Some(1500);
    let r = at(&mut e, 0, &d).reply.expect("offer");
    assert_eq!(r.dest, Dest::Broadcast { ifindex: 2 });
    assert!(r.msg.flags().broadcast());
    assert_eq!(r.max_size, 1500);
    d.max_size = Some(300);
    assert_eq!(at(&mut e, 0, &d).reply.map(|r| r.max_size), Some(576));
}

#[test]
fn moving_to_a_new_address_removes_the_old_one_first() {
    // RFC 2131 by default: INIT-REBOOT for another address than the client's lease: NAK.
    let mut e = engine(cfg(109));
    dora(&mut e, 0, 1);
    let nak = at(&mut e, 50, &reboot(1, ip(105)));
    assert_eq!(kind(&nak), Some(MessageType::Nak));
    // dnsmasq's way (init_reboot_unknown = "ack"): the client moves.
    let mut c = cfg(109);
    c.dhcp.init_reboot_ack_unknown = true;
    let mut e = engine(c);
    let old = dora(&mut e, 0, 1);
    let out = at(&mut e, 50, &reboot(1, ip(105)));
    assert_eq!(kind(&out), Some(MessageType::Ack));
    match out.changes.as_slice() {
        [
            LeaseChange::Remove { ip: gone, reason },
            LeaseChange::Upsert(l),
        ] => {
            assert_eq!((*gone, *reason), (old, RemoveReason::Superseded));
            assert_eq!(l.ip, ip(105));
        }
        other => panic!("unexpected changes {other:?}"),
    }
    assert_eq!(bound(&e, 1), vec![ip(105)]);
}

#[test]
fn client_identifier_is_the_identity_when_sent() {
    let mut e = engine(cfg(109));
    let mut d = discover(1);
    d.client_id = Some(vec![0, b'h', b'o', b's', b't']);
    let got = yiaddr(&at(&mut e, 0, &d)).expect("offer");
    let mut r = select(1, got, SID);
    r.client_id = d.client_id.clone();
    let ack = at(&mut e, 0, &r);
    match ack.changes.as_slice() {
        [LeaseChange::Upsert(l)] => {
            assert_eq!(l.client, ClientId::new(&[0, b'h', b'o', b's', b't']))
        }
        other => panic!("unexpected changes {other:?}"),
    }
    // The same MAC without the identifier is another client.
    assert_eq!(
        kind(&at(&mut e, 1, &reboot(1, got))),
        Some(MessageType::Nak)
    );
}

#[test]
fn recovered_leases_are_kept_unless_their_time_is_up() {
    let live = Lease {
        ip: ip(100),
        client: id(1),
        hwaddr: mac(1),
        hostname: Some("a".into()),
        expires: UnixTime(5000),
        state: LeaseState::Bound,
    };
    let dead = Lease {
        ip: ip(101),
        client: id(2),
        expires: UnixTime(999),
        ..live.clone()
    };
    let offer = Lease {
        ip: ip(102),
        state: LeaseState::Offered,
        ..live.clone()
    };
    let e = Engine::new(
        Arc::new(cfg(109)),
        vec![live.clone(), dead, offer],
        UnixTime(1000),
    );
    assert_eq!(e.leases(), vec![live]);
    let mut e = e;
    assert_eq!(yiaddr(&at(&mut e, 1000, &discover(1))), Some(ip(100)));
    assert_eq!(yiaddr(&at(&mut e, 1000, &discover(2))), Some(ip(101)));
}

#[test]
fn host_names_must_be_dns_labels() {
    assert_eq!(valid_hostname(b"Laptop"), Some("laptop".into()));
    assert_eq!(valid_hostname(b"my-pc.corp.example"), Some("my-pc".into()));
    assert_eq!(valid_hostname(b"pc7\0\0"), Some("pc7".into()));
    assert_eq!(valid_hostname(&[b'a'; 63]), Some("a".repeat(63)));
    assert_eq!(valid_hostname(&[b'a'; 64]), None);
    for bad in [
        &b""[..],
        b".lan",
        b"-pc",
        b"pc-",
        b"my pc",
        b"caf\xc3\xa9",
        b"a_b",
        b"\0",
    ] {
        assert_eq!(valid_hostname(bad), None, "{bad:?}");
    }
}

/// The payload of an option the engine sends raw (typed config options, 81, 121, 249).
fn raw(o: &Outcome, code: u8) -> Option<Vec<u8>> {
    o.reply.as_ref().and_then(|r| r.msg.opts().raw(code))
}
fn lease_time(o: &Outcome) -> Option<u32> {
    match opt(o, OptionCode::AddressLeaseTime)? {
        DhcpOption::AddressLeaseTime(t) => Some(t),
        _ => None,
    }
}
fn spec(code: u8, data: &[u8]) -> crate::config::OptionSpec {
    crate::config::OptionSpec {
        code,
        data: data.to_vec(),
    }
}

#[test]
fn reply_follows_the_parameter_request_list() {
    let mut c = cfg(109);
    let set = &mut c.subnets[0].settings;
    set.ntp_servers = vec![ip(5)];
    set.mtu = Some(1400);
    set.options = vec![spec(252, b"http://wpad.lan/wpad.dat")];
    let mut e = engine(c);
    // t=0: a client asking for NTP, MTU and WPAD, in its own order, and not for DNS.
    let mut d = discover(1);
    d.params = vec![252, 42, 1, 26, 3];
    let offer = at(&mut e, 0, &d);
    let r = offer.reply.as_ref().expect("offer");
    assert_eq!(
        r.order,
        vec![252, 42, 1, 26, 3],
        "encoded in the client's order"
    );
    assert_eq!(raw(&offer, 252), Some(b"http://wpad.lan/wpad.dat".to_vec()));
    assert_eq!(
        opt(&offer, OptionCode::NtpServers),
        Some(DhcpOption::NtpServers(vec![ip(5)]))
    );
    assert_eq!(
        opt(&offer, OptionCode::InterfaceMtu),
        Some(DhcpOption::InterfaceMtu(1400))
    );
    assert!(opt(&offer, OptionCode::Router).is_some());
    for unasked in [
        OptionCode::DomainNameServer,
        OptionCode::DomainName,
        OptionCode::BroadcastAddr,
    ] {
        assert!(
            opt(&offer, unasked).is_none(),
            "{unasked:?} was not asked for"
        );
    }
    // Lease times, mask and server id come whatever the list says.
    assert_eq!(lease_time(&offer), Some(3600));
    assert!(opt(&offer, OptionCode::SubnetMask).is_some());
    // The encoded reply has 53, 54, then the list's order.
    let bytes = crate::dhcp::wire::encode_ordered(&r.msg, r.max_size, &r.order).expect("encodes");
    let mut codes = Vec::new();
    let mut i = 240;
    while let Some(&c) = bytes.get(i) {
        if c == 255 || c == 0 {
            break;
        }
        codes.push(c);
        i += 2 + usize::from(bytes[i + 1]);
    }
    assert_eq!(&codes[..7], &[53, 54, 252, 42, 1, 26, 3], "{codes:?}");
}

#[test]
fn routes_replace_the_router_option_for_clients_that_ask_for_121() {
    let mut c = cfg(109);
    c.subnets[0].settings.routes = vec![crate::config::Route {
        network: Ipv4Addr::new(10, 9, 0, 0),
        prefix_len: 16,
        gateway: ip(254),
    }];
    let mut e = engine(c);
    let payload = vec![16, 10, 9, 10, 0, 0, 254, 0, 10, 0, 0, 1];
    let mut d = discover(1);
    d.params = vec![1, 3, 121, 249];
    let offer = at(&mut e, 0, &d);
    assert_eq!(raw(&offer, 121), Some(payload.clone()));
    assert_eq!(raw(&offer, 249), Some(payload.clone()));
    assert!(
        opt(&offer, OptionCode::Router).is_none(),
        "121 carries the default route"
    );
    // Older Windows asks for 249 only: it gets 249 and option 3.
    d.params = vec![1, 3, 249];
    let offer = at(&mut e, 1, &d);
    assert_eq!(raw(&offer, 249), Some(payload));
    assert!(opt(&offer, OptionCode::from(121)).is_none());
    assert!(opt(&offer, OptionCode::Router).is_some());
    // No list at all: no routes (RFC 3442 wants them asked for), the router as usual.
    d.params = vec![];
    let offer = at(&mut e, 2, &d);
    assert!(opt(&offer, OptionCode::from(121)).is_none());
    assert!(opt(&offer, OptionCode::Router).is_some());
    assert!(
        opt(&offer, OptionCode::DomainName).is_some(),
        "everything configured"
    );
}

#[test]
fn host_options_override_class_options_override_subnet_options() {
    let mut c = cfg(109);
    c.subnets[0].settings.options = vec![spec(252, b"subnet"), spec(66, b"tftp")];
    c.dhcp.classes = vec![crate::config::ClientClass {
        name: "phones".into(),
        vendor_class: Some(b"android-dhcp".to_vec()),
        user_class: None,
        mac_prefix: None,
        subnet: None,
        pool: None,
        lease_time: Some(600),
        options: vec![spec(252, b"class"), spec(6, &[10, 0, 0, 53])],
        grant: Default::default(),
    }];
    c.reservations[0].options = vec![spec(252, b"host")];
    c.reservations[0].lease_time = Some(86400);
    let mut e = engine(c);
    let ask = |n: u8, vendor: Option<&[u8]>| {
        let mut d = discover(n);
        d.params = vec![1, 3, 6, 66, 252];
        d.vendor_class = vendor.map(<[u8]>::to_vec);
        d
    };
    // A plain client: the subnet's options, the subnet's lease time.
    let plain = at(&mut e, 0, &ask(1, None));
    assert_eq!(raw(&plain, 252), Some(b"subnet".to_vec()));
    assert_eq!(lease_time(&plain), Some(3600));
    // A phone: the class's 252 and DNS, the subnet's 66, the class's lease time.
    let phone = at(&mut e, 0, &ask(2, Some(b"android-dhcp-14")));
    assert_eq!(raw(&phone, 252), Some(b"class".to_vec()));
    assert_eq!(raw(&phone, 6), Some(vec![10, 0, 0, 53]));
    assert_eq!(raw(&phone, 66), Some(b"tftp".to_vec()));
    assert_eq!(lease_time(&phone), Some(600));
    // The printer (reserved) that also looks like a phone: host beats class.
    let printer = at(&mut e, 0, &ask(PRINTER, Some(b"android-dhcp")));
    assert_eq!(yiaddr(&printer), Some(ip(10)));
    assert_eq!(raw(&printer, 252), Some(b"host".to_vec()));
    assert_eq!(
        raw(&printer, 6),
        Some(vec![10, 0, 0, 53]),
        "class option kept"
    );
    assert_eq!(lease_time(&printer), Some(86400));
    // Its ACK binds for the host's lease time.
    let ack = at(&mut e, 10, &select(PRINTER, ip(10), SID));
    match ack.changes.as_slice() {
        [LeaseChange::Upsert(l)] => assert_eq!(l.expires, UnixTime(86410)),
        other => panic!("unexpected changes {other:?}"),
    }
}

#[test]
fn class_pool_is_for_members_only_and_can_run_out_alone() {
    let mut c = cfg(199);
    c.dhcp.classes = vec![crate::config::ClientClass {
        name: "cams".into(),
        vendor_class: None,
        user_class: Some(b"cam".to_vec()),
        mac_prefix: Some(vec![0x52, 0x54]),
        subnet: Some(0),
        pool: Some((ip(150), ip(151))),
        lease_time: None,
        options: vec![],
        grant: Default::default(),
    }];
    let mut e = engine(c);
    let cam = |n: u8| {
        let mut d = discover(n);
        d.user_class = Some(b"\x03cam".to_vec());
        d
    };
    // Members get the class range, in order.
    for (t, n, want) in [(0, 1, 150), (1, 2, 151)] {
        let offer = at(&mut e, t, &cam(n));
        assert_eq!(yiaddr(&offer), Some(ip(want)));
        at(&mut e, t, &select(n, ip(want), SID));
    }
    // t=5: a third member finds the class range full, though the subnet has room.
    assert!(at(&mut e, 5, &cam(3)).reply.is_none());
    // Others never get the class range, even when they ask for it.
    let mut d = discover(4);
    d.requested_ip = Some(ip(150));
    let mut e2 = engine({
        let mut c = cfg(199);
        c.dhcp.classes = e.cfg.dhcp.classes.clone();
        c.subnets[0].pool_start = ip(149);
        c.subnets[0].pool_end = ip(151);
        c
    });
    assert_eq!(yiaddr(&at(&mut e2, 0, &d)), Some(ip(149)));
    assert!(at(&mut e2, 1, &discover(5)).reply.is_none(), "149 is held");
    // A class bound to another subnet does not apply here.
    let mut c = cfg(199);
    c.dhcp.classes = e.cfg.dhcp.classes.clone();
    c.dhcp.classes[0].subnet = Some(1);
    c.dhcp.classes[0].pool = None;
    c.dhcp.classes[0].lease_time = Some(99);
    let mut e3 = engine(c);
    assert_eq!(lease_time(&at(&mut e3, 0, &cam(1))), Some(3600));
}

#[test]
fn requested_lease_time_is_granted_within_bounds() {
    let mut e = engine(cfg(109));
    for (asked, granted) in [
        (Some(100), 100),
        (Some(10), 60),
        (Some(999_999), 3600),
        (None, 3600),
    ] {
        let mut d = discover(1);
        d.lease_time = asked;
        assert_eq!(
            lease_time(&at(&mut e, 0, &d)),
            Some(granted),
            "asked {asked:?}"
        );
    }
    // The ACK binds for what it says, T1/T2 follow.
    let mut r = select(1, ip(100), SID);
    r.lease_time = Some(120);
    let ack = at(&mut e, 1000, &r);
    assert_eq!(lease_time(&ack), Some(120));
    assert_eq!(
        opt(&ack, OptionCode::Renewal),
        Some(DhcpOption::Renewal(60))
    );
    assert_eq!(e.poll_at(), Some(UnixTime(1120)));
    // A subnet lease shorter than the floor is not raised by asking.
    let mut c = cfg(109);
    c.subnets[0].lease_time = 30;
    let mut e = engine(c);
    let mut d = discover(1);
    d.lease_time = Some(10);
    assert_eq!(lease_time(&at(&mut e, 0, &d)), Some(30));
}

#[test]
fn dns_server_defaults_to_us_when_our_dns_listens_here() {
    let with = |listen: &[&str]| {
        let mut c = cfg(109);
        c.subnets[0].dns_servers.clear();
        c.subnets[0].settings.dns_servers_default = true;
        c.start.dns.listen = listen.iter().map(|a| a.parse().expect("addr")).collect();
        engine(c)
    };
    let dns = |e: &mut Engine| opt(&at(e, 0, &discover(1)), OptionCode::DomainNameServer);
    let us = Some(DhcpOption::DomainNameServer(vec![SID]));
    assert_eq!(dns(&mut with(&["10.0.0.1:53"])), us);
    assert_eq!(dns(&mut with(&["127.0.0.1:53", "0.0.0.0:53"])), us);
    assert_eq!(dns(&mut with(&["[::]:53"])), us);
    assert_eq!(
        dns(&mut with(&["10.0.0.1:5353"])),
        None,
        "clients only use port 53"
    );
    assert_eq!(dns(&mut with(&["10.0.0.2:53"])), None);
    assert_eq!(dns(&mut with(&[])), None);
    // dns_servers = [] (given, empty) sends none even when DNS listens here.
    let mut e = with(&["10.0.0.1:53"]);
    let mut c = (*e.cfg).clone();
    c.subnets[0].settings.dns_servers_default = false;
    e = engine(c);
    assert_eq!(dns(&mut e), None);
}

#[test]
fn rapid_commit_acks_a_discover_when_both_sides_want_it() {
    let mut c = cfg(109);
    c.subnets[0].settings.rapid_commit = true;
    let mut e = engine(c);
    let mut d = discover(1);
    d.rapid_commit = true;
    // t=0: DISCOVER with option 80: ACK with option 80, lease bound at once.
    let ack = at(&mut e, 0, &d);
    assert_eq!(kind(&ack), Some(MessageType::Ack));
    assert_eq!(
        opt(&ack, OptionCode::RapidCommit),
        Some(DhcpOption::RapidCommit)
    );
    match ack.changes.as_slice() {
        [LeaseChange::Upsert(l)] => {
            assert_eq!(
                (l.ip, l.state, l.expires),
                (ip(100), LeaseState::Bound, UnixTime(3600))
            )
        }
        other => panic!("unexpected changes {other:?}"),
    }
    assert_eq!(bound(&e, 1), vec![ip(100)]);
    // A client without option 80: the usual OFFER, no option 80.
    let offer = at(&mut e, 1, &discover(2));
    assert_eq!(kind(&offer), Some(MessageType::Offer));
    assert!(opt(&offer, OptionCode::RapidCommit).is_none());
    // Its later ACK (a REQUEST) carries no option 80 either.
    let ack = at(&mut e, 2, &select(2, ip(101), SID));
    assert!(opt(&ack, OptionCode::RapidCommit).is_none());
    // A subnet without rapid_commit answers option 80 with an OFFER.
    let mut e = engine(cfg(109));
    let offer = at(&mut e, 0, &d);
    assert_eq!(kind(&offer), Some(MessageType::Offer));
    assert!(offer.changes.is_empty() && opt(&offer, OptionCode::RapidCommit).is_none());
}

#[test]
fn client_fqdn_names_the_lease_and_is_answered_per_rfc4702() {
    let mut e = engine(cfg(109));
    // t=0: Windows style: E=0 (ASCII), S=0, no option 12.
    let mut d = discover(1);
    d.fqdn = Some(b"\x00\x00\x00Win-PC.corp.example".to_vec());
    d.params = vec![1, 3, 6, 15, 81];
    let offer = at(&mut e, 0, &d);
    // S=1 (we do the A record), O=1 (the client asked S=0), E=0 like the client, rcodes 255.
    assert_eq!(raw(&offer, 81), Some(b"\x03\xff\xffwin-pc.lan".to_vec()));
    let mut r = select(1, ip(100), SID);
    r.fqdn = d.fqdn.clone();
    let ack = at(&mut e, 1, &r);
    match ack.changes.as_slice() {
        [LeaseChange::Upsert(l)] => assert_eq!(l.hostname.as_deref(), Some("win-pc")),
        other => panic!("unexpected changes {other:?}"),
    }
    // Linux style: E=1 (wire format), S=1: answered in wire format, no O.
    let mut d = discover(2);
    d.fqdn = Some(b"\x05\x00\x00\x06laptop\x04corp\x00".to_vec());
    let offer = at(&mut e, 2, &d);
    assert_eq!(
        raw(&offer, 81),
        Some(b"\x05\xff\xff\x06laptop\x03lan\x00".to_vec())
    );
    // Option 12 wins over the FQDN's label; a reservation's name over both.
    d.hostname = Some(b"other".to_vec());
    let offer = at(&mut e, 3, &d);
    assert_eq!(
        raw(&offer, 81),
        Some(b"\x05\xff\xff\x05other\x03lan\x00".to_vec())
    );
    let mut p = discover(PRINTER);
    p.fqdn = d.fqdn.clone();
    let offer = at(&mut e, 4, &p);
    assert_eq!(
        raw(&offer, 81),
        Some(b"\x05\xff\xff\x07printer\x03lan\x00".to_vec())
    );
    // A malformed option 81 is ignored: no name, no option 81.
    let mut bad = discover(3);
    bad.fqdn = Some(vec![0x04, 0, 0, 9, b'x']);
    let offer = at(&mut e, 5, &bad);
    assert_eq!(kind(&offer), Some(MessageType::Offer));
    assert!(opt(&offer, OptionCode::ClientFQDN).is_none());
}

#[test]
fn non_authoritative_subnet_is_silent_where_an_authoritative_one_naks() {
    for authoritative in [true, false] {
        let mut c = cfg(109);
        c.subnets[0].authoritative = authoritative;
        let mut e = engine(c);
        let want = |o: &Outcome| {
            if authoritative {
                kind(o) == Some(MessageType::Nak)
            } else {
                o.reply.is_none() && o.changes.is_empty()
            }
        };
        // INIT-REBOOT with an address from another network (the laptop moved here).
        let moved = at(&mut e, 0, &reboot(1, Ipv4Addr::new(192, 168, 1, 50)));
        assert!(want(&moved), "authoritative={authoritative}: {moved:?}");
        // RENEWING an address outside the pool that no one leased here.
        let stray = at(&mut e, 1, &renew(2, ip(50)));
        assert!(want(&stray), "authoritative={authoritative}: {stray:?}");
        // An address that is another client's is NAKed either way (we know it is wrong).
        let got = dora(&mut e, 2, 3);
        let theft = at(&mut e, 3, &reboot(4, got));
        assert_eq!(kind(&theft), Some(MessageType::Nak));
    }
}

#[test]
fn exhausted_warning_interval_comes_from_the_config() {
    let mut c = cfg(100);
    c.dhcp.exhausted_warn_interval = 10;
    let mut e = engine(c);
    dora(&mut e, 0, 1);
    for (t, warned) in [(100, 100), (105, 100), (110, 110), (115, 110)] {
        assert!(at(&mut e, t, &discover(2)).reply.is_none());
        assert_eq!(e.subnets[0].full_warned, Some(UnixTime(warned)), "t={t}");
    }
    // t=3600: client 1's lease is up; the pool has room again.
    assert_eq!(yiaddr(&at(&mut e, 3600, &discover(2))), Some(ip(100)));
}

#[test]
fn two_interfaces_each_serve_their_own_subnet() {
    let mut c = cfg(109);
    c.subnets[1] = subnet(
        Ipv4Addr::new(10, 1, 0, 0),
        Ipv4Addr::new(10, 1, 0, 100),
        Ipv4Addr::new(10, 1, 0, 109),
    );
    c.subnets[1].interface = Some("eth1".into());
    let mut e = engine(c);
    let eth1 = Iface {
        index: 3,
        name: "eth1".into(),
        addrs: vec![(Ipv4Addr::new(10, 1, 0, 1), 24)],
    };
    let a = at(&mut e, 0, &discover(1));
    let b = e.handle(UnixTime(0), &discover(2), &eth1);
    assert_eq!(yiaddr(&a), Some(ip(100)));
    assert_eq!(yiaddr(&b), Some(Ipv4Addr::new(10, 1, 0, 100)));
    let sid = DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 1, 0, 1));
    assert_eq!(opt(&b, OptionCode::ServerIdentifier), Some(sid));
    assert_eq!(
        b.reply.as_ref().map(|r| r.dest.clone()),
        Some(Dest::Direct {
            ip: Ipv4Addr::new(10, 1, 0, 100),
            hwaddr: mac(2),
            ifindex: 3,
        })
    );
}

fn ping_engine(last: u8) -> Engine {
    let mut c = cfg(last);
    c.dhcp.ping_check = true;
    engine(c)
}
fn after(e: &mut Engine, t: u64, req: &Request, ip: Ipv4Addr, answered: bool) -> Outcome {
    e.handle_after_ping(UnixTime(t), req, &eth0(), ip, answered)
}

#[test]
fn ping_check_parks_new_addresses_and_skips_ones_that_answer() {
    let mut e = ping_engine(103);
    // t=0: client 1's DISCOVER: .100 was never leased, so ping it first; no reply yet.
    let d1 = discover(1);
    let out = at(&mut e, 0, &d1);
    assert_eq!((out.ping, out.reply.is_none()), (Some(ip(100)), true));
    assert!(out.changes.is_empty());
    // Meanwhile client 2 is not held up: it is sent to ping .101, not .100.
    let d2 = discover(2);
    assert_eq!(at(&mut e, 0, &d2).ping, Some(ip(101)));
    // Client 1 retransmits while its ping runs: nothing new.
    let again = at(&mut e, 0, &d1);
    assert!(again.reply.is_none() && again.ping.is_none());
    // t=1: .100 answered: it is put aside like a DECLINE, and .102 is to be pinged next.
    let out = after(&mut e, 1, &d1, ip(100), true);
    assert_eq!(out.ping, Some(ip(102)));
    match out.changes.as_slice() {
        [LeaseChange::Upsert(l)] => {
            assert_eq!(
                (l.ip, l.state, l.expires),
                (ip(100), LeaseState::Declined, UnixTime(601))
            )
        }
        other => panic!("unexpected changes {other:?}"),
    }
    // .102 is silent: client 1 gets its OFFER; client 2's .101 too.
    let offer = after(&mut e, 1, &d1, ip(102), false);
    assert_eq!(
        (kind(&offer), yiaddr(&offer)),
        (Some(MessageType::Offer), Some(ip(102)))
    );
    assert_eq!(
        yiaddr(&after(&mut e, 1, &d2, ip(101), false)),
        Some(ip(101))
    );
    // A late or duplicate result for the same address changes nothing.
    let dup = after(&mut e, 2, &d1, ip(102), true);
    assert!(dup.reply.is_none() && dup.changes.is_empty() && dup.ping.is_none());
    // t=2: REQUEST, ACK as usual.
    assert_eq!(
        kind(&at(&mut e, 2, &select(1, ip(102), SID))),
        Some(MessageType::Ack)
    );
    // t=10: released; it comes back: an address with history is offered without a ping.
    at(&mut e, 10, &release(1, ip(102)));
    let back = at(&mut e, 11, &d1);
    assert_eq!((back.ping, yiaddr(&back)), (None, Some(ip(102))));
    // t=601: the answered address's hold ends; it has history now, so no second ping.
    e.expire(UnixTime(601));
    let mut d3 = discover(3);
    d3.requested_ip = Some(ip(100));
    let out = at(&mut e, 601, &d3);
    assert_eq!((out.ping, yiaddr(&out)), (None, Some(ip(100))));
}

#[test]
fn ping_check_spares_reservations_and_handles_lost_results() {
    let mut e = ping_engine(101);
    let printer = at(&mut e, 0, &discover(PRINTER));
    assert_eq!((printer.ping, yiaddr(&printer)), (None, Some(ip(10))));
    // A ping whose result never comes back: the hold ends with the offer hold.
    assert_eq!(at(&mut e, 0, &discover(1)).ping, Some(ip(100)));
    e.expire(UnixTime(60));
    assert!(e.pinging.is_empty(), "stale ping forgotten with its hold");
    let late = after(&mut e, 61, &discover(1), ip(100), false);
    assert!(late.reply.is_none() && late.ping.is_none());
    // Every address answers: no offer, the pool is exhausted.
    let d = discover(2);
    let mut out = at(&mut e, 100, &d);
    let mut answered = Vec::new();
    while let Some(ip) = out.ping {
        answered.push(ip);
        out = after(&mut e, 100, &d, ip, true);
    }
    assert_eq!(answered, vec![ip(101), ip(100)]);
    assert!(out.reply.is_none());
    assert_eq!(e.subnets[0].full_warned, Some(UnixTime(100)));
    // Rapid commit after a silent ping: the ACK comes straight from the ping result.
    let mut c = cfg(109);
    c.dhcp.ping_check = true;
    c.subnets[0].settings.rapid_commit = true;
    let mut e = engine(c);
    let mut d = discover(1);
    d.rapid_commit = true;
    assert_eq!(at(&mut e, 0, &d).ping, Some(ip(100)));
    let ack = after(&mut e, 0, &d, ip(100), false);
    assert_eq!(kind(&ack), Some(MessageType::Ack));
    assert_eq!(bound(&e, 1), vec![ip(100)]);
}

fn lease_secs(o: &Outcome) -> u32 {
    match opt(o, OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(t)) => t,
        other => panic!("no lease time: {other:?}"),
    }
}
fn t1(o: &Outcome) -> u32 {
    match opt(o, OptionCode::Renewal) {
        Some(DhcpOption::Renewal(t)) => t,
        other => panic!("no T1: {other:?}"),
    }
}

/// One client renewing at the T1 it was given, 1,000 times, its changes written to a real
/// journal: bytes written with lease reuse off and on (run with --nocapture for the figures).
/// Every ACK's end (now + option 51) is exactly the stored expiry.
#[test]
fn renewals_inside_the_stored_lifetime_reuse_it_and_are_not_written() {
    use crate::lease::journal::Journal;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = Vec::new();
    for fraction in [0.0, 0.5] {
        let mut c = cfg(109);
        c.renew_write_fraction = fraction;
        let mut e = engine(c);
        let path = dir.path().join(format!("leases-{fraction}"));
        let (mut j, _) = Journal::open(&path, Durability::None, UnixTime(0)).expect("open");
        let mut now = 1_000_000u64;
        let mut d = discover(1);
        d.hostname = Some(b"laptop".to_vec());
        at(&mut e, now, &d);
        let mut r = select(1, ip(100), SID);
        r.hostname = d.hostname.clone();
        let mut ack = at(&mut e, now, &r);
        j.commit_at(UnixTime(now), &ack.changes).expect("commit");
        let before = j.stats();
        let mut reused = 0;
        for i in 0..1000 {
            now += u64::from(t1(&ack));
            let mut rn = renew(1, ip(100));
            rn.hostname = d.hostname.clone();
            ack = at(&mut e, now, &rn);
            assert_eq!(kind(&ack), Some(MessageType::Ack), "renewal {i}");
            reused += usize::from(ack.changes.is_empty());
            j.commit_at(UnixTime(now), &ack.changes).expect("commit");
            let end = UnixTime(now + u64::from(lease_secs(&ack)));
            let stored = j.durable(ip(100)).expect("stored");
            assert_eq!(
                stored.expires, end,
                "renewal {i}: stored end is the granted end"
            );
            assert!(
                lease_secs(&ack) >= 1800,
                "renewal {i}: never less than half the time"
            );
        }
        let after = j.stats();
        let written = after.bytes_written - before.bytes_written;
        println!(
            "renew_write_fraction={fraction}: {} records, {reused} reused, {written} bytes \
             per 1000 renewals, {} s of lease time covered",
            after.records - before.records,
            now - 1_000_000
        );
        bytes.push(written);
    }
    assert!(bytes[1] * 2 <= bytes[0] + 100, "{bytes:?}");
}

#[test]
fn reuse_never_hides_a_change_of_name_owner_or_lease_time() {
    let mut e = engine(cfg(109));
    let mut d = discover(1);
    d.hostname = Some(b"a".to_vec());
    at(&mut e, 0, &d);
    let mut r = select(1, ip(100), SID);
    r.hostname = Some(b"a".to_vec());
    at(&mut e, 0, &r);
    // t=100: same name, plenty left: reused, 3500 s granted.
    let mut rn = renew(1, ip(100));
    rn.hostname = Some(b"a".to_vec());
    let same = at(&mut e, 100, &rn);
    assert!(same.changes.is_empty());
    assert_eq!((lease_secs(&same), t1(&same)), (3500, 1750));
    // A new name is written, with a whole lease.
    rn.hostname = Some(b"b".to_vec());
    let renamed = at(&mut e, 200, &rn);
    assert_eq!(renamed.changes.len(), 1);
    assert_eq!(lease_secs(&renamed), 3600);
    // No name sent: the lease keeps its name, reused.
    rn.hostname = None;
    assert!(at(&mut e, 300, &rn).changes.is_empty());
    // The client asks for 600 s: less than what is left, so it is written with 600.
    rn.lease_time = Some(600);
    let shorter = at(&mut e, 400, &rn);
    assert_eq!((shorter.changes.len(), lease_secs(&shorter)), (1, 600));
    // renew_write_fraction = 0: every renewal is written.
    let mut c = cfg(109);
    c.renew_write_fraction = 0.0;
    let mut e = engine(c);
    dora(&mut e, 0, 1);
    assert_eq!(at(&mut e, 1, &renew(1, ip(100))).changes.len(), 1);
}

/// Issue 13, fault 1: a client granted 120 s, renewing at its T1, the server restarted
/// (cleanly, or killed: the files as they were) at every second of the timeline. After each
/// restart the recovered lease ends exactly when the last lease granted to the client ends:
/// its name is never published past it.
#[test]
fn after_any_restart_a_lease_ends_when_the_granted_lease_ends() {
    use crate::lease::journal::Journal;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg(109);
    c.subnets[0].lease_time = 120;
    let c = Arc::new(c);
    let path = dir.path().join("leases");
    let (mut j, _) = Journal::open(&path, Durability::Fsync, UnixTime(0)).expect("open");
    let mut e = Engine::new(c.clone(), vec![], UnixTime(0));
    let mut d = discover(1);
    d.hostname = Some(b"laptop".to_vec());
    at(&mut e, 0, &d);
    let mut r = select(1, ip(100), SID);
    r.hostname = d.hostname.clone();
    let first = at(&mut e, 0, &r);
    j.commit_at(UnixTime(0), &first.changes).expect("commit");
    let mut granted_end = u64::from(lease_secs(&first));
    let mut next_renewal = u64::from(t1(&first));
    let mut writes = 0;
    for t in 1..=400u64 {
        if t == next_renewal && t < 300 {
            let mut rn = renew(1, ip(100));
            rn.hostname = d.hostname.clone();
            let ack = at(&mut e, t, &rn);
            writes += usize::from(!ack.changes.is_empty());
            j.commit_at(UnixTime(t), &ack.changes).expect("commit");
            granted_end = t + u64::from(lease_secs(&ack));
            next_renewal = t + u64::from(t1(&ack));
        }
        // A crash: the files as they are now, opened by a new process.
        let crashed = dir.path().join(format!("crash-{t}"));
        std::fs::create_dir(&crashed).expect("mkdir");
        std::fs::copy(&path, crashed.join("leases")).expect("copy");
        let (_, after_crash) =
            Journal::open(&crashed.join("leases"), Durability::Fsync, UnixTime(t)).expect("open");
        let mut restarted = Engine::new(c.clone(), after_crash, UnixTime(t));
        if t < granted_end {
            assert_eq!(restarted.poll_at(), Some(UnixTime(granted_end)), "t={t}");
            assert!(
                restarted.expire(UnixTime(granted_end - 1)).is_empty(),
                "t={t}"
            );
            let gone = restarted.expire(UnixTime(granted_end));
            assert_eq!(gone.len(), 1, "t={t}: the name leaves at the granted end");
        } else {
            assert!(
                restarted.leases().is_empty(),
                "t={t}: lease outlived its grant"
            );
        }
        std::fs::remove_dir_all(&crashed).expect("rm");
    }
    assert!(writes > 0 && granted_end < 400);
    // A clean restart at the end of the renewals: the same.
    drop(j);
    let (_, clean) = Journal::open(&path, Durability::Fsync, UnixTime(299)).expect("open");
    assert_eq!(clean.len(), 1);
    assert_eq!(clean[0].expires, UnixTime(granted_end));
}

/// Issue 13, fault 2: option 61 comes back unaltered in OFFER, ACK and NAK (RFC 6842).
#[test]
fn client_identifier_is_echoed_in_offer_ack_and_nak() {
    let mut e = engine(cfg(109));
    let cid = b"\x00\x01\x02odd-id".to_vec();
    let with_id = |mut r: Request| {
        r.client_id = Some(cid.clone());
        r
    };
    let offer = at(&mut e, 0, &with_id(discover(1)));
    let ack = at(&mut e, 0, &with_id(select(1, ip(100), SID)));
    let nak = at(&mut e, 0, &with_id(select(1, ip(101), SID)));
    for (o, k) in [
        (&offer, MessageType::Offer),
        (&ack, MessageType::Ack),
        (&nak, MessageType::Nak),
    ] {
        assert_eq!(kind(o), Some(k));
        assert_eq!(raw(o, 61), Some(cid.clone()), "{k:?}");
    }
    // Without option 61 in the request, none in the reply.
    assert_eq!(raw(&at(&mut e, 1, &discover(2)), 61), None);
}

/// Issue 13, fault 4: a DISCOVER with ciaddr 255.255.255.255 is answered as if ciaddr were
/// 0: the OFFER goes to yiaddr (or broadcast), and carries ciaddr 0.
#[test]
fn a_discovers_ciaddr_does_not_steer_the_offer() {
    let mut e = engine(cfg(109));
    let mut d = discover(1);
    d.ciaddr = Ipv4Addr::BROADCAST;
    let offer = at(&mut e, 0, &d);
    let r = offer.reply.as_ref().expect("offer");
    assert_eq!(r.msg.ciaddr(), UNSPEC);
    assert_eq!(
        r.dest,
        Dest::Direct {
            ip: ip(100),
            hwaddr: mac(1),
            ifindex: 2
        }
    );
    d.broadcast = true;
    let offer = at(&mut e, 0, &d);
    assert_eq!(
        offer.reply.map(|r| r.dest),
        Some(Dest::Broadcast { ifindex: 2 })
    );
}

/// Issue 13, fault 5. A REQUEST with no server id, no requested address and ciaddr 0 fits
/// no state of RFC 2131 table 4 (SELECTING and INIT-REBOOT MUST send option 50, RENEWING
/// and REBINDING MUST fill ciaddr), so no address of this network can be confirmed for it:
/// section 4.3.2's "incorrect ... NAK" applies, and the NAK sends the client back to INIT.
/// Silent when not authoritative. An INFORM with ciaddr 0 breaks table 5 (ciaddr MUST be the
/// client's address) and section 4.3.5 sends the ACK to ciaddr: with none it is ignored.
#[test]
fn requests_that_fit_no_state_are_naked_and_informs_without_ciaddr_ignored() {
    let mut e = engine(cfg(109));
    let bare = base(1, MessageType::Request);
    let nak = at(&mut e, 0, &bare);
    assert_eq!(kind(&nak), Some(MessageType::Nak));
    assert_eq!(
        nak.reply.map(|r| r.dest),
        Some(Dest::Broadcast { ifindex: 2 })
    );
    let mut c = cfg(109);
    c.subnets[0].authoritative = false;
    assert!(at(&mut engine(c), 0, &bare).reply.is_none());
    let inform = base(1, MessageType::Inform);
    let out = at(&mut e, 0, &inform);
    assert!(out.reply.is_none() && out.changes.is_empty());
    // With ciaddr, an INFORM is answered by unicast to it, without lease times.
    let mut inform = inform;
    inform.ciaddr = ip(7);
    let ack = at(&mut e, 0, &inform);
    assert_eq!(kind(&ack), Some(MessageType::Ack));
    let r = ack.reply.as_ref().expect("ack");
    assert_eq!(r.dest, Dest::Unicast(SocketAddrV4::new(ip(7), 68)));
    assert!(opt(&ack, OptionCode::AddressLeaseTime).is_none());
}

fn class(
    name: &str,
    vendor: Option<&[u8]>,
    user: Option<&[u8]>,
    grant: GrantSettings,
) -> ClientClass {
    ClientClass {
        name: name.into(),
        vendor_class: vendor.map(<[u8]>::to_vec),
        user_class: user.map(<[u8]>::to_vec),
        mac_prefix: None,
        subnet: None,
        pool: None,
        lease_time: None,
        options: vec![],
        grant,
    }
}

#[test]
fn t1_and_t2_come_from_host_class_or_subnet_and_scale_with_the_grant() {
    let mut c = cfg(109);
    c.subnets[0].settings.grant.renew_time = Some(600);
    c.subnets[0].settings.grant.rebind_time = Some(1200);
    c.dhcp.classes = vec![class(
        "slow",
        Some(b"slow"),
        None,
        GrantSettings {
            rebind_time: Some(3000),
            ..Default::default()
        },
    )];
    c.dhcp.host_grants = vec![GrantSettings {
        renew_time: Some(100),
        ..Default::default()
    }];
    let mut e = engine(c);
    let times = |o: &Outcome| {
        let get = |code| match opt(o, code) {
            Some(DhcpOption::Renewal(t) | DhcpOption::Rebinding(t)) => t,
            other => panic!("{other:?}"),
        };
        (
            lease_secs(o),
            get(OptionCode::Renewal),
            get(OptionCode::Rebinding),
        )
    };
    // The subnet's timers.
    assert_eq!(times(&at(&mut e, 0, &discover(1))), (3600, 600, 1200));
    // The class's T2 over the subnet's; T1 still the subnet's.
    let mut d = discover(2);
    d.vendor_class = Some(b"slow-box".to_vec());
    assert_eq!(times(&at(&mut e, 0, &d)), (3600, 600, 3000));
    // The printer's host T1; T2 from the subnet.
    assert_eq!(times(&at(&mut e, 0, &discover(PRINTER))), (3600, 100, 1200));
    // A client asking for 1800 s: the timers scale to half.
    let mut d = discover(3);
    d.lease_time = Some(1800);
    assert_eq!(times(&at(&mut e, 0, &d)), (1800, 300, 600));
}

#[test]
fn network_boot_per_class_fills_siaddr_sname_file_and_66_67_when_asked() {
    let mut c = cfg(109);
    let tftp = Ipv4Addr::new(10, 0, 0, 5);
    c.dhcp.classes = vec![
        // iPXE first: an iPXE client also says PXEClient in option 60.
        class(
            "ipxe",
            None,
            Some(b"iPXE"),
            GrantSettings {
                boot_file: Some("http://10.0.0.5/boot.ipxe".into()),
                ..Default::default()
            },
        ),
        class(
            "pxe",
            Some(b"PXEClient"),
            None,
            GrantSettings {
                next_server: Some(tftp),
                server_name: Some("tftp.lan".into()),
                boot_file: Some("undionly.kpxe".into()),
                ..Default::default()
            },
        ),
    ];
    c.subnets[0].settings.grant.next_server = Some(ip(6));
    let mut e = engine(c);
    let mut pxe = discover(1);
    pxe.vendor_class = Some(b"PXEClient:Arch:00000:UNDI:002001".to_vec());
    pxe.params = vec![1, 3, 66, 67];
    let offer = at(&mut e, 0, &pxe);
    let r = offer.reply.as_ref().expect("offer");
    assert_eq!(r.msg.siaddr, tftp);
    assert_eq!(r.msg.sname, b"tftp.lan");
    assert_eq!(r.msg.file, b"undionly.kpxe");
    assert_eq!(raw(&offer, 66), Some(b"tftp.lan".to_vec()));
    assert_eq!(raw(&offer, 67), Some(b"undionly.kpxe".to_vec()));
    // iPXE chain-loaded: its user class picks the script; next server from the subnet.
    let mut ipxe = pxe.clone();
    ipxe.user_class = Some(b"\x04iPXE".to_vec());
    ipxe.params = vec![1, 3];
    let offer = at(&mut e, 1, &ipxe);
    let r = offer.reply.as_ref().expect("offer");
    assert_eq!(r.msg.file, b"http://10.0.0.5/boot.ipxe");
    assert_eq!((r.msg.siaddr, r.msg.sname.is_empty()), (ip(6), true));
    assert_eq!(raw(&offer, 67), None, "67 only when asked for");
    // Anyone else: next server from the subnet, no file.
    let plain = at(&mut e, 2, &discover(2));
    let r = plain.reply.as_ref().expect("offer");
    assert_eq!((r.msg.siaddr, r.msg.file.is_empty()), (ip(6), true));
    // A NAK carries none of it.
    let nak = at(&mut e, 3, &select(1, ip(109), SID));
    let r = nak.reply.as_ref().expect("nak");
    assert_eq!((r.msg.siaddr, r.msg.file.is_empty()), (UNSPEC, true));
}

/// Issue 13, reservations that win: after a reload reserves client 2's neighbour's address
/// for it, the holder (client 1) is NAKed at its renewal and loses the address at once;
/// client 2 is NAKed at its next renewal and gets the reserved address on its DISCOVER.
#[test]
fn a_reservation_added_by_a_reload_wins_at_the_next_renewals() {
    for authoritative in [true, false] {
        let mut c = cfg(109);
        c.reservations.clear();
        c.subnets[0].authoritative = authoritative;
        let mut e = engine(c.clone());
        assert_eq!(dora(&mut e, 0, 1), ip(100));
        assert_eq!(dora(&mut e, 0, 2), ip(101));
        // t=100: reload: client 2 is reserved .100, which client 1 holds.
        c.reservations = vec![Reservation {
            hwaddr: Some(mac(2)),
            client_id: None,
            ip: ip(100),
            name: Some("two".into()),
            lease_time: None,
            options: vec![],
        }];
        c.dhcp.host_grants = vec![GrantSettings::default()];
        let mut e = Engine::new(Arc::new(c), e.leases(), UnixTime(100));
        // Client 2 renews before client 1: its reservation is still held: it keeps .101.
        assert_eq!(
            kind(&at(&mut e, 100, &renew(2, ip(101)))),
            Some(MessageType::Ack)
        );
        // t=1800: client 1 renews .100: NAK, and its lease ends now.
        let nak = at(&mut e, 1800, &renew(1, ip(100)));
        assert_eq!(
            kind(&nak),
            Some(MessageType::Nak),
            "authoritative={authoritative}"
        );
        let gone = LeaseChange::Remove {
            ip: ip(100),
            reason: RemoveReason::Superseded,
        };
        assert_eq!(nak.changes, vec![gone]);
        // Client 1 is never offered .100 again.
        let mut d = discover(1);
        d.requested_ip = Some(ip(100));
        assert_eq!(yiaddr(&at(&mut e, 1801, &d)), Some(ip(102)));
        // t=1900: client 2 renews .101: NAK; its DISCOVER gets .100, named by the config.
        assert_eq!(
            kind(&at(&mut e, 1900, &renew(2, ip(101)))),
            Some(MessageType::Nak)
        );
        assert_eq!(yiaddr(&at(&mut e, 1901, &discover(2))), Some(ip(100)));
        let ack = at(&mut e, 1901, &select(2, ip(100), SID));
        assert_eq!(kind(&ack), Some(MessageType::Ack));
        assert_eq!(bound(&e, 2), vec![ip(100)]);
    }
}

/// Issue 14: one MAC sending DISCOVER + DECLINE pairs put the whole pool aside. A DECLINE
/// (and a RELEASE) ends a lease only when it comes from the holder of a bound lease, names
/// our server id, and its address is in the request's subnet.
#[test]
fn decline_and_release_only_from_the_holder_to_us() {
    let mut e = engine(cfg(103));
    for t in 0..10 {
        let offer = at(&mut e, t, &discover(1));
        let ip = yiaddr(&offer).expect("offered");
        let out = at(&mut e, t, &decline(1, ip));
        assert!(
            out.changes.is_empty(),
            "an offered address declined at t={t}"
        );
    }
    // t=100, client 1's offer hold over: the pool is whole, four clients get four addresses.
    for n in 2..=5 {
        dora(&mut e, 100, n);
    }
    let got = bound(&e, 2)[0];
    // Another server id, the right client: ignored. No server id: ignored.
    let mut r = release(2, got);
    r.server_id = Some(ip(254));
    assert!(at(&mut e, 30, &r).changes.is_empty());
    r.server_id = None;
    assert!(at(&mut e, 30, &r).changes.is_empty());
    // The client id of the holder on another chaddr: ignored.
    let mut r = release(9, got);
    r.client_id = Some(id(2).as_bytes().to_vec());
    assert!(at(&mut e, 30, &r).changes.is_empty());
    let mut d = decline(9, got);
    d.client_id = r.client_id.clone();
    assert!(at(&mut e, 30, &d).changes.is_empty());
    assert_eq!(bound(&e, 2), vec![got]);
    // The holder itself: ended.
    assert_eq!(at(&mut e, 31, &decline(2, got)).changes.len(), 1);
}

/// Issue 14: with the pool full, every DISCOVER from a new client scanned the whole pool.
/// Now one scan finds it full and later DISCOVERs know it without scanning, until a lease
/// is removed.
#[test]
fn a_full_pool_is_scanned_once_until_an_address_is_freed() {
    let mut e = engine(cfg(103)); // four addresses
    for n in 1..=4 {
        dora(&mut e, 0, n);
    }
    for n in 60..250u8 {
        assert!(at(&mut e, 1, &discover(n)).reply.is_none());
    }
    assert_eq!(e.subnets[0].failed_scans, 1, "one scan for 190 DISCOVERs");
    // A release frees an address: the next DISCOVER scans again and gets it.
    at(&mut e, 2, &release(3, ip(102)));
    assert_eq!(yiaddr(&at(&mut e, 3, &discover(60))), Some(ip(102)));
    assert!(at(&mut e, 3, &discover(61)).reply.is_none());
    assert_eq!(e.subnets[0].failed_scans, 2);
    // Clients that have an address are still served without a scan.
    assert_eq!(
        kind(&at(&mut e, 4, &renew(1, ip(100)))),
        Some(MessageType::Ack)
    );
    assert_eq!(yiaddr(&at(&mut e, 4, &discover(2))), Some(ip(101)));
}

/// Issue 14, relay trust: hops are bounded, and a subnet that lists its relays is served
/// only through them.
#[test]
fn relayed_requests_need_few_hops_and_a_listed_relay() {
    let mut c = cfg(109);
    let relay = Ipv4Addr::new(172, 16, 0, 2);
    let mut r = discover(1);
    r.giaddr = GIADDR;
    r.hops = 1;
    assert!(relay_allowed(&c, &r, relay));
    assert!(
        relay_allowed(&c, &r, Ipv4Addr::new(172, 16, 0, 9)),
        "no list: any relay"
    );
    r.hops = 9;
    assert!(!relay_allowed(&c, &r, relay), "more than 8 hops");
    r.hops = 1;
    c.subnets[1].settings.relays = vec![relay];
    assert!(relay_allowed(&c, &r, relay));
    assert!(!relay_allowed(&c, &r, Ipv4Addr::new(172, 16, 0, 9)));
    r.giaddr = Ipv4Addr::new(192, 0, 2, 1);
    assert!(!relay_allowed(&c, &r, relay), "giaddr in no subnet");
    // Unrelayed requests are not concerned.
    assert!(relay_allowed(&c, &discover(2), Ipv4Addr::new(10, 0, 0, 99)));
}

/// Issue 14: 150 client ids on one chaddr could hold every address. At most
/// `max_client_ids_per_mac` of them get a lease; the chaddr's own id and other MACs are
/// still served.
#[test]
fn one_mac_holds_at_most_the_configured_number_of_client_ids() {
    let mut e = engine(cfg(109)); // ten addresses, default limit 4
    let with_id = |k: u8, t: MessageType| Request {
        client_id: Some(vec![0, 0xee, k]),
        ..base(1, t)
    };
    let mut got = 0;
    for k in 0..10u8 {
        let offer = at(&mut e, 0, &with_id(k, MessageType::Discover));
        if let Some(ip) = yiaddr(&offer) {
            let mut r = with_id(k, MessageType::Request);
            r.server_id = Some(SID);
            r.requested_ip = Some(ip);
            assert_eq!(kind(&at(&mut e, 0, &r)), Some(MessageType::Ack));
            got += 1;
        }
    }
    assert_eq!(got, 4);
    // Renewals of those four still work; the MAC's own identity and another MAC get one.
    let mut r = with_id(0, MessageType::Request);
    r.ciaddr = ip(100);
    assert_eq!(kind(&at(&mut e, 10, &r)), Some(MessageType::Ack));
    dora(&mut e, 10, 1);
    dora(&mut e, 10, 2);
    // A released one makes room for the next.
    let mut rel = with_id(1, MessageType::Release);
    rel.ciaddr = ip(101);
    rel.server_id = Some(SID);
    assert_eq!(at(&mut e, 20, &rel).changes.len(), 1);
    assert!(yiaddr(&at(&mut e, 21, &with_id(9, MessageType::Discover))).is_some());
}

/// Issue 14: behind one relay agent port (option 82) at most `max_leases_per_relay_port`
/// clients get a lease; other ports, renewals and clients that hold a lease are served, and
/// a port has room again when a lease is released or runs out.
#[test]
fn one_relay_port_holds_at_most_the_configured_number_of_leases() {
    let mut c = cfg(109);
    c.dhcp.max_leases_per_relay_port = 2;
    let mut e = engine(c);
    let via = |mut r: Request, info: &[u8]| {
        r.giaddr = GIADDR;
        r.hops = 1;
        r.relay_info = Some(info.to_vec());
        r
    };
    let circuit = |id: u8| vec![1, 1, id];
    let relayed_dora = |e: &mut Engine, t: u64, n: u8, info: &[u8]| {
        let offer = e.handle(UnixTime(t), &via(discover(n), info), &uplink());
        let ip = yiaddr(&offer)?;
        let ack = e.handle(UnixTime(t), &via(select(n, ip, RELAY_SID), info), &uplink());
        (kind(&ack) == Some(MessageType::Ack)).then_some(ip)
    };
    let a = relayed_dora(&mut e, 0, 1, &circuit(1)).expect("first on port 1");
    relayed_dora(&mut e, 0, 2, &circuit(1)).expect("second on port 1");
    assert_eq!(relayed_dora(&mut e, 1, 3, &circuit(1)), None, "port 1 full");
    assert!(
        relayed_dora(&mut e, 1, 4, &circuit(2)).is_some(),
        "port 2 has room"
    );
    // Client 1 renews (unicast, no option 82) and re-discovers through its full port.
    let mut rn = renew(1, a);
    rn.giaddr = GIADDR;
    assert_eq!(
        kind(&e.handle(UnixTime(5), &rn, &uplink())),
        Some(MessageType::Ack)
    );
    let again = e.handle(UnixTime(6), &via(discover(1), &circuit(1)), &uplink());
    assert_eq!(yiaddr(&again), Some(a));
    // A release makes room.
    let mut rel = release(1, a);
    rel.server_id = Some(RELAY_SID);
    rel.giaddr = GIADDR;
    assert_eq!(e.handle(UnixTime(10), &rel, &uplink()).changes.len(), 1);
    assert!(
        relayed_dora(&mut e, 11, 3, &circuit(1)).is_some(),
        "room after release"
    );
    assert_eq!(relayed_dora(&mut e, 12, 5, &circuit(1)), None, "full again");
    // Leases running out (3600 s) make room too.
    assert!(
        relayed_dora(&mut e, 3700, 5, &circuit(1)).is_some(),
        "room after expiry"
    );
    // The same remote id on other circuits counts as one port.
    let remote = |id: u8| vec![1, 1, 100 + id, 2, 2, 0xaa, 0xbb];
    assert!(relayed_dora(&mut e, 3700, 6, &remote(1)).is_some());
    assert!(relayed_dora(&mut e, 3700, 7, &remote(2)).is_some());
    assert_eq!(
        relayed_dora(&mut e, 3700, 8, &remote(3)),
        None,
        "remote id full"
    );
    // Another relay's circuit 1 is another port.
    let mut other = via(discover(9), &circuit(1));
    other.giaddr = Ipv4Addr::new(192, 168, 5, 2);
    assert!(yiaddr(&e.handle(UnixTime(3700), &other, &uplink())).is_some());
    assert!(
        e.relay_ports.entries() <= 2 * 10,
        "bounded by the addresses"
    );
}

#[test]
fn declined_addresses_are_listed_for_the_exhausted_warning() {
    let mut e = engine(cfg(101));
    let a = dora(&mut e, 0, 1);
    at(&mut e, 1, &decline(1, a));
    let b = dora(&mut e, 2, 2);
    assert!(at(&mut e, 3, &discover(3)).reply.is_none(), "pool full");
    assert_eq!(
        e.declined_in(&e.cfg.subnets[0].clone()),
        vec![(a, UnixTime(601))]
    );
    assert_ne!(a, b);
}

/// What `/metrics` publishes: bound and declined per subnet follow every change (grant,
/// decline, expiry), allocation failures count DISCOVERs that found nothing, once each.
#[test]
fn usage_and_allocation_failures_for_metrics() {
    let mut e = engine(cfg(101));
    assert_eq!(e.usage()[0], (0, 0));
    let a = dora(&mut e, 0, 1);
    assert_eq!(e.usage()[0], (1, 0));
    at(&mut e, 1, &decline(1, a));
    assert_eq!(e.usage()[0], (0, 1));
    dora(&mut e, 2, 2);
    assert_eq!(e.usage()[0], (1, 1));
    assert!(at(&mut e, 3, &discover(3)).reply.is_none(), "pool full");
    assert!(at(&mut e, 3, &discover(4)).reply.is_none(), "pool full");
    assert_eq!(e.take_allocation_failures(), 2);
    assert_eq!(e.take_allocation_failures(), 0);
    e.expire(UnixTime(100_000));
    assert_eq!(e.usage()[0], (0, 0), "expired and the decline hold is over");
}

/// A tiny deterministic generator, so the soak test needs no extra crate.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize].clone()
    }
}

#[test]
fn arbitrary_requests_never_panic_or_break_the_invariants() {
    let mut c = cfg(105);
    c.dhcp.ping_check = true;
    c.subnets[0].settings.rapid_commit = true;
    c.dhcp.classes = vec![crate::config::ClientClass {
        name: "odd".into(),
        vendor_class: Some(b"v".to_vec()),
        user_class: None,
        mac_prefix: None,
        subnet: Some(0),
        pool: Some((ip(104), ip(105))),
        lease_time: Some(30),
        options: vec![spec(252, b"x")],
        grant: Default::default(),
    }];
    let mut e = engine(c);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let types = [
        MessageType::Discover,
        MessageType::Request,
        MessageType::Release,
        MessageType::Decline,
        MessageType::Inform,
        MessageType::Offer,
        MessageType::Unknown(200),
    ];
    let addrs = [
        UNSPEC,
        ip(0),
        ip(1),
        ip(10),
        ip(100),
        ip(103),
        ip(255),
        GIADDR,
        Ipv4Addr::BROADCAST,
    ];
    let names: [Option<&[u8]>; 4] = [None, Some(b""), Some(b"\xff\xfe"), Some(b"ok")];
    let mut acks = 0;
    for t in 0..20_000u64 {
        let n = rng.pick(&[1u8, 2, 3, 4, 5, 6, 7, 8, PRINTER]);
        let mut r = base(n, rng.pick(&types));
        r.ciaddr = rng.pick(&addrs);
        r.requested_ip = Some(rng.pick(&addrs)).filter(|a| !a.is_unspecified());
        r.server_id = rng.pick(&[None, Some(SID), Some(ip(2))]);
        r.giaddr = rng.pick(&[UNSPEC, UNSPEC, UNSPEC, GIADDR, ip(7)]);
        r.hostname = rng.pick(&names).map(<[u8]>::to_vec);
        r.client_id = rng.pick(&[None, Some(vec![]), Some(vec![n])]);
        r.hwaddr = match rng.next() % 8 {
            0 => HwAddr::new(1, &[]),
            1 => HwAddr::new(1, &[n; 20]),
            _ => r.hwaddr,
        };
        r.max_size = rng.pick(&[None, Some(0), Some(u16::MAX)]);
        r.rapid_commit = rng.next().is_multiple_of(4);
        r.lease_time = rng.pick(&[None, Some(0), Some(45), Some(u32::MAX)]);
        r.vendor_class = rng.pick(&[None, Some(b"v1".to_vec())]);
        r.fqdn = rng.pick(&[
            None,
            Some(vec![0, 0, 0]),
            Some(vec![4, 0, 0, 9, b'x']),
            Some(b"\x04\x00\x00\x02pc\x00".to_vec()),
            Some(b"\x00\x00\x00a.b".to_vec()),
        ]);
        let iface = rng.pick(&[0, 0, 1, 2]);
        let iface = [
            eth0(),
            uplink(),
            Iface {
                index: 5,
                name: "x".into(),
                addrs: vec![],
            },
        ][iface]
            .clone();
        let now = UnixTime(t / 4);
        let mut out = e.handle(now, &r, &iface);
        // Ping results come back at random, answered or not, sometimes not at all.
        while let Some(p) = out.ping.filter(|_| !rng.next().is_multiple_of(8)) {
            out = e.handle_after_ping(now, &r, &iface, p, rng.next().is_multiple_of(3));
        }
        if kind(&out) == Some(MessageType::Ack) {
            acks += 1;
        }
        if t % 97 == 0 {
            e.expire(now);
        }
        let leases = e.leases();
        let mut ips: Vec<_> = leases.iter().map(|l| l.ip).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), leases.len(), "one lease per address");
        for l in leases.iter().filter(|l| l.state == LeaseState::Bound) {
            let same = leases
                .iter()
                .filter(|m| m.state == LeaseState::Bound && m.client == l.client);
            assert_eq!(same.count(), 1, "one bound lease per client: {l:?}");
            if l.ip == ip(10) {
                assert_eq!(
                    l.hwaddr,
                    mac(PRINTER),
                    "reserved address only for its owner"
                );
            }
            assert_ne!(l.ip, SID, "never our own address");
        }
    }
    assert!(
        acks > 500,
        "the soak must exercise the engine, got {acks} ACKs"
    );
}
