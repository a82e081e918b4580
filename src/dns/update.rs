//! RFC 2136 UPDATE for the zones we serve: TSIG first (unsigned: REFUSED; bad key, MAC or
//! time: NOTAUTH), then the zone section, prerequisites (§3.2), the per-key policy and the
//! update prescan (§3.4.1), and finally the changes, committed through the dynamic store
//! (journaled before they are visible). All or nothing: a refused update changes nothing.
//! Must not hold a lock across `.await`; time comes from the injected `Clock`.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_server::proto::op::{MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::TSIG;
use hickory_server::proto::rr::rdata::tsig::TsigError;
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, info, warn};

use crate::clock::{Clock, UnixTime};
use crate::config::{TsigKeyConfig, UpdateRule};
use crate::dns::dynamic::{
    self, DynOp, DynamicStore, SUPPORTED_TYPES, StoreError, owned_by_config_or_lease, view,
};
use crate::dns::names::Names;
use crate::dns::ratelog::{RateLog, Say};
use crate::dns::tsig::{Check, Keyring, Rejected, TsigKey, Verified};

/// What one key may change.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub rules: Vec<UpdateRule>,
    /// May write names that the config or a lease publishes.
    pub may_override: bool,
}

impl Policy {
    pub fn allows(&self, fqdn: &str, rtype: RecordType) -> bool {
        self.rules
            .iter()
            .any(|r| r.names.matches(fqdn) && r.types.contains(&rtype))
    }

    /// Every type some rule lets this key change at `fqdn`.
    pub fn types_at(&self, fqdn: &str) -> Vec<RecordType> {
        let mut types: Vec<RecordType> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.names.matches(fqdn)) {
            for t in &rule.types {
                if !types.contains(t) {
                    types.push(*t);
                }
            }
        }
        types
    }
}

/// The answer to one UPDATE: its RCODE and how the response carries TSIG.
#[derive(Clone, Debug)]
pub struct Reply {
    pub rcode: ResponseCode,
    pub tsig: ReplyTsig,
}

#[derive(Clone, Debug)]
pub enum ReplyTsig {
    /// The request was not signed (or could not be walked).
    None,
    /// Signed with the request's key (possibly carrying BADTIME).
    Sign(Verified, Option<TsigError>),
    /// An unsigned TSIG record carrying BADKEY or BADSIG.
    Unsigned(Box<hickory_server::proto::rr::Record<TSIG>>),
}

/// How often refused UPDATEs from one source are summarised at info (seconds).
const REFUSAL_LOG_WINDOW: u64 = 60;
/// Sources whose refusals are counted for the summary at once (about 300 KB at most).
const REFUSAL_LOG_SOURCES: usize = 4096;

pub struct UpdateHandler {
    keyring: Keyring,
    /// Parallel to the keyring's keys.
    policies: Vec<Policy>,
    /// Origins of the zones that accept updates.
    zones: Vec<LowerName>,
    /// None: updates are refused (no journal to keep them in).
    store: Option<Arc<DynamicStore>>,
    clock: Arc<dyn Clock>,
    /// Refused UPDATEs are logged at debug each, at info once a minute per source.
    refusals: RateLog,
}

/// The TSIG key of a key config (None for a name that is not a DNS name).
pub fn tsig_key(cfg: &TsigKeyConfig) -> Option<TsigKey> {
    let key = TsigKey::new(&cfg.name, cfg.algorithm.clone(), cfg.secret.clone())?;
    Some(TsigKey {
        fudge: cfg.fudge,
        ..key
    })
}

impl UpdateHandler {
    pub fn new(
        keys: &[TsigKeyConfig],
        zones: Vec<LowerName>,
        store: Option<Arc<DynamicStore>>,
        clock: Arc<dyn Clock>,
    ) -> UpdateHandler {
        let mut ring = Vec::new();
        let mut policies = Vec::new();
        for cfg in keys {
            let Some(key) = tsig_key(cfg) else {
                warn!(key = %cfg.name, "TSIG key name is not a DNS name; key ignored");
                continue;
            };
            ring.push(key);
            policies.push(Policy {
                rules: cfg.allow.clone(),
                may_override: cfg.may_override,
            });
        }
        UpdateHandler {
            keyring: Keyring::new(ring),
            policies,
            zones,
            store,
            clock,
            refusals: RateLog::new(REFUSAL_LOG_WINDOW, REFUSAL_LOG_SOURCES),
        }
    }

