//! Reply options (RFC 2132) from the subnet's config and the request: message type, server id,
//! lease times, mask, router, DNS, domain, broadcast, relay agent echo. Pure; no sockets, no
//! clock, no lease decisions.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, DhcpOptions, MessageType, OptionCode, UnknownOption};

use crate::config::Subnet;

/// What a positive reply (OFFER, ACK, INFORM's ACK) says besides the address.
#[derive(Clone, Copy, Debug)]
pub struct ReplyOptions<'a> {
    pub msg_type: MessageType,
    pub server_id: Ipv4Addr,
    pub subnet: &'a Subnet,
    /// The local domain (option 15); empty: not sent.
    pub domain: &'a str,
    /// Lease time in seconds (options 51, 58, 59); None for INFORM.
    pub lease_time: Option<u32>,
    /// Option 82 from the request, echoed unchanged.
    pub relay_info: Option<&'a [u8]>,
}

/// Options for an OFFER or ACK (or the ACK to an INFORM, without lease times).
pub fn reply(o: &ReplyOptions<'_>) -> DhcpOptions {
    let mut opts = DhcpOptions::new();
    opts.insert(DhcpOption::MessageType(o.msg_type));
    opts.insert(DhcpOption::ServerIdentifier(o.server_id));
    if let Some(secs) = o.lease_time {
        let (t1, t2) = renew_times(secs);
        opts.insert(DhcpOption::AddressLeaseTime(secs));
        opts.insert(DhcpOption::Renewal(t1));
        opts.insert(DhcpOption::Rebinding(t2));
    }
    opts.insert(DhcpOption::SubnetMask(o.subnet.mask()));
    if let Some(r) = o.subnet.router {
        opts.insert(DhcpOption::Router(vec![r]));
    }
    if !o.subnet.dns_servers.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(o.subnet.dns_servers.clone()));
    }
    if !o.domain.is_empty() {
        opts.insert(DhcpOption::DomainName(o.domain.to_string()));
    }
    opts.insert(DhcpOption::BroadcastAddr(o.subnet.broadcast()));
    echo_relay_info(&mut opts, o.relay_info);
    opts
}

/// Options for a NAK: message type, server id, and the relay agent echo only (RFC 2131 table 3).
pub fn nak(server_id: Ipv4Addr, relay_info: Option<&[u8]>) -> DhcpOptions {
    let mut opts = DhcpOptions::new();
    opts.insert(DhcpOption::MessageType(MessageType::Nak));
    opts.insert(DhcpOption::ServerIdentifier(server_id));
    echo_relay_info(&mut opts, relay_info);
    opts
}

/// T1 at 50% and T2 at 87.5% of the lease (RFC 2131 4.4.5).
pub fn renew_times(lease_secs: u32) -> (u32, u32) {
    let l = u64::from(lease_secs);
    let t1 = u32::try_from(l / 2).unwrap_or(u32::MAX);
    let t2 = u32::try_from(l * 7 / 8).unwrap_or(u32::MAX);
    (t1, t2)
}

