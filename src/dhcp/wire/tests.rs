//! Decoding real and hostile packets, encoding golden replies, and both under fuzzing.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};

use super::decode::*;
use super::encode::*;
use super::reply::*;
use super::*;
use crate::lease::HwAddr;
use dhcproto::v4::{Flags, HType, Opcode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// A DISCOVER laid out as a Linux dhclient sends it: broadcast flag, client id, hostname,
/// parameter list, max size 1500, requested address, then End and padding to 300 bytes.
fn discover() -> Vec<u8> {
    let mut p = vec![0u8; OPTIONS];
    p[..12].copy_from_slice(&[1, 1, 6, 0, 0xde, 0xad, 0xbe, 0xef, 0, 3, 0x80, 0]);
    p[CHADDR..CHADDR + 6].copy_from_slice(&MAC);
    p[COOKIE].copy_from_slice(&MAGIC);
    p.extend_from_slice(&[53, 1, 1]);
    p.extend_from_slice(&[61, 7, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    p.extend_from_slice(&[12, 4, b'h', b'o', b's', b't']);
    p.extend_from_slice(&[55, 4, 1, 3, 6, 15]);
    p.extend_from_slice(&[57, 2, 0x05, 0xdc]);
    p.extend_from_slice(&[50, 4, 10, 0, 0, 7]);
    p.push(OPT_END);
    p.resize(300, 0);
    p
}

/// Build a request with the given option bytes after the cookie.
fn with_options(opts: &[u8]) -> Vec<u8> {
    let mut p = discover();
    p.truncate(OPTIONS);
    p.extend_from_slice(opts);
    p
}

#[test]
fn golden_discover_decodes_every_field() {
    let r = decode(&discover()).expect("valid discover");
    assert_eq!(r.msg_type, MessageType::Discover);
    assert_eq!((r.htype, r.hops, r.xid, r.secs), (1, 0, 0xdead_beef, 3));
    assert!(r.broadcast);
    assert_eq!(r.hwaddr, HwAddr::ethernet(MAC));
    assert_eq!(r.ciaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(r.giaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        r.client_id.as_deref(),
        Some(&[1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56][..])
    );
    assert_eq!(r.hostname.as_deref(), Some(&b"host"[..]));
    assert_eq!(r.params, vec![1, 3, 6, 15]);
    assert_eq!(r.max_size, Some(1500));
    assert_eq!(r.requested_ip, Some(Ipv4Addr::new(10, 0, 0, 7)));
    assert_eq!(
        (r.server_id, r.lease_time, r.relay_info.as_ref()),
        (None, None, None)
    );
    assert_eq!((r.vendor_class.as_ref(), r.fqdn.as_ref()), (None, None));
}

#[test]
fn request_with_relay_fqdn_and_server_id_decodes() {
    let mut p = with_options(&[53, 1, 3, 54, 4, 10, 0, 0, 1, 51, 4, 0, 0, 0x0e, 0x10]);
    p.extend_from_slice(&[81, 6, 0x01, 0, 0, b'a', b'b', b'c', 60, 3, b'M', b'S', b'F']);
    p.extend_from_slice(&[82, 4, 1, 2, 0xaa, 0xbb, 255]);
    p[GIADDR..GIADDR + 4].copy_from_slice(&[10, 9, 0, 1]);
    let r = decode(&p).expect("valid request");
    assert_eq!(r.msg_type, MessageType::Request);
    assert_eq!(r.server_id, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(r.lease_time, Some(3600));
    assert_eq!(r.fqdn.as_deref(), Some(&[1, 0, 0, b'a', b'b', b'c'][..]));
    assert_eq!(r.vendor_class.as_deref(), Some(&b"MSF"[..]));
    assert_eq!(r.relay_info.as_deref(), Some(&[1, 2, 0xaa, 0xbb][..]));
    assert_eq!(r.giaddr, Ipv4Addr::new(10, 9, 0, 1));
}

#[test]
fn truncated_at_every_length_never_panics() {
    let p = discover();
    for len in 0..=p.len() {
        let got = decode(&p[..len]);
        if len < OPTIONS {
            assert_eq!(got, Err(DecodeError::TooShort(len)), "len {len}");
        } else if len < OPTIONS + 3 {
            // Option 53 missing or cut short.
            assert!(got.is_err(), "len {len}: {got:?}");
        }
    }
    // Cut inside option 50 (the last option): 50 is wanted, so this is an error.
    let end_of_50 = p.iter().rposition(|&b| b == OPT_END).unwrap_or_default();
    assert_eq!(
        decode(&p[..end_of_50 - 1]),
        Err(DecodeError::BadOption { code: 50 })
    );
    assert!(decode(&p[..end_of_50]).is_ok(), "missing End is tolerated");
}

#[test]
fn hostile_headers_are_rejected() {
    let mut p = discover();
    p[COOKIE.start] = 0;
    assert_eq!(decode(&p), Err(DecodeError::BadCookie));
    for hlen in [17u8, 255] {
        let mut p = discover();
        p[HLEN] = hlen;
        assert_eq!(decode(&p), Err(DecodeError::BadHlen(hlen)));
    }
    let mut p = discover();
    p[OP] = 2;
    assert_eq!(decode(&p), Err(DecodeError::NotRequest(2)));
    let mut p = discover();
    p[HLEN] = 16;
    assert_eq!(decode(&p).map(|r| r.hwaddr.bytes().len()), Ok(16));
}

#[test]
fn malformed_options_we_use_are_errors_others_are_ignored() {
    assert_eq!(
        decode(&with_options(&[255])),
        Err(DecodeError::NoMessageType)
    );
    assert_eq!(
        decode(&with_options(&[53, 2, 1, 1])),
        Err(DecodeError::BadOption { code: 53 })
    );
    assert_eq!(
        decode(&with_options(&[53, 1, 0])),
        Err(DecodeError::UnknownMessageType(0))
    );
    assert_eq!(
        decode(&with_options(&[53, 1, 200])),
        Err(DecodeError::UnknownMessageType(200))
    );
    let bad50 = with_options(&[53, 1, 1, 50, 3, 10, 0, 0, 255]);
    assert_eq!(decode(&bad50), Err(DecodeError::BadOption { code: 50 }));
    assert_eq!(
        decode(&with_options(&[53, 1, 1, 57, 1, 5])),
        Err(DecodeError::BadOption { code: 57 })
    );
    assert_eq!(
        decode(&with_options(&[53, 1, 1, 81, 1, 0])),
        Err(DecodeError::BadOption { code: 81 })
    );
    // Options dhcproto's typed decoders choke on (80, 94, 151) are never looked at.
    let odd = with_options(&[80, 3, 1, 2, 3, 94, 1, 9, 151, 0, 53, 1, 1, 255]);
    assert_eq!(decode(&odd).map(|r| r.msg_type), Ok(MessageType::Discover));
    // An unused option running past the end stops the walk but is not an error.
    let past_end = with_options(&[53, 1, 1, 43, 200, 1, 2]);
    assert_eq!(
        decode(&past_end).map(|r| r.msg_type),
        Ok(MessageType::Discover)
    );
    let wanted_past_end = with_options(&[53, 1, 1, 12, 200, b'x']);
    assert_eq!(
        decode(&wanted_past_end),
        Err(DecodeError::BadOption { code: 12 })
    );
}

#[test]
fn five_thousand_one_byte_options_and_non_utf8_hostname() {
    let mut opts = vec![OPT_PAD; 5000];
    opts.extend_from_slice(&[53, 1, 1, 12, 3, 0xff, 0xfe, b'a']);
    for _ in 0..2500 {
        opts.extend_from_slice(&[224, 0]); // zero-length private options
    }
    opts.push(OPT_END);
    let r = decode(&with_options(&opts)).expect("long but valid");
    assert_eq!(r.hostname.as_deref(), Some(&[0xff, 0xfe, b'a'][..]));
}

#[test]
fn split_options_are_joined_rfc3396() {
    let p = with_options(&[
        53, 1, 1, 55, 2, 1, 3, 12, 2, b'a', b'b', 55, 1, 6, 12, 1, b'c', 255,
    ]);
    let r = decode(&p).expect("valid");
    assert_eq!(r.params, vec![1, 3, 6]);
    assert_eq!(r.hostname.as_deref(), Some(&b"abc"[..]));
}

#[test]
fn overload_reads_file_then_sname() {
    let mut p = with_options(&[53, 1, 3, 52, 1, 3, 255]);
    p[FILE.start..FILE.start + 7].copy_from_slice(&[50, 4, 10, 0, 0, 9, 255]);
    p[SNAME.start..SNAME.start + 7].copy_from_slice(&[12, 4, b'n', b'a', b'm', b'e', 255]);
    let r = decode(&p).expect("overloaded request");
    assert_eq!(r.requested_ip, Some(Ipv4Addr::new(10, 0, 0, 9)));
    assert_eq!(r.hostname.as_deref(), Some(&b"name"[..]));
    // Overload 1 (file only): sname stays a server name, not options.
    p[OPTIONS + 5] = 1;
    let r = decode(&p).expect("file only");
    assert_eq!((r.requested_ip.is_some(), r.hostname), (true, None));
    // Without option 52 neither field is read.
    let mut q = p.clone();
    q[OPTIONS + 3] = 0; // option 52 and its two bytes become Pad
    q[OPTIONS + 4] = 0;
    q[OPTIONS + 5] = 0;
    assert_eq!(decode(&q).map(|r| r.requested_ip), Ok(None));
    // Option 53 only inside the overloaded file field still counts.
    let mut f = with_options(&[52, 1, 1, 255]);
    f[FILE.start..FILE.start + 4].copy_from_slice(&[53, 1, 7, 255]);
    assert_eq!(decode(&f).map(|r| r.msg_type), Ok(MessageType::Release));
    // A bad overload value is an error.
    assert_eq!(
        decode(&with_options(&[53, 1, 1, 52, 1, 4])),
        Err(DecodeError::BadOption { code: 52 })
    );
}

fn offer() -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_htype(HType::Eth)
        .set_xid(0xdead_beef)
        .set_flags(Flags::default().set_broadcast())
        .set_yiaddr(Ipv4Addr::new(10, 0, 0, 7))
        .set_siaddr(Ipv4Addr::new(10, 0, 0, 1))
        .set_chaddr(&MAC);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(MessageType::Offer));
    o.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1)));
    o.insert(DhcpOption::AddressLeaseTime(3600));
    o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
    o.insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 0, 1)]));
    o.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
        10, 0, 0, 1,
    )]));
    o.insert(DhcpOption::DomainName("lan".into()));
    m
}