    /// A refused UPDATE from `src`: one debug line, and an info line for the first from a
    /// source and then at most one summary a minute (a client retrying in a loop, or a flood
    /// of spoofed sources, cannot fill the log).
    fn refused(&self, src: SocketAddr, now: UnixTime, why: &str) {
        debug!(%src, why, "UPDATE refused");
        match self.refusals.note(src.ip(), now.0) {
            Say::First => {
                info!(%src, why, "UPDATE refused (more from this source are summarised once a minute)")
            }
            Say::Summary { count, since } => {
                info!(%src, count, seconds = now.0.saturating_sub(since), last = why, "UPDATEs refused from this source")
            }
            Say::Quiet => {}
        }
    }

    /// Check, apply and answer one UPDATE (no lock is held across the journal write's await).
    pub async fn decide(&self, request: &Request) -> Reply {
        let now = self.clock.now();
        let reply = |rcode, tsig| Reply { rcode, tsig };
        match self.keyring.check(request.as_slice(), now.0) {
            Check::Unsigned => {
                self.refused(request.src(), now, "unsigned");
                reply(ResponseCode::Refused, ReplyTsig::None)
            }
            Check::Malformed(reason) => {
                debug!(src = %request.src(), %reason, "malformed signed UPDATE");
                reply(ResponseCode::FormErr, ReplyTsig::None)
            }
            Check::Rejected(Rejected::BadTime(v)) => {
                debug!(src = %request.src(), signed = v.time, now = now.0, "UPDATE outside the TSIG time window or replayed");
                self.refused(request.src(), now, "BADTIME");
                reply(
                    ResponseCode::NotAuth,
                    ReplyTsig::Sign(v, Some(TsigError::BadTime)),
                )
            }
            Check::Rejected(rejected) => {
                debug!(src = %request.src(), ?rejected, "UPDATE with a bad TSIG");
                self.refused(request.src(), now, "bad TSIG");
                let tsig = match self.keyring.error_record(&rejected, now.0) {
                    Some(record) => ReplyTsig::Unsigned(Box::new(record)),
                    None => ReplyTsig::None,
                };
                reply(ResponseCode::NotAuth, tsig)
            }
            Check::Valid(v) => {
                let rcode = self.apply(request, v.key, now).await;
                reply(rcode, ReplyTsig::Sign(v, None))
            }
        }
    }

