//! `[[tsig_key]]`: keys that may send RFC 2136 UPDATEs, and what each may change.

use hickory_server::proto::rr::RecordType;
use hickory_server::proto::rr::rdata::tsig::TsigAlgorithm;
use toml::Spanned;

use super::defaults;
use super::error::Ctx;
use super::*;

/// One `allow` entry of a TSIG key: names and the record types it may change there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateRule {
    pub names: NameMatch,
    pub types: Vec<hickory_server::proto::rr::RecordType>,
}

/// A TSIG key and what it may change (`[[tsig_key]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsigKeyConfig {
    /// The key name as clients send it, lowercase, without trailing dot.
    pub name: String,
    pub algorithm: hickory_server::proto::rr::rdata::tsig::TsigAlgorithm,
    pub secret: Vec<u8>,
    /// Allowed clock difference, seconds.
    pub fudge: u16,
    pub allow: Vec<UpdateRule>,
    /// May change names that the config or a lease holds.
    pub may_override: bool,
}

/// A TSIG algorithm name (`keys::algorithm`).
pub(super) fn tsig_algorithm(
    cx: &Ctx,
    raw: &Spanned<String>,
    field: &str,
) -> Result<TsigAlgorithm, ConfigError> {
    crate::keys::algorithm(raw.get_ref()).ok_or_else(|| {
        let msg = "is not one of hmac-sha1, hmac-sha256, hmac-sha384, hmac-sha512";
        cx.err(raw.span(), field, msg)
    })
}

/// A TSIG secret: non-empty base64, as in a BIND key file.
pub(super) fn tsig_secret(
    cx: &Ctx,
    raw: &Spanned<String>,
    field: &str,
) -> Result<Vec<u8>, ConfigError> {
    data_encoding::BASE64
        .decode(raw.get_ref().trim().as_bytes())
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| cx.err(raw.span(), field, "is not base64 (as in a BIND key file)"))
}

pub(super) fn tsig_key(
    cx: &Ctx,
    i: usize,
    raw: &Spanned<raw::TsigKey>,
    domain: &str,
) -> Result<TsigKeyConfig, ConfigError> {
    let k = raw.get_ref();
    let field = |f: &str| format!("tsig_key[{i}].{f}");
    let name = k.name.get_ref().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || qualify(&format!("{name}."), domain).is_none() {
        return Err(cx.err(k.name.span(), field("name"), "not a valid key name"));
    }
    let algorithm = tsig_algorithm(cx, &k.algorithm, &field("algorithm"))?;
    let secret = tsig_secret(cx, &k.secret, &field("secret"))?;
    let allow = k
        .allow
        .iter()
        .enumerate()
        .map(|(j, a)| rule(cx, &format!("tsig_key[{i}].allow[{j}]"), a, domain))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TsigKeyConfig {
        name,
        algorithm,
        secret,
        fudge: k.fudge.unwrap_or(defaults::TSIG_FUDGE),
        allow,
        may_override: k.may_override,
    })
}

fn rule(
    cx: &Ctx,
    at: &str,
    raw: &Spanned<raw::Allow>,
    domain: &str,
) -> Result<UpdateRule, ConfigError> {
    let a = raw.get_ref();
    let names = match (&a.name, &a.prefix) {
        (Some(n), None) => {
            let name = qualify(n.get_ref(), domain)
                .ok_or_else(|| cx.err(n.span(), format!("{at}.name"), "not a valid DNS name"))?;
            if a.subdomains {
                NameMatch::Subtree(name)
            } else {
                NameMatch::Exact(name)
            }
        }
        (None, Some(p)) if !a.subdomains => {
            let prefix = p.get_ref().trim_end_matches('.').to_ascii_lowercase();
            // A prefix is a name of its own labels: check it as an absolute name.
            if prefix.is_empty() || qualify(&format!("{prefix}."), domain).is_none() {
                return Err(cx.err(p.span(), format!("{at}.prefix"), "not valid DNS labels"));
            }
            NameMatch::Prefix(prefix)
        }
        _ => {
            return Err(cx.err(
                raw.span(),
                at.to_string(),
                "needs exactly one of `name` or `prefix` (`subdomains` goes with `name`)",
            ));
        }
    };
    let mut types = Vec::new();
    for t in a.types.get_ref() {
        let upper = t.to_ascii_uppercase();
        if upper == "ANY" || upper == "*" {
            types.extend(crate::keys::SUPPORTED_TYPES);
            continue;
        }
        match upper.parse::<RecordType>() {
            Ok(rt) if crate::keys::SUPPORTED_TYPES.contains(&rt) => types.push(rt),
            _ => {
                return Err(cx.err(
                    a.types.span(),
                    format!("{at}.types"),
                    format!("`{t}` is not one of A, AAAA, CNAME, MX, TXT, SRV, PTR, ANY"),
                ));
            }
        }
    }
    if types.is_empty() {
        return Err(cx.err(a.types.span(), format!("{at}.types"), "must not be empty"));
    }
    types.dedup();
    Ok(UpdateRule { names, types })
}
