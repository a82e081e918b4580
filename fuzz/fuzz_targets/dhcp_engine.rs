//! Decode plus engine: a sequence of datagrams (any bytes) from a few clients, with the clock
//! moving on between them, through `wire::decode` and `Engine::handle` on a small pool. After
//! every step: no address is held by two leases, every lease's address is one the config may
//! hand out, and every reply encodes (or is too large for the client even without its optional
//! options, which the service drops and counts) to a datagram that decodes again as a BOOTREPLY
//! carrying the address the engine chose.
//!
//! Input: records of [time step: u8][interface: u8][length: u16 BE][datagram]; a time step of
//! 255 runs the expiry sweep instead.
#![no_main]

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use dhcproto::Decodable;
use dhcproto::v4::{Message, Opcode};
use leasedns::clock::UnixTime;
use leasedns::config::Config;
use leasedns::dhcp::Iface;
use leasedns::dhcp::engine::Engine;
use leasedns::dhcp::wire;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
domain = "lan"
lease_file = "/nonexistent/leasedns-fuzz/leases.journal"
durability = "none"
offer_hold = 30
decline_hold = 120

[[subnet]]
network = "10.0.0.0/24"
pool_start = "10.0.0.10"
pool_end = "10.0.0.17"
router = "10.0.0.1"
lease_time = 120
rapid_commit = true

[[subnet]]
network = "10.9.0.0/24"
pool_start = "10.9.0.100"
pool_end = "10.9.0.103"
lease_time = 300
authoritative = false

[[host]]
mac = "52:54:00:12:34:56"
ip = "10.0.0.5"
name = "fixed"

[[host]]
client_id = "01aabbccddeeff"
ip = "10.0.0.6"

[[class]]
name = "phones"
vendor_class = "android"
pool_start = "10.0.0.16"
pool_end = "10.0.0.17"
lease_time = 60
"#;

fn config() -> Arc<Config> {
    static CFG: OnceLock<Arc<Config>> = OnceLock::new();
    CFG.get_or_init(|| Arc::new(Config::parse(CONFIG, Path::new("fuzz.toml")).expect("config")))
        .clone()
}

/// An address the config may hand out: a pool, a reservation, inside a served subnet.
fn assignable(cfg: &Config, ip: Ipv4Addr) -> bool {
    cfg.subnets.iter().any(|s| s.contains(ip))
}

fn ifaces() -> [Iface; 2] {
    [
        Iface {
            index: 2,
            name: "lan0".into(),
            addrs: vec![(Ipv4Addr::new(10, 0, 0, 1), 24)],
        },
        Iface {
            index: 3,
            name: "lan1".into(),
            addrs: vec![(Ipv4Addr::new(10, 9, 0, 1), 24)],
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let cfg = config();
    let ifaces = ifaces();
    let mut now = UnixTime(1_700_000_000);
    let mut engine = Engine::new(cfg.clone(), Vec::new(), now);
    let mut rest = data;
    while rest.len() >= 4 {
        let (step, iface, len) = (rest[0], rest[1], u16::from_be_bytes([rest[2], rest[3]]));
        let len = usize::from(len).min(rest.len() - 4);
        let (packet, tail) = rest[4..].split_at(len);
        rest = tail;
        if step == 255 {
            now = now.plus(200);
            let _ = engine.expire(now);
            check(&cfg, &engine);
            continue;
        }
        now = now.plus(u64::from(step));
        let Ok(req) = wire::decode(packet) else {
            continue;
        };
        let out = engine.handle(now, &req, &ifaces[usize::from(iface & 1)]);
        if let Some(reply) = out.reply {
            let bytes = match wire::encode_ordered(&reply.msg, reply.max_size, &reply.order) {
                Ok(bytes) => bytes,
                // Options the reply must carry (an echoed relay option 82 of a few hundred
                // bytes) that cannot fit the client's size even with every optional one left
                // out: the service counts it as a send error and drops the reply (found by this
                // target; a request that large came without option 57).
                Err(wire::EncodeError::TooLarge { len, limit }) => {
                    assert!(len > limit);
                    check(&cfg, &engine);
                    continue;
                }
                Err(e) => panic!("reply does not encode: {e}"),
            };
            assert!(
                bytes.len() <= reply.max_size.max(576),
                "reply over the client's size"
            );
            let msg = Message::from_bytes(&bytes).expect("every reply decodes");
            assert_eq!(msg.opcode(), Opcode::BootReply);
            assert_eq!(msg.xid(), req.xid);
            let yiaddr = msg.yiaddr();
            assert!(
                yiaddr.is_unspecified() || assignable(&cfg, yiaddr),
                "offered {yiaddr}"
            );
        }
        check(&cfg, &engine);
    }
});

/// No address held twice; every lease inside a served subnet.
fn check(cfg: &Config, engine: &Engine) {
    let leases = engine.leases();
    let mut seen = HashSet::new();
    for l in &leases {
        assert!(seen.insert(l.ip), "{} held by two leases: {leases:?}", l.ip);
        assert!(
            assignable(cfg, l.ip),
            "lease on {} outside every subnet",
            l.ip
        );
    }
}