#[test]
fn golden_offer_encodes_with_cookie_53_54_first_and_padding() {
    let bytes = encode(&offer(), 576).expect("encodes");
    assert_eq!(bytes.len(), BOOTP_MIN, "padded to BOOTP minimum");
    assert_eq!(bytes[..4], [2, 1, 6, 0], "op 2, ethernet, hlen 6");
    assert_eq!(bytes[XID..XID + 4], [0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(bytes[FLAGS..FLAGS + 2], [0x80, 0]);
    assert_eq!(bytes[YIADDR..YIADDR + 4], [10, 0, 0, 7]);
    assert_eq!(bytes[CHADDR..CHADDR + 6], MAC);
    assert_eq!(bytes[COOKIE], MAGIC);
    let expected_opts: &[u8] = &[
        53, 1, 2, // message type first
        54, 4, 10, 0, 0, 1, // then server id
        1, 4, 255, 255, 255, 0, // subnet mask
        3, 4, 10, 0, 0, 1, // router
        6, 4, 10, 0, 0, 1, // dns
        15, 3, b'l', b'a', b'n', // domain name
        51, 4, 0, 0, 0x0e, 0x10, // lease time
        255,
    ];
    assert_eq!(
        &bytes[OPTIONS..OPTIONS + expected_opts.len()],
        expected_opts
    );
    assert!(
        bytes[OPTIONS + expected_opts.len()..]
            .iter()
            .all(|&b| b == 0)
    );
    let back = Message::decode(&mut Decoder::new(&bytes)).expect("dhcproto parses it back");
    assert_eq!(back.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(back.opts(), offer().opts());
}

#[test]
fn relay_info_stays_last_after_reordering() {
    let mut m = offer();
    let mut relay = dhcproto::v4::relay::RelayAgentInformation::default();
    relay.insert(dhcproto::v4::relay::RelayInfo::AgentCircuitId(vec![
        1, 2, 3,
    ]));
    m.opts_mut()
        .insert(DhcpOption::RelayAgentInformation(relay));
    let bytes = encode(&m, 576).expect("encodes");
    let mut tlvs = Vec::new();
    walk(&bytes[OPTIONS..], |t| tlvs.push(t.code), |_| true).expect("well formed");
    assert_eq!(tlvs.first(), Some(&53));
    assert_eq!(tlvs.last(), Some(&82));
}

/// The encoder writes the same bytes as dhcproto's encoder followed by `reorder` (up to
/// padding): sname and file, a long option split in pieces, an unknown option 82 (which
/// dhcproto would write twice), and a request order naming absent options.
#[test]
fn direct_encoding_matches_dhcproto_then_reorder() {
    let mut m = offer();
    m.set_sname_str("boot-server").set_fname_str("pxelinux.0");
    m.opts_mut()
        .insert(DhcpOption::NtpServers(vec![Ipv4Addr::new(10, 0, 0, 2); 70]));
    m.opts_mut()
        .insert(DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
            OptionCode::RelayAgentInformation,
            vec![1, 3, 9, 9, 9],
        )));
    let trim = |b: &[u8]| b[..b.iter().rposition(|x| *x != 0).map_or(0, |i| i + 1)].to_vec();
    for order in [
        &[][..],
        &[15, 42, 6, 3, 1, 99][..],
        &[82, 6, 54, 6, 53, 42, 42][..],
    ] {
        let direct = encode_message(&m, 1500, order).expect("encodes directly");
        let mut via = Vec::new();
        m.encode(&mut Encoder::new(&mut via))
            .expect("dhcproto encodes");
        let via = reorder(via, order);
        assert_eq!(trim(&direct), trim(&via), "order {order:?}");
    }
}

/// Rewrite the options of a message dhcproto encoded in `rank` order. The pieces of a
/// split long option share a rank, so they stay together and in order.
fn reorder(bytes: Vec<u8>, order: &[u8]) -> Vec<u8> {
    let area = &bytes[OPTIONS..];
    let mut tlvs = Vec::new();
    walk(area, |t| tlvs.push(t), |_| true).expect("well formed");
    drop_repeated_relay_info(area, &mut tlvs);
    tlvs.sort_by_key(|t| rank(t.code, order));
    let mut out = bytes[..OPTIONS].to_vec();
    for t in &tlvs {
        out.push(t.code);
        out.push((t.end - t.start) as u8);
        out.extend_from_slice(&area[t.start..t.end]);
    }
    out.push(OPT_END);
    out
}

/// dhcproto 0.15 writes an option 82 that it holds as `Unknown` twice (its `OptionCode`
/// equality and ordering disagree): keep one copy.
fn drop_repeated_relay_info(area: &[u8], tlvs: &mut Vec<Tlv>) {
    let value = |t: &Tlv| &area[t.start..t.end];
    let pieces: Vec<&Tlv> = tlvs.iter().filter(|t| t.code == 82).collect();
    let half = pieces.len() / 2;
    let repeated = half > 0
        && pieces.len().is_multiple_of(2)
        && pieces[..half]
            .iter()
            .zip(&pieces[half..])
            .all(|(a, b)| value(a) == value(b));
    if repeated {
        let mut seen = 0;
        tlvs.retain(|t| {
            if t.code != 82 {
                return true;
            }
            seen += 1;
            seen <= half
        });
    }
}

#[test]
fn oversized_reply_drops_optional_options_to_fit() {
    let mut m = offer();
    // 40 routes-worth of static routes is optional and large; a domain name too.
    let big = vec![Ipv4Addr::new(10, 0, 0, 2); 60];
    m.opts_mut().insert(DhcpOption::NtpServers(big));
    m.opts_mut().insert(DhcpOption::DomainName("x".repeat(200)));
    let full = encode(&m, 1500).expect("fits in 1500");
    assert!(full.len() > 548, "len {}", full.len());
    let small = encode(&m, 576).expect("fits after dropping");
    assert!(small.len() <= 548, "len {}", small.len());
    let back = Message::decode(&mut Decoder::new(&small)).expect("parses back");
    assert!(
        back.opts().get(OptionCode::NtpServers).is_none(),
        "largest dropped first"
    );
    for code in ESSENTIAL.iter().filter(|c| **c != 82 && **c != 61) {
        let code = OptionCode::from(*code);
        assert!(back.opts().get(code).is_some(), "{code:?} kept");
    }
    // A limit below 576 is raised to 576.
    assert_eq!(encode(&m, 100).ok().map(|b| b.len()), Some(small.len()));
}

/// Every option of an encoded reply, following option 52 into `file` and `sname`.
fn all_options(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut found = Vec::new();
    let mut overload = 0;
    let area_opts = |area: &[u8], found: &mut Vec<(u8, Vec<u8>)>| {
        let _ = walk(
            area,
            |t| found.push((t.code, area[t.start..t.end].to_vec())),
            |_| true,
        );
    };
    area_opts(&bytes[OPTIONS..], &mut found);
    if let Some((_, v)) = found.iter().find(|(c, _)| *c == OPT_OVERLOAD) {
        overload = v[0];
    }
    if overload & 1 != 0 {
        area_opts(&bytes[FILE], &mut found);
    }
    if overload & 2 != 0 {
        area_opts(&bytes[SNAME], &mut found);
    }
    found
}

#[test]
fn options_that_do_not_fit_go_on_in_file_and_sname_with_option_52() {
    let mut m = offer();
    let ntp = vec![Ipv4Addr::new(10, 0, 0, 2); 60]; // 240 bytes: fits only the options field
    let domain = "x".repeat(110); // fits in file (127)
    let search = vec![7u8; 50]; // fits in sname (63)
    m.opts_mut().insert(DhcpOption::NtpServers(ntp.clone()));
    m.opts_mut().insert(DhcpOption::DomainName(domain.clone()));
    m.opts_mut()
        .insert(DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
            OptionCode::Unknown(224),
            search.clone(),
        )));
    m.opts_mut()
        .insert(DhcpOption::RelayAgentInformation(Default::default()));
    let msg = ReplyMsg::from_message(&m).expect("reply");
    let mut msg = msg;
    msg.opts.put_bytes(82, &[1, 2, b'a', b'b']);
    let bytes = encode_ordered(&msg, 576, &[]).expect("encodes");
    assert!(bytes.len() <= 548, "len {}", bytes.len());
    let found = all_options(&bytes);
    let get = |code: u8| {
        found
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get(52), Some(vec![3]), "file and sname both used");
    assert_eq!(get(42).map(|v| v.len()), Some(240));
    assert_eq!(get(15), Some(domain.clone().into_bytes()));
    assert_eq!(get(224), Some(search));
    assert_eq!(get(82), Some(vec![1, 2, b'a', b'b']));
    for code in [53u8, 54, 51, 1, 3, 6] {
        assert!(get(code).is_some(), "option {code} lost");
    }
    // Option 82 is still the last option of the options field.
    let mut main = Vec::new();
    let _ = walk(&bytes[OPTIONS..], |t| main.push(t.code), |_| true);
    assert_eq!(main.last(), Some(&82));
    // With a boot file in `file`, only `sname` is free: what fits nowhere is dropped, the
    // boot file stays.
    let mut booted = msg.clone();
    booted.file = b"pxelinux.0".to_vec();
    let bytes = encode_ordered(&booted, 576, &[]).expect("encodes");
    assert_eq!(&bytes[FILE][..10], b"pxelinux.0");
    assert!(bytes.len() <= 548);
    // When everything fits, no option 52 and the fields are left alone.
    let small =
        encode_ordered(&ReplyMsg::from_message(&offer()).expect("r"), 576, &[]).expect("encodes");
    assert!(all_options(&small).iter().all(|(c, _)| *c != 52));
    assert!(small[SNAME].iter().chain(&small[FILE]).all(|b| *b == 0));
}

