//! hickory `ZoneHandler` for the local domain and the subnets' reverse zones, reading `names`.
//! Owns the mapping from the name index to DNS answers (A, PTR, SOA, NODATA, NXDOMAIN) and
//! their TTLs. Must not hold the names lock across `.await`, nor read the system clock (time
//! comes from the injected `Clock`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SOA, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, TSigResponseContext};
use hickory_server::server::{Request, RequestInfo};
use hickory_server::zone_handler::{
    AuthLookup, AxfrPolicy, LookupControlFlow, LookupError, LookupOptions, LookupRecords,
    ZoneHandler, ZoneType,
};

use crate::clock::{Clock, UnixTime};
use crate::config::{Config, RecordData, Subnet};
use crate::dns::names::{Found, Names, SharedNames};

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("domain {domain:?} is not a valid DNS name: {reason}")]
    BadDomain { domain: String, reason: String },
}

/// Which records a zone serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneKind {
    /// The local domain: A records by name, and the static records.
    Forward,
    /// An in-addr.arpa zone: PTR records by address.
    Reverse,
    /// The root: static names outside our zones (hosts file, absolute `[[dns.record]]` names)
    /// and, if enabled, bare names expanded into the domain. Anything else is REFUSED here
    /// (the server forwards it before it reaches this zone when upstreams exist).
    Overrides,
}

/// The RFC 1918 reverse zones: answered locally (NXDOMAIN unless a name is ours), never
/// forwarded.
pub const PRIVATE_REVERSE_ZONES: [&str; 3] = [
    "10.in-addr.arpa",
    "16.172.in-addr.arpa",
    "168.192.in-addr.arpa",
];

/// Length of a CNAME chain followed inside the index.
const MAX_CNAME_CHAIN: usize = 8;

/// One authoritative zone backed by the shared name index.
pub struct LocalZone {
    origin: LowerName,
    kind: ZoneKind,
    names: SharedNames,
    clock: Arc<dyn Clock>,
    /// TTL of static records and the cap for lease records; also the SOA negative-cache TTL.
    ttl: u32,
    /// SOA MNAME and RNAME.
    mname: Name,
    rname: Name,
    /// The local domain, lowercase, without trailing dot (for bare-name expansion).
    domain: String,
    expand_bare_names: bool,
}

/// Every zone the config makes us authoritative for: the local domain, one reverse zone per
/// distinct octet-aligned network enclosing a subnet, the RFC 1918 reverse zones, and the
/// root overrides zone (always last).
pub fn zones_for(
    cfg: &Config,
    names: SharedNames,
    clock: Arc<dyn Clock>,
) -> Result<Vec<Arc<LocalZone>>, ZoneError> {
    let domain = parse_name(&cfg.start.domain)?;
    let rname = parse_name(&format!("hostmaster.{}", cfg.start.domain))?;
    let mut reverse: BTreeSet<String> = cfg.subnets.iter().map(reverse_zone).collect();
    reverse.extend(private_reverse_zones());
    let origins = std::iter::once((cfg.start.domain.clone(), ZoneKind::Forward))
        .chain(reverse.into_iter().map(|z| (z, ZoneKind::Reverse)))
        .chain(std::iter::once((".".to_string(), ZoneKind::Overrides)));
    let mut zones = Vec::new();
    for (origin, kind) in origins {
        zones.push(Arc::new(LocalZone {
            origin: LowerName::new(&parse_name(&origin)?),
            kind,
            names: names.clone(),
            clock: clock.clone(),
            ttl: cfg.start.dns.ttl,
            mname: domain.clone(),
            rname: rname.clone(),
            domain: cfg.start.domain.clone(),
            expand_bare_names: cfg.start.dns.expand_bare_names,
        }));
    }
    Ok(zones)
}

/// 10/8, 172.16/12 (sixteen /16 zones) and 192.168/16, without trailing dot.
pub fn private_reverse_zones() -> Vec<String> {
    let mut zones = vec![
        PRIVATE_REVERSE_ZONES[0].to_string(),
        PRIVATE_REVERSE_ZONES[2].to_string(),
    ];
    zones.extend((16..=31).map(|b| format!("{b}.172.in-addr.arpa")));
    zones
}

