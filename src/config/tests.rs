//! Tests of loading and validating configs: good ones normalised, bad ones named.

use super::*;
use hickory_server::proto::rr::rdata::tsig::TsigAlgorithm;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use crate::lease::HwAddr;
use std::path::PathBuf;

const GOOD: &str = r#"
domain = "Lan."
lease_file = "/tmp/x.journal"
[dns]
listen = ["127.0.0.1:5353", "10.0.0.1"]
[[subnet]]
network = "10.0.0.0/24"
pool_start = "10.0.0.100"
pool_end = "10.0.0.199"
router = "10.0.0.1"
dns_servers = ["10.0.0.1"]
lease_time = 600
[[host]]
mac = "52:54:00:12:34:56"
ip = "10.0.0.10"
name = "Printer"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

/// The line, the dotted path and the whole message (`file:line: path = value: why`).
fn invalid(text: &str) -> (usize, String, String) {
    match parse(text) {
        Err(e @ ConfigError::Invalid { .. }) => {
            let ConfigError::Invalid { line, field, .. } = &e else {
                unreachable!()
            };
            (*line, field.clone(), e.to_string())
        }
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

/// The line of the error for an unknown `key` in `text`, checking that it says so.
fn unknown_key(text: &str, key: &str) -> usize {
    let (line, field, msg) = invalid(text);
    assert_eq!(field, key);
    assert!(msg.contains("unknown field"), "{msg}");
    line
}

/// `base` with the first `from` replaced by `to` (which must change it), and its error.
fn broken(base: &str, from: &str, to: &str) -> (String, usize, String, String) {
    let text = base.replacen(from, to, 1);
    assert_ne!(text, base, "{from} not found");
    let (line, field, msg) = invalid(&text);
    (text, line, field, msg)
}

#[test]
fn every_shipped_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("conf/ exists") {
        let p = e.expect("dir entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1, "no configs in conf/");
}

#[test]
fn durability_modes_and_lease_reuse_fraction() {
    let c = parse(GOOD).expect("valid");
    assert_eq!(c.renew_write_fraction, 0.5);
    let with = |keys: &str| GOOD.replacen("[dns]", &format!("{keys}\n[dns]"), 1);
    let c = parse(&with("durability = \"batch\"")).expect("valid");
    assert_eq!(c.start.durability, Durability::Batch { max_delay_ms: 10 });
    let c = parse(&with(
        "durability = \"batch\"\nbatch_max_delay_ms = 50\nrenew_write_fraction = 0",
    ))
    .expect("valid");
    assert_eq!(c.start.durability, Durability::Batch { max_delay_ms: 50 });
    assert_eq!(c.renew_write_fraction, 0.0);
    let c = parse(&with("durability = \"none\"")).expect("valid");
    assert_eq!(c.start.durability, Durability::None);

    let (line, field, msg) = invalid(&with("batch_max_delay_ms = 5"));
    assert_eq!((line, field.as_str()), (4, "batch_max_delay_ms"), "{msg}");
    let (_, field, _) = invalid(&with("durability = \"batch\"\nbatch_max_delay_ms = 0"));
    assert_eq!(field, "batch_max_delay_ms");
    let (_, field, msg) = invalid(&with("renew_write_fraction = 1.5"));
    assert_eq!(field, "renew_write_fraction", "{msg}");
    let (_, field, msg) = invalid(&with("durability = \"sometimes\""));
    assert_eq!(field, "durability");
    assert!(msg.contains("\"batch\""), "{msg}");
}

#[test]
fn good_config_is_normalised() {
    let c = parse(GOOD).expect("valid");
    assert_eq!(c.start.domain, "lan");
    assert_eq!(c.start.durability, Durability::Fsync);
    assert_eq!(c.start.dhcp_port, 67);
    assert_eq!(c.start.dns.listen[1], "10.0.0.1:53".parse().unwrap());
    assert_eq!(c.subnets[0].mask(), Ipv4Addr::new(255, 255, 255, 0));
    assert_eq!(c.subnets[0].broadcast(), Ipv4Addr::new(10, 0, 0, 255));
    assert_eq!(c.reservations[0].name.as_deref(), Some("printer"));
    assert_eq!(
        c.reservations[0].hwaddr,
        Some(HwAddr::ethernet([0x52, 0x54, 0, 0x12, 0x34, 0x56]))
    );
}

#[test]
fn unknown_key_names_line_and_key() {
    let line = unknown_key(
        &GOOD.replace("lease_time = 600", "lease_tme = 600"),
        "subnet[0].lease_tme",
    );
    assert_eq!(line, 12);
}

#[test]
fn bad_address_names_line_and_key() {
    let (line, field, msg) = invalid(&GOOD.replace("\"10.0.0.199\"", "\"10.0.0.299\""));
    assert_eq!((line, field.as_str()), (9, "subnet[0].pool_end"));
    assert_eq!(
        msg,
        "test.toml:9: subnet[0].pool_end = \"10.0.0.299\": invalid IPv4 address syntax"
    );
}

#[test]
fn semantic_errors_name_the_field() {
    let cases = [
        (
            GOOD.replace("10.0.0.199", "10.0.1.5"),
            "subnet[0].pool_end",
            9,
        ),
        (
            GOOD.replace("10.0.0.0/24", "10.0.0.1/24"),
            "subnet[0].network",
            7,
        ),
        (
            GOOD.replace("\"10.0.0.10\"", "\"10.9.0.10\""),
            "host[0].ip",
            15,
        ),
        (GOOD.replace("Printer", "bad_name"), "host[0].name", 16),
        (
            GOOD.replace("52:54:00:12:34:56", "52:54"),
            "host[0].mac",
            14,
        ),
        (GOOD.replace("Lan.", "bad..lan"), "domain", 2),
        (
            GOOD.replace("lease_time = 600", "lease_time = 1"),
            "subnet[0].lease_time",
            12,
        ),
        (
            GOOD.replace("\"10.0.0.1\"]\n[[sub", "\"nonsense\"]\n[[sub"),
            "dns.listen[1]",
            5,
        ),
    ];
    for (text, want_field, want_line) in cases {
        let (line, field, msg) = invalid(&text);
        assert_eq!((field.as_str(), line), (want_field, want_line), "{msg}");
    }
}

#[test]
fn duplicate_reservation_and_overlap_are_rejected() {
    let dup = format!("{GOOD}[[host]]\nmac = \"52:54:00:00:00:01\"\nip = \"10.0.0.10\"\n");
    assert_eq!(invalid(&dup).1, "host[1].ip");
    let overlap = format!(
        "{GOOD}[[subnet]]\nnetwork = \"10.0.0.0/16\"\npool_start = \"10.0.1.1\"\npool_end = \"10.0.1.9\"\n"
    );
    assert_eq!(invalid(&overlap).1, "subnet[1].network");
}

#[test]
fn timers_and_network_boot_are_read_per_subnet_class_and_host() {
    let text = GOOD.replace(
        "lease_time = 600\n",
        "lease_time = 600\nrenew_time = 200\nrebind_time = 500\nnext_server = \"10.0.0.5\"\n",
    ) + "boot_file = \"printer.cfg\"\n[[class]]\nname = \"pxe\"\nvendor_class = \"PXEClient\"\n\
           server_name = \"tftp.lan\"\nboot_file = \"undionly.kpxe\"\nrebind_time = 900\n";
    let c = parse(&text).expect("valid");
    let g = &c.subnets[0].settings.grant;
    assert_eq!((g.renew_time, g.rebind_time), (Some(200), Some(500)));
    assert_eq!(g.next_server, Some(Ipv4Addr::new(10, 0, 0, 5)));
    assert_eq!(
        c.dhcp.host_grants[0].boot_file.as_deref(),
        Some("printer.cfg")
    );
    let k = &c.dhcp.classes[0].grant;
    assert_eq!(k.server_name.as_deref(), Some("tftp.lan"));
    assert_eq!(k.rebind_time, Some(900));
    for (bad, field) in [
        ("renew_time = 600\n", "subnet[0].renew_time"),
        (
            "renew_time = 500\nrebind_time = 400\n",
            "subnet[0].rebind_time",
        ),
        ("boot_file = \"has space\"\n", "subnet[0].boot_file"),
        ("server_name = \"\"\n", "subnet[0].server_name"),
    ] {
        let text = GOOD.replace("lease_time = 600\n", &format!("lease_time = 600\n{bad}"));
        let (_, f, msg) = invalid(&text);
        assert_eq!(f, field, "{msg}");
    }
    let long = format!("{GOOD}boot_file = \"{}\"\n", "x".repeat(128));
    assert_eq!(invalid(&long).1, "host[0].boot_file");
    let (_, f, _) = invalid(&GOOD.replace("[dns]", "init_reboot_unknown = \"nak\"\n[dns]"));
    assert_eq!(f, "init_reboot_unknown");
}

/// Issue 13, fault 6: one MAC or client id in two reservations (only the first could ever
/// be used) is an error naming the line and field of the second.
#[test]
fn one_client_in_two_reservations_is_rejected() {
    let same_mac = format!("{GOOD}[[host]]\nip = \"10.0.0.11\"\nmac = \"52:54:00:12:34:56\"\n");
    let (line, field, msg) = invalid(&same_mac);
    assert_eq!((line, field.as_str()), (19, "host[1].mac"), "{msg}");
    assert!(msg.contains("host[0]"), "{msg}");
    let upper = format!("{GOOD}[[host]]\nip = \"10.0.0.11\"\nmac = \"52:54:00:12:34:56\"\n")
        .replace(
            "ip = \"10.0.0.11\"\nmac = \"52:54:00:12:34:56\"",
            "ip = \"10.0.0.11\"\nmac = \"52:54:00:12:34:56\""
                .to_uppercase()
                .replace("IP", "ip")
                .replace("MAC", "mac")
                .as_str(),
        );
    assert_eq!(invalid(&upper).1, "host[1].mac", "the same MAC in capitals");
    let ids = format!(
        "{GOOD}[[host]]\nclient_id = \"01:aa:bb\"\nip = \"10.0.0.11\"\n\
         [[host]]\nip = \"10.0.0.12\"\nclient_id = \"01:AA:BB\"\n"
    );
    let (line, field, msg) = invalid(&ids);
    assert_eq!((line, field.as_str()), (22, "host[2].client_id"), "{msg}");
    // A MAC and a client id of the same bytes are different keys: allowed.
    let mixed = format!("{GOOD}[[host]]\nclient_id = \"52:54:00:12:34:56\"\nip = \"10.0.0.11\"\n");
    assert!(parse(&mixed).is_ok());
}

#[test]
fn error_message_reads_file_line_field() {
    let e = parse(&GOOD.replace("lease_time = 600", "lease_tme = 600")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("test.toml:12: subnet[0].lease_tme = 600: unknown field `lease_tme`"),
        "{e}"
    );
}

const RECORDS: &str = r#"
[[dns.record]]
name = "@"
type = "MX"
value = "10 mail"
[[dns.record]]
name = "_ldap._tcp"
type = "srv"
value = "0 5 389 nas.lan."
[[dns.record]]
name = "www.LAN"
type = "CNAME"
value = "nas"
[[dns.record]]
name = "router.example.net."
type = "A"
value = "10.0.0.1"
[[dns.record]]
name = "nas"
type = "AAAA"
value = "fd00::20"
[[dns.record]]
name = "nas"
type = "TXT"
value = "hello world"
"#;

/// GOOD with extra `[dns]` keys and the records above appended.
fn with_dns(extra: &str) -> String {
    let text = GOOD.replace(
        "[dns]\n",
        &format!("[dns]\n{extra}\nupstreams = [\"192.0.2.53\", \"192.0.2.54:5353\"]\n"),
    );
    let (head, hosts) = text.split_at(text.find("[[subnet]]").expect("subnet"));
    format!("{head}{RECORDS}{hosts}")
}

#[test]
fn dns_defaults() {
    let c = parse(GOOD).expect("valid");
    assert_eq!(c.start.dns.upstream_timeout, Duration::from_millis(2000));
    assert!(c.dns.records.is_empty() && c.dns.hosts_file.is_none());
    assert!(!c.start.dns.expand_bare_names);
    assert_eq!(c.start.dns.cache_size, 10_000);
    assert_eq!(c.dns.blocked_names, ["wpad", "isatap", "localhost"]);
    assert_eq!(c.start.dns.recursion_from, None);
}

#[test]
fn blocked_names_are_lowercased_labels() {
    let c = parse(&with_dns("blocked_names = [\"WPAD\", \"proxy\"]")).expect("valid");
    assert_eq!(c.dns.blocked_names, ["wpad", "proxy"]);
    let c = parse(&with_dns("blocked_names = []")).expect("valid");
    assert!(c.dns.blocked_names.is_empty());
    let (_, field, _) = invalid(&with_dns("blocked_names = [\"ok\", \"not.one\"]"));
    assert_eq!(field, "dns.blocked_names[1]");
}

#[test]
fn transfer_to_addresses_and_transfer_keys_naming_tsig_keys() {
    let key = "[[tsig_key]]\nname = \"XFR.\"\nalgorithm = \"hmac-sha256\"\nsecret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQ=\"\n";
    let text =
        with_dns("transfer_to = [\"10.0.0.53\", \"10.0.0.54:5300\"]\ntransfer_keys = [\"xfr\"]");
    let c = parse(&format!("{text}\n{key}")).expect("valid");
    assert_eq!(c.start.dns.transfer_to[0], "10.0.0.53:53".parse().unwrap());
    assert_eq!(
        c.start.dns.transfer_to[1],
        "10.0.0.54:5300".parse().unwrap()
    );
    assert_eq!(c.start.dns.transfer_keys, ["xfr"]);
    let (_, field, _) = invalid(&format!(
        "{}\n{key}",
        with_dns("transfer_keys = [\"xfr\", \"nokey\"]")
    ));
    assert_eq!(field, "dns.transfer_keys[1]");
    let (_, field, _) = invalid(&with_dns("transfer_to = [\"not an address\"]"));
    assert_eq!(field, "dns.transfer_to[0]");
}

#[test]
fn dns_recursion_from_networks_and_their_errors() {
    let text = with_dns("recursion_from = [\"10.0.0.0/24\", \"192.0.2.7\", \"fd00::/8\"]");
    let c = parse(&text).expect("valid");
    let nets = c.start.dns.recursion_from.expect("set");
    assert_eq!(nets[0], ("10.0.0.0".parse().unwrap(), 24));
    assert_eq!(nets[1], ("192.0.2.7".parse().unwrap(), 32));
    assert_eq!(nets[2], ("fd00::".parse().unwrap(), 8));
    for bad in ["10.0.0.0/33", "lan", "::1/129"] {
        let text = with_dns(&format!("recursion_from = [\"10.0.0.0/8\", \"{bad}\"]"));
        let (_, field, msg) = invalid(&text);
        assert_eq!(field, "dns.recursion_from[1]");
        assert!(msg.contains(bad), "{msg}");
    }
}

#[test]
fn dns_records_and_keys_are_normalised() {
    let text = with_dns(
        "upstream_timeout_ms = 500\nhosts_file = \"/etc/hosts\"\nexpand_bare_names = true",
    );
    let c = parse(&text).expect("valid");
    assert_eq!(c.start.dns.upstream_timeout, Duration::from_millis(500));
    assert_eq!(c.start.dns.upstreams[1], "192.0.2.54:5353".parse().unwrap());
    assert_eq!(c.dns.hosts_file, Some(PathBuf::from("/etc/hosts")));
    assert!(c.start.dns.expand_bare_names);
    let r = &c.dns.records;
    assert_eq!(
        r[0],
        DnsRecord {
            name: "lan".to_string(),
            data: RecordData::Mx {
                preference: 10,
                exchange: "mail.lan".to_string()
            }
        }
    );
    assert_eq!(r[1].name, "_ldap._tcp.lan");
    assert_eq!(
        r[1].data,
        RecordData::Srv {
            priority: 0,
            weight: 5,
            port: 389,
            target: "nas.lan".to_string()
        }
    );
    assert_eq!(r[2].name, "www.lan");
    assert_eq!(r[2].data, RecordData::Cname("nas.lan".to_string()));
    assert_eq!(r[3].name, "router.example.net");
    assert_eq!(r[4].data, RecordData::Aaaa("fd00::20".parse().unwrap()));
    assert_eq!(r[5].data, RecordData::Txt(vec!["hello world".to_string()]));
}

#[test]
fn long_txt_is_split_into_255_byte_strings() {
    let text = with_dns("").replace("hello world", &"a".repeat(600));
    let c = parse(&text).expect("valid");
    let RecordData::Txt(strings) = &c.dns.records[5].data else {
        panic!("TXT expected")
    };
    let lens: Vec<usize> = strings.iter().map(String::len).collect();
    assert_eq!(lens, vec![255, 255, 90]);
}

#[test]
fn bad_dns_values_name_line_and_field() {
    let base = with_dns("");
    let line_of_text = |text: &str, needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .expect("needle in text")
            + 1
    };
    let cases = [
        ("\"10 mail\"", "\"ten mail\"", "dns.record[0].value"),
        ("\"srv\"", "\"SPF\"", "dns.record[1].type"),
        ("\"0 5 389 nas.lan.\"", "\"0 5 nas\"", "dns.record[1].value"),
        (
            "\"nas\"\n[[dns",
            "\"bad name!\"\n[[dns",
            "dns.record[2].value",
        ),
        (
            "\"10.0.0.1\"\n[[dns",
            "\"10.0.0.300\"\n[[dns",
            "dns.record[3].value",
        ),
        ("\"fd00::20\"", "\"10.0.0.20\"", "dns.record[4].value"),
        ("\"router.example.net.\"", "\"a..b\"", "dns.record[3].name"),
    ];
    for (from, to, want_field) in cases {
        let (text, line, field, msg) = broken(&base, from, to);
        assert_eq!(field, want_field, "{msg}");
        assert_eq!(
            line,
            line_of_text(&text, to.split('\n').next().unwrap()),
            "{field}: {msg}"
        );
    }
    let (line, field, _) = invalid(&with_dns("upstream_timeout_ms = 5"));
    assert_eq!((line, field.as_str()), (5, "dns.upstream_timeout_ms"));
    unknown_key(&with_dns("hosts = \"/etc/hosts\""), "dns.hosts");
    let (_, field, _) = invalid(&with_dns("").replace("type = \"AAAA\"", "tipe = \"AAAA\""));
    assert_eq!(field, "dns.record[4].tipe");
}

const DDNS: &str = r#"
[[ddns_zone]]
zone = "LAN."
primary = "10.0.0.53"
key_name = "leasedns"
key_secret = "bGVhc2VkbnMtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyE="
[[ddns_zone]]
zone = "0.0.10.in-addr.arpa"
primary = "10.0.0.54:5353"
key_name = "rev.key."
key_algorithm = "HMAC-SHA512"
key_secret = "c2VjcmV0"
ttl = 60
"#;

#[test]
fn ddns_zones_are_normalised_with_defaults() {
    let c = parse(GOOD).expect("valid");
    assert!(c.start.ddns.zones.is_empty());
    assert_eq!(
        c.start.ddns.queue_file,
        PathBuf::from("/tmp/x.journal.ddns")
    );

    let c = parse(&format!("{GOOD}{DDNS}")).expect("valid");
    let (fwd, rev) = (&c.start.ddns.zones[0], &c.start.ddns.zones[1]);
    assert_eq!(fwd.zone, "lan");
    assert_eq!(fwd.primary, "10.0.0.53:53".parse().unwrap());
    assert_eq!(fwd.ttl, 300);
    let key = fwd.key.as_ref().expect("key");
    assert_eq!(key.algorithm, TsigAlgorithm::HmacSha256);
    assert_eq!(key.secret, b"leasedns-test-key-32-bytes-long!".to_vec());
    assert!(
        !format!("{key:?}").contains("leasedns-test"),
        "secret hidden in Debug"
    );
    assert_eq!(rev.primary, "10.0.0.54:5353".parse().unwrap());
    let key = rev.key.as_ref().expect("key");
    assert_eq!(
        (key.name.to_string().as_str(), key.algorithm.clone()),
        ("rev.key.", TsigAlgorithm::HmacSha512)
    );
    assert_eq!(key.fudge, 300);
    assert_eq!(rev.ttl, 60);

    let queue = GOOD.replace("[dns]", "ddns_queue = \"/var/q\"\n[dns]");
    assert_eq!(
        parse(&queue).expect("valid").start.ddns.queue_file,
        PathBuf::from("/var/q")
    );
    let unsigned = format!("{GOOD}[[ddns_zone]]\nzone = \"lan\"\nprimary = \"::1\"\n");
    let c = parse(&unsigned).expect("valid");
    assert_eq!(c.start.ddns.zones[0].key, None);
    assert_eq!(c.start.ddns.zones[0].primary, "[::1]:53".parse().unwrap());
}

#[test]
fn bad_ddns_values_name_the_field() {
    let base = format!("{GOOD}{DDNS}");
    let cases = [
        (
            "zone = \"LAN.\"",
            "zone = \"bad..zone\"",
            "ddns_zone[0].zone",
        ),
        (
            "\"10.0.0.53\"",
            "\"primary.example\"",
            "ddns_zone[0].primary",
        ),
        (
            "\"HMAC-SHA512\"",
            "\"hmac-md5\"",
            "ddns_zone[1].key_algorithm",
        ),
        ("\"c2VjcmV0\"", "\"not base64!\"", "ddns_zone[1].key_secret"),
        ("ttl = 60", "ttl = 0", "ddns_zone[1].ttl"),
        ("\"0.0.10.in-addr.arpa\"", "\"lan\"", "ddns_zone[1].zone"),
        ("key_name = \"rev.key.\"\n", "", "ddns_zone[1].key_secret"),
        (
            "key_name = \"leasedns\"",
            "key_name = \"bad name\"",
            "ddns_zone[0].key_name",
        ),
    ];
    for (from, to, want_field) in cases {
        let (_, _, field, msg) = broken(&base, from, to);
        assert_eq!(field, want_field, "{msg}");
    }
    unknown_key(&format!("{base}server = \"x\"\n"), "ddns_zone[1].server");
}

/// Every optional DHCP key: ping check, per-subnet settings, routes, typed options, a host with
/// options, classes.
const OPTIONS_AND_CLASSES: &str = r#"
ping_check = true
ping_timeout_ms = 250
exhausted_warn_interval = 30
[[subnet]]
network = "10.0.0.0/24"
pool_start = "10.0.0.100"
pool_end = "10.0.0.199"
router = "10.0.0.1"
lease_time = 3600
authoritative = false
rapid_commit = true
domain_search = ["lan", "Corp.Example."]
ntp_servers = ["10.0.0.1"]
mtu = 1500
routes = [ { network = "10.9.0.0/16", gateway = "10.0.0.254" }, { network = "0.0.0.0/0", gateway = "10.0.0.1" } ]
  [[subnet.option]]
  code = 252
  type = "string"
  value = "http://wpad.lan/wpad.dat"
  [[subnet.option]]
  code = 150
  type = "ips"
  value = ["10.0.0.5", "10.0.0.6"]
  [[subnet.option]]
  code = 23
  type = "u8"
  value = 64
  [[subnet.option]]
  code = 24
  type = "u32"
  value = 600
  [[subnet.option]]
  code = 13
  type = "u16"
  value = 512
  [[subnet.option]]
  code = 19
  type = "bool"
  value = false
  [[subnet.option]]
  code = 43
  type = "hex"
  value = "01:04:c0:a8:00:01"
  [[subnet.option]]
  code = 16
  type = "ip"
  value = "10.0.0.7"
[[host]]
client_id = "01:52:54:00:12:34:56"
ip = "10.0.0.10"
name = "printer"
lease_time = 86400
  [[host.option]]
  code = 42
  type = "ips"
  value = ["10.0.0.5"]
[[class]]
name = "phones"
vendor_class = "android-dhcp"
user_class = "x"
mac_prefix = "52:54:01"
subnet = "10.0.0.0/24"
pool_start = "10.0.0.200"
pool_end = "10.0.0.219"
lease_time = 600
  [[class.option]]
  code = 6
  type = "ips"
  value = ["10.0.0.53"]
[[class]]
name = "printers"
mac_prefix = "00-11-22"
"#;

fn options_and_classes() -> String {
    format!("domain = \"lan\"\nlease_file = \"/tmp/x\"\n{OPTIONS_AND_CLASSES}")
}

#[test]
fn subnet_settings_options_classes_and_host_options_are_read_and_encoded() {
    let c = parse(&options_and_classes()).expect("valid");
    assert!(c.dhcp.ping_check);
    assert_eq!(c.dhcp.ping_timeout, Duration::from_millis(250));
    assert_eq!(c.dhcp.exhausted_warn_interval, 30);
    let s = &c.subnets[0];
    assert!(!s.authoritative);
    let set = &s.settings;
    assert!(set.rapid_commit && set.dns_servers_default && s.dns_servers.is_empty());
    assert_eq!(set.domain_search, vec!["lan", "corp.example"]);
    assert_eq!(set.ntp_servers, vec![Ipv4Addr::new(10, 0, 0, 1)]);
    assert_eq!(set.mtu, Some(1500));
    let gw = Ipv4Addr::new(10, 0, 0, 254);
    assert_eq!(
        set.routes[0],
        Route {
            network: Ipv4Addr::new(10, 9, 0, 0),
            prefix_len: 16,
            gateway: gw
        }
    );
    assert_eq!(set.routes[1].prefix_len, 0);
    let data: Vec<(u8, Vec<u8>)> = set
        .options
        .iter()
        .map(|o| (o.code, o.data.clone()))
        .collect();
    assert_eq!(
        data,
        vec![
            (252, b"http://wpad.lan/wpad.dat".to_vec()),
            (150, vec![10, 0, 0, 5, 10, 0, 0, 6]),
            (23, vec![64]),
            (24, vec![0, 0, 2, 88]),
            (13, vec![2, 0]),
            (19, vec![0]),
            (43, vec![1, 4, 0xc0, 0xa8, 0, 1]),
            (16, vec![10, 0, 0, 7]),
        ]
    );
    let h = &c.reservations[0];
    assert_eq!(h.lease_time, Some(86400));
    assert_eq!(
        h.options,
        vec![OptionSpec {
            code: 42,
            data: vec![10, 0, 0, 5]
        }]
    );
    let k = &c.dhcp.classes[0];
    assert_eq!(k.name, "phones");
    assert_eq!(k.vendor_class.as_deref(), Some(&b"android-dhcp"[..]));
    assert_eq!(k.mac_prefix.as_deref(), Some(&[0x52, 0x54, 0x01][..]));
    assert_eq!((k.subnet, k.lease_time), (Some(0), Some(600)));
    let range = (Ipv4Addr::new(10, 0, 0, 200), Ipv4Addr::new(10, 0, 0, 219));
    assert_eq!(k.pool, Some(range));
    assert_eq!(k.options[0].code, 6);
    assert_eq!(c.dhcp.classes[1].mac_prefix, Some(vec![0, 0x11, 0x22]));
}

#[test]
fn dhcp_settings_default_to_off_and_empty() {
    let c = parse(GOOD).expect("valid");
    let defaults = DhcpGlobals {
        host_grants: vec![GrantSettings::default()],
        ..DhcpGlobals::default()
    };
    assert_eq!(c.dhcp, defaults);
    assert!(!c.dhcp.ping_check);
    assert_eq!(c.dhcp.ping_timeout, Duration::from_millis(300));
    assert_eq!(c.dhcp.exhausted_warn_interval, 60);
    let set = &c.subnets[0].settings;
    assert!(!set.dns_servers_default, "dns_servers given");
    assert!(!set.rapid_commit && set.routes.is_empty() && set.options.is_empty());
    assert_eq!(c.reservations[0].lease_time, None);
}

#[test]
fn class_matching_needs_every_key_given() {
    let c = parse(&options_and_classes()).expect("valid");
    let phones = &c.dhcp.classes[0];
    let mac = [0x52, 0x54, 0x01, 0, 0, 9];
    assert!(phones.matches(Some(b"android-dhcp-13"), Some(b"\x01x"), &mac));
    assert!(
        !phones.matches(Some(b"android-dhcp-13"), None, &mac),
        "no user class"
    );
    assert!(
        !phones.matches(Some(b"MSFT 5.0"), Some(b"x"), &mac),
        "vendor prefix"
    );
    assert!(!phones.matches(Some(b"android-dhcp"), Some(b"x"), &[0x52, 0x54, 0, 0, 0, 9]));
    let printers = &c.dhcp.classes[1];
    assert!(printers.matches(None, None, &[0, 0x11, 0x22, 1, 2, 3]));
    assert!(!printers.matches(None, None, &[0, 0x11]));
}

/// Edits of `OPTIONS_AND_CLASSES` (from, to) and the path each error must name.
const OPTION_ROUTE_CLASS_AND_HOST_CASES: [(&str, &str, &str); 21] = [
    (
        "gateway = \"10.0.0.1\" }",
        "gateway = \"10.1.0.1\" }",
        "subnet[0].routes[1].gateway",
    ),
    (
        "\"10.9.0.0/16\"",
        "\"10.9.0.1/16\"",
        "subnet[0].routes[0].network",
    ),
    (
        "\"0.0.0.0/0\"",
        "\"0.0.0.0/33\"",
        "subnet[0].routes[1].network",
    ),
    (
        "pool_start = \"10.0.0.200\"",
        "pool_start = \"10.0.1.200\"",
        "class[0].pool_start",
    ),
    (
        "pool_end = \"10.0.0.219\"",
        "pool_end = \"10.0.0.19\"",
        "class[0].pool_end",
    ),
    (
        "subnet = \"10.0.0.0/24\"",
        "subnet = \"10.7.0.0/24\"",
        "class[0].subnet",
    ),
    (
        "mac_prefix = \"00-11-22\"",
        "mac_prefix = \"zz\"",
        "class[1].mac_prefix",
    ),
    ("mac_prefix = \"00-11-22\"", "", "class[1]"),
    (
        "value = [\"10.0.0.5\"]\n[[class",
        "value = [\"10.0.0.500\"]\n[[class",
        "host[0].option[0].value",
    ),
    ("code = 42", "code = 53", "host[0].option[0].code"),
    ("code = 252", "code = 300", "subnet[0].option[0].code"),
    (
        "type = \"u8\"",
        "type = \"u64\"",
        "subnet[0].option[2].type",
    ),
    ("value = 64", "value = 256", "subnet[0].option[2].value"),
    ("value = 512", "value = -1", "subnet[0].option[4].value"),
    ("value = false", "value = 1", "subnet[0].option[5].value"),
    (
        "value = \"01:04:c0:a8:00:01\"",
        "value = \"0x1\"",
        "subnet[0].option[6].value",
    ),
    (
        "\"Corp.Example.\"",
        "\"bad..name\"",
        "subnet[0].domain_search[1]",
    ),
    ("mtu = 1500", "mtu = 67", "subnet[0].mtu"),
    ("lease_time = 86400", "lease_time = 5", "host[0].lease_time"),
    ("lease_time = 600", "lease_time = 1", "class[0].lease_time"),
    (
        "ping_timeout_ms = 250",
        "ping_timeout_ms = 9",
        "ping_timeout_ms",
    ),
];

#[test]
fn option_route_class_and_host_errors_name_the_field() {
    let base = options_and_classes();
    for (from, to, want) in OPTION_ROUTE_CLASS_AND_HOST_CASES {
        let (_, line, field, msg) = broken(&base, from, to);
        assert_eq!(field, want, "{msg}");
        assert!(line > 1, "{field}: line {line}");
    }
    unknown_key(
        &base.replace("mtu = 1500", "mtu = 1500\nmtus = 1"),
        "subnet[0].mtus",
    );
}

#[test]
fn qualify_follows_the_documented_rules() {
    assert_eq!(qualify("@", "lan").as_deref(), Some("lan"));
    assert_eq!(qualify("nas", "lan").as_deref(), Some("nas.lan"));
    assert_eq!(qualify("NAS.lan", "lan").as_deref(), Some("nas.lan"));
    assert_eq!(qualify("a.b", "lan").as_deref(), Some("a.b.lan"));
    assert_eq!(
        qualify("a.example.com.", "lan").as_deref(),
        Some("a.example.com")
    );
    assert_eq!(
        qualify("_sip._udp", "lan").as_deref(),
        Some("_sip._udp.lan")
    );
    assert_eq!(qualify("bad name", "lan"), None);
    assert_eq!(qualify(".", "lan"), None);
    assert_eq!(qualify(&"x".repeat(64), "lan"), None);
}

/// A real Argon2 hash of "pw" (made by `leasedns hash-password`).
fn pw_hash() -> String {
    crate::http::auth::hash_password("pw").expect("hash")
}

fn with_updates(extra: &str) -> String {
    format!("{GOOD}\n{extra}")
}

#[test]
fn the_api_needs_a_listener_and_a_token_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("token");
    std::fs::write(&good, "0123456789abcdef0123\nignored\n").expect("write");
    let short = dir.path().join("short");
    std::fs::write(&short, "abc\n").expect("write");
    let http = |body: &str| with_updates(&format!("[http]\n{body}"));
    let on = format!(
        "listen = [\"127.0.0.1\"]\napi = true\napi_token_file = \"{}\"",
        good.display()
    );
    let c = parse(&http(&on)).expect("valid");
    assert!(c.start.dns.http.api);
    let token = c.start.dns.http.api_token.expect("token");
    assert_eq!(token.secret, "0123456789abcdef0123");
    assert!(
        !format!("{token:?}").contains("0123456789"),
        "Debug hides it"
    );
    assert!(!parse(GOOD).expect("valid").start.dns.http.api);
    let (_, field, msg) = invalid(&http("listen = [\"127.0.0.1\"]\napi = true"));
    assert_eq!(field, "http.api");
    assert!(msg.contains("api_token_file"), "{msg}");
    let (_, field, _) = invalid(&http("api = true"));
    assert_eq!(field, "http.api");
    let bad = format!(
        "listen = [\"127.0.0.1\"]\napi = true\napi_token_file = \"{}\"",
        short.display()
    );
    let (line, field, msg) = invalid(&http(&bad));
    assert_eq!(field, "http.api_token_file");
    assert!(
        msg.contains("short") && msg.contains("16") && line > 20,
        "{msg}"
    );
    let missing = "listen = [\"127.0.0.1\"]\napi = true\napi_token_file = \"/nonexistent/t\"";
    let (_, field, msg) = invalid(&http(missing));
    assert_eq!(field, "http.api_token_file");
    assert!(msg.contains("/nonexistent/t"), "{msg}");
}

#[test]
fn tsig_keys_http_and_users_are_validated_and_normalised() {
    use hickory_server::proto::rr::RecordType;
    use hickory_server::proto::rr::rdata::tsig::TsigAlgorithm;
    let text = with_updates(&format!(
        r#"
[[tsig_key]]
name = "ACME."
algorithm = "hmac-sha512"
secret = "c2VjcmV0"
allow = [ {{ prefix = "_acme-challenge", types = ["txt"] }},
      {{ name = "dyn", subdomains = true, types = ["ANY"] }},
      {{ name = "@", types = ["MX"] }} ]

[http]
listen = ["127.0.0.1"]
rate_limit = 3

[[dyndns_user]]
name = "router"
password_hash = "{}"
hosts = ["home", "cam.example.org."]
"#,
        pw_hash()
    ));
    let c = parse(&text).expect("valid");
    let key = &c.start.dns.tsig_keys[0];
    assert_eq!(key.name, "acme");
    assert_eq!(key.algorithm, TsigAlgorithm::HmacSha512);
    assert_eq!(key.secret, b"secret");
    assert_eq!((key.fudge, key.may_override), (300, false));
    assert_eq!(
        key.allow[0].names,
        NameMatch::Prefix("_acme-challenge".into())
    );
    assert_eq!(key.allow[0].types, vec![RecordType::TXT]);
    assert_eq!(key.allow[1].names, NameMatch::Subtree("dyn.lan".into()));
    assert_eq!(key.allow[1].types.len(), 7);
    assert_eq!(key.allow[2].names, NameMatch::Exact("lan".into()));
    assert_eq!(
        c.start.dns.http.listen,
        vec!["127.0.0.1:8053".parse().unwrap()]
    );
    assert_eq!((c.start.dns.http.rate_limit, c.start.dns.http.ttl), (3, 60));
    assert!(!c.start.dns.http.metrics && c.start.dns.http.metrics_from.is_empty());
    let on = text.replace(
        "rate_limit = 3",
        "rate_limit = 3\nmetrics = true\nmetrics_from = [\"192.0.2.0/24\", \"fd00::1\"]",
    );
    let c = parse(&on).expect("valid");
    assert!(c.start.dns.http.metrics);
    assert_eq!(
        c.start.dns.http.metrics_from,
        vec![
            ("192.0.2.0".parse().unwrap(), 24),
            ("fd00::1".parse().unwrap(), 128)
        ]
    );
    assert_eq!(
        c.start.dns.dyndns_users[0].hosts,
        vec!["home.lan", "cam.example.org"]
    );
    // Beside the lease file (GOOD's is /tmp/x.journal) unless set.
    assert_eq!(
        c.start.dns.update_journal,
        PathBuf::from("/tmp/x.journal.dns")
    );
    let c = parse(&GOOD.replace("[dns]\n", "[dns]\nupdate_journal = \"/var/lib/x.dns\"\n"))
        .expect("valid");
    assert_eq!(c.start.dns.update_journal, PathBuf::from("/var/lib/x.dns"));
}

#[test]
fn bad_update_settings_name_their_field() {
    let key = |body: &str| with_updates(&format!("[[tsig_key]]\nname = \"k\"\n{body}"));
    let (_, field, msg) = invalid(&key("algorithm = \"hmac-md5\"\nsecret = \"c2VjcmV0\""));
    assert_eq!(field, "tsig_key[0].algorithm");
    assert!(msg.contains("hmac-sha256"), "{msg}");
    let (_, field, _) = invalid(&key("algorithm = \"hmac-sha256\"\nsecret = \"!!\""));
    assert_eq!(field, "tsig_key[0].secret");
    let (_, field, _) = invalid(&key(
        "algorithm = \"hmac-sha256\"\nsecret = \"c2VjcmV0\"\nallow = [{ name = \"a\", types = [\"SOA\"] }]",
    ));
    assert_eq!(field, "tsig_key[0].allow[0].types");
    let (_, field, _) = invalid(&key(
        "algorithm = \"hmac-sha256\"\nsecret = \"c2VjcmV0\"\nallow = [{ name = \"a\", prefix = \"b\", types = [\"A\"] }]",
    ));
    assert_eq!(field, "tsig_key[0].allow[0]");
    let (_, field, _) = invalid(&with_updates("[http]\nlisten = [\"nowhere\"]"));
    assert_eq!(field, "http.listen[0]");
    let (_, field, _) = invalid(&with_updates("[http]\ntls_cert = \"/c.pem\""));
    assert_eq!(field, "http.tls_cert");
    let (_, field, msg) = invalid(&with_updates("[http]\nmetrics = true"));
    assert_eq!(field, "http.metrics");
    assert!(msg.contains("http.listen"), "{msg}");
    let (_, field, msg) = invalid(&with_updates(
        "[http]\nlisten = [\"127.0.0.1\"]\nmetrics = true\nmetrics_from = [\"10.0.0.0/8\", \"10.1/8\"]",
    ));
    assert_eq!(field, "http.metrics_from[1]");
    assert!(msg.contains("10.1/8"), "{msg}");
    let (line, field, msg) = invalid(&with_updates(
        "[[dyndns_user]]\nname = \"r\"\npassword_hash = \"plain\"\nhosts = [\"home\"]",
    ));
    assert_eq!(field, "dyndns_user[0].password_hash");
    assert!(msg.contains("hash-password") && line >= 20, "{line} {msg}");
    let (_, field, _) = invalid(&with_updates("[[tsig_key]]\nname = \"k\"\nbogus = 1"));
    assert_eq!(field, "tsig_key[0].bogus");
}

#[test]
fn name_match_is_label_aligned() {
    assert!(NameMatch::Subtree("lan".into()).matches("a.lan"));
    assert!(!NameMatch::Subtree("lan".into()).matches("plan"));
    assert!(NameMatch::Prefix("_x".into()).matches("_x.lan"));
    assert!(!NameMatch::Prefix("_x".into()).matches("_x"));
    assert!(!NameMatch::Prefix("_x".into()).matches("_xy.lan"));
    assert!(NameMatch::Exact("a.lan".into()).matches("a.lan"));
}

/// Syntax and type errors, caught while parsing: each names the line, the dotted path of the
/// key (with the index of its table) and the value as written.
#[test]
fn parse_errors_name_line_path_and_value() {
    let host = "[[host]]\nmac = \"52:54:00:12:34:57\"\nip = \"10.0.0.300\"\n";
    let cases = [
        (
            format!("{GOOD}{host}"),
            "test.toml:19: host[1].ip = \"10.0.0.300\": invalid IPv4 address syntax",
        ),
        (
            GOOD.replace("lease_time = 600", "lease_time = \"long\""),
            "test.toml:12: subnet[0].lease_time = \"long\": invalid type: string \"long\", expected u32",
        ),
        (
            GOOD.replace("domain = \"Lan.\"", "domain = 5"),
            "test.toml:2: domain = 5: invalid type: integer `5`, expected a string",
        ),
        (
            GOOD.replace(
                "router = \"10.0.0.1\"",
                "router = \"10.0.0.1\"\nrouter = \"10.0.0.2\"",
            ),
            "test.toml:11: subnet[0].router = \"10.0.0.2\": duplicate key",
        ),
        (
            GOOD.replace("name = \"Printer\"", "name = \"Printer"),
            "test.toml:16: host[0].name = \"Printer: invalid basic string, expected `\"`",
        ),
        (
            GOOD.replace(
                "[dns]",
                "[dns]\nrecord = [{ name = \"a\", type = \"A\", value = 7 }]",
            ),
            "test.toml:5: dns.record[0].value = 7: invalid type: integer `7`, expected a string",
        ),
        (
            GOOD.replace(
                "lease_time = 600",
                "lease_time = 600\n[[subnet.option]]\ncode = 1\ntype = \"ip\"\nvalue = \"x\"\n\
                 [[subnet.option]]\ncode = 2\ntype = \"u8\"\nvalue = \"y\" x",
            ),
            "test.toml:20: subnet[0].option[1].value = \"y\" x: unexpected key or value, expected newline, `#`",
        ),
    ];
    for (text, want) in cases {
        let e = parse(&text).expect_err(want);
        assert_eq!(e.to_string(), want);
    }
}

#[test]
fn a_missing_key_is_named_by_its_path() {
    let e = parse(&GOOD.replace("lease_file = \"/tmp/x.journal\"", "")).expect_err("no lease_file");
    assert_eq!(
        e.to_string(),
        "test.toml:1: lease_file: is required and missing"
    );
    let e = parse(&GOOD.replace("pool_start = \"10.0.0.100\"", "")).expect_err("no pool_start");
    assert_eq!(
        e.to_string(),
        "test.toml:6: subnet[0].pool_start: is required and missing"
    );
}

#[test]
fn a_table_where_a_list_of_tables_belongs_hints_at_double_brackets() {
    let text = GOOD.replace(
        "[[subnet]]",
        "[dns.record]\nname = \"a\"\ntype = \"A\"\nvalue = \"10.0.0.5\"\n[[subnet]]",
    );
    let (line, field, msg) = invalid(&text);
    assert_eq!((line, field.as_str()), (6, "dns.record"));
    assert!(msg.contains("[[dns.record]]"), "{msg}");
}

#[test]
fn semantic_errors_show_the_value_as_written() {
    let (_, _, msg) = invalid(&GOOD.replace("10.0.0.199", "10.0.1.5"));
    assert_eq!(
        msg,
        "test.toml:9: subnet[0].pool_end = \"10.0.1.5\": is not a host address of 10.0.0.0/24"
    );
    let (_, _, msg) = invalid(&GOOD.replace("lease_time = 600", "lease_time = 5"));
    assert_eq!(
        msg,
        "test.toml:12: subnet[0].lease_time = 5: must be at least 10 seconds"
    );
    // An error about a whole table names the table, with no value.
    let (_, _, msg) = invalid(&format!("{GOOD}[[host]]\nip = \"10.0.0.30\"\n"));
    assert_eq!(msg, "test.toml:17: host[1]: needs `mac` or `client_id`");
}

#[test]
fn unknown_keys_are_rejected_everywhere_by_path() {
    let with = |from: &str, to: &str| GOOD.replacen(from, to, 1);
    let cases = [
        (with("domain", "colour = 1\ndomain"), "colour"),
        (with("listen", "lisen = 1\nlisten"), "dns.lisen"),
        (with("router", "routr = 1\nrouter"), "subnet[0].routr"),
        (with("ip = ", "ipp = 1\nip = "), "host[0].ipp"),
        (format!("{GOOD}[http]\nport = 80\n"), "http.port"),
        (
            format!("{GOOD}[[class]]\nname = \"x\"\nmac_prefx = \"00\"\n"),
            "class[0].mac_prefx",
        ),
    ];
    for (text, path) in cases {
        unknown_key(&text, path);
    }
}

#[test]
fn a_reload_keeps_the_running_start_settings_and_takes_the_live_ones() {
    let running = parse(GOOD).expect("valid");
    let mut same = parse(GOOD).expect("valid");
    assert!(
        same.keep_start(&running.start).is_empty(),
        "nothing changed"
    );

    let edited = GOOD
        .replace("/tmp/x.journal", "/tmp/y.journal")
        .replace("\"127.0.0.1:5353\", ", "")
        .replace("[dns]\n", "[dns]\nupstream_timeout_ms = 500\n")
        .replace("lease_time = 600", "lease_time = 900")
        .replace("\"Printer\"", "\"scanner\"");
    let mut new = parse(&edited).expect("valid");
    let changed = new.keep_start(&running.start);
    assert_eq!(
        changed,
        [
            "lease_file",
            "ddns_queue",
            "dns.listen",
            "dns.upstream_timeout_ms",
            "dns.update_journal"
        ],
        "each start-only change is named (the DDNS queue and update journal follow the lease file)"
    );
    assert_eq!(new.start, running.start, "the running start settings stay");
    assert_eq!(
        new.subnets[0].lease_time, 900,
        "a live setting takes effect"
    );
    assert_eq!(new.reservations[0].name.as_deref(), Some("scanner"));
}

#[test]
fn start_settings_compare_key_by_key() {
    let a = parse(GOOD).expect("valid").start;
    let mut b = a.clone();
    b.dhcp_port = 6767;
    b.dns.http.rate_limit = 5;
    b.dns.tsig_keys.clear();
    b.ddns.queue_file = "/elsewhere".into();
    assert_eq!(a.changed(&b), ["dhcp_port", "ddns_queue", "http"]);
}

#[test]
fn defaults_come_from_the_table() {
    let c = parse(GOOD).expect("valid");
    assert_eq!(
        c.start.ddns.queue_file,
        PathBuf::from("/tmp/x.journal.ddns")
    );
    assert_eq!(
        c.start.dns.update_journal,
        PathBuf::from("/tmp/x.journal.dns")
    );
    assert_eq!(c.start.dns.ttl, defaults::DNS_TTL);
    assert_eq!(c.start.dhcp_port, defaults::DHCP_PORT);
    assert_eq!(c.offer_hold, defaults::OFFER_HOLD);
    assert_eq!(c.start.dns.http.rate_limit, defaults::HTTP_RATE_LIMIT);
    assert_eq!(c.dhcp.relay_max_hops, defaults::RELAY_MAX_HOPS);
    let keys: Vec<&str> = defaults::table().iter().map(|(k, _)| *k).collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "a key twice in the table");
}