#[test]
fn reply_that_cannot_fit_is_an_error() {
    let mut m = offer();
    let routers = vec![Ipv4Addr::new(10, 0, 0, 1); 200];
    m.opts_mut().insert(DhcpOption::Router(routers));
    assert!(matches!(
        encode(&m, 576),
        Err(EncodeError::TooLarge { limit: 548, .. })
    ));
}

#[test]
fn user_class_rapid_commit_and_ascii_fqdn_decode_and_later_options_survive() {
    // Windows: option 81 with E=0 (ASCII name) before 53 and 77; dhcproto stops there.
    let p = with_options(&[
        81, 9, 0x00, 0, 0, b'W', b'i', b'n', b'.', b'a', b'd', 80, 0, 77, 4, 3, b'c', b'a', b'm',
        53, 1, 1, 255,
    ]);
    let r = decode(&p).expect("valid");
    assert_eq!(r.msg_type, MessageType::Discover);
    assert!(r.rapid_commit);
    assert_eq!(r.user_class.as_deref(), Some(&b"\x03cam"[..]));
    let f = parse_fqdn(r.fqdn.as_deref().expect("81")).expect("parses");
    assert!(!f.wire_format());
    assert_eq!(f.labels, vec![b"Win".to_vec(), b"ad".to_vec()]);
    let plain = decode(&discover()).expect("valid");
    assert!(!plain.rapid_commit && plain.user_class.is_none());
}

