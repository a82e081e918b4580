//! Cost of the DHCP server's per-packet work, for profiling: N relayed DORA exchanges (distinct
//! MACs, giaddr set, as `perfdhcp -l` sends them) through exactly the service's path: decode,
//! engine, encode of the reply, and the journal records of the lease changes (durability
//! "none", into a temporary directory). No sockets.
//!
//! `cargo build --release --example dora_cost`, then
//! `valgrind --tool=callgrind target/release/examples/dora_cost 20000` and divide the
//! instruction count by N (the setup is a few hundred thousand instructions). With a second
//! argument `check` it also prints checksums of every reply and of the journal, to compare
//! two versions' output.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use leasedns::clock::UnixTime;
use leasedns::config::{Config, Durability};
use leasedns::dhcp::Iface;
use leasedns::dhcp::engine::Engine;
use leasedns::dhcp::wire;
use leasedns::lease::LeaseChange;
use leasedns::lease::journal::Journal;

const SRV_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const RELAY_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// The parameter request list perfdhcp sends.
const PRL: [u8; 7] = [1, 28, 2, 3, 15, 6, 12];
/// DORA exchanges per journal batch (the service writes once per batch of datagrams).
const BATCH: usize = 64;

fn config(dir: &std::path::Path) -> Config {
    let text = format!(
        r#"
domain = "lan"
lease_file = "{}/leases.journal"
durability = "none"

[dns]
listen = ["{SRV_IP}:53"]

[[subnet]]
network = "10.200.0.0/14"
pool_start = "10.200.1.0"
pool_end = "10.203.255.254"
router = "{SRV_IP}"
dns_servers = ["{SRV_IP}"]
lease_time = 3600
"#,
        dir.display()
    );
    Config::parse(&text, &dir.join("leasedns.toml")).expect("valid config")
}

/// A relayed BOOTREQUEST with the given options (End and padding added); `set_client` makes
/// it client `n`'s.
fn packet(opts: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 240];
    p[..4].copy_from_slice(&[1, 1, 6, 1]);
    p[24..28].copy_from_slice(&RELAY_IP.octets());
    p[28..30].copy_from_slice(&[0x02, 0x00]);
    p[236..240].copy_from_slice(&[99, 130, 83, 99]);
    p.extend_from_slice(opts);
    p.push(255);
    p.resize(300, 0);
    p
}

/// Client `n`: its xid and MAC.
fn set_client(p: &mut [u8], n: u32) {
    p[4..8].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_be_bytes());
    p[30..34].copy_from_slice(&n.to_be_bytes());
}

fn discover() -> Vec<u8> {
    let mut o = vec![53, 1, 1, 55, PRL.len() as u8];
    o.extend_from_slice(&PRL);
    packet(&o)
}

/// A REQUEST; the requested address (option 50) is at `REQUESTED_AT`.
fn request() -> Vec<u8> {
    let mut o = vec![53, 1, 3, 50, 4, 0, 0, 0, 0, 54, 4];
    o.extend_from_slice(&SRV_IP.octets());
    o.extend_from_slice(&[55, PRL.len() as u8]);
    o.extend_from_slice(&PRL);
    packet(&o)
}
const REQUESTED_AT: usize = 245;

/// Run one request through decode, engine and encode; the reply's bytes.
fn serve(
    engine: &mut Engine,
    now: UnixTime,
    iface: &Iface,
    bytes: &[u8],
    changes: &mut Vec<LeaseChange>,
) -> Vec<u8> {
    let req = wire::decode(bytes).expect("decodes");
    let out = engine.handle(now, &req, iface);
    changes.extend(out.changes);
    let r = out.reply.expect("a reply");
    wire::encode_ordered(&r.msg, r.max_size, &r.order).expect("encodes")
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("dora_cost-{}", std::process::id()));
    let cfg = Arc::new(config(&dir));
    let t0 = UnixTime(1_700_000_000);
    let (mut journal, leases) =
        Journal::open(&cfg.start.lease_file, Durability::None, t0).expect("journal");
    let mut engine = Engine::new(cfg.clone(), leases, t0);
    let iface = Iface {
        index: 2,
        name: "vs0".into(),
        addrs: vec![(SRV_IP, 14)],
    };
    // Two packets, made client i's in place (perfdhcp's work, not ours: keep it small).
    let (mut d, mut req) = (discover(), request());
    let mut changes = Vec::new();
    let mut sent = 0usize;
    // FNV-1a of every reply byte: the same figure before and after a change means the same
    // replies.
    // (Only with a second argument `check`, so that it stays out of the count otherwise.)
    let check = std::env::args().nth(2).as_deref() == Some("check");
    let mut fnv: u64 = 0xcbf2_9ce4_8422_2325;
    let start = Instant::now();
    for i in 0..n as usize {
        let now = t0.plus(i as u64 / 4000);
        set_client(&mut d, i as u32);
        let offer = serve(&mut engine, now, &iface, &d, &mut changes);
        set_client(&mut req, i as u32);
        req[REQUESTED_AT..REQUESTED_AT + 4].copy_from_slice(&offer[16..20]);
        let ack = serve(&mut engine, now, &iface, &req, &mut changes);
        assert_eq!(ack[16..20], offer[16..20], "ACK for the offered address");
        sent += offer.len() + ack.len();
        if check {
            for b in offer.iter().chain(&ack) {
                fnv = (fnv ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        if (i + 1) % BATCH == 0 || i + 1 == n as usize {
            journal.write(now, &changes).expect("journal write");
            journal.sync(Some(now)).expect("journal sync");
            changes.clear();
        }
    }
    let took = start.elapsed();
    println!(
        "{n} DORA in {:.1} ms: {:.2} us per DORA (wall, information only); {} reply bytes (fnv {fnv:016x}); {} records",
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e6 / f64::from(n),
        sent,
        journal.stats().records
    );
    let journal_bytes = std::fs::read(&cfg.start.lease_file).unwrap_or_default();
    let text = journal_bytes.split(|b| *b == 0).next().unwrap_or_default();
    let jfnv = text.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    println!("journal: {} bytes (fnv {jfnv:016x})", text.len());
    let _ = std::fs::remove_dir_all(&dir);
}
