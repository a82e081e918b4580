//! Reply options (RFC 2132 and friends) from the subnet's config, the client's class and
//! reservation, and the request: message type, server id, lease times, mask, router, DNS,
//! domain, search list, static routes, NTP, MTU, broadcast, typed options, client FQDN, rapid
//! commit, relay agent echo; filtered by the client's parameter request list. Pure; no
//! sockets, no clock, no lease decisions.

use std::net::Ipv4Addr;

use dhcproto::Name;
use dhcproto::v4::{DhcpOption, MessageType};

use crate::config::{OptionSpec, Route, Subnet};
use crate::dhcp::wire::{ClientFqdn, ReplyOpts};

/// Options sent whatever the parameter request list says: message type, server id, lease
/// times, subnet mask, client FQDN, rapid commit, client identifier, relay agent information.
const ALWAYS: [u8; 10] = [53, 54, 51, 58, 59, 1, 81, 80, 61, 82];
/// Classless static routes (RFC 3442) and Microsoft's pre-standard copy of it.
const ROUTES: u8 = 121;
const MS_ROUTES: u8 = 249;

/// What a positive reply (OFFER, ACK, INFORM's ACK) says besides the address.
#[derive(Clone, Copy, Debug)]
pub struct ReplyOptions<'a> {
    pub msg_type: MessageType,
    pub server_id: Ipv4Addr,
    pub subnet: &'a Subnet,
    /// The local domain (option 15); empty: not sent.
    pub domain: &'a str,
    /// Lease time, T1 and T2 in seconds (options 51, 58, 59); None for INFORM.
    pub lease_time: Option<LeaseTimes>,
    /// Option 61 from the request, echoed unaltered (RFC 6842).
    pub client_id: Option<&'a [u8]>,
    /// Option 82 from the request, echoed unchanged.
    pub relay_info: Option<&'a [u8]>,
    /// The client's parameter request list (option 55); empty: send every configured option
    /// except 121/249, which are sent only when asked for.
    pub params: &'a [u8],
    /// DNS servers to announce (option 6), the subnet's or the default already applied.
    pub dns_servers: &'a [Ipv4Addr],
    /// Typed options, subnet's then class's then host's: a later one of a code wins.
    pub custom: &'a [&'a [OptionSpec]],
    /// The lease's host name (option 12, sent when asked for).
    pub hostname: Option<&'a str>,
    /// Option 81 payload to answer with (see `fqdn_reply`).
    pub fqdn: Option<&'a [u8]>,
    /// Answer to option 80: this ACK answers a DISCOVER.
    pub rapid_commit: bool,
    /// Options 66 and 67 (TFTP server name, boot file), sent only to a client whose parameter
    /// list names them (the `sname` and `file` fields carry them for everyone).
    pub server_name: Option<&'a str>,
    pub boot_file: Option<&'a str>,
}

/// Options for an OFFER or ACK (or the ACK to an INFORM, without lease times), written in wire
/// form. What the client's list leaves out is never built.
pub fn reply(o: &ReplyOptions<'_>) -> ReplyOpts {
    let mut opts = ReplyOpts::new();
    let wanted = Wanted::new(o.params);
    let keep = |code: u8| wanted.has(code);
    opts.set_msg_type(o.msg_type);
    opts.set_server_id(o.server_id);
    if let Some(t) = o.lease_time {
        opts.put_u32(51, t.lease);
        opts.put_u32(58, t.t1);
        opts.put_u32(59, t.t2);
    }
    echo_client_id(&mut opts, o.client_id);
    subnet_options(&mut opts, o, wanted);
    for spec in o.custom.iter().flat_map(|list| list.iter()) {
        if keep(spec.code) {
            opts.put_bytes(spec.code, &spec.data);
        }
    }
    if let Some(name) = o.hostname.filter(|_| keep(12)) {
        opts.put_bytes(12, name.as_bytes());
    }
    if let Some(f) = o.fqdn {
        opts.put_bytes(81, f);
    }
    if o.rapid_commit {
        opts.put_flag(80);
    }
    let asked = |code: u8| o.params.contains(&code);
    for (code, value) in [(66, o.server_name), (67, o.boot_file)] {
        if let Some(v) = value.filter(|_| asked(code)) {
            opts.put_bytes(code, v.as_bytes());
        }
    }
    echo_relay_info(&mut opts, o.relay_info);
    opts
}