#[test]
fn fqdn_both_encodings_and_malformed_names() {
    let wire = parse_fqdn(b"\x05\x00\x00\x06laptop\x04corp\x00").expect("E=1");
    assert!(wire.wire_format());
    assert_eq!(wire.flags & ClientFqdn::S, ClientFqdn::S);
    assert_eq!(wire.labels, vec![b"laptop".to_vec(), b"corp".to_vec()]);
    // Partial name (no root label) is fine too.
    let partial = parse_fqdn(b"\x04\x00\x00\x02pc").expect("E=1 partial");
    assert_eq!(partial.labels, vec![b"pc".to_vec()]);
    let ascii = parse_fqdn(b"\x01\xff\xffpc.lan.\x00").expect("E=0");
    assert_eq!(ascii.labels, vec![b"pc".to_vec(), b"lan".to_vec()]);
    let empty = parse_fqdn(&[0x01, 0, 0]).expect("no name");
    assert!(empty.labels.is_empty());
    assert_eq!(
        parse_fqdn(&[0x04, 0, 0, 9, b'x']),
        None,
        "label past the end"
    );
    assert_eq!(parse_fqdn(&[0x04, 0, 0, 64]), None, "label too long");
    assert_eq!(parse_fqdn(&[0x04, 0]), None, "no rcodes");
    assert_eq!(parse_fqdn(&[]), None);
}

