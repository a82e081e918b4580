//! DynDNS2 `/nic/update`: who is asking (basic auth, rate limit), which names they may set,
//! and the answer codes clients parse (`good`, `nochg`, `badauth`, `nohost`, `notfqdn`,
//! `abuse`, `dnserr`). Writes through the dynamic store, like RFC 2136 UPDATE. No sockets;
//! time comes from the injected `Clock`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use hickory_server::proto::rr::rdata::{A, AAAA};
use hickory_server::proto::rr::{Name, RData, RecordType};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::{DynDnsUser, qualify};
use crate::dns::dynamic::{self, DynOp, DynamicStore, StoreError};
use crate::dns::names::Names;
use crate::http::auth::{
    RateLimiter, Refusal, SourceGuard, basic_credentials, loggable, verify_password,
};

/// The outcome of one request: the HTTP status and the text/plain body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// Ask for credentials (`WWW-Authenticate`).
    pub challenge: bool,
}

impl Answer {
    fn ok(lines: Vec<String>) -> Answer {
        Answer {
            status: 200,
            body: lines.join("\n") + "\n",
            challenge: false,
        }
    }
}

pub struct DynDns {
    users: Vec<DynDnsUser>,
    store: Arc<DynamicStore>,
    ttl: u32,
    /// Per source, before any hash. std Mutex: never held across `.await`.
    guard: Mutex<SourceGuard>,
    /// Per user, after a good password. std Mutex: never held across `.await`.
    limiter: Mutex<RateLimiter>,
    clock: Arc<dyn Clock>,
    /// Checked for unknown users, so that a reply's timing does not tell which users exist.
    decoy_hash: Option<String>,
}

/// Who a request claims to be, before the (slow) password check.
pub struct Claim {
    /// None: no such user (the password is still checked, against the decoy).
    user: Option<usize>,
    /// The name as sent (for logs, escaped).
    name: String,
    password: String,
}

impl DynDns {
    pub fn new(
        users: Vec<DynDnsUser>,
        store: Arc<DynamicStore>,
        ttl: u32,
        rate_limit: u32,
        clock: Arc<dyn Clock>,
    ) -> DynDns {
        DynDns {
            users,
            store,
            ttl,
            guard: Mutex::new(SourceGuard::new(rate_limit)),
            limiter: Mutex::new(RateLimiter::new(rate_limit)),
            clock,
            decoy_hash: crate::http::auth::hash_password("decoy password").ok(),
        }
    }

    /// Step 1 (cheap, before any hash): the claimed user, and the request counted against its
    /// source address (`source`), never against the claimed user. Err is the answer.
    pub fn claim(&self, authorization: Option<&str>, source: IpAddr) -> Result<Claim, Answer> {
        let Some((name, password)) = authorization.and_then(basic_credentials) else {
            return Err(Answer {
                status: 401,
                body: "badauth\n".into(),
                challenge: true,
            });
        };
        let now = self.clock.now().0;
        let admitted = self
            .guard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .admit(source, now);
        if let Err(why) = admitted {
            match why {
                Refusal::TooMany => info!(%source, "DynDNS2: source over its rate limit"),
                Refusal::BackOff { until } => {
                    info!(%source, wait = until.saturating_sub(now), "DynDNS2: source backing off after bad passwords");
                }
                Refusal::Full => warn!(%source, "DynDNS2: too many sources at once, refused"),
            }
            return Err(Answer::ok(vec!["abuse".into()]));
        }
        let user = self.users.iter().position(|u| u.name == name);
        Ok(Claim {
            user,
            name,
            password,
        })
    }

    /// Step 2 (slow, blocking): the password check.
    pub fn verify(&self, claim: &Claim) -> bool {
        match claim.user.and_then(|i| self.users.get(i)) {
            Some(u) => verify_password(&claim.password, &u.password_hash),
            None => {
                if let Some(decoy) = &self.decoy_hash {
                    verify_password(&claim.password, decoy);
                }
                false
            }
        }
    }

