//! Credentials and grants that the config validates and the services use: TSIG keys (HMAC via
//! `ring`), DynDNS2 password hashes (Argon2id), and the record types an update key may be
//! granted. Below `config`, `dns` and `http` in the module graph: it imports nothing from the
//! crate, so config can check a key or hash without importing the services that use them.
//! No sockets, no clock.
//!
//! Why Argon2 (RustCrypto `argon2`): it is the memory-hard winner of the Password Hashing
//! Competition and OWASP's first choice; the crate is pure Rust (no C toolchain for the
//! Raspberry Pi cross build), maintained by RustCrypto, and stores salt and parameters in one
//! self-describing `$argon2id$...` string, so the config needs a single field.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use hickory_server::proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_server::proto::rr::{Name, RecordType};
use ring::hmac;

/// The record types an update may add and the zone answers from the dynamic store.
pub const SUPPORTED_TYPES: [RecordType; 7] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::PTR,
];

/// Seconds of clock difference accepted when a key does not say (RFC 8945 recommends 300).
pub const FUDGE: u16 = 300;

/// One shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// Lowercase, fully qualified.
    pub name: Name,
    pub algorithm: TsigAlgorithm,
    pub secret: Vec<u8>,
    /// Allowed difference between the signer's clock and ours, in seconds.
    pub fudge: u16,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TsigKey({} {} fudge {}, secret hidden)",
            self.name, self.algorithm, self.fudge
        )
    }
}

/// The algorithms we sign and verify with.
pub fn supported(algorithm: &TsigAlgorithm) -> bool {
    ring_algorithm(algorithm).is_some()
}

/// The algorithm of a config name: hmac-sha1, hmac-sha256, hmac-sha384, hmac-sha512 (any case).
pub fn algorithm(name: &str) -> Option<TsigAlgorithm> {
    let alg = TsigAlgorithm::from_name(Name::from_ascii(name.to_ascii_lowercase()).ok()?);
    supported(&alg).then_some(alg)
}

fn ring_algorithm(algorithm: &TsigAlgorithm) -> Option<hmac::Algorithm> {
    Some(match algorithm {
        TsigAlgorithm::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        TsigAlgorithm::HmacSha256 => hmac::HMAC_SHA256,
        TsigAlgorithm::HmacSha384 => hmac::HMAC_SHA384,
        TsigAlgorithm::HmacSha512 => hmac::HMAC_SHA512,
        _ => return None,
    })
}

impl TsigKey {
    /// A key named as in config ("ddns", "rev.key."; any case), with the default fudge; None
    /// for a name that is not a DNS name.
    pub fn new(name: &str, algorithm: TsigAlgorithm, secret: Vec<u8>) -> Option<TsigKey> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        Some(TsigKey {
            name: Name::from_ascii(fqdn).ok()?.to_lowercase(),
            algorithm,
            secret,
            fudge: FUDGE,
        })
    }

    fn hmac_key(&self) -> Option<hmac::Key> {
        ring_algorithm(&self.algorithm).map(|a| hmac::Key::new(a, &self.secret))
    }

    /// The MAC of `data` (empty for an unsupported algorithm, which config refuses).
    pub fn mac(&self, data: &[u8]) -> Vec<u8> {
        self.hmac_key()
            .map(|k| hmac::sign(&k, data).as_ref().to_vec())
            .unwrap_or_default()
    }

    /// Constant-time check of a full-length MAC.
    pub(crate) fn verify(&self, data: &[u8], mac: &[u8]) -> bool {
        self.hmac_key()
            .is_some_and(|k| hmac::verify(&k, data, mac).is_ok())
    }

    /// Constant-time check of a MAC that may be truncated (its leading bytes, RFC 8945
    /// §5.2.2.1); an empty MAC never matches.
    pub(crate) fn verify_truncated(&self, data: &[u8], mac: &[u8]) -> bool {
        let ours = self.mac(data);
        // Every byte is compared whatever the first difference (no early exit).
        let differ = ours.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        !mac.is_empty() && mac.len() <= ours.len() && differ == 0
    }
}

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
