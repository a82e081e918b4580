//! `[http]` (the DynDNS2 listener, `/metrics`, the control API) and `[[dyndns_user]]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use toml::Spanned;

use super::defaults;
use super::error::Ctx;
use super::load::{at_least_one, networks, socket_addrs};
use super::*;

/// The DynDNS2 HTTP listener (`[http]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Empty: no HTTP server.
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain and private key: serve HTTPS instead of HTTP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Requests per source address per minute (before any password is checked), and per
    /// user per minute (after), before `abuse`.
    pub rate_limit: u32,
    /// TTL of the records DynDNS2 writes.
    pub ttl: u32,
    /// Open connections per listener at most.
    pub max_connections: usize,
    /// Serve Prometheus `/metrics` (`http.metrics`).
    pub metrics: bool,
    /// Networks besides loopback whose clients may read `/metrics` (`http.metrics_from`).
    pub metrics_from: Vec<(std::net::IpAddr, u8)>,
    /// Serve the JSON control API under `/api/v1/` (`http.api`).
    pub api: bool,
    /// The bearer token read from `http.api_token_file` (required when `api` is on).
    pub api_token: Option<ApiToken>,
}

/// The control API's bearer token (the first line of `http.api_token_file`); `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Where it was read from (the CLI reads it again from here).
    pub file: PathBuf,
    pub secret: String,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiToken({}, <hidden>)", self.file.display())
    }
}

impl ApiToken {
    /// Read a token file: its first line, trimmed; at least 16 characters.
    pub fn read(file: &std::path::Path) -> Result<ApiToken, String> {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read: {e}"))?;
        let secret = text.lines().next().unwrap_or("").trim().to_string();
        if secret.len() < 16 {
            return Err("the token (its first line) must have at least 16 characters".into());
        }
        Ok(ApiToken {
            file: file.to_path_buf(),
            secret,
        })
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Vec::new(),
            tls_cert: None,
            tls_key: None,
            rate_limit: defaults::HTTP_RATE_LIMIT,
            ttl: defaults::HTTP_TTL,
            max_connections: defaults::HTTP_MAX_CONNECTIONS as usize,
            metrics: defaults::HTTP_METRICS,
            metrics_from: Vec::new(),
            api: defaults::HTTP_API,
            api_token: None,
        }
    }
}

/// A DynDNS2 account (`[[dyndns_user]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynDnsUser {
    pub name: String,
    /// An Argon2 PHC string (`leasedns hash-password`).
    pub password_hash: String,
    /// The names it may update, lowercase, without trailing dot.
    pub hosts: Vec<String>,
    pub may_override: bool,
}

pub(super) fn section(cx: &Ctx, raw: raw::Http) -> Result<HttpConfig, ConfigError> {
    let defaults = HttpConfig::default();
    let listen = socket_addrs(cx, &raw.listen, "http.listen", defaults::HTTP_PORT)?;
    let path = |p: &Option<Spanned<String>>| p.as_ref().map(|p| PathBuf::from(p.get_ref()));
    match (&raw.tls_cert, &raw.tls_key) {
        (Some(_), Some(_)) | (None, None) => {}
        (Some(s), None) | (None, Some(s)) => {
            return Err(cx.err(
                s.span(),
                "http.tls_cert",
                "tls_cert and tls_key go together",
            ));
        }
    }
    let rate_limit = at_least_one(
        cx,
        raw.rate_limit.as_ref(),
        "http.rate_limit",
        defaults.rate_limit,
    )?;
    let max_connections = at_least_one(
        cx,
        raw.max_connections.as_ref(),
        "http.max_connections",
        defaults::HTTP_MAX_CONNECTIONS,
    )?;
    let metrics = raw.metrics.as_ref().is_some_and(|m| *m.get_ref());
    if let Some(m) = raw
        .metrics
        .as_ref()
        .filter(|_| metrics && listen.is_empty())
    {
        return Err(cx.err(
            m.span(),
            "http.metrics",
            "`true` needs an address in http.listen to serve /metrics on",
        ));
    }
    let (api, api_token) = api(cx, &raw, listen.is_empty())?;
    Ok(HttpConfig {
        api,
        api_token,
        listen,
        tls_cert: path(&raw.tls_cert),
        tls_key: path(&raw.tls_key),
        rate_limit,
        ttl: raw.ttl.unwrap_or(defaults.ttl),
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        metrics,
        metrics_from: networks(cx, &raw.metrics_from, "http.metrics_from")?,
    })
}

/// `http.api` needs a listener and a token file; the token is read now, so a missing or
/// short one fails at start (and in `check-config`), not at the first request.
fn api(
    cx: &Ctx,
    raw: &raw::Http,
    no_listener: bool,
) -> Result<(bool, Option<ApiToken>), ConfigError> {
    let on = raw.api.as_ref().is_some_and(|a| *a.get_ref());
    let token = match &raw.api_token_file {
        Some(f) => Some(
            ApiToken::read(std::path::Path::new(f.get_ref()))
                .map_err(|m| cx.err(f.span(), "http.api_token_file", m))?,
        ),
        None => None,
    };
    if let Some(a) = raw.api.as_ref().filter(|_| on) {
        if no_listener {
            let m = "`true` needs an address in http.listen to serve the API on";
            return Err(cx.err(a.span(), "http.api", m));
        }
        if token.is_none() {
            let m = "`true` needs http.api_token_file (a bearer token guards every change)";
            return Err(cx.err(a.span(), "http.api", m));
        }
    }
    Ok((on, token))
}

pub(super) fn users(
    cx: &Ctx,
    raw: &[Spanned<raw::DynDnsUser>],
    domain: &str,
) -> Result<Vec<DynDnsUser>, ConfigError> {
    let mut out: Vec<DynDnsUser> = Vec::new();
    for (i, u) in raw.iter().enumerate() {
        let u = u.get_ref();
        let field = |f: &str| format!("dyndns_user[{i}].{f}");
        let name = u.name.get_ref().clone();
        if name.is_empty() || name.contains(':') || out.iter().any(|o| o.name == name) {
            return Err(cx.err(
                u.name.span(),
                field("name"),
                "must be non-empty, unique and without ':'",
            ));
        }
        if let Err(e) = crate::keys::check_hash(u.password_hash.get_ref()) {
            return Err(cx.err(
                u.password_hash.span(),
                field("password_hash"),
                format!("{e} (make one with `leasedns hash-password`)"),
            ));
        }
        let hosts = u
            .hosts
            .iter()
            .map(|h| {
                qualify(h.get_ref(), domain)
                    .ok_or_else(|| cx.err(h.span(), field("hosts"), "is not a valid DNS name"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(DynDnsUser {
            name,
            password_hash: u.password_hash.get_ref().clone(),
            hosts,
            may_override: u.may_override,
        });
    }
    Ok(out)
}