    /// Answer one UPDATE on `response_handle`, signing the response when the request was.
    pub async fn handle<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let reply = self.decide(request).await;
        let metadata = || {
            let mut m = Metadata::new(request.metadata.id, MessageType::Response, OpCode::Update);
            m.response_code = reply.rcode;
            m
        };
        let mut response =
            MessageResponseBuilder::new(&request.queries, None).build_no_records(metadata());
        match &reply.tsig {
            ReplyTsig::None => {}
            ReplyTsig::Unsigned(record) => response.set_signature(record.clone()),
            ReplyTsig::Sign(verified, error) => {
                let mut unsigned = Vec::with_capacity(512);
                let tbs = MessageResponseBuilder::new(&request.queries, None)
                    .build_no_records(metadata());
                let encoded = tbs.destructive_emit(&mut BinEncoder::new(&mut unsigned));
                let now = self.clock.now().0;
                match encoded
                    .ok()
                    .and_then(|_| self.keyring.sign_response(verified, &unsigned, now, *error))
                {
                    Some(record) => response.set_signature(Box::new(record)),
                    None => warn!("cannot sign an UPDATE response; sent unsigned"),
                }
            }
        }
        response_handle
            .send_response(response)
            .await
            .unwrap_or_else(|e| {
                debug!(error = %e, "cannot send an UPDATE response");
                crate::dns::wire::serve_failed(request)
            })
    }

    /// The update itself, for a request signed by key `key`.
    async fn apply(&self, request: &Request, key: usize, now: UnixTime) -> ResponseCode {
        let zone = match self.zone(request) {
            Ok(zone) => zone,
            Err(rcode) => return rcode,
        };
        let (Some(store), Some(policy)) = (&self.store, self.policies.get(key)) else {
            return ResponseCode::Refused;
        };
        let key_name = self
            .keyring
            .key(key)
            .map(|k| k.name.to_string())
            .unwrap_or_default();
        let result = store
            .transaction(|names| {
                check_prerequisites(names, &zone, &request.answers, now)?;
                let ops = plan_updates(names, &zone, policy, &request.authorities, now)?;
                Ok((ops, ()))
            })
            .await;
        match result {
            Ok(((), changed)) => {
                info!(key = %key_name, %zone, changed, "UPDATE applied");
                ResponseCode::NoError
            }
            Err(StoreError::Refused(rcode)) => {
                let rcode: ResponseCode = rcode;
                debug!(key = %key_name, %zone, %rcode, "UPDATE not applied");
                self.refused(request.src(), now, rcode.to_str());
                rcode
            }
            Err(e @ (StoreError::Journal(_) | StoreError::Stopped)) => {
                warn!(error = %e, "cannot journal an UPDATE; not applied");
                ResponseCode::ServFail
            }
        }
    }

    /// RFC 2136 §3.1: exactly one zone, of type SOA, that we serve.
    fn zone(&self, request: &Request) -> Result<LowerName, ResponseCode> {
        let [zone] = request.queries.queries() else {
            return Err(ResponseCode::FormErr);
        };
        if zone.query_type() != RecordType::SOA {
            return Err(ResponseCode::FormErr);
        }
        let name = zone.name().clone();
        if zone.query_class() != DNSClass::IN || !self.zones.contains(&name) {
            return Err(ResponseCode::NotAuth);
        }
        Ok(name)
    }
}

/// RFC 2136 §3.2: every prerequisite against the zone as it is now.
pub fn check_prerequisites(
    names: &Names,
    zone: &LowerName,
    prereqs: &[Record],
    now: UnixTime,
) -> Result<(), ResponseCode> {
    // Value-dependent prerequisites: the whole RRset must match, so collect them first.
    let mut exact: Vec<(Name, RecordType, Vec<RData>)> = Vec::new();
    for rr in prereqs {
        if rr.ttl != 0 {
            return Err(ResponseCode::FormErr);
        }
        if !zone.zone_of(&LowerName::new(&rr.name)) {
            return Err(ResponseCode::NotZone);
        }
        let rtype = rr.record_type();
        let empty = matches!(rr.data, RData::Update0(_));
        let has_type = || {
            view(names, &rr.name, now)
                .iter()
                .any(|(d, _)| d.record_type() == rtype)
        };
        match rr.dns_class {
            DNSClass::ANY | DNSClass::NONE if !empty => return Err(ResponseCode::FormErr),
            DNSClass::ANY if rtype == RecordType::ANY => {
                if view(names, &rr.name, now).is_empty() {
                    return Err(ResponseCode::NXDomain);
                }
            }
            DNSClass::ANY if !has_type() => return Err(ResponseCode::NXRRSet),
            DNSClass::NONE if rtype == RecordType::ANY => {
                if !view(names, &rr.name, now).is_empty() {
                    return Err(ResponseCode::YXDomain);
                }
            }
            DNSClass::NONE if has_type() => return Err(ResponseCode::YXRRSet),
            DNSClass::ANY | DNSClass::NONE => {}
            DNSClass::IN if !empty => {
                let lower = rr.name.to_lowercase();
                match exact
                    .iter_mut()
                    .find(|(n, t, _)| *n == lower && *t == rtype)
                {
                    Some((_, _, set)) => set.push(rr.data.clone()),
                    None => exact.push((lower, rtype, vec![rr.data.clone()])),
                }
            }
            _ => return Err(ResponseCode::FormErr),
        }
    }
    for (name, rtype, wanted) in exact {
        let have: Vec<RData> = view(names, &name, now)
            .into_iter()
            .filter(|(d, _)| d.record_type() == rtype)
            .map(|(d, _)| d)
            .collect();
        let same =
            have.iter().all(|d| wanted.contains(d)) && wanted.iter().all(|d| have.contains(d));
        if !same {
            return Err(ResponseCode::NXRRSet);
        }
    }
    Ok(())
}