/// Which options go to a client that sent `params`: what it asked for and the `ALWAYS` ones;
/// without a list, everything but routes (121/249 go only to clients that ask).
#[derive(Clone, Copy)]
struct Wanted([u64; 4]);

impl Wanted {
    fn new(params: &[u8]) -> Self {
        let mut w = Wanted([0; 4]);
        if params.is_empty() {
            w.0 = [u64::MAX; 4];
            w.set(ROUTES, false);
            w.set(MS_ROUTES, false);
        } else {
            for c in ALWAYS.iter().chain(params) {
                w.set(*c, true);
            }
        }
        w
    }
    fn set(&mut self, code: u8, on: bool) {
        let (word, bit) = (usize::from(code / 64), code % 64);
        if let Some(x) = self.0.get_mut(word) {
            if on {
                *x |= 1 << bit;
            } else {
                *x &= !(1 << bit);
            }
        }
    }
    fn has(&self, code: u8) -> bool {
        let (word, bit) = (usize::from(code / 64), code % 64);
        self.0.get(word).is_some_and(|x| x & (1 << bit) != 0)
    }
}

/// The subnet's own options: mask, router or routes, DNS, domain, search list, NTP, MTU,
/// broadcast address.
fn subnet_options(opts: &mut ReplyOpts, o: &ReplyOptions<'_>, wanted: Wanted) {
    let s = o.subnet;
    let set = &s.settings;
    let keep = |code: u8| wanted.has(code);
    opts.put_ip(1, s.mask());
    // A list that names 121 is never empty, and 121 is not an `ALWAYS` option.
    let wants_routes = keep(ROUTES) && !o.params.is_empty() && !set.routes.is_empty();
    if let Some(r) = s.router.filter(|_| !wants_routes && keep(3)) {
        opts.put_ips(3, &[r]);
    }
    if !o.params.is_empty()
        && (keep(ROUTES) || keep(MS_ROUTES))
        && let Some(payload) = route_payload(&set.routes, s.router)
    {
        for code in [ROUTES, MS_ROUTES].into_iter().filter(|c| keep(*c)) {
            opts.put_bytes(code, &payload);
        }
    }
    if !o.dns_servers.is_empty() && keep(6) {
        opts.put_ips(6, o.dns_servers);
    }
    if !o.domain.is_empty() && keep(15) {
        opts.put_bytes(15, o.domain.as_bytes());
    }
    if !set.domain_search.is_empty() && keep(119) {
        let search: Vec<Name> = set
            .domain_search
            .iter()
            .filter_map(|d| Name::from_ascii(format!("{d}.")).ok())
            .collect();
        if !search.is_empty() {
            // Compressed by dhcproto (RFC 3397); a name that cannot be encoded leaves 119 out.
            let _ = opts.insert(&DhcpOption::DomainSearch(search));
        }
    }
    if !set.ntp_servers.is_empty() && keep(42) {
        opts.put_ips(42, &set.ntp_servers);
    }
    if let Some(mtu) = set.mtu.filter(|_| keep(26)) {
        opts.put_u16(26, mtu);
    }
    if keep(28) {
        opts.put_ip(28, s.broadcast());
    }
}

