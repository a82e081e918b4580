//! RFC 2136 UPDATE with TSIG: any datagram through the TSIG check and the update handler, as
//! the DNS listeners hand it over. Each input is tried twice: as it came (unsigned, forged or
//! malformed: it must change nothing), and, when it parses as a DNS message, signed with a
//! configured key at the handler's time (so prerequisites, policy and updates are reached).
//! Invariants: no panic; a request that is not validly signed never changes the zone (the SOA
//! serial stays); a config name (`router.lan`) is never taken over by a key without override.
//!
//! One handler lives across inputs (as in the daemon: records accumulate, the replay memory
//! fills); its clock moves one second per input, so signed requests stay inside the TSIG
//! window and the replay memory holds only live entries.
//!
//! Input: [key index: u8][message bytes].
#![no_main]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::Message;
use hickory_server::proto::rr::{LowerName, Name, RData};
use hickory_server::server::Request;
use leasedns::clock::{Clock, TestClock};
use leasedns::config::{Config, Durability};
use leasedns::dns::dynamic::{DynamicStore, view};
use leasedns::dns::journal::UpdateJournal;
use leasedns::dns::names::{NameIndex, Names, SharedNames};
use leasedns::dns::tsig::sign_request;
use leasedns::dns::update::{UpdateHandler, tsig_key};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
domain = "lan"
lease_file = "/nonexistent/leasedns-fuzz/leases.journal"

[[host]]
mac = "52:54:00:00:00:01"
ip = "10.0.0.1"
name = "router"

[[subnet]]
network = "10.0.0.0/24"
pool_start = "10.0.0.100"
pool_end = "10.0.0.200"

[[tsig_key]]
name = "acme"
algorithm = "hmac-sha256"
secret = "bWFrZSB5b3VyIG93biB3aXRoIG9wZW5zc2wgcmFuZCAtYmFzZTY0IDMy"
allow = [ { prefix = "_acme-challenge", types = ["TXT"] } ]

[[tsig_key]]
name = "home"
algorithm = "hmac-sha1"
secret = "aG9tZSBzZWNyZXQ="
allow = [ { name = "@", subdomains = true, types = ["ANY"] } ]
"#;

const NOW: u64 = 1_700_000_000;

struct World {
    handler: UpdateHandler,
    names: SharedNames,
    keys: Vec<leasedns::dns::tsig::TsigKey>,
    clock: TestClock,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let cfg = Config::parse(CONFIG, Path::new("fuzz.toml")).expect("config");
    let names = NameIndex::new(Names::from_config(&cfg, Vec::new()));
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("dir");
    let (journal, _) =
        UpdateJournal::open(&dir.path().join("dns.journal"), Durability::None).expect("journal");
    let store = DynamicStore::new(journal, names.clone());
    let clock = TestClock::at(NOW);
    let zones = ["lan.", "0.0.10.in-addr.arpa."]
        .iter()
        .map(|z| LowerName::new(&Name::from_ascii(z).expect("zone")))
        .collect();
    let handler = UpdateHandler::new(
        &cfg.start.dns.tsig_keys,
        zones,
        Some(store),
        Arc::new(clock.clone()),
    );
    let keys = cfg
        .start
        .dns
        .tsig_keys
        .iter()
        .filter_map(tsig_key)
        .collect();
    World {
        handler,
        names,
        keys,
        clock,
        _dir: dir,
    }
}

fn serial(w: &World) -> u32 {
    w.names.read().serial()
}

fn router(w: &World) -> Vec<RData> {
    let name = Name::from_ascii("router.lan.").expect("name");
    let names = w.names.read();
    view(&names, &name, w.clock.now())
        .into_iter()
        .map(|(d, _)| d)
        .collect()
}

fn decide(w: &World, raw: Vec<u8>) -> Option<()> {
    let src: SocketAddr = "10.0.0.7:5300".parse().ok()?;
    let request = Request::from_bytes(raw, src, Protocol::Udp).ok()?;
    let _ = w.handler.decide(&request);
    Some(())
}

fn shared() -> &'static World {
    static WORLD: std::sync::OnceLock<World> = std::sync::OnceLock::new();
    WORLD.get_or_init(world)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, msg)) = data.split_first() else {
        return;
    };
    let w = shared();
    w.clock.advance(1);
    let now = w.clock.now().0;
    let (before, router_before) = (serial(&w), router(&w));
    decide(&w, msg.to_vec());
    assert_eq!(
        serial(&w),
        before,
        "an unsigned or forged UPDATE changed the zone"
    );
    let Ok(parsed) = Message::from_vec(msg) else {
        return;
    };
    let key = &w.keys[usize::from(which) % w.keys.len()];
    if let Ok(signed) = sign_request(&parsed, key, now) {
        decide(w, signed);
    }
    // Neither key may override: the reservation's name keeps its address.
    assert_eq!(
        router(&w),
        router_before,
        "a key without override took router.lan"
    );
});
