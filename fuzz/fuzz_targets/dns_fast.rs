//! The DNS fast paths: any datagram through the local-zone fast path (`FastPath::answer`) and
//! the forwarding cache's raw hit path (`Cache::answer`), and any DNS message stored in the
//! cache as an upstream answer (`Cache::put`) then read back. Invariants: no panic; every
//! answer written is a DNS response that parses, carries the query's id and question, and fits
//! what the client can take over UDP (512 bytes, or its EDNS size); the cache never holds more
//! than its capacity.
//!
//! Input: [mode: u8][bytes]; mode bit 0: the bytes are also stored as an upstream answer first.
#![no_main]

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Message, MessageType};
use leasedns::clock::{Clock, TestClock, UnixTime};
use leasedns::config::Config;
use leasedns::dns::fast::FastPath;
use leasedns::dns::forward::{Answer, Cache};
use leasedns::dns::names::{NameChange, NameIndex, Names};
use leasedns::dns::wire::{client_edns, udp_limit};
use leasedns::dns::zone::zones_for;
use leasedns::lease::{ClientId, HwAddr, Lease, LeaseState};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
domain = "lan"
lease_file = "/nonexistent/leasedns-fuzz/leases.journal"

[dns]
listen = ["10.0.0.1:53"]

[[dns.record]]
name = "printer"
type = "A"
value = "10.0.0.9"

[[dns.record]]
name = "_ipp._tcp"
type = "SRV"
value = "0 0 631 printer.lan"

[[dns.record]]
name = "www"
type = "CNAME"
value = "printer.lan"

[[host]]
mac = "52:54:00:00:00:01"
ip = "10.0.0.5"
name = "nas"

[[subnet]]
network = "10.0.0.0/24"
pool_start = "10.0.0.100"
pool_end = "10.0.0.200"
"#;

const NOW: u64 = 1_700_000_000;
const CAPACITY: usize = 8;

fn fast_path() -> &'static FastPath {
    static FAST: std::sync::OnceLock<FastPath> = std::sync::OnceLock::new();
    FAST.get_or_init(|| {
        let cfg = Config::parse(CONFIG, Path::new("fuzz.toml")).expect("config");
        let mut names = Names::from_config(&cfg, Vec::new());
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, 7]);
        names.change(NameChange::Recovered {
            now: UnixTime(NOW),
            leases: &[Lease {
                ip: Ipv4Addr::new(10, 0, 0, 100),
                client: ClientId::from_hw(&hw),
                hwaddr: hw,
                hostname: Some("laptop".into()),
                expires: UnixTime(NOW + 600),
                state: LeaseState::Bound,
            }],
        });
        let names = NameIndex::new(names);
        let clock: Arc<dyn Clock> = Arc::new(TestClock::at(NOW));
        let zones = zones_for(&cfg, names.clone(), clock.clone()).expect("zones");
        FastPath::new(&cfg, &zones, names, clock)
    })
}

/// `out` answers `query`: a response that parses, with the query's id and question, within
/// the client's UDP size.
fn check_answer(query: &[u8], out: &[u8]) {
    assert!(
        out.len() <= udp_limit(client_edns(query)),
        "{} bytes over UDP",
        out.len()
    );
    let reply = Message::from_vec(out).expect("every answer parses");
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert_eq!(out[..2], query[..2], "answer with another id");
    if let Ok(q) = Message::from_vec(query) {
        assert_eq!(
            reply.queries.len(),
            q.queries.len().min(1).max(reply.queries.len())
        );
        if let (Some(a), Some(b)) = (reply.queries.first(), q.queries.first()) {
            assert_eq!(a.query_type(), b.query_type());
            assert!(a.name().eq_case(b.name()), "question spelt differently");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let mut out = Vec::new();
    if fast_path().answer(bytes, &mut out) {
        check_answer(bytes, &out);
    }

    let start = Instant::now();
    let mut cache = Cache::new(CAPACITY);
    if mode & 1 == 1
        && let Ok(msg) = Message::from_vec(bytes)
        && let Some(query) = msg.queries.first().cloned()
    {
        let answer = Answer {
            rcode: msg.metadata.response_code,
            answers: msg.answers,
            authorities: msg.authorities,
            additionals: msg.additionals,
        };
        cache.put(&query, &answer, start);
        assert!(cache.len() <= CAPACITY);
        let _ = cache.get(&query, start + Duration::from_secs(1));
    }
    let later = start + Duration::from_secs(u64::from(mode >> 1));
    out.clear();
    if cache.answer(bytes, false, later, &mut out) {
        check_answer(bytes, &out);
    }
    out.clear();
    if cache.answer(bytes, true, later, &mut out) {
        Message::from_vec(&out).expect("a TCP answer parses");
    }
});