/// The reverse zone (without trailing dot) of the octet-aligned network enclosing `subnet`:
/// /24 -> "0.0.10.in-addr.arpa", /20 and /16 -> "10.10.in-addr.arpa". A prefix under /8 uses
/// the /8 zone of its network address.
pub fn reverse_zone(subnet: &Subnet) -> String {
    let octets = usize::from((subnet.prefix_len / 8).clamp(1, 4));
    let mut labels: Vec<String> = subnet.network.octets()[..octets]
        .iter()
        .map(u8::to_string)
        .collect();
    labels.reverse();
    format!("{}.in-addr.arpa", labels.join("."))
}

fn parse_name(s: &str) -> Result<Name, ZoneError> {
    let fqdn = format!("{}.", s.trim_end_matches('.'));
    Name::from_ascii(&fqdn).map_err(|e| ZoneError::BadDomain {
        domain: s.to_string(),
        reason: e.to_string(),
    })
}

/// What the index says about one owner name: its records (of every type), or that it exists
/// without records (apex, empty non-terminal), or nothing.
enum Owner {
    Has(Vec<(RData, u32)>),
    Exists,
    Missing,
}

impl Owner {
    /// `Has` for some records, `Missing` for none.
    fn of(data: Vec<(RData, u32)>) -> Owner {
        if data.is_empty() {
            Owner::Missing
        } else {
            Owner::Has(data)
        }
    }
}

impl LocalZone {
    pub fn origin_name(&self) -> &LowerName {
        &self.origin
    }

    pub fn kind(&self) -> ZoneKind {
        self.kind
    }

    /// For the overrides zone: whether this name is answered here rather than forwarded.
    pub fn claims(&self, name: &LowerName) -> bool {
        if is_reverse(name) {
            return matches!(self.reverse_owner(name), Owner::Has(_));
        }
        let key = self.index_key(name);
        self.names_read().has_name(&key)
    }

    /// The name to look up in the index: the query name, or `label.domain` for a bare name
    /// when expansion is on (overrides zone only).
    fn index_key(&self, name: &LowerName) -> String {
        let text = name.to_string();
        let text = text.trim_end_matches('.');
        if self.kind == ZoneKind::Overrides
            && self.expand_bare_names
            && name.num_labels() == 1
            && !self.names_read().has_name(text)
        {
            return format!("{text}.{}", self.domain);
        }
        text.to_string()
    }

    /// Synchronous core of `lookup`: takes and drops the read lock, never awaits.
    fn answer(&self, name: &LowerName, rtype: RecordType) -> Result<AuthLookup, LookupError> {
        let apex = *name == self.origin;
        if apex && self.kind == ZoneKind::Overrides && rtype == RecordType::SOA {
            return Ok(AuthLookup::Empty);
        }
        if apex && self.kind != ZoneKind::Overrides {
            match rtype {
                RecordType::SOA => return Ok(self.records(vec![self.soa_record()])),
                RecordType::NS => return Ok(self.records(vec![self.ns_record()])),
                RecordType::ANY => {
                    return Ok(self.records(vec![self.soa_record(), self.ns_record()]));
                }
                _ => {}
            }
        }
        let mut records = Vec::new();
        let mut owner_name = Name::from(name);
        let mut key = name.clone();
        for _ in 0..MAX_CNAME_CHAIN {
            let at_apex = apex && records.is_empty() && self.kind != ZoneKind::Overrides;
            let owner = self.owner(&key, at_apex);
            let Owner::Has(data) = owner else {
                return match (records.is_empty(), owner) {
                    (false, _) => Ok(self.records(records)),
                    (true, Owner::Exists) => Err(LookupError::NameExists),
                    _ if self.kind == ZoneKind::Overrides => {
                        Err(LookupError::from(ResponseCode::Refused))
                    }
                    _ => Err(LookupError::from(ResponseCode::NXDomain)),
                };
            };
            let cname = data.iter().find_map(|(d, ttl)| match d {
                RData::CNAME(c) if rtype != RecordType::CNAME => Some((c.0.clone(), *ttl)),
                _ => None,
            });
            if let Some((target, ttl)) = cname {
                records.push(Record::from_rdata(
                    owner_name.clone(),
                    ttl,
                    RData::CNAME(CNAME(target.clone())),
                ));
                // Follow the chain only inside the names we serve.
                if !self.serves(&target) {
                    return Ok(self.records(records));
                }
                key = LowerName::new(&target);
                owner_name = target;
                continue;
            }
            let matching: Vec<Record> = data
                .into_iter()
                .filter(|(d, _)| rtype == RecordType::ANY || d.record_type() == rtype)
                .map(|(d, ttl)| Record::from_rdata(owner_name.clone(), ttl, d))
                .collect();
            if matching.is_empty() && records.is_empty() {
                return Err(LookupError::NameExists);
            }
            records.extend(matching);
            return Ok(self.records(records));
        }
        Ok(self.records(records))
    }