    /// After step 2: a bad password starts the source's back-off (Err is `badauth`); a good one
    /// clears it and counts against the user's own rate limit (Err is `abuse`).
    pub fn settle(&self, claim: &Claim, ok: bool, source: IpAddr) -> Result<(), Answer> {
        let now = self.clock.now().0;
        let user = loggable(&claim.name);
        if !ok {
            let known = claim.user.is_some();
            info!(%source, user = %user, known, "DynDNS2: bad user or password");
            self.guard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .failed(source, now);
            return Err(Answer::ok(vec!["badauth".into()]));
        }
        self.guard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .succeeded(source);
        let allowed = self
            .limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .allow(&claim.name, now);
        if !allowed {
            info!(user = %user, "DynDNS2: user over its rate limit");
            return Err(Answer::ok(vec!["abuse".into()]));
        }
        Ok(())
    }

    /// Step 3: the update itself, for a verified claim. `query` is the raw query string;
    /// `peer` the caller's address (used when `myip` is absent).
    pub async fn update(&self, claim: &Claim, query: &str, peer: IpAddr) -> Answer {
        let Some(user) = claim.user.and_then(|i| self.users.get(i)) else {
            return Answer::ok(vec!["badauth".into()]);
        };
        let params = parse_query(query);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let ip = match get("myip").map(str::trim).filter(|s| !s.is_empty()) {
            None => peer.to_canonical(),
            Some(text) => match text
                .split(',')
                .next()
                .unwrap_or("")
                .trim()
                .parse::<IpAddr>()
            {
                Ok(ip) => ip.to_canonical(),
                Err(_) => return Answer::ok(vec!["badip".into()]),
            },
        };
        let hosts: Vec<&str> = get("hostname")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .collect();
        let mut lines = Vec::with_capacity(hosts.len());
        for host in hosts {
            lines.push(self.one(user, host, ip).await);
        }
        Answer::ok(lines)
    }

    /// The answer line for one host name.
    async fn one(&self, user: &DynDnsUser, host: &str, ip: IpAddr) -> String {
        let host = host.trim_end_matches('.');
        let fqdn = match qualify(&format!("{host}."), "") {
            Some(f) if host.contains('.') => f,
            _ => return "notfqdn".into(),
        };
        if !user.hosts.contains(&fqdn) {
            info!(user = %user.name, host = %fqdn, "DynDNS2: host not allowed for this user");
            return "nohost".into();
        }
        let Ok(name) = Name::from_ascii(format!("{fqdn}.")) else {
            return "notfqdn".into();
        };
        let (rtype, rdata) = match ip {
            IpAddr::V4(v4) => (RecordType::A, RData::A(A(v4))),
            IpAddr::V6(v6) => (RecordType::AAAA, RData::AAAA(AAAA(v6))),
        };
        let now = self.clock.now();
        let ttl = self.ttl;
        let decide = |names: &Names| {
            if !user.may_override && dynamic::owned_by_config_or_lease(names, &name, now) {
                return Err("held by the config or a lease");
            }
            let current = names.dynamic().records(&fqdn);
            let same = current
                .iter()
                .filter(|r| r.rdata.record_type() == rtype)
                .count()
                == 1
                && current
                    .iter()
                    .any(|r| r.rdata == rdata && r.ttl == ttl && r.overrides == user.may_override);
            if same {
                return Ok((Vec::new(), ()));
            }
            let ops = vec![
                DynOp::DeleteRrset {
                    name: fqdn.clone(),
                    rtype,
                },
                DynOp::Add {
                    name: fqdn.clone(),
                    ttl,
                    rdata: rdata.clone(),
                    overrides: user.may_override,
                },
            ];
            Ok((ops, ()))
        };
        let result = self.store.transaction(decide).await;
        match result {
            Ok(((), true)) => {
                info!(user = %user.name, host = %fqdn, %ip, "DynDNS2: updated");
                format!("good {ip}")
            }
            Ok(((), false)) => format!("nochg {ip}"),
            Err(StoreError::Refused(reason)) => {
                info!(user = %user.name, host = %fqdn, reason, "DynDNS2: refused");
                "nohost".into()
            }
            Err(e @ (StoreError::Journal(_) | StoreError::Stopped)) => {
                warn!(error = %e, "DynDNS2: cannot journal the update");
                "dnserr".into()
            }
        }
    }
}