/// The payload of options 121 and 249 (RFC 3442): each route as its prefix length, the
/// significant octets of its network and its gateway; the router, if any, as 0.0.0.0/0 (a
/// client that takes 121 ignores option 3). None without configured routes.
pub fn route_payload(routes: &[Route], router: Option<Ipv4Addr>) -> Option<Vec<u8>> {
    if routes.is_empty() {
        return None;
    }
    let default = router.map(|gateway| Route {
        network: Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
        gateway,
    });
    let mut out = Vec::new();
    for r in routes.iter().chain(default.iter()) {
        let p = r.prefix_len.min(32);
        out.push(p);
        let significant = usize::from(p.div_ceil(8));
        out.extend_from_slice(r.network.octets().get(..significant).unwrap_or_default());
        out.extend_from_slice(&r.gateway.octets());
    }
    Some(out)
}

/// The option 81 payload answering `client` (RFC 4702 section 4): S=1 (we update the A
/// record), O=1 when the client asked otherwise (S=0), N=0, E as the client's, rcodes 255,
/// and the name `<label>.<domain>` in the client's encoding (ASCII without a trailing dot).
pub fn fqdn_reply(client: &ClientFqdn, label: &str, domain: &str) -> Vec<u8> {
    let mut flags = ClientFqdn::S | (client.flags & ClientFqdn::E);
    if client.flags & ClientFqdn::S == 0 {
        flags |= ClientFqdn::O;
    }
    let mut out = vec![flags, 255, 255];
    let labels = std::iter::once(label).chain(domain.split('.').filter(|l| !l.is_empty()));
    if client.wire_format() {
        for l in labels {
            let l = &l.as_bytes()[..l.len().min(63)];
            out.push(u8::try_from(l.len()).unwrap_or(63));
            out.extend_from_slice(l);
        }
        out.push(0);
    } else {
        out.extend_from_slice(labels.collect::<Vec<_>>().join(".").as_bytes());
    }
    out
}

/// Options for a NAK: message type, server id, the client identifier echo (RFC 6842) and the
/// relay agent echo only (RFC 2131 table 3).
pub fn nak(server_id: Ipv4Addr, client_id: Option<&[u8]>, relay_info: Option<&[u8]>) -> ReplyOpts {
    let mut opts = ReplyOpts::new();
    opts.set_msg_type(MessageType::Nak);
    opts.set_server_id(server_id);
    echo_client_id(&mut opts, client_id);
    echo_relay_info(&mut opts, relay_info);
    opts
}

/// Options 51, 58 and 59 of a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimes {
    pub lease: u32,
    pub t1: u32,
    pub t2: u32,
}

impl LeaseTimes {
    /// T1 and T2 at RFC 2131's defaults (50% and 87.5%).
    pub fn standard(lease: u32) -> LeaseTimes {
        let (t1, t2) = renew_times(lease);
        LeaseTimes { lease, t1, t2 }
    }

    /// A grant of `lease` seconds when `full` is the configured lease time and `t1`, `t2` the
    /// configured timers for it (None: the defaults): a configured timer is scaled by
    /// lease / full (a client that asked for less, a reused lease), then kept in order
    /// (T1 <= T2 <= lease).
    pub fn scaled(lease: u32, full: u32, t1: Option<u32>, t2: Option<u32>) -> LeaseTimes {
        let std = LeaseTimes::standard(lease);
        let scale = |t: u32| {
            let v = u64::from(t) * u64::from(lease) / u64::from(full.max(1));
            u32::try_from(v).unwrap_or(u32::MAX).min(lease)
        };
        let t1 = t1.map_or(std.t1, scale);
        let t2 = t2.map_or(std.t2, scale).max(t1);
        LeaseTimes { lease, t1, t2 }
    }
}

/// T1 at 50% and T2 at 87.5% of the lease (RFC 2131 4.4.5).
pub fn renew_times(lease_secs: u32) -> (u32, u32) {
    let l = u64::from(lease_secs);
    let t1 = u32::try_from(l / 2).unwrap_or(u32::MAX);
    let t2 = u32::try_from(l * 7 / 8).unwrap_or(u32::MAX);
    (t1, t2)
}