/// README's config reference: (dotted key, default as written, backticks removed), for rows
/// whose keys and defaults pair up. A section row (`**`[dns]`**`) or a table before the keys
/// (`` `[http]` `ttl` ``) gives the prefix.
fn readme_defaults() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find("## Configuration reference")
        .expect("the section");
    let section = &readme[start..];
    let end = section[3..].find("\n#").map_or(section.len(), |i| i + 3);
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let (mut prefix, mut out) = (String::new(), Vec::new());
    for row in section[..end].lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (keys, default) = (cells[1], cells[2]);
        if keys.starts_with("**") {
            let table = ticked(keys).into_iter().next().unwrap_or_default();
            prefix = table.trim_matches(['[', ']']).to_string();
            continue;
        }
        let mut names = ticked(keys);
        let mut row_prefix = prefix.clone();
        if names.first().is_some_and(|n| n.starts_with('[')) {
            row_prefix = names.remove(0).trim_matches(['[', ']']).to_string();
        }
        let values: Vec<&str> = if names.len() > 1 {
            default.split(", ").collect()
        } else {
            vec![default]
        };
        if values.len() != names.len() || default.is_empty() {
            continue;
        }
        for (name, value) in names.iter().zip(values) {
            let key = match row_prefix.as_str() {
                "" => name.clone(),
                p => format!("{p}.{name}"),
            };
            out.push((key, value.replace('`', "")));
        }
    }
    out
}