/// RFC 2136 §3.4.1 prescan and §3.3 permissions: the changes the update section asks for, or
/// the RCODE that refuses all of them.
pub fn plan_updates(
    names: &Names,
    zone: &LowerName,
    policy: &Policy,
    updates: &[Record],
    now: UnixTime,
) -> Result<Vec<DynOp>, ResponseCode> {
    for rr in updates {
        if !zone.zone_of(&LowerName::new(&rr.name)) {
            return Err(ResponseCode::NotZone);
        }
        let rtype = rr.record_type();
        let empty = matches!(rr.data, RData::Update0(_));
        let meta = matches!(
            rtype,
            RecordType::AXFR | RecordType::IXFR | RecordType::OPT | RecordType::TSIG
        );
        let bad = match rr.dns_class {
            DNSClass::IN => empty || meta || rtype == RecordType::ANY,
            DNSClass::ANY => rr.ttl != 0 || !empty || meta,
            DNSClass::NONE => rr.ttl != 0 || empty || meta || rtype == RecordType::ANY,
            _ => true,
        };
        if bad {
            return Err(ResponseCode::FormErr);
        }
    }
    let mut ops = Vec::new();
    for rr in updates {
        let name = dynamic::key(&rr.name);
        let rtype = rr.record_type();
        if !policy.may_override && owned_by_config_or_lease(names, &rr.name, now) {
            debug!(%name, "UPDATE of a name the config or a lease holds; refused (may_override)");
            return Err(ResponseCode::Refused);
        }
        let allowed = match (rr.dns_class, rtype) {
            (DNSClass::ANY, RecordType::ANY) => !policy.types_at(&name).is_empty(),
            (DNSClass::IN, t) => SUPPORTED_TYPES.contains(&t) && policy.allows(&name, t),
            (_, t) => policy.allows(&name, t),
        };
        if !allowed {
            debug!(%name, %rtype, "UPDATE outside the key's policy; refused");
            return Err(ResponseCode::Refused);
        }
        match (rr.dns_class, rtype) {
            (DNSClass::IN, _) => ops.push(DynOp::Add {
                name,
                ttl: rr.ttl,
                rdata: rr.data.clone(),
                overrides: policy.may_override,
            }),
            (DNSClass::ANY, RecordType::ANY) => {
                for rtype in policy.types_at(&name) {
                    ops.push(DynOp::DeleteRrset {
                        name: name.clone(),
                        rtype,
                    });
                }
            }
            (DNSClass::ANY, _) => ops.push(DynOp::DeleteRrset { name, rtype }),
            _ => ops.push(DynOp::DeleteRr {
                name,
                rdata: rr.data.clone(),
            }),
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TestClock;
    use crate::config::Durability;
    use crate::config::NameMatch;
    use crate::dns::journal::UpdateJournal;
    use crate::dns::tsig::sign_request;
    use hickory_server::net::xfer::Protocol;
    use hickory_server::proto::op::{Message, Query};
    use hickory_server::proto::rr::rdata::tsig::TsigAlgorithm;
    use hickory_server::proto::rr::rdata::{A, TXT};
    use std::net::Ipv4Addr;

    const SECRET: &[u8] = b"an acme secret, 32 bytes long!!!";

    fn n(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn key_cfg(name: &str, rules: Vec<UpdateRule>, may_override: bool) -> TsigKeyConfig {
        TsigKeyConfig {
            name: name.to_string(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: SECRET.to_vec(),
            fudge: 300,
            allow: rules,
            may_override,
        }
    }

    fn rule(names: NameMatch, types: &[RecordType]) -> UpdateRule {
        UpdateRule {
            names,
            types: types.to_vec(),
        }
    }

    struct Fixture {
        handler: UpdateHandler,
        names: crate::dns::names::SharedNames,
        clock: TestClock,
        keys: Vec<TsigKey>,
        _dir: tempfile::TempDir,
        /// Runs the async handler (its journal write goes to a blocking thread).
        rt: tokio::runtime::Runtime,
    }

    /// Keys: "acme" (TXT under the _acme-challenge prefix), "admin" (everything, may
    /// override), "home" (A and AAAA of home.lan only). The config holds printer.lan and an
    /// apex TXT.
    fn fixture() -> Fixture {
        let names = crate::dns::names::NameIndex::new(crate::dns::dynamic::tests::config_names());
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, _) = UpdateJournal::open(&dir.path().join("dns.journal"), Durability::None)
            .expect("journal");
        let store = DynamicStore::new(journal, names.clone());
        let keys = vec![
            key_cfg(
                "acme",
                vec![rule(
                    NameMatch::Prefix("_acme-challenge".into()),
                    &[RecordType::TXT],
                )],
                false,
            ),
            key_cfg(
                "admin",
                vec![rule(NameMatch::Subtree("lan".into()), &SUPPORTED_TYPES)],
                true,
            ),
            key_cfg(
                "home",
                vec![rule(
                    NameMatch::Exact("home.lan".into()),
                    &[RecordType::A, RecordType::AAAA],
                )],
                false,
            ),
        ];
        let clock = TestClock::at(1_700_000_000);
        let handler = UpdateHandler::new(
            &keys,
            vec![
                LowerName::new(&n("lan.")),
                LowerName::new(&n("0.0.10.in-addr.arpa.")),
            ],
            Some(store),
            Arc::new(clock.clone()),
        );
        Fixture {
            keys: keys.iter().map(|k| tsig_key(k).expect("key")).collect(),
            handler,
            names,
            clock,
            _dir: dir,
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
        }
    }

    fn message(zone: &str) -> Message {
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Update);
        m.add_query(Query::query(n(zone), RecordType::SOA));
        m
    }

    fn add(name: &str, ttl: u32, rdata: RData) -> Record {
        Record::from_rdata(n(name), ttl, rdata)
    }

    fn txt(s: &str) -> RData {
        RData::TXT(TXT::new(vec![s.to_string()]))
    }

    fn a(last: u8) -> RData {
        RData::A(A(Ipv4Addr::new(192, 0, 2, last)))
    }

    /// class ANY or NONE, empty RDATA.
    fn meta(name: &str, class: DNSClass, rtype: RecordType) -> Record {
        let mut r = Record::update0(n(name), 0, rtype);
        r.dns_class = class;
        r
    }

    impl Fixture {
        fn send(&self, m: &Message, key: Option<usize>) -> Reply {
            match key {
                Some(k) => self.send_signed(m, &self.keys[k], self.clock.now().0),
                None => self.send_raw(m.to_vec().expect("encode")),
            }
        }

        /// Signed with any key (known or not) at `time`.
        fn send_signed(&self, m: &Message, key: &TsigKey, time: u64) -> Reply {
            self.send_raw(sign_request(m, key, time).expect("sign"))
        }

        fn send_raw(&self, raw: Vec<u8>) -> Reply {
            let src = "127.0.0.1:5300".parse().expect("addr");
            let request = Request::from_bytes(raw, src, Protocol::Udp).expect("decodes");
            self.rt.block_on(self.handler.decide(&request))
        }

        fn rcode(&self, m: &Message, key: usize) -> ResponseCode {
            self.send(m, Some(key)).rcode
        }

        fn at(&self, name: &str) -> Vec<RData> {
            let names = self.names.read();
            view(&names, &n(name), self.clock.now())
                .into_iter()
                .map(|(d, _)| d)
                .collect()
        }
    }

    const ACME: usize = 0;
    const ADMIN: usize = 1;
    const HOME: usize = 2;

    #[test]
    fn signed_add_then_delete_bumps_the_serial_and_answers() {
        let f = fixture();
        let serial = f.names.read().serial();
        let mut m = message("lan.");
        m.add_authority(add("_acme-challenge.www.lan.", 60, txt("token")));
        let reply = f.send(&m, Some(ACME));
        assert_eq!(reply.rcode, ResponseCode::NoError);
        assert!(
            matches!(reply.tsig, ReplyTsig::Sign(_, None)),
            "signed reply"
        );
        assert_eq!(f.at("_acme-challenge.www.lan."), vec![txt("token")]);
        assert!(f.names.read().serial() > serial);
        // Delete the RRset (class ANY, type TXT).
        let mut m = message("lan.");
        m.add_authority(meta(
            "_acme-challenge.www.lan.",
            DNSClass::ANY,
            RecordType::TXT,
        ));
        assert_eq!(f.rcode(&m, ACME), ResponseCode::NoError);
        assert!(f.at("_acme-challenge.www.lan.").is_empty());
    }

    #[test]
    fn unsigned_unknown_key_bad_signature_and_skew() {
        let f = fixture();
        let mut m = message("lan.");
        m.add_authority(add("_acme-challenge.lan.", 60, txt("x")));
        let reply = f.send(&m, None);
        assert_eq!(reply.rcode, ResponseCode::Refused);
        assert!(matches!(reply.tsig, ReplyTsig::None));
        // A key we do not know.
        let mut stranger = f.keys[ACME].clone();
        stranger.name = n("stranger.");
        let reply = f.send_signed(&m, &stranger, f.clock.now().0);
        assert_eq!(reply.rcode, ResponseCode::NotAuth);
        let ReplyTsig::Unsigned(record) = reply.tsig else {
            panic!("BADKEY is unsigned")
        };
        assert_eq!(record.data.error, Some(TsigError::BadKey));
        // The right name with the wrong secret.
        let mut forged = f.keys[ACME].clone();
        forged.secret = b"guess".to_vec();
        let reply = f.send_signed(&m, &forged, f.clock.now().0);
        assert_eq!(reply.rcode, ResponseCode::NotAuth);
        assert!(
            matches!(&reply.tsig, ReplyTsig::Unsigned(r) if r.data.error == Some(TsigError::BadSig))
        );
        // Signed ten minutes ago.
        let reply = f.send_signed(&m, &f.keys[ACME], f.clock.now().0 - 600);
        assert_eq!(reply.rcode, ResponseCode::NotAuth);
        assert!(matches!(
            reply.tsig,
            ReplyTsig::Sign(_, Some(TsigError::BadTime))
        ));
        assert!(f.at("_acme-challenge.lan.").is_empty(), "nothing changed");
    }

    #[test]
    fn prerequisites_each_kind() {
        let f = fixture();
        let mut m = message("lan.");
        m.add_authority(add("home.lan.", 60, a(1)));
        assert_eq!(f.rcode(&m, HOME), ResponseCode::NoError);
        let check = |prereq: Record, want: ResponseCode| {
            let mut m = message("lan.");
            m.add_answer(prereq.clone());
            assert_eq!(f.rcode(&m, ADMIN), want, "{prereq:?}");
        };
        // Name in use / not in use.
        check(
            meta("home.lan.", DNSClass::ANY, RecordType::ANY),
            ResponseCode::NoError,
        );
        check(
            meta("printer.lan.", DNSClass::ANY, RecordType::ANY),
            ResponseCode::NoError,
        );
        check(
            meta("nobody.lan.", DNSClass::ANY, RecordType::ANY),
            ResponseCode::NXDomain,
        );
        check(
            meta("home.lan.", DNSClass::NONE, RecordType::ANY),
            ResponseCode::YXDomain,
        );
        check(
            meta("nobody.lan.", DNSClass::NONE, RecordType::ANY),
            ResponseCode::NoError,
        );
        // RRset exists (value-independent) / does not exist.
        check(
            meta("home.lan.", DNSClass::ANY, RecordType::A),
            ResponseCode::NoError,
        );
        check(
            meta("home.lan.", DNSClass::ANY, RecordType::TXT),
            ResponseCode::NXRRSet,
        );
        check(
            meta("lan.", DNSClass::ANY, RecordType::TXT),
            ResponseCode::NoError,
        );
        check(
            meta("home.lan.", DNSClass::NONE, RecordType::A),
            ResponseCode::YXRRSet,
        );
        check(
            meta("home.lan.", DNSClass::NONE, RecordType::MX),
            ResponseCode::NoError,
        );
        // RRset exists (value-dependent): the whole set must match.
        check(
            Record::from_rdata(n("home.lan."), 0, a(1)),
            ResponseCode::NoError,
        );
        check(
            Record::from_rdata(n("home.lan."), 0, a(2)),
            ResponseCode::NXRRSet,
        );
        let mut m = message("lan.");
        m.add_answer(Record::from_rdata(n("home.lan."), 0, a(1)));
        m.add_answer(Record::from_rdata(n("home.lan."), 0, a(2)));
        assert_eq!(
            f.rcode(&m, ADMIN),
            ResponseCode::NXRRSet,
            "a superset does not match"
        );
        // Malformed: a TTL, data on class ANY, a name outside the zone.
        check(
            Record::from_rdata(n("home.lan."), 5, a(1)),
            ResponseCode::FormErr,
        );
        let mut with_data = Record::from_rdata(n("home.lan."), 0, a(1));
        with_data.dns_class = DNSClass::ANY;
        check(with_data, ResponseCode::FormErr);
        check(
            meta("home.example.", DNSClass::ANY, RecordType::ANY),
            ResponseCode::NotZone,
        );
    }

    #[test]
    fn failed_prerequisite_changes_nothing() {
        let f = fixture();
        let mut m = message("lan.");
        m.add_answer(meta("printer.lan.", DNSClass::NONE, RecordType::ANY));
        m.add_authority(add("new.lan.", 60, a(5)));
        assert_eq!(f.rcode(&m, ADMIN), ResponseCode::YXDomain);
        assert!(f.at("new.lan.").is_empty());
    }

    #[test]
    fn the_four_kinds_of_update() {
        let f = fixture();
        let mut m = message("lan.");
        m.add_authority(add("box.lan.", 60, a(1)));
        m.add_authority(add("box.lan.", 60, a(2)));
        m.add_authority(add("box.lan.", 60, txt("hello")));
        assert_eq!(f.rcode(&m, ADMIN), ResponseCode::NoError);
        assert_eq!(f.at("box.lan."), vec![a(1), a(2), txt("hello")]);
        // Delete one RR (class NONE).
        let mut m = message("lan.");
        let mut one = Record::from_rdata(n("box.lan."), 0, a(1));
        one.dns_class = DNSClass::NONE;
        m.add_authority(one);
        assert_eq!(f.rcode(&m, ADMIN), ResponseCode::NoError);
        assert_eq!(f.at("box.lan."), vec![a(2), txt("hello")]);
        // Delete an RRset (class ANY, type A).
        let mut m = message("lan.");
        m.add_authority(meta("box.lan.", DNSClass::ANY, RecordType::A));
        assert_eq!(f.rcode(&m, ADMIN), ResponseCode::NoError);
        assert_eq!(f.at("box.lan."), vec![txt("hello")]);
        // Delete all RRsets of the name (class ANY, type ANY).
        let mut m = message("lan.");
        m.add_authority(meta("box.lan.", DNSClass::ANY, RecordType::ANY));
        assert_eq!(f.rcode(&m, ADMIN), ResponseCode::NoError);
        assert!(f.at("box.lan.").is_empty());
    }

    #[test]
    fn policy_violations_are_refused_and_change_nothing() {
        let f = fixture();
        // acme: TXT under _acme-challenge only.
        let mut m = message("lan.");
        m.add_authority(add("_acme-challenge.lan.", 60, txt("ok")));
        m.add_authority(add("www.lan.", 60, a(9)));
        assert_eq!(f.rcode(&m, ACME), ResponseCode::Refused);
        assert!(f.at("_acme-challenge.lan.").is_empty(), "all or nothing");
        let mut m = message("lan.");
        m.add_authority(add("_acme-challenge.lan.", 60, a(9)));
        assert_eq!(f.rcode(&m, ACME), ResponseCode::Refused, "wrong type");
        // home: only home.lan, not a name below it.
        let mut m = message("lan.");
        m.add_authority(add("x.home.lan.", 60, a(1)));
        assert_eq!(f.rcode(&m, HOME), ResponseCode::Refused);
        // A zone we do not serve, and a record outside the zone.
        let mut m = message("example.");
        m.add_authority(add("home.example.", 60, a(1)));
        assert_eq!(f.rcode(&m, ADMIN), ResponseCode::NotAuth);
        let mut m = message("lan.");
        m.add_authority(add("home.example.", 60, a(1)));
        assert_eq!(f.rcode(&m, ADMIN), ResponseCode::NotZone);
        // SOA and NS are never ours to change.
        let mut m = message("lan.");
        m.add_authority(meta("lan.", DNSClass::ANY, RecordType::NS));
        assert_eq!(f.rcode(&m, ADMIN), ResponseCode::Refused);
    }

    #[test]
    fn names_held_by_config_need_may_override() {
        let f = fixture();
        let mut m = message("lan.");
        m.add_authority(add("printer.lan.", 60, a(7)));
        assert_eq!(f.rcode(&m, ACME), ResponseCode::Refused);
        assert_eq!(
            f.at("printer.lan."),
            vec![RData::A(A(Ipv4Addr::new(10, 0, 0, 2)))]
        );
        // admin may override: its A shadows the config's A.
        assert_eq!(f.rcode(&m, ADMIN), ResponseCode::NoError);
        assert_eq!(f.at("printer.lan."), vec![a(7)]);
    }

    #[test]
    fn reverse_zone_ptr_and_malformed_updates() {
        let f = fixture();
        let mut m = message("0.0.10.in-addr.arpa.");
        m.add_authority(add(
            "77.0.0.10.in-addr.arpa.",
            60,
            RData::PTR(hickory_server::proto::rr::rdata::PTR(n("box.lan."))),
        ));
        assert_eq!(
            f.rcode(&m, ADMIN),
            ResponseCode::Refused,
            "admin's rules are for lan"
        );
        // Two zones, or a zone of another type: FORMERR.
        let mut m = message("lan.");
        m.add_query(Query::query(n("lan."), RecordType::SOA));
        assert_eq!(f.rcode(&m, ADMIN), ResponseCode::FormErr);
        let mut m = Message::new(1, MessageType::Query, OpCode::Update);
        m.add_query(Query::query(n("lan."), RecordType::A));
        assert_eq!(f.rcode(&m, ADMIN), ResponseCode::FormErr);
        // A delete with a TTL.
        let mut m = message("lan.");
        let mut r = meta("box.lan.", DNSClass::ANY, RecordType::A);
        r.ttl = 5;
        m.add_authority(r);
        assert_eq!(f.rcode(&m, ADMIN), ResponseCode::FormErr);
    }

    #[test]
    fn policy_matching() {
        let p = Policy {
            rules: vec![
                rule(
                    NameMatch::Prefix("_acme-challenge".into()),
                    &[RecordType::TXT],
                ),
                rule(NameMatch::Subtree("dyn.lan".into()), &[RecordType::A]),
            ],
            may_override: false,
        };
        assert!(p.allows("_acme-challenge.lan", RecordType::TXT));
        assert!(p.allows("_acme-challenge.a.b.lan", RecordType::TXT));
        assert!(!p.allows("x._acme-challenge.lan", RecordType::TXT));
        assert!(!p.allows("_acme-challenge-x.lan", RecordType::TXT));
        assert!(p.allows("dyn.lan", RecordType::A) && p.allows("a.dyn.lan", RecordType::A));
        assert!(!p.allows("xdyn.lan", RecordType::A));
        assert_eq!(p.types_at("a.dyn.lan"), vec![RecordType::A]);
    }
}
