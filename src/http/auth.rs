//! DynDNS2 credentials: HTTP basic auth parsing, Argon2id password hashes (PHC strings), and
//! the per-user request rate limit. No sockets; time is passed in.
//!
//! Why Argon2 (RustCrypto `argon2`): it is the memory-hard winner of the Password Hashing
//! Competition and OWASP's first choice; the crate is pure Rust (no C toolchain for the
//! Raspberry Pi cross build), maintained by RustCrypto, and stores salt and parameters in one
//! self-describing `$argon2id$...` string, so the config needs a single field.

use std::collections::{HashMap, VecDeque};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("not an Argon2 password hash: {0}")]
    Format(String),
    #[error("cannot hash: {0}")]
    Hash(String),
}

/// Hash a password into an Argon2id PHC string with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
}

/// Whether `hash` is a usable Argon2 PHC string (config validation).
pub fn check_hash(hash: &str) -> Result<(), HashError> {
    let parsed = PasswordHash::new(hash).map_err(|e| HashError::Format(e.to_string()))?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(HashError::Format(format!(
            "algorithm {} is not argon2",
            parsed.algorithm
        )));
    }
    Ok(())
}

/// Check a password against its stored hash (slow on purpose: call off the async threads).
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

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
}
