//! DynDNS2 credentials: HTTP basic auth parsing, the per-source limit and failure back-off
//! applied before any hash, and the per-user rate limit applied after a good password. The
//! Argon2id password hashes themselves live in `keys` (config checks them too). No sockets;
//! time is passed in.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

pub use crate::keys::{HashError, check_hash, hash_password, verify_password};

/// The user and password of an `Authorization: Basic ...` header value.
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = data_encoding::BASE64
        .decode(encoded.trim().as_bytes())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// At most `limit` requests per user in any 60-second window.
pub struct RateLimiter {
    limit: usize,
    seen: HashMap<String, VecDeque<u64>>,
}

/// Users remembered at most (the oldest-looking entries are dropped past this).
const MAX_USERS: usize = 10_000;

impl RateLimiter {
    pub fn new(limit: u32) -> RateLimiter {
        RateLimiter {
            limit: usize::try_from(limit).unwrap_or(usize::MAX).max(1),
            seen: HashMap::new(),
        }
    }

    /// Count one request by `user` at `now` (seconds); false when over the limit.
    pub fn allow(&mut self, user: &str, now: u64) -> bool {
        if self.seen.len() >= MAX_USERS && !self.seen.contains_key(user) {
            self.seen
                .retain(|_, times| times.back().is_some_and(|t| now.saturating_sub(*t) < 60));
            if self.seen.len() >= MAX_USERS {
                // Flooded with made-up names: forget everyone rather than grow without bound.
                self.seen.clear();
            }
        }
        let times = self.seen.entry(user.to_string()).or_default();
        while times.front().is_some_and(|t| now.saturating_sub(*t) >= 60) {
            times.pop_front();
        }
        if times.len() >= self.limit {
            return false;
        }
        times.push_back(now);
        true
    }
}

/// Sources remembered at most. Past this, entries with nothing left to remember are dropped;
/// if every one is still live, a new source is refused (never an old one forgotten early).
const MAX_SOURCES: usize = 16_384;
/// Bad passwords from one source that cost nothing more; each one after that doubles the wait.
const FREE_FAILURES: u32 = 3;
/// The first back-off, and the longest.
const BACKOFF_BASE: u64 = 30;
const BACKOFF_MAX: u64 = 3600;

/// Why a source is turned away before its password is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Over `limit` requests in the last 60 seconds.
    TooMany,
    /// Too many bad passwords lately: refused until the back-off ends.
    BackOff { until: u64 },
    /// The table of sources is full of live entries.
    Full,
}

#[derive(Default)]
struct Source {
    times: VecDeque<u64>,
    failures: u32,
    last_failure: u64,
    blocked_until: u64,
}

impl Source {
    /// Whether forgetting this entry at `now` loses nothing: its window and back-off are over
    /// and its last failure is more than `BACKOFF_MAX` old.
    fn idle(&self, now: u64) -> bool {
        self.blocked_until <= now
            && self
                .times
                .back()
                .is_none_or(|t| now.saturating_sub(*t) >= 60)
            && (self.failures == 0 || now.saturating_sub(self.last_failure) >= BACKOFF_MAX)
    }
}

/// Per source address (an IPv6 source counts by its /64): at most `limit` requests a minute,
/// and after `FREE_FAILURES` bad passwords an exponential back-off. Charged to the address the
/// connection comes from, never to the claimed user, so a stranger cannot lock a user out.
pub struct SourceGuard {
    limit: usize,
    sources: HashMap<IpAddr, Source>,
}

/// The key a source is counted under: the IPv4 address, or the IPv6 /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl SourceGuard {
    pub fn new(limit: u32) -> SourceGuard {
        SourceGuard {
            limit: usize::try_from(limit).unwrap_or(usize::MAX).max(1),
            sources: HashMap::new(),
        }
    }

    /// Count one request from `ip` at `now`, before any password is hashed.
    pub fn admit(&mut self, ip: IpAddr, now: u64) -> Result<(), Refusal> {
        let key = source_key(ip);
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&key) {
            self.sources.retain(|_, s| !s.idle(now));
            if self.sources.len() >= MAX_SOURCES {
                return Err(Refusal::Full);
            }
        }
        let s = self.sources.entry(key).or_default();
        if s.blocked_until > now {
            return Err(Refusal::BackOff {
                until: s.blocked_until,
            });
        }
        while s
            .times
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= 60)
        {
            s.times.pop_front();
        }
        if s.times.len() >= self.limit {
            return Err(Refusal::TooMany);
        }
        s.times.push_back(now);
        Ok(())
    }

    /// A bad password from `ip`: past `FREE_FAILURES`, wait 30 s, 60 s, ... up to an hour.
    pub fn failed(&mut self, ip: IpAddr, now: u64) {
        let Some(s) = self.sources.get_mut(&source_key(ip)) else {
            return;
        };
        if now.saturating_sub(s.last_failure) >= BACKOFF_MAX {
            s.failures = 0;
        }
        s.failures = s.failures.saturating_add(1);
        s.last_failure = now;
        if s.failures > FREE_FAILURES {
            let doublings = (s.failures - FREE_FAILURES - 1).min(16);
            let wait = (BACKOFF_BASE << doublings).min(BACKOFF_MAX);
            s.blocked_until = now + wait;
        }
    }

    /// A good password from `ip`: its failures are forgiven.
    pub fn succeeded(&mut self, ip: IpAddr) {
        if let Some(s) = self.sources.get_mut(&source_key(ip)) {
            s.failures = 0;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sources.len()
    }
}