    /// The zone's contents for a transfer (RFC 5936 §2.2), without the closing SOA: the SOA,
    /// the apex NS, then every record of every owner name in the zone for which `belongs`
    /// holds (it excludes names of a more specific zone we also serve), each answered exactly
    /// as a query for it would be (leases past their end are left out). None for the
    /// overrides zone, which is not a zone of its own.
    pub fn transfer_records(&self, belongs: impl Fn(&LowerName) -> bool) -> Option<Vec<Record>> {
        if self.kind == ZoneKind::Overrides {
            return None;
        }
        let (names, addrs) = self.names_read().owner_names();
        let mut owners: BTreeSet<LowerName> = names
            .iter()
            .filter_map(|n| parse_name(n).ok())
            .chain(addrs.into_iter().map(Name::from))
            .map(|n| LowerName::new(&n))
            .filter(|n| self.origin.zone_of(n) && *n != self.origin && belongs(n))
            .collect();
        owners.insert(self.origin.clone());
        let mut records = vec![self.soa_record(), self.ns_record()];
        for owner in owners {
            let apex = owner == self.origin;
            if let Owner::Has(data) = self.owner(&owner, apex) {
                let name = Name::from(&owner);
                records.extend(
                    data.into_iter()
                        .map(|(d, ttl)| Record::from_rdata(name.clone(), ttl, d)),
                );
            }
        }
        Some(records)
    }

    /// The SOA record of this zone (for IXFR's answer to a secondary that is up to date and
    /// for the end of a transfer), with the current serial.
    pub fn soa(&self) -> Record {
        self.soa_record()
    }

    /// Whether a CNAME target is in a zone backed by this index (then the chain is followed).
    fn serves(&self, target: &Name) -> bool {
        let domain = parse_name(&self.domain).map(|d| LowerName::new(&d));
        let lower = LowerName::new(target);
        domain.is_ok_and(|d| d.zone_of(&lower)) || self.names_read().has_name(&lower.to_string())
    }

    fn owner(&self, name: &LowerName, apex: bool) -> Owner {
        let owner = match self.kind {
            ZoneKind::Forward => self.forward_owner(name),
            ZoneKind::Reverse => self.reverse_owner(name),
            // A static address outside our reverse zones (hosts file, AAAA) still has its PTR.
            ZoneKind::Overrides if is_reverse(name) => match self.reverse_owner(name) {
                Owner::Exists => Owner::Missing,
                other => other,
            },
            ZoneKind::Overrides => self.forward_owner(name),
        };
        match owner {
            Owner::Missing if apex => Owner::Exists,
            other => other,
        }
    }

    fn forward_owner(&self, name: &LowerName) -> Owner {
        let key = self.index_key(name);
        let names = self.names_read();
        let mut data: Vec<(RData, u32)> = names
            .static_records(&key)
            .iter()
            .filter_map(|d| rdata(d).map(|r| (r, self.ttl)))
            .collect();
        if data.is_empty() {
            let lease = names.lookup_a(&key).and_then(|f| self.live_ttl(f));
            if let Some((ip, ttl)) = lease {
                data.push((RData::A(A(ip)), ttl));
            }
        }
        let data = names.dynamic().overlay(&key, data);
        if data.is_empty() && names.is_interior(&key) {
            return Owner::Exists;
        }
        Owner::of(data)
    }

    fn reverse_owner(&self, name: &LowerName) -> Owner {
        match self.reverse_static_owner(name) {
            Owner::Has(data) => self.with_dynamic(name, data),
            Owner::Missing => self.with_dynamic(name, Vec::new()),
            Owner::Exists => match self.with_dynamic(name, Vec::new()) {
                Owner::Missing => Owner::Exists,
                has => has,
            },
        }
    }

