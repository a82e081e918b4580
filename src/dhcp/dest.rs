//! Where a reply goes (RFC 2131 section 4.1). Pure: no sockets, no ARP, no clock.

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::MessageType;

use crate::dhcp::wire::Request;

pub use crate::net::Dest;

/// The ports replies go to: the server port for relays, the client port for clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub server: u16,
    pub client: u16,
}

/// Where the reply to `req` goes. `yiaddr` is the address the reply carries (unspecified for
/// INFORM and NAK); `nak` marks a DHCPNAK; `ifindex` is the interface the request came in on.
pub fn choose(req: &Request, yiaddr: Ipv4Addr, nak: bool, ifindex: u32, ports: Ports) -> Dest {
    if !req.giaddr.is_unspecified() {
        return Dest::Relay(SocketAddrV4::new(req.giaddr, ports.server));
    }
    if nak {
        return Dest::Broadcast { ifindex };
    }
    // ciaddr decides only for INFORM and REQUEST (RENEWING, REBINDING): a DISCOVER's is 0
    // (RFC 2131 table 5) and must not steer the OFFER.
    let by_ciaddr = matches!(req.msg_type, MessageType::Inform | MessageType::Request);
    if by_ciaddr && !req.ciaddr.is_unspecified() {
        return Dest::Unicast(SocketAddrV4::new(req.ciaddr, ports.client));
    }
    if req.broadcast || req.hwaddr.bytes().is_empty() || yiaddr.is_unspecified() {
        return Dest::Broadcast { ifindex };
    }
    Dest::Direct {
        ip: yiaddr,
        hwaddr: req.hwaddr.clone(),
        ifindex,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::HwAddr;
    use dhcproto::v4::MessageType;

    const PORTS: Ports = Ports {
        server: 1067,
        client: 1068,
    };
    const YI: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

    fn req() -> Request {
        Request {
            htype: 1,
            hops: 0,
            xid: 1,
            secs: 0,
            broadcast: false,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            hwaddr: HwAddr::ethernet([2, 0, 0, 0, 0, 1]),
            msg_type: MessageType::Discover,
            client_id: None,
            requested_ip: None,
            server_id: None,
            hostname: None,
            params: vec![],
            max_size: None,
            lease_time: None,
            relay_info: None,
            vendor_class: None,
            fqdn: None,
            user_class: None,
            rapid_commit: false,
        }
    }

    #[test]
    fn relay_wins_over_everything_even_for_nak() {
        let mut r = req();
        r.giaddr = Ipv4Addr::new(192, 168, 5, 1);
        r.ciaddr = Ipv4Addr::new(192, 168, 5, 20);
        r.broadcast = true;
        let relay = Dest::Relay(SocketAddrV4::new(r.giaddr, 1067));
        assert_eq!(choose(&r, YI, false, 3, PORTS), relay);
        assert_eq!(choose(&r, YI, true, 3, PORTS), relay);
    }

    #[test]
    fn nak_without_relay_is_broadcast_even_with_ciaddr() {
        let mut r = req();
        r.ciaddr = Ipv4Addr::new(10, 0, 0, 7);
        assert_eq!(
            choose(&r, Ipv4Addr::UNSPECIFIED, true, 3, PORTS),
            Dest::Broadcast { ifindex: 3 }
        );
    }

    #[test]
    fn ciaddr_means_unicast_to_the_client_port() {
        for msg_type in [MessageType::Request, MessageType::Inform] {
            let mut r = req();
            r.msg_type = msg_type;
            r.ciaddr = Ipv4Addr::new(10, 0, 0, 7);
            r.broadcast = true;
            let want = Dest::Unicast(SocketAddrV4::new(r.ciaddr, 1068));
            assert_eq!(choose(&r, YI, false, 3, PORTS), want);
        }
    }

    /// Issue 13, fault 4: a DISCOVER's ciaddr (0 by RFC 2131 table 5) never steers the OFFER.
    #[test]
    fn a_discovers_ciaddr_is_ignored() {
        let mut r = req();
        r.ciaddr = Ipv4Addr::BROADCAST;
        let direct = Dest::Direct {
            ip: YI,
            hwaddr: r.hwaddr.clone(),
            ifindex: 3,
        };
        assert_eq!(choose(&r, YI, false, 3, PORTS), direct);
        r.broadcast = true;
        assert_eq!(
            choose(&r, YI, false, 3, PORTS),
            Dest::Broadcast { ifindex: 3 }
        );
    }

    #[test]
    fn broadcast_flag_or_odd_hardware_means_broadcast() {
        let mut r = req();
        r.broadcast = true;
        assert_eq!(
            choose(&r, YI, false, 4, PORTS),
            Dest::Broadcast { ifindex: 4 }
        );
        let mut r = req();
        r.hwaddr = HwAddr::new(1, &[]);
        assert_eq!(
            choose(&r, YI, false, 4, PORTS),
            Dest::Broadcast { ifindex: 4 }
        );
        // No address to unicast to (INFORM without ciaddr): broadcast.
        let r = req();
        assert_eq!(
            choose(&r, Ipv4Addr::UNSPECIFIED, false, 4, PORTS),
            Dest::Broadcast { ifindex: 4 }
        );
    }

    #[test]
    fn otherwise_direct_to_yiaddr_at_chaddr() {
        let r = req();
        let want = Dest::Direct {
            ip: YI,
            hwaddr: r.hwaddr.clone(),
            ifindex: 5,
        };
        assert_eq!(choose(&r, YI, false, 5, PORTS), want);
    }
}