/// A client-supplied string made safe for one log line: control characters, quotes and
/// backslashes escaped (Rust's `escape_debug`), and cut to 128 characters.
pub fn loggable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(128)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > 128 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let hash = hash_password("s3cret").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        check_hash(&hash).expect("valid");
        assert!(verify_password("s3cret", &hash));
        assert!(!verify_password("s3cret!", &hash));
        assert!(check_hash("plaintext").is_err());
        assert!(
            !verify_password("x", "plaintext"),
            "a bad hash never matches"
        );
    }

    #[test]
    fn basic_auth_header() {
        // "router:pa:ss" — the password may contain ':'.
        let header = format!("Basic {}", data_encoding::BASE64.encode(b"router:pa:ss"));
        assert_eq!(
            basic_credentials(&header),
            Some(("router".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn three_per_minute_then_abuse_until_the_window_moves() {
        let mut r = RateLimiter::new(3);
        assert!(r.allow("a", 100) && r.allow("a", 110) && r.allow("a", 120));
        assert!(!r.allow("a", 130), "fourth within a minute");
        assert!(r.allow("b", 130), "other users are not affected");
        assert!(r.allow("a", 160), "t=100 left the window");
        assert!(!r.allow("a", 161));
    }

    #[test]
    fn a_source_backs_off_after_bad_passwords_and_others_are_not_affected() {
        let mut g = SourceGuard::new(100);
        let attacker: IpAddr = "10.0.0.9".parse().expect("ip");
        let owner: IpAddr = "10.0.0.2".parse().expect("ip");
        for t in 0..FREE_FAILURES {
            g.admit(attacker, u64::from(t)).expect("free failures");
            g.failed(attacker, u64::from(t));
        }
        g.admit(attacker, 10).expect("fourth try still admitted");
        g.failed(attacker, 10);
        assert_eq!(g.admit(attacker, 11), Err(Refusal::BackOff { until: 40 }));
        assert_eq!(g.admit(owner, 11), Ok(()), "another source is untouched");
        g.admit(attacker, 40).expect("back-off over");
        g.failed(attacker, 40);
        assert_eq!(g.admit(attacker, 41), Err(Refusal::BackOff { until: 100 }));
        g.admit(attacker, 100).expect("back-off over");
        g.succeeded(attacker);
        g.failed(attacker, 101);
        g.admit(attacker, 102)
            .expect("a good password forgave the earlier failures");
    }

    #[test]
    fn per_source_limit_counts_v6_by_its_64_and_never_forgets_a_live_source() {
        let mut g = SourceGuard::new(2);
        let a: IpAddr = "2001:db8::1".parse().expect("ip");
        let b: IpAddr = "2001:db8::2".parse().expect("ip");
        assert!(g.admit(a, 0).is_ok() && g.admit(b, 1).is_ok());
        assert_eq!(g.admit(a, 2), Err(Refusal::TooMany), "same /64");
        assert!(g.admit(a, 61).is_ok(), "t=0 left the window");
        let mut g = SourceGuard::new(1);
        for i in 0..MAX_SOURCES {
            let ip = IpAddr::from(u32::try_from(i).expect("small").to_be_bytes());
            g.admit(ip, 5).expect("room");
        }
        let late: IpAddr = "198.51.100.1".parse().expect("ip");
        assert_eq!(g.admit(late, 30), Err(Refusal::Full), "all live: refuse");
        assert_eq!(
            g.admit(IpAddr::from([0, 0, 0, 0]), 30),
            Err(Refusal::TooMany)
        );
        assert!(g.admit(late, 65).is_ok(), "expired entries make room");
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn logged_strings_cannot_forge_lines() {
        assert_eq!(loggable("router\nINFO fake"), "router\\nINFO fake");
        assert_eq!(
            loggable("a\nb\r\u{1b}[31m\"q\""),
            "a\\nb\\r\\u{1b}[31m\\\"q\\\""
        );
        assert!(!loggable("x\n").contains('\n'));
        assert_eq!(loggable(&"y".repeat(300)).len(), 131);
    }
}