    /// `data` overlaid with the dynamic records of `name` (RFC 2136 UPDATE, DynDNS2).
    fn with_dynamic(&self, name: &LowerName, data: Vec<(RData, u32)>) -> Owner {
        let key = crate::dns::dynamic::key(&Name::from(name));
        let data = self.names_read().dynamic().overlay(&key, data);
        Owner::of(data)
    }

    fn reverse_static_owner(&self, name: &LowerName) -> Owner {
        let net = match Name::from(name).parse_arpa_name() {
            Ok(net) => net,
            Err(_) => return Owner::Missing,
        };
        let found = match (net.addr(), net.prefix_len()) {
            (IpAddr::V4(ip), 32) => self.names_read().lookup_ptr(ip),
            // A partial address inside our zone: an empty non-terminal, not NXDOMAIN (RFC 8020).
            (IpAddr::V4(_), _) => return Owner::Exists,
            (IpAddr::V6(ip), 128) => self.names_read().lookup_ptr_v6(ip).map(|value| Found {
                value,
                expires: None,
            }),
            (IpAddr::V6(_), _) => return Owner::Missing,
        };
        let Some((target, ttl)) = found.and_then(|f| self.live_ttl(f)) else {
            return Owner::Missing;
        };
        match parse_name(&target) {
            Ok(target) => Owner::Has(vec![(RData::PTR(PTR(target)), ttl)]),
            Err(_) => Owner::Missing,
        }
    }

    /// The value and its TTL, or None if the lease has already expired.
    fn live_ttl<T>(&self, found: Found<T>) -> Option<(T, u32)> {
        match found.expires {
            None => Some((found.value, self.ttl)),
            Some(expires) => {
                lease_ttl(self.ttl, self.clock.now(), expires).map(|ttl| (found.value, ttl))
            }
        }
    }

    fn names_read(&self) -> std::sync::RwLockReadGuard<'_, Names> {
        self.names.read()
    }

    fn soa_record(&self) -> Record {
        let serial = self.names_read().serial();
        let refresh = 3600;
        let soa = SOA::new(
            self.mname.clone(),
            self.rname.clone(),
            serial,
            refresh,
            600,
            86400,
            self.ttl,
        );
        Record::from_rdata(Name::from(&self.origin), self.ttl, RData::SOA(soa))
    }

    /// The apex NS record (RFC 1034 §4.2.1): this server, named by the SOA MNAME.
    fn ns_record(&self) -> Record {
        Record::from_rdata(
            Name::from(&self.origin),
            self.ttl,
            RData::NS(hickory_server::proto::rr::rdata::NS(self.mname.clone())),
        )
    }

    /// An answer made of records that may differ in owner and type (CNAME chains).
    fn records(&self, records: Vec<Record>) -> AuthLookup {
        AuthLookup::answers(LookupRecords::Section(records), None)
    }
}

/// Whether a name is under in-addr.arpa or ip6.arpa.
fn is_reverse(name: &LowerName) -> bool {
    let text = name.to_string();
    text.ends_with(".in-addr.arpa.") || text.ends_with(".ip6.arpa.")
}

/// The hickory form of a static record; None for a target that is not a valid name.
pub(crate) fn rdata(data: &RecordData) -> Option<RData> {
    let name = |s: &str| parse_name(s).ok();
    Some(match data {
        RecordData::A(ip) => RData::A(A(*ip)),
        RecordData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        RecordData::Cname(t) => RData::CNAME(CNAME(name(t)?)),
        RecordData::Mx {
            preference,
            exchange,
        } => RData::MX(MX::new(*preference, name(exchange)?)),
        RecordData::Txt(strings) => RData::TXT(TXT::new(strings.clone())),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
    })
}

/// TTL of a lease record: never past the lease's end; None once it has ended.
pub fn lease_ttl(ttl: u32, now: UnixTime, expires: UnixTime) -> Option<u32> {
    let remaining = now.until(expires);
    if remaining == 0 {
        return None;
    }
    Some(u32::try_from(remaining).unwrap_or(u32::MAX).min(ttl))
}

#[async_trait::async_trait]
impl ZoneHandler for LocalZone {
    fn zone_type(&self) -> ZoneType {
        ZoneType::Primary
    }