/// Echo option 61 byte for byte (RFC 6842 section 3: MUST, in OFFER, ACK and NAK).
fn echo_client_id(opts: &mut ReplyOpts, client_id: Option<&[u8]>) {
    if let Some(raw) = client_id {
        opts.put_bytes(61, raw);
    }
}

/// Echo option 82 byte for byte (RFC 3046): kept raw so sub-options we do not know survive.
/// The encoder writes it last.
fn echo_relay_info(opts: &mut ReplyOpts, relay_info: Option<&[u8]>) {
    if let Some(raw) = relay_info {
        opts.put_bytes(82, raw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::Decodable;
    use dhcproto::v4::{DhcpOptions, OptionCode};

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
            settings: Default::default(),
        }
    }

    /// An ACK for `s` to a client that sent no parameter list, nothing extra.
    fn plain(s: &Subnet) -> ReplyOptions<'_> {
        ReplyOptions {
            msg_type: MessageType::Ack,
            server_id: Ipv4Addr::new(10, 0, 0, 1),
            subnet: s,
            domain: "lan",
            lease_time: Some(LeaseTimes::standard(3600)),
            relay_info: None,
            client_id: None,
            params: &[],
            dns_servers: &s.dns_servers,
            custom: &[],
            hostname: None,
            fqdn: None,
            rapid_commit: false,
            server_name: None,
            boot_file: None,
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
            lease_time: Some(LeaseTimes::standard(3600)),
            relay_info: None,
            ..plain(&s)
        });
        assert_eq!(o.msg_type(), Some(MessageType::Ack));
        let get = |c| o.typed(c);
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
            ..plain(&s)
        });
        for c in [
            OptionCode::AddressLeaseTime,
            OptionCode::Renewal,
            OptionCode::Rebinding,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::DomainName,
        ] {
            assert!(!o.contains(u8::from(c)), "{c:?} should be absent");
        }
        assert!(o.typed(OptionCode::SubnetMask).is_some());
    }

    #[test]
    fn relay_info_is_echoed_byte_for_byte_and_encoded_last() {
        // Circuit id "eth1" and an unknown sub-option 99.
        let raw = vec![1, 4, b'e', b't', b'h', b'1', 99, 2, 0xab, 0xcd];
        let mut o = nak(Ipv4Addr::new(10, 0, 0, 1), None, Some(&raw));
        o.insert(&DhcpOption::DomainName("lan".into()))
            .expect("encode option");
        let bytes = o.to_bytes(&[]);
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

    fn route(net: [u8; 4], prefix_len: u8, gw: [u8; 4]) -> Route {
        Route {
            network: Ipv4Addr::from(net),
            prefix_len,
            gateway: Ipv4Addr::from(gw),
        }
    }

    #[test]
    fn route_payload_golden_bytes_rfc3442() {
        let routes = [
            route([10, 9, 0, 0], 16, [10, 0, 0, 254]),
            route([192, 168, 7, 128], 25, [10, 0, 0, 2]),
            route([172, 16, 5, 5], 32, [10, 0, 0, 3]),
        ];
        let got = route_payload(&routes, Some(Ipv4Addr::new(10, 0, 0, 1)));
        let want: Vec<u8> = [
            &[16, 10, 9, 10, 0, 0, 254][..],
            &[25, 192, 168, 7, 128, 10, 0, 0, 2],
            &[32, 172, 16, 5, 5, 10, 0, 0, 3],
            &[0, 10, 0, 0, 1], // the router as the default route
        ]
        .concat();
        assert_eq!(got, Some(want));
        assert_eq!(route_payload(&routes[..1], None).map(|p| p.len()), Some(7));
        assert_eq!(route_payload(&[], Some(Ipv4Addr::new(10, 0, 0, 1))), None);
    }

    #[test]
    fn domain_search_is_compressed_rfc3397() {
        let mut s = subnet();
        s.settings.domain_search = vec!["eng.apple.com".into(), "marketing.apple.com".into()];
        let o = reply(&ReplyOptions {
            params: &[119],
            ..plain(&s)
        });
        let bytes = o.to_bytes(&[]);
        let at = bytes.iter().position(|&b| b == 119).expect("option 119");
        let len = usize::from(bytes[at + 1]);
        let value = &bytes[at + 2..at + 2 + len];
        // The RFC 3397 example: the second name ends in a pointer to "apple.com" at offset 4.
        let want: &[u8] = b"\x03eng\x05apple\x03com\x00\x09marketing\xc0\x04";
        assert_eq!(value, want);
    }

    #[test]
    fn fqdn_reply_flags_and_name_follow_the_client() {
        let client = |flags: u8| ClientFqdn {
            flags,
            labels: vec![],
        };
        // S=0, E=1: S and O set, E kept, N clear, rcodes 255, wire-format name.
        assert_eq!(
            fqdn_reply(&client(0x04), "pc", "home.lan"),
            b"\x07\xff\xff\x02pc\x04home\x03lan\x00".to_vec()
        );
        // S=1, E=0: S only, ASCII name.
        assert_eq!(
            fqdn_reply(&client(0x01), "pc", "lan"),
            b"\x01\xff\xffpc.lan".to_vec()
        );
        // N=1 (no updates, please): we update our own zone anyway, say so with O.
        assert_eq!(
            fqdn_reply(&client(0x08), "pc", ""),
            b"\x03\xff\xffpc".to_vec()
        );
    }

    #[test]
    fn request_list_filters_everything_but_the_essentials() {
        let mut s = subnet();
        s.settings.ntp_servers = vec![Ipv4Addr::new(10, 0, 0, 5)];
        let custom = [OptionSpec {
            code: 252,
            data: b"x".to_vec(),
        }];
        let lists = [&custom[..]];
        let o = reply(&ReplyOptions {
            params: &[6, 42],
            custom: &lists,
            hostname: Some("pc"),
            fqdn: Some(b"\x01\xff\xffpc.lan"),
            rapid_commit: true,
            relay_info: Some(&[1, 1, 0]),
            ..plain(&s)
        });
        let mut codes: Vec<u8> = o.codes().collect();
        codes.sort_unstable();
        assert_eq!(codes, vec![1, 6, 42, 51, 53, 54, 58, 59, 80, 81, 82]);
        // Without a list everything configured goes, the host name and 252 included.
        let o = reply(&ReplyOptions {
            custom: &lists,
            hostname: Some("pc"),
            ..plain(&s)
        });
        for code in [3u8, 6, 12, 15, 28, 42, 252] {
            assert!(o.contains(code), "option {code}");
        }
    }

    #[test]
    fn renew_times_do_not_overflow() {
        assert_eq!(renew_times(0), (0, 0));
        assert_eq!(renew_times(u32::MAX), (u32::MAX / 2, 3_758_096_383));
    }
}
#[cfg(test)]
mod relay_echo_once {
    use super::*;
    #[test]
    fn relay_info_appears_once_in_an_encoded_reply() {
        let raw = vec![1, 4, b'e', b't', b'h', b'1'];
        let msg = crate::dhcp::wire::ReplyMsg {
            opts: nak(Ipv4Addr::new(10, 0, 0, 1), None, Some(&raw)),
            ..Default::default()
        };
        let bytes = crate::dhcp::wire::encode_ordered(&msg, 576, &[]).expect("encode");
        let mut i = 240;
        let mut n82 = 0;
        while i < bytes.len() && bytes[i] != 255 {
            if bytes[i] == 0 {
                i += 1;
                continue;
            }
            if bytes[i] == 82 {
                n82 += 1;
            }
            i += 2 + bytes[i + 1] as usize;
        }
        assert_eq!(n82, 1, "{:?}", &bytes[240..]);
    }
}