#[test]
fn the_readme_documents_every_default_of_the_table() {
    let readme = readme_defaults();
    assert!(
        readme.len() > 30,
        "the README table was not read: {readme:?}"
    );
    for (key, value) in defaults::table() {
        let documented = readme.iter().find(|(k, _)| k == key);
        let Some((_, doc)) = documented else {
            panic!("README's config reference has no default for `{key}`");
        };
        assert_eq!(*doc, value, "README's default of `{key}`");
    }
}

#[test]
fn dhcp_script_needs_an_absolute_path_and_a_sane_timeout() {
    assert_eq!(parse(GOOD).expect("valid").start.dhcp_script, None);
    let with = |extra: &str| parse(&GOOD.replacen("[dns]", &format!("{extra}\n[dns]"), 1));
    let c = with("dhcp_script = \"/usr/local/bin/hook\"").expect("valid");
    let s = c.start.dhcp_script.expect("script");
    assert_eq!(
        (s.path.to_str(), s.timeout),
        (Some("/usr/local/bin/hook"), Duration::from_secs(10))
    );
    let c = with("dhcp_script = \"/x\"\ndhcp_script_timeout = 3").expect("valid");
    let s = c.start.dhcp_script.expect("script");
    assert_eq!(s.timeout, Duration::from_secs(3));
    let c = with("dhcp_script = \"/x\"\ndhcp_script_on_renewal = true").expect("valid");
    assert!(c.start.dhcp_script.expect("script").on_renewal);
    let e = with("dhcp_script = \"hook.sh\"")
        .expect_err("relative")
        .to_string();
    assert!(
        e.contains("dhcp_script = \"hook.sh\": must be an absolute path"),
        "{e}"
    );
    let e = with("dhcp_script = \"/x\"\ndhcp_script_timeout = 0")
        .expect_err("0")
        .to_string();
    assert!(
        e.contains("dhcp_script_timeout = 0: must be 1 to 3600"),
        "{e}"
    );
}