    fn axfr_policy(&self) -> AxfrPolicy {
        AxfrPolicy::Deny
    }

    fn origin(&self) -> &LowerName {
        &self.origin
    }

    async fn lookup(
        &self,
        name: &LowerName,
        rtype: RecordType,
        request_info: Option<&RequestInfo<'_>>,
        _options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        // We publish no NS records. The catalog asks for the apex NS (without request info) to
        // decorate SOA answers: give it nothing. A client asking for NS gets NODATA + SOA.
        if rtype == RecordType::NS && *name == self.origin && request_info.is_none() {
            return LookupControlFlow::Continue(Ok(AuthLookup::Empty));
        }
        LookupControlFlow::Continue(self.answer(name, rtype))
    }

    async fn search(
        &self,
        request: &Request,
        options: LookupOptions,
    ) -> (LookupControlFlow<AuthLookup>, Option<TSigResponseContext>) {
        match request.request_info() {
            Ok(info) => (
                self.lookup(
                    info.query.name(),
                    info.query.query_type(),
                    Some(&info),
                    options,
                )
                .await,
                None,
            ),
            Err(e) => (LookupControlFlow::Break(Err(e)), None),
        }
    }

    async fn nsec_records(
        &self,
        _name: &LowerName,
        _options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        LookupControlFlow::Continue(Ok(AuthLookup::Empty))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TestClock;
    use crate::dns::names::{NameChange, NameIndex};
    use crate::dns::statics::StaticRecords;
    use crate::lease::{ClientId, HwAddr, Lease, LeaseChange, LeaseState};
    use std::net::Ipv4Addr;

    fn subnet(network: [u8; 4], prefix_len: u8) -> Subnet {
        Subnet {
            network: Ipv4Addr::from(network),
            prefix_len,
            pool_start: Ipv4Addr::from(network),
            pool_end: Ipv4Addr::from(network),
            router: None,
            dns_servers: vec![],
            lease_time: 3600,
            interface: None,
            authoritative: true,
            settings: Default::default(),
        }
    }

    fn lower(s: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(s).expect("test name"))
    }

    fn zone(kind: ZoneKind, origin: &str, names: SharedNames, clock: &TestClock) -> LocalZone {
        LocalZone {
            origin: lower(origin),
            kind,
            names,
            clock: Arc::new(clock.clone()),
            ttl: 300,
            mname: Name::from_ascii("lan.").expect("test name"),
            rname: Name::from_ascii("hostmaster.lan.").expect("test name"),
            domain: "lan".to_string(),
            expand_bare_names: false,
        }
    }

