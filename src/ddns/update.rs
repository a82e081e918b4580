//! What to send for one pending job: the RFC 2136 UPDATE of each step, with the RFC 4703
//! conflict rules (DHCID prerequisites), and which step follows a response code. Pure: no
//! sockets, no clock.

use std::net::Ipv4Addr;

use hickory_server::proto::op::{Message, MessageType, OpCode, Query};
use hickory_server::proto::rr::rdata::{A, NULL, PTR};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::clock::UnixTime;
use crate::config::DdnsZone;
use crate::ddns::dhcid;

/// What a job does to DNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A lease was granted (or renamed): add A + DHCID for the name, PTR + DHCID for the address.
    Add,
    /// The lease ended: remove both, each only if it is still ours.
    Remove,
    /// Only the reverse side ends (the client kept its name at another address).
    RemoveReverse,
}

/// One pending change at the primaries, self-contained so it can be replayed after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub op: Op,
    /// Lowercase, no trailing dot.
    pub fqdn: String,
    pub ip: Ipv4Addr,
    /// DHCID RDATA of the client for `fqdn`.
    pub dhcid: Vec<u8>,
    /// When the lease ends (the TTL we send never outlives it).
    pub expires: UnixTime,
}

/// One UPDATE message of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Prerequisite: the name does not exist. Add A and DHCID.
    FwdAdd,
    /// Prerequisite: the name's DHCID is ours. Replace the A RRset.
    FwdReplace,
    /// Replace the PTR and DHCID at the reverse name (no prerequisite, as Kea does).
    RevAdd,
    /// Prerequisite: the name's DHCID is ours. Delete its A and DHCID RRsets.
    FwdRemove,
    /// Prerequisite: the PTR points at our name. Delete the PTR and DHCID RRsets.
    RevRemove,
}

/// Where a step leads, given the response code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Next(Step),
    Done,
    /// RFC 4703: the name belongs to another client; nothing was changed.
    Conflict,
    /// Try the job again later (server trouble).
    Retry(String),
    /// Drop the job (the server refuses it; retrying will not help).
    Fail(String),
}

/// `d.c.b.a.in-addr.arpa`.
pub fn reverse_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

/// The configured zone with the longest name containing `name`.
pub fn zone_for<'a>(zones: &'a [DdnsZone], name: &str) -> Option<&'a DdnsZone> {
    zones
        .iter()
        .filter(|z| name == z.zone || name.ends_with(&format!(".{}", z.zone)))
        .max_by_key(|z| z.zone.len())
}

/// The first step of a job, given which sides have a zone.
pub fn first_step(op: Op, forward: bool, reverse: bool) -> Option<Step> {
    match op {
        Op::Add if forward => Some(Step::FwdAdd),
        Op::Remove if forward => Some(Step::FwdRemove),
        Op::Add => reverse.then_some(Step::RevAdd),
        Op::Remove | Op::RemoveReverse => reverse.then_some(Step::RevRemove),
    }
}

/// Where `step` leads after the primary answered `rcode`; `reverse`: a reverse zone exists.
pub fn outcome(step: Step, rcode: u8, reverse: bool) -> Outcome {
    let after_forward = |add: bool| match (reverse, add) {
        (true, true) => Outcome::Next(Step::RevAdd),
        (true, false) => Outcome::Next(Step::RevRemove),
        (false, _) => Outcome::Done,
    };
    match (step, rcode) {
        (Step::FwdAdd | Step::FwdReplace, 0) => after_forward(true),
        (Step::FwdAdd, YXDOMAIN) => Outcome::Next(Step::FwdReplace),
        (Step::FwdReplace, NXRRSET) => Outcome::Conflict,
        (Step::RevAdd, 0) => Outcome::Done,
        // Gone already, or not ours: the reverse side has its own prerequisite.
        (Step::FwdRemove, 0 | NXDOMAIN | NXRRSET) => after_forward(false),
        (Step::RevRemove, 0 | NXDOMAIN | NXRRSET) => Outcome::Done,
        (_, SERVFAIL) => Outcome::Retry("SERVFAIL".into()),
        (_, code) => Outcome::Fail(rcode_name(code)),
    }
}