#[test]
fn options_follow_the_request_list_and_long_ones_stay_whole() {
    let mut m = offer();
    let long = vec![7u8; 300];
    let opt = dhcproto::v4::UnknownOption::new(OptionCode::from(252), long.clone());
    m.opts_mut().insert(DhcpOption::Unknown(opt));
    let mut relay = dhcproto::v4::relay::RelayAgentInformation::default();
    relay.insert(dhcproto::v4::relay::RelayInfo::AgentCircuitId(vec![1]));
    m.opts_mut()
        .insert(DhcpOption::RelayAgentInformation(relay));
    let bytes = encode_message(&m, 1500, &[6, 252, 3, 99]).expect("encodes");
    let mut tlvs = Vec::new();
    walk(&bytes[OPTIONS..], |t| tlvs.push(t.code), |_| true).expect("well formed");
    // 53, 54, then the list (252 split in two, kept together), the rest, 82 last.
    assert_eq!(tlvs, vec![53, 54, 6, 252, 252, 3, 1, 15, 51, 82]);
    let back = Message::decode(&mut Decoder::new(&bytes)).expect("parses back");
    match back.opts().get(OptionCode::from(252)) {
        Some(DhcpOption::Unknown(u)) => assert_eq!(u.data(), &long[..], "joined again"),
        other => panic!("252: {other:?}"),
    }
}