    /// The static records of `shared_with_lease` (printer.lan) with `records` and `hosts`.
    fn statics(
        records: Vec<crate::config::DnsRecord>,
        hosts: Vec<crate::config::DnsRecord>,
    ) -> NameChange<'static> {
        NameChange::Statics(StaticRecords {
            reservations: vec![("printer".to_string(), Ipv4Addr::new(10, 0, 0, 2))],
            records,
            hosts,
            ..StaticRecords::default()
        })
    }

    fn shared_with_lease(expires: u64) -> SharedNames {
        let mut names = Names::new(
            "lan",
            &[("printer".to_string(), Ipv4Addr::new(10, 0, 0, 2))],
        );
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, 9]);
        names.change(NameChange::Leases {
            now: UnixTime(0),
            changes: &[LeaseChange::Upsert(Lease {
                ip: Ipv4Addr::new(10, 0, 0, 9),
                client: ClientId::from_hw(&hw),
                hwaddr: hw,
                hostname: Some("laptop".into()),
                expires: UnixTime(expires),
                state: LeaseState::Bound,
            })],
        });
        NameIndex::new(names)
    }

    fn records(result: Result<AuthLookup, LookupError>) -> Vec<Record> {
        result.expect("an answer").iter().cloned().collect()
    }

    #[test]
    fn reverse_zone_is_the_octet_aligned_enclosing_network() {
        assert_eq!(
            reverse_zone(&subnet([10, 0, 0, 0], 24)),
            "0.0.10.in-addr.arpa"
        );
        assert_eq!(
            reverse_zone(&subnet([10, 10, 0, 0], 16)),
            "10.10.in-addr.arpa"
        );
        assert_eq!(
            reverse_zone(&subnet([10, 10, 16, 0], 20)),
            "10.10.in-addr.arpa"
        );
        assert_eq!(
            reverse_zone(&subnet([192, 168, 1, 128], 25)),
            "1.168.192.in-addr.arpa"
        );
        assert_eq!(reverse_zone(&subnet([10, 0, 0, 0], 8)), "10.in-addr.arpa");
        assert_eq!(reverse_zone(&subnet([10, 0, 0, 0], 4)), "10.in-addr.arpa");
    }

    #[test]
    fn lease_ttl_is_capped_by_remaining_time_and_ends_with_the_lease() {
        assert_eq!(lease_ttl(300, UnixTime(1000), UnixTime(5000)), Some(300));
        assert_eq!(lease_ttl(300, UnixTime(1000), UnixTime(1042)), Some(42));
        assert_eq!(lease_ttl(300, UnixTime(1000), UnixTime(1001)), Some(1));
        assert_eq!(lease_ttl(300, UnixTime(1000), UnixTime(1000)), None);
        assert_eq!(lease_ttl(300, UnixTime(1000), UnixTime(10)), None);
    }

    #[test]
    fn a_dynamic_name_makes_its_ancestors_empty_non_terminals_until_it_goes() {
        use crate::dns::dynamic::DynOp;
        let clock = TestClock::at(1000);
        let names = shared_with_lease(5000);
        let z = zone(ZoneKind::Forward, "lan.", names.clone(), &clock);
        let nx = |name: &str| {
            z.answer(&lower(name), RecordType::A)
                .err()
                .is_some_and(|e| e.is_nx_domain())
        };
        assert!(nx("_tcp.lan."));
        let srv = RData::SRV(SRV::new(
            0,
            0,
            80,
            Name::from_ascii("printer.lan.").expect("n"),
        ));
        names.apply(NameChange::Dynamic(&[DynOp::Add {
            name: "_x._tcp.lan".into(),
            ttl: 60,
            rdata: srv,
            overrides: false,
        }]));
        // RFC 8020: `_tcp.lan` exists (NODATA), `_udp.lan` does not.
        assert!(matches!(
            z.answer(&lower("_tcp.lan."), RecordType::A),
            Err(LookupError::NameExists)
        ));
        assert!(nx("_udp.lan.") && nx("y._tcp.lan."));
        names.apply(NameChange::Dynamic(&[DynOp::DeleteName {
            name: "_x._tcp.lan".into(),
        }]));
        assert!(nx("_tcp.lan."), "gone with the last name below it");
    }

    #[test]
    fn a_transfer_holds_soa_ns_and_every_live_name_of_the_zone_once() {
        let clock = TestClock::at(1000);
        let names = shared_with_lease(1100);
        let z = zone(ZoneKind::Forward, "lan.", names.clone(), &clock);
        let owners = |z: &LocalZone| -> Vec<(String, RecordType)> {
            z.transfer_records(|_| true)
                .expect("a zone")
                .iter()
                .map(|r| (r.name.to_string(), r.record_type()))
                .collect()
        };
        let want = |extra: &[(&str, RecordType)]| -> Vec<(String, RecordType)> {
            [("lan.", RecordType::SOA), ("lan.", RecordType::NS)]
                .iter()
                .chain(extra)
                .map(|(n, t)| (n.to_string(), *t))
                .collect()
        };
        assert_eq!(
            owners(&z),
            want(&[
                ("laptop.lan.", RecordType::A),
                ("printer.lan.", RecordType::A)
            ])
        );
        let rev = zone(ZoneKind::Reverse, "0.0.10.in-addr.arpa.", names, &clock);
        assert_eq!(rev.transfer_records(|_| true).expect("zone").len(), 4);
        // Names of a more specific zone are left to it.
        assert_eq!(rev.transfer_records(|_| false).expect("zone").len(), 2);
        // The lease has ended: its name leaves the transfer with it.
        clock.set(1100);
        assert_eq!(owners(&z), want(&[("printer.lan.", RecordType::A)]));
        let overrides = zone(ZoneKind::Overrides, ".", shared_with_lease(1100), &clock);
        assert!(overrides.transfer_records(|_| true).is_none());
    }

    #[test]
    fn forward_zone_timeline() {
        let clock = TestClock::at(1000);
        let z = zone(ZoneKind::Forward, "lan.", shared_with_lease(1100), &clock);
        // t=1000: the lease has 100 s left, so its A record lives 100 s, not 300.
        let a = records(z.answer(&lower("laptop.lan."), RecordType::A));
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].ttl, 100);
        assert_eq!(a[0].data, RData::A(A(Ipv4Addr::new(10, 0, 0, 9))));
        // Static names keep the configured TTL.
        assert_eq!(
            records(z.answer(&lower("printer.lan."), RecordType::A))[0].ttl,
            300
        );
        // Another type for a known name: NODATA; an unknown name: NXDOMAIN.
        assert!(matches!(
            z.answer(&lower("laptop.lan."), RecordType::AAAA),
            Err(LookupError::NameExists)
        ));
        assert!(
            z.answer(&lower("ghost.lan."), RecordType::A)
                .err()
                .is_some_and(|e| e.is_nx_domain())
        );
        // The apex has an SOA carrying the index serial, and nothing else.
        let soa = records(z.answer(&lower("lan."), RecordType::SOA));
        assert!(matches!(&soa[0].data, RData::SOA(s) if s.serial == 2));
        assert!(matches!(
            z.answer(&lower("lan."), RecordType::A),
            Err(LookupError::NameExists)
        ));
        // t=1100: the lease has ended; the name is gone even before the engine removes it.
        clock.set(1100);
        assert!(
            z.answer(&lower("laptop.lan."), RecordType::A)
                .err()
                .is_some_and(|e| e.is_nx_domain())
        );
    }

    #[test]
    fn reverse_zone_timeline() {
        let clock = TestClock::at(1000);
        let z = zone(
            ZoneKind::Reverse,
            "0.0.10.in-addr.arpa.",
            shared_with_lease(5000),
            &clock,
        );
        let ptr = records(z.answer(&lower("9.0.0.10.in-addr.arpa."), RecordType::PTR));
        assert_eq!(
            ptr[0].data,
            RData::PTR(PTR(Name::from_ascii("laptop.lan.").expect("name")))
        );
        assert_eq!(ptr[0].ttl, 300);
        let ptr = records(z.answer(&lower("2.0.0.10.in-addr.arpa."), RecordType::PTR));
        assert_eq!(
            ptr[0].data,
            RData::PTR(PTR(Name::from_ascii("printer.lan.").expect("name")))
        );
        assert!(
            z.answer(&lower("3.0.0.10.in-addr.arpa."), RecordType::PTR)
                .err()
                .is_some_and(|e| e.is_nx_domain())
        );
        assert!(
            z.answer(&lower("x.0.0.10.in-addr.arpa."), RecordType::PTR)
                .err()
                .is_some_and(|e| e.is_nx_domain())
        );
        assert!(matches!(
            z.answer(&lower("9.0.0.10.in-addr.arpa."), RecordType::A),
            Err(LookupError::NameExists)
        ));
    }

    #[test]
    fn partial_reverse_name_is_an_empty_non_terminal() {
        let clock = TestClock::at(1000);
        let z = zone(
            ZoneKind::Reverse,
            "10.10.in-addr.arpa.",
            shared_with_lease(5000),
            &clock,
        );
        assert!(matches!(
            z.answer(&lower("0.10.10.in-addr.arpa."), RecordType::PTR),
            Err(LookupError::NameExists)
        ));
    }

    fn cname(name: &str, target: &str) -> crate::config::DnsRecord {
        crate::config::DnsRecord {
            name: name.to_string(),
            data: RecordData::Cname(target.to_string()),
        }
    }

    #[test]
    fn cname_chains_stop_at_loops_and_foreign_targets() {
        let clock = TestClock::at(1000);
        let shared = shared_with_lease(5000);
        let chain = vec![
            cname("a.lan", "b.lan"),
            cname("b.lan", "a.lan"),
            cname("out.lan", "www.example.com"),
            cname("lap.lan", "laptop.lan"),
        ];
        shared.apply(statics(chain, Vec::new()));
        let z = zone(ZoneKind::Forward, "lan.", shared, &clock);
        let looped = records(z.answer(&lower("a.lan."), RecordType::A));
        assert_eq!(looped.len(), MAX_CNAME_CHAIN);
        let out = records(z.answer(&lower("out.lan."), RecordType::A));
        assert_eq!(out.len(), 1, "a foreign target is left to the client");
        // A CNAME to a lease name carries the lease's A with its capped TTL.
        let lap = records(z.answer(&lower("lap.lan."), RecordType::A));
        assert_eq!(lap.len(), 2);
        assert_eq!(lap[1].data, RData::A(A(Ipv4Addr::new(10, 0, 0, 9))));
        assert_eq!(lap[1].name, Name::from_ascii("laptop.lan.").expect("name"));
    }

    #[test]
    fn overrides_zone_claims_static_names_and_bare_names_only() {
        let clock = TestClock::at(1000);
        let shared = shared_with_lease(5000);
        let router = crate::config::DnsRecord {
            name: "router.example.net".to_string(),
            data: RecordData::A(Ipv4Addr::new(10, 0, 0, 1)),
        };
        shared.apply(statics(vec![router], Vec::new()));
        let mut z = zone(ZoneKind::Overrides, ".", shared, &clock);
        assert!(z.claims(&lower("ROUTER.example.net.")));
        assert!(!z.claims(&lower("www.example.net.")));
        assert!(!z.claims(&lower("laptop.")));
        assert!(
            matches!(z.answer(&lower("www.example.net."), RecordType::A), Err(e) if !e.is_nx_domain())
        );
        z.expand_bare_names = true;
        assert!(z.claims(&lower("laptop.")));
        let a = records(z.answer(&lower("laptop."), RecordType::A));
        assert_eq!(a[0].name, Name::from_ascii("laptop.").expect("name"));
        // The root has no SOA of ours.
        assert!(matches!(
            z.answer(&lower("."), RecordType::SOA),
            Ok(AuthLookup::Empty)
        ));
    }

    fn soa_serial(z: &LocalZone) -> u32 {
        match &records(z.answer(&lower("lan."), RecordType::SOA))[0].data {
            RData::SOA(soa) => soa.serial,
            other => panic!("not an SOA: {other:?}"),
        }
    }

    #[test]
    fn soa_serial_increases_with_every_change_of_the_zone() {
        let clock = TestClock::at(1000);
        let shared = shared_with_lease(5000);
        let z = zone(ZoneKind::Forward, "lan.", shared.clone(), &clock);
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, 10]);
        let lease = |name: &str| {
            LeaseChange::Upsert(Lease {
                ip: Ipv4Addr::new(10, 0, 0, 10),
                client: ClientId::from_hw(&hw),
                hwaddr: hw.clone(),
                hostname: Some(name.into()),
                expires: UnixTime(5000),
                state: LeaseState::Bound,
            })
        };
        let mut seen = vec![soa_serial(&z)];
        let mut step = |change: NameChange| {
            shared.apply(change);
            seen.push(soa_serial(&z));
        };
        // A new lease name, a rename, a name taken by a new static record, the static record
        // reloaded away (the lease gets its name back), a release.
        let (desk, desk2) = ([lease("desk")], [lease("desk2")]);
        step(NameChange::Leases {
            now: UnixTime(1000),
            changes: &desk,
        });
        step(NameChange::Leases {
            now: UnixTime(1001),
            changes: &desk2,
        });
        let hosts = vec![crate::config::DnsRecord {
            name: "desk2.lan".to_string(),
            data: RecordData::A(Ipv4Addr::new(10, 0, 0, 40)),
        }];
        step(statics(Vec::new(), hosts));
        step(statics(Vec::new(), Vec::new()));
        let release = [LeaseChange::Remove {
            ip: Ipv4Addr::new(10, 0, 0, 10),
            reason: crate::lease::RemoveReason::Released,
        }];
        step(NameChange::Leases {
            now: UnixTime(1002),
            changes: &release,
        });
        assert!(
            seen.windows(2).all(|w| w[1] > w[0]),
            "serials must increase: {seen:?}"
        );
        // A renewal that changes nothing but the expiry keeps the serial.
        let before = soa_serial(&z);
        shared.apply(NameChange::Leases {
            now: UnixTime(0),
            changes: &[lease("desk2")],
        });
        let renewed = soa_serial(&z);
        shared.apply(NameChange::Leases {
            now: UnixTime(0),
            changes: &[lease("desk2")],
        });
        assert!(renewed > before);
        assert_eq!(soa_serial(&z), renewed);
    }
}