#[test]
fn lease_database_is_a_start_only_section_with_checked_url_and_timeouts() {
    assert_eq!(parse(GOOD).expect("valid").start.lease_database, None);
    let with = |extra: &str| parse(&format!("{GOOD}\n[lease_database]\n{extra}\n"));
    let c = with("url = \"postgresql://leasedns@127.0.0.1:5432/leases\"").expect("valid");
    let db = c.start.lease_database.clone().expect("database");
    assert_eq!(db.connect_timeout, Duration::from_millis(3000));
    assert_eq!(db.statement_timeout, Duration::from_millis(5000));
    assert_eq!(db.password_file, None);
    // A changed database needs a restart, as every start-only setting.
    let mut other = c.start.clone();
    other.lease_database = None;
    assert_eq!(c.start.changed(&other), vec!["lease_database"]);
    let c = with("url = \"postgresql://h/x?sslmode=require\"\ntls_ca_file = \"/etc/ca.pem\"")
        .expect("TLS");
    let db = c.start.lease_database.expect("database");
    assert_eq!(db.tls_ca_file, Some("/etc/ca.pem".into()));
    let e = with("url = \"postgresql://h/x?sslmode=disable\"\ntls_ca_file = \"/etc/ca.pem\"")
        .expect_err("contradiction")
        .to_string();
    assert!(
        e.contains("lease_database.tls_ca_file = \"/etc/ca.pem\": needs TLS"),
        "{e}"
    );
    assert!(e.starts_with("test.toml:"), "{e}");
    let e = with("url = \"postgresql://h/x\"\ntls_ca_file = \"ca.pem\"")
        .expect_err("relative")
        .to_string();
    assert!(e.contains("must be an absolute path"), "{e}");
    let e = with("url = \"postgresql://h/x\"\nconnect_timeout_ms = 5")
        .expect_err("short")
        .to_string();
    assert!(
        e.contains("lease_database.connect_timeout_ms = 5: must be 100 to 60000"),
        "{e}"
    );
    let e = with("url = \"postgresql://h/x\"\npassword_file = \"pw\"")
        .expect_err("relative")
        .to_string();
    assert!(
        e.contains("lease_database.password_file = \"pw\": must be an absolute path"),
        "{e}"
    );
    let e = with("url = \"postgresql://h:notaport/x\"")
        .expect_err("bad")
        .to_string();
    assert!(e.contains("lease_database.url = "), "{e}");
}