/// xorshift64*: a tiny deterministic PRNG, so a failure names its seed and iteration.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

#[test]
fn fuzz_mutations_never_panic() {
    let mut base = with_options(&[
        53, 1, 1, 61, 3, 1, 2, 3, 12, 2, b'h', b'i', 55, 2, 1, 3, 52, 1, 3, 81, 3, 0, 0, 0, 82, 2,
        1, 0, 50, 4, 10, 0, 0, 7, 255,
    ]);
    base.resize(320, 0);
    base[FILE.start..FILE.start + 5].copy_from_slice(&[12, 2, b'f', b'i', 255]);
    base[SNAME.start..SNAME.start + 4].copy_from_slice(&[80, 1, 0, 255]);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut ok = 0usize;
    for _ in 0..200_000 {
        let mut p = base.clone();
        for _ in 0..=rng.below(8) {
            match rng.below(4) {
                0 => {
                    let i = rng.below(p.len());
                    if let Some(b) = p.get_mut(i) {
                        *b = rng.next() as u8;
                    }
                }
                1 => p.truncate(rng.below(p.len() + 1)),
                2 => {
                    let i = OPTIONS + rng.below(p.len().saturating_sub(OPTIONS));
                    if let Some(b) = p.get_mut(i) {
                        *b = [0, 12, 50, 52, 53, 55, 61, 80, 81, 82, 94, 151, 255][rng.below(13)];
                    }
                }
                _ => p.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
            }
        }
        ok += usize::from(decode(&p).is_ok());
    }
    assert!(ok > 1000, "mutations should often stay valid, got {ok}");
}
