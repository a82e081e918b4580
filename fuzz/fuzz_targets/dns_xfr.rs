//! Zone transfers: any message as a TCP query to `Transfers::answer`, from an allowed address
//! or not, unsigned or signed by a client with the transfer key. Invariants: no panic; a
//! refusal is left to the handler (None) unless the message is an AXFR/IXFR of our zone;
//! every message sent parses, carries the query's id, and a NOERROR transfer starts and ends
//! with the same SOA (RFC 5936 §2.2); each message of a signed one ends with a TSIG record.
//!
//! Input: [mode: u8][message]; mode bit 0: from the secondary's address; bit 1: signed with
//! the transfer key first.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::{RData, RecordType};
use leasedns::clock::{Clock, TestClock, UnixTime};
use leasedns::config::Config;
use leasedns::dns::names::{NameChange, NameIndex, Names};
use leasedns::dns::tsig::{Keyring, TsigKey, sign};
use leasedns::dns::update::tsig_key;
use leasedns::dns::wire::is_signed;
use leasedns::dns::xfr::Transfers;
use leasedns::dns::zone::zones_for;
use leasedns::lease::{ClientId, HwAddr, Lease, LeaseState};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
domain = "lan"
lease_file = "/nonexistent/leasedns-fuzz/leases.journal"

[dns]
listen = ["10.0.0.1:53"]
transfer_to = ["10.0.0.53"]
transfer_keys = ["xfr"]

[[dns.record]]
name = "_ipp._tcp"
type = "SRV"
value = "0 0 631 nas"

[[dns.record]]
name = "www"
type = "CNAME"
value = "nas"

[[host]]
mac = "52:54:00:00:00:01"
ip = "10.0.0.5"
name = "nas"

[[tsig_key]]
name = "xfr"
algorithm = "hmac-sha256"
secret = "bGVhc2VkbnMtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyE="

[[subnet]]
network = "10.0.0.0/24"
pool_start = "10.0.0.100"
pool_end = "10.0.0.200"
"#;

const NOW: u64 = 1_700_000_000;

struct World {
    transfers: Transfers,
    keyring: Keyring,
    key: TsigKey,
}

fn world() -> &'static World {
    static WORLD: std::sync::OnceLock<World> = std::sync::OnceLock::new();
    WORLD.get_or_init(|| {
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
        let zones = zones_for(&cfg, names, clock).expect("zones");
        let keys: Vec<TsigKey> = cfg
            .start
            .dns
            .tsig_keys
            .iter()
            .filter_map(tsig_key)
            .collect();
        World {
            transfers: Transfers::new(
                &zones,
                cfg.start.dns.transfer_to.clone(),
                &cfg.start.dns.transfer_keys,
            ),
            key: keys[0].clone(),
            // Room for every signed input of a run: a replay is refused, never a panic.
            keyring: Keyring::with_replay_capacity(keys, 1 << 20),
        }
    })
}

fn soa_serial(rdata: &RData) -> Option<u32> {
    match rdata {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let w = world();
    let client = if mode & 1 == 1 {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 53))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 77))
    };
    let signed = mode & 2 == 2;
    let query = if signed {
        match sign(bytes, &w.key, NOW) {
            Ok(s) => s.bytes,
            Err(_) => return,
        }
    } else {
        bytes.to_vec()
    };
    // Signed as far as the message's own counts go (a TSIG after trailing junk is not in it).
    let signed = signed && is_signed(&query);
    let Some(replies) = w.transfers.answer(&query, client, &w.keyring, NOW) else {
        return;
    };
    let request = Message::from_vec(&query).expect("only a parsed query is answered");
    let qtype = request.queries[0].query_type();
    assert!(matches!(qtype, RecordType::AXFR | RecordType::IXFR));
    assert!(!replies.is_empty());
    let parsed: Vec<Message> = replies
        .iter()
        .map(|r| Message::from_vec(r).expect("every message parses"))
        .collect();
    for raw in &replies {
        assert_eq!(raw[..2], query[..2], "another id");
        assert!(raw.len() <= usize::from(u16::MAX));
        if signed {
            assert!(is_signed(raw), "a message of a signed transfer unsigned");
        }
    }
    if parsed[0].metadata.response_code == ResponseCode::NoError {
        let first = parsed[0].answers.first().and_then(|r| soa_serial(&r.data));
        let last = parsed
            .last()
            .and_then(|m| m.answers.last())
            .and_then(|r| soa_serial(&r.data));
        assert!(first.is_some() && first == last, "not SOA ... SOA");
    }
});