/// `a=1&b=x%2Cy` into decoded pairs (`+` is a space).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TestClock;
    use crate::config::Durability;
    use crate::dns::journal::UpdateJournal;
    use crate::dns::names::NameIndex;
    use std::net::Ipv4Addr;

    struct Fixture {
        dyndns: DynDns,
        names: crate::dns::names::SharedNames,
        clock: TestClock,
        _dir: tempfile::TempDir,
        /// Runs the async update (its journal write goes to a blocking thread).
        rt: tokio::runtime::Runtime,
    }

    fn fixture(rate_limit: u32) -> Fixture {
        let names = NameIndex::new(Names::new(
            "lan",
            &[("printer".to_string(), Ipv4Addr::new(10, 0, 0, 2))],
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, _) =
            UpdateJournal::open(&dir.path().join("dns"), Durability::None).expect("journal");
        let store = DynamicStore::new(journal, names.clone());
        let hash = crate::http::auth::hash_password("pw").expect("hash");
        let users = vec![DynDnsUser {
            name: "router".into(),
            password_hash: hash,
            hosts: vec!["home.lan".into(), "printer.lan".into()],
            may_override: false,
        }];
        let clock = TestClock::at(1000);
        let dyndns = DynDns::new(users, store, 60, rate_limit, Arc::new(clock.clone()));
        Fixture {
            dyndns,
            names,
            clock,
            _dir: dir,
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
        }
    }

    fn basic(user: &str, pw: &str) -> String {
        let token = data_encoding::BASE64.encode(format!("{user}:{pw}").as_bytes());
        format!("Basic {token}")
    }

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

    impl Fixture {
        fn get(&self, auth: Option<&str>, query: &str) -> Answer {
            self.get_from(PEER, auth, query)
        }

        fn get_from(&self, peer: IpAddr, auth: Option<&str>, query: &str) -> Answer {
            let claim = match self.dyndns.claim(auth, peer) {
                Ok(c) => c,
                Err(answer) => return answer,
            };
            let ok = self.dyndns.verify(&claim);
            if let Err(answer) = self.dyndns.settle(&claim, ok, peer) {
                return answer;
            }
            self.rt.block_on(self.dyndns.update(&claim, query, peer))
        }

        fn a(&self, fqdn: &str) -> Vec<RData> {
            let names = self.names.read();
            names
                .dynamic()
                .records(fqdn)
                .iter()
                .map(|r| r.rdata.clone())
                .collect()
        }
    }

    #[test]
    fn good_then_nochg_then_good_for_a_new_address() {
        let f = fixture(10);
        let auth = basic("router", "pw");
        let ans = f.get(Some(&auth), "hostname=home.lan&myip=192.0.2.10");
        assert_eq!(ans, Answer::ok(vec!["good 192.0.2.10".into()]));
        assert_eq!(
            f.a("home.lan"),
            vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 10)))]
        );
        let ans = f.get(Some(&auth), "hostname=home.lan&myip=192.0.2.10");
        assert_eq!(ans.body, "nochg 192.0.2.10\n");
        // No myip: the caller's address. An IPv6 address sets AAAA beside the A.
        assert_eq!(
            f.get(Some(&auth), "hostname=home.lan").body,
            "good 198.51.100.7\n"
        );
        assert_eq!(
            f.get(Some(&auth), "hostname=home.lan&myip=2001%3Adb8%3A%3A1")
                .body,
            "good 2001:db8::1\n"
        );
        assert_eq!(f.a("home.lan").len(), 2);
    }

    #[test]
    fn each_error_code() {
        let f = fixture(10);
        let ok = basic("router", "pw");
        let missing = f.get(None, "hostname=home.lan");
        assert_eq!(
            (missing.status, missing.challenge, missing.body.as_str()),
            (401, true, "badauth\n")
        );
        assert_eq!(
            f.get(Some(&basic("router", "nope")), "hostname=home.lan")
                .body,
            "badauth\n"
        );
        assert_eq!(
            f.get(Some(&basic("nobody", "pw")), "hostname=home.lan")
                .body,
            "badauth\n"
        );
        assert_eq!(
            f.get(Some(&ok), "hostname=other.lan&myip=192.0.2.1").body,
            "nohost\n"
        );
        assert_eq!(
            f.get(Some(&ok), "hostname=home&myip=192.0.2.1").body,
            "notfqdn\n"
        );
        assert_eq!(f.get(Some(&ok), "myip=192.0.2.1").body, "notfqdn\n");
        assert_eq!(
            f.get(Some(&ok), "hostname=bad_na%20me.lan").body,
            "notfqdn\n"
        );
        assert_eq!(
            f.get(Some(&ok), "hostname=home.lan&myip=300.1.1.1").body,
            "badip\n"
        );
        // printer.lan is a config name: this user may not override it.
        assert_eq!(
            f.get(Some(&ok), "hostname=printer.lan&myip=192.0.2.1").body,
            "nohost\n"
        );
        // Two hosts, one answer line each.
        assert_eq!(
            f.get(Some(&ok), "hostname=home.lan%2Cother.lan&myip=192.0.2.9")
                .body,
            "good 192.0.2.9\nnohost\n"
        );
        assert!(f.a("other.lan").is_empty() && f.a("printer.lan").is_empty());
    }

    #[test]
    fn rate_limit_answers_abuse() {
        let f = fixture(2);
        let auth = basic("router", "pw");
        f.get(Some(&auth), "hostname=home.lan&myip=192.0.2.1");
        f.get(Some(&auth), "hostname=home.lan&myip=192.0.2.2");
        assert_eq!(
            f.get(Some(&auth), "hostname=home.lan&myip=192.0.2.3").body,
            "abuse\n"
        );
        assert_eq!(
            f.a("home.lan"),
            vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 2)))]
        );
        f.clock.advance(61);
        assert_eq!(
            f.get(Some(&auth), "hostname=home.lan&myip=192.0.2.3").body,
            "good 192.0.2.3\n"
        );
    }

    #[test]
    fn bad_passwords_naming_a_user_from_one_source_do_not_lock_it_out_elsewhere() {
        let f = fixture(10);
        let attacker = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
        let wrong = basic("router", "guess");
        let answers: Vec<String> = (0..10)
            .map(|_| f.get_from(attacker, Some(&wrong), "hostname=home.lan").body)
            .collect();
        assert!(answers[..4].iter().all(|a| a == "badauth\n"), "{answers:?}");
        assert!(answers[4..].iter().all(|a| a == "abuse\n"), "{answers:?}");
        let ok = basic("router", "pw");
        assert_eq!(
            f.get(Some(&ok), "hostname=home.lan&myip=192.0.2.8").body,
            "good 192.0.2.8\n",
            "the real password from another address still works"
        );
        assert_eq!(
            f.get_from(attacker, Some(&ok), "hostname=home.lan").body,
            "abuse\n",
            "the attacking address waits out its back-off"
        );
        f.clock.advance(31);
        assert_eq!(
            f.get_from(attacker, Some(&ok), "hostname=home.lan&myip=192.0.2.8")
                .body,
            "nochg 192.0.2.8\n"
        );
    }
}