const SERVFAIL: u8 = 2;
const NXDOMAIN: u8 = 3;
const YXDOMAIN: u8 = 6;
const NXRRSET: u8 = 8;

pub fn rcode_name(code: u8) -> String {
    let name = match code {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => return format!("RCODE{code}"),
    };
    name.to_string()
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a usable DNS name")]
pub struct BadName(String);

fn name(s: &str) -> Result<Name, BadName> {
    let mut n = Name::from_ascii(s).map_err(|_| BadName(s.to_string()))?;
    n.set_fqdn(true);
    Ok(n)
}

/// An RR with no data: a prerequisite or a deletion, told apart by `class`.
fn empty(owner: &Name, rtype: RecordType, class: DNSClass) -> Record {
    let mut r = Record::update0(owner.clone(), 0, rtype).into_record_of_rdata();
    r.dns_class = class;
    r
}

fn dhcid_record(owner: &Name, ttl: u32, rdata: &[u8]) -> Record {
    let data = RData::Unknown {
        code: RecordType::Unknown(dhcid::RTYPE),
        rdata: NULL::with(rdata.to_vec()),
    };
    Record::from_rdata(owner.clone(), ttl, data)
}

/// The UPDATE message of `step` for `job` in `zone`, with message ID `id`; `ttl` for additions.
pub fn message(step: Step, job: &Job, zone: &str, ttl: u32, id: u16) -> Result<Message, BadName> {
    let fqdn = name(&job.fqdn)?;
    let rev = name(&reverse_name(job.ip))?;
    let mut m = Message::new(id, MessageType::Query, OpCode::Update);
    let mut q = Query::new();
    q.set_name(name(zone)?)
        .set_query_type(RecordType::SOA)
        .set_query_class(DNSClass::IN);
    m.add_query(q);
    let (prereqs, updates): (Vec<Record>, Vec<Record>) = match step {
        Step::FwdAdd => (
            vec![empty(&fqdn, RecordType::ANY, DNSClass::NONE)],
            vec![
                Record::from_rdata(fqdn.clone(), ttl, RData::A(A(job.ip))),
                dhcid_record(&fqdn, ttl, &job.dhcid),
            ],
        ),
        Step::FwdReplace => (
            vec![dhcid_record(&fqdn, 0, &job.dhcid)],
            vec![
                empty(&fqdn, RecordType::A, DNSClass::ANY),
                Record::from_rdata(fqdn.clone(), ttl, RData::A(A(job.ip))),
            ],
        ),
        Step::RevAdd => (
            vec![],
            vec![
                empty(&rev, RecordType::PTR, DNSClass::ANY),
                empty(&rev, RecordType::Unknown(dhcid::RTYPE), DNSClass::ANY),
                Record::from_rdata(rev.clone(), ttl, RData::PTR(PTR(fqdn.clone()))),
                dhcid_record(&rev, ttl, &job.dhcid),
            ],
        ),
        Step::FwdRemove => (
            vec![dhcid_record(&fqdn, 0, &job.dhcid)],
            vec![
                empty(&fqdn, RecordType::A, DNSClass::ANY),
                empty(&fqdn, RecordType::Unknown(dhcid::RTYPE), DNSClass::ANY),
            ],
        ),
        Step::RevRemove => (
            vec![Record::from_rdata(rev.clone(), 0, RData::PTR(PTR(fqdn)))],
            vec![
                empty(&rev, RecordType::PTR, DNSClass::ANY),
                empty(&rev, RecordType::Unknown(dhcid::RTYPE), DNSClass::ANY),
            ],
        ),
    };
    m.answers = prereqs;
    m.authorities = updates;
    Ok(m)
}

/// The TTL for records of a lease ending at `expires`: the zone's, cut to the time left.
pub fn ttl(zone_ttl: u32, expires: UnixTime, now: UnixTime) -> u32 {
    let left = u32::try_from(now.until(expires)).unwrap_or(u32::MAX);
    zone_ttl.min(left).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(op: Op) -> Job {
        Job {
            op,
            fqdn: "alpha.lan".into(),
            ip: Ipv4Addr::new(10, 0, 0, 100),
            dhcid: dhcid::rdata(dhcid::ID_HWADDR, &[1, 2, 0, 0, 0, 0, 1], "alpha.lan"),
            expires: UnixTime(1000),
        }
    }

    /// (name, type, class, ttl, rdata) of each record, read back from the wire.
    fn section(records: &[Record]) -> Vec<(String, u16, u16, u32, Vec<u8>)> {
        use hickory_server::proto::serialize::binary::{BinEncodable, BinEncoder};
        records
            .iter()
            .map(|r| {
                let mut buf = Vec::new();
                let mut enc = BinEncoder::new(&mut buf);
                r.data.emit(&mut enc).expect("emits");
                (
                    r.name.to_ascii(),
                    u16::from(r.record_type()),
                    u16::from(r.dns_class),
                    r.ttl,
                    buf,
                )
            })
            .collect()
    }

    fn wire_round_trip(step: Step, j: &Job) -> Message {
        let m = message(step, j, "lan", 120, 7).expect("builds");
        let bytes = m.to_vec().expect("encodes");
        assert_eq!(
            &bytes[0..4],
            &[0, 7, 0x28, 0],
            "id 7, opcode UPDATE, not a response"
        );
        Message::from_vec(&bytes).expect("decodes")
    }

    #[test]
    fn add_requires_nxdomain_and_adds_a_and_dhcid() {
        let j = job(Op::Add);
        let m = wire_round_trip(Step::FwdAdd, &j);
        assert_eq!(m.queries[0].name().to_ascii(), "lan.");
        assert_eq!(m.queries[0].query_type(), RecordType::SOA);
        assert_eq!(
            section(&m.answers),
            vec![("alpha.lan.".into(), 255, 254, 0, vec![])],
            "prerequisite: name not in use (ANY, class NONE)"
        );
        assert_eq!(
            section(&m.authorities),
            vec![
                ("alpha.lan.".into(), 1, 1, 120, vec![10, 0, 0, 100]),
                ("alpha.lan.".into(), 49, 1, 120, j.dhcid.clone()),
            ]
        );
    }

    #[test]
    fn replace_requires_our_dhcid() {
        let j = job(Op::Add);
        let m = wire_round_trip(Step::FwdReplace, &j);
        assert_eq!(
            section(&m.answers),
            vec![("alpha.lan.".into(), 49, 1, 0, j.dhcid.clone())]
        );
        assert_eq!(
            section(&m.authorities),
            vec![
                ("alpha.lan.".into(), 1, 255, 0, vec![]),
                ("alpha.lan.".into(), 1, 1, 120, vec![10, 0, 0, 100]),
            ]
        );
    }

    #[test]
    fn reverse_add_replaces_ptr_and_dhcid() {
        let j = job(Op::Add);
        let m = message(Step::RevAdd, &j, "0.0.10.in-addr.arpa", 60, 1).expect("builds");
        let rev = "100.0.0.10.in-addr.arpa.".to_string();
        assert!(m.answers.is_empty());
        let ptr_rdata = dhcid::wire_name("alpha.lan");
        assert_eq!(
            section(&m.authorities),
            vec![
                (rev.clone(), 12, 255, 0, vec![]),
                (rev.clone(), 49, 255, 0, vec![]),
                (rev.clone(), 12, 1, 60, ptr_rdata),
                (rev, 49, 1, 60, j.dhcid.clone()),
            ]
        );
    }

    #[test]
    fn removals_carry_ownership_prerequisites() {
        let j = job(Op::Remove);
        let fwd = wire_round_trip(Step::FwdRemove, &j);
        assert_eq!(
            section(&fwd.answers),
            vec![("alpha.lan.".into(), 49, 1, 0, j.dhcid.clone())]
        );
        assert_eq!(
            section(&fwd.authorities),
            vec![
                ("alpha.lan.".into(), 1, 255, 0, vec![]),
                ("alpha.lan.".into(), 49, 255, 0, vec![]),
            ]
        );
        let rev = message(Step::RevRemove, &j, "10.in-addr.arpa", 60, 1).expect("builds");
        assert_eq!(
            section(&rev.answers),
            vec![(
                "100.0.0.10.in-addr.arpa.".into(),
                12,
                1,
                0,
                dhcid::wire_name("alpha.lan")
            )]
        );
    }

    #[test]
    fn conflict_rules_follow_rfc_4703() {
        // Name free: added, then the reverse.
        assert_eq!(outcome(Step::FwdAdd, 0, true), Outcome::Next(Step::RevAdd));
        // Name exists: try again, only if the DHCID is ours.
        assert_eq!(
            outcome(Step::FwdAdd, 6, true),
            Outcome::Next(Step::FwdReplace)
        );
        assert_eq!(outcome(Step::FwdReplace, 0, false), Outcome::Done);
        // Another client's name: leave it alone, and do not claim the reverse either.
        assert_eq!(outcome(Step::FwdReplace, 8, true), Outcome::Conflict);
        // Removal: not ours or gone still cleans our PTR (which has its own prerequisite).
        assert_eq!(
            outcome(Step::FwdRemove, 8, true),
            Outcome::Next(Step::RevRemove)
        );
        assert_eq!(outcome(Step::RevRemove, 8, true), Outcome::Done);
        assert_eq!(
            outcome(Step::RevAdd, 2, true),
            Outcome::Retry("SERVFAIL".into())
        );
        assert_eq!(
            outcome(Step::FwdAdd, 5, true),
            Outcome::Fail("REFUSED".into())
        );
        assert_eq!(
            outcome(Step::FwdAdd, 9, true),
            Outcome::Fail("NOTAUTH".into())
        );
    }

    #[test]
    fn first_steps_and_zone_choice() {
        assert_eq!(first_step(Op::Add, true, true), Some(Step::FwdAdd));
        assert_eq!(first_step(Op::Add, false, true), Some(Step::RevAdd));
        assert_eq!(
            first_step(Op::RemoveReverse, true, true),
            Some(Step::RevRemove)
        );
        assert_eq!(first_step(Op::Remove, false, false), None);
        let z = |zone: &str| DdnsZone {
            zone: zone.into(),
            primary: "127.0.0.1:53".parse().expect("addr"),
            key: None,
            ttl: 300,
        };
        let zones = vec![z("lan"), z("10.in-addr.arpa"), z("0.0.10.in-addr.arpa")];
        assert_eq!(
            zone_for(&zones, "alpha.lan").map(|z| z.zone.as_str()),
            Some("lan")
        );
        assert_eq!(zone_for(&zones, "alpha.plan"), None);
        assert_eq!(
            zone_for(&zones, &reverse_name(Ipv4Addr::new(10, 0, 0, 7))).map(|z| z.zone.as_str()),
            Some("0.0.10.in-addr.arpa")
        );
        assert_eq!(
            zone_for(&zones, &reverse_name(Ipv4Addr::new(10, 9, 0, 7))).map(|z| z.zone.as_str()),
            Some("10.in-addr.arpa")
        );
    }

    #[test]
    fn ttl_never_outlives_the_lease() {
        assert_eq!(ttl(300, UnixTime(1000), UnixTime(100)), 300);
        assert_eq!(ttl(300, UnixTime(1000), UnixTime(900)), 100);
        assert_eq!(ttl(300, UnixTime(1000), UnixTime(2000)), 1);
    }
}