/// Echo option 82 byte for byte (RFC 3046): kept raw so sub-options we do not know survive.
/// dhcproto files an unknown option under its code, so it is still encoded last.
fn echo_relay_info(opts: &mut DhcpOptions, relay_info: Option<&[u8]>) {
    if let Some(raw) = relay_info {
        let opt = UnknownOption::new(OptionCode::RelayAgentInformation, raw.to_vec());
        opts.insert(DhcpOption::Unknown(opt));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::{Decodable, Encodable};

    fn subnet() -> Subnet {
        Subnet {
            network: Ipv4Addr::new(10, 0, 0, 0),
            prefix_len: 24,
            pool_start: Ipv4Addr::new(10, 0, 0, 100),
            pool_end: Ipv4Addr::new(10, 0, 0, 199),
            router: Some(Ipv4Addr::new(10, 0, 0, 1)),
            dns_servers: vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)],
            lease_time: 3600,
            interface: None,
            authoritative: true,
        }
    }

    #[test]
    fn ack_carries_lease_times_and_the_subnet_settings() {
        let s = subnet();
        let sid = Ipv4Addr::new(10, 0, 0, 1);
        let o = reply(&ReplyOptions {
            msg_type: MessageType::Ack,
            server_id: sid,
            subnet: &s,
            domain: "lan",
            lease_time: Some(3600),
            relay_info: None,
        });
        assert_eq!(o.msg_type(), Some(MessageType::Ack));
        let get = |c| o.get(c).cloned();
        assert_eq!(
            get(OptionCode::ServerIdentifier),
            Some(DhcpOption::ServerIdentifier(sid))
        );
        assert_eq!(
            get(OptionCode::AddressLeaseTime),
            Some(DhcpOption::AddressLeaseTime(3600))
        );
        assert_eq!(get(OptionCode::Renewal), Some(DhcpOption::Renewal(1800)));
        assert_eq!(
            get(OptionCode::Rebinding),
            Some(DhcpOption::Rebinding(3150))
        );
        let mask = Ipv4Addr::new(255, 255, 255, 0);
        assert_eq!(
            get(OptionCode::SubnetMask),
            Some(DhcpOption::SubnetMask(mask))
        );
        assert_eq!(get(OptionCode::Router), Some(DhcpOption::Router(vec![sid])));
        let dns = DhcpOption::DomainNameServer(s.dns_servers.clone());
        assert_eq!(get(OptionCode::DomainNameServer), Some(dns));
        let dom = DhcpOption::DomainName("lan".into());
        assert_eq!(get(OptionCode::DomainName), Some(dom));
        let bcast = DhcpOption::BroadcastAddr(Ipv4Addr::new(10, 0, 0, 255));
        assert_eq!(get(OptionCode::BroadcastAddr), Some(bcast));
        assert!(get(OptionCode::RelayAgentInformation).is_none());
    }

    #[test]
    fn inform_ack_has_no_lease_time_and_empty_settings_are_left_out() {
        let mut s = subnet();
        s.router = None;
        s.dns_servers.clear();
        let o = reply(&ReplyOptions {
            msg_type: MessageType::Ack,
            server_id: Ipv4Addr::new(10, 0, 0, 1),
            subnet: &s,
            domain: "",
            lease_time: None,
            relay_info: None,
        });
        for c in [
            OptionCode::AddressLeaseTime,
            OptionCode::Renewal,
            OptionCode::Rebinding,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::DomainName,
        ] {
            assert!(o.get(c).is_none(), "{c:?} should be absent");
        }
        assert!(o.get(OptionCode::SubnetMask).is_some());
    }

    #[test]
    fn relay_info_is_echoed_byte_for_byte_and_encoded_last() {
        // Circuit id "eth1" and an unknown sub-option 99.
        let raw = vec![1, 4, b'e', b't', b'h', b'1', 99, 2, 0xab, 0xcd];
        let mut o = nak(Ipv4Addr::new(10, 0, 0, 1), Some(&raw));
        o.insert(DhcpOption::DomainName("lan".into()));
        let bytes = o.to_vec().expect("encode options");
        let tail = &bytes[bytes.len() - raw.len() - 3..];
        let mut want = vec![82, raw.len() as u8];
        want.extend_from_slice(&raw);
        want.push(255);
        assert_eq!(tail, &want[..]);
        // And it decodes as relay agent information.
        let back = DhcpOptions::from_bytes(&bytes).expect("decode options");
        assert!(back.get(OptionCode::RelayAgentInformation).is_some());
        assert_eq!(back.msg_type(), Some(MessageType::Nak));
    }

    #[test]
    fn renew_times_do_not_overflow() {
        assert_eq!(renew_times(0), (0, 0));
        assert_eq!(renew_times(u32::MAX), (u32::MAX / 2, 3_758_096_383));
    }
}
