//! `[lease_database]`: the shared PostgreSQL lease store (`crate::lease::pg`) instead of the
//! local journal. A start-only setting: the store is opened once, at start.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::error::Ctx;
use super::{ConfigError, defaults, raw};

/// Where the shared lease set lives. The password is not here: `password_file` (or the
/// `PGPASSWORD` environment variable) is read when the daemon or a `db` tool starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseDatabase {
    /// `postgresql://user@host:port/dbname` (or a `key=value` connection string).
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    /// CA certificates (PEM) the database server's certificate must chain to (TLS required).
    pub tls_ca_file: Option<PathBuf>,
}

/// `[lease_database]`, if present.
pub(super) fn section(cx: &Ctx, raw: &raw::Root) -> Result<Option<LeaseDatabase>, ConfigError> {
    let Some(db) = &raw.lease_database else {
        return Ok(None);
    };
    let url = &db.url;
    let parsed: postgres::Config = url.get_ref().parse().map_err(|e| {
        cx.err(
            url.span(),
            "lease_database.url",
            format!("is not a PostgreSQL connection URL: {e}"),
        )
    })?;
    if parsed.get_hosts().is_empty() {
        return Err(cx.err(url.span(), "lease_database.url", "names no host"));
    }
    let password_file = match &db.password_file {
        Some(p) if !p.get_ref().starts_with('/') => {
            let msg = "must be an absolute path";
            return Err(cx.err(p.span(), "lease_database.password_file", msg));
        }
        Some(p) => Some(PathBuf::from(p.get_ref())),
        None => None,
    };
    let tls_ca_file = match &db.tls_ca_file {
        Some(p) if !p.get_ref().starts_with('/') => {
            let msg = "must be an absolute path";
            return Err(cx.err(p.span(), "lease_database.tls_ca_file", msg));
        }
        Some(p) if parsed.get_ssl_mode() == postgres::config::SslMode::Disable => {
            let msg = "needs TLS, but the url says sslmode=disable";
            return Err(cx.err(p.span(), "lease_database.tls_ca_file", msg));
        }
        Some(p) => Some(PathBuf::from(p.get_ref())),
        None => None,
    };
    Ok(Some(LeaseDatabase {
        url: url.get_ref().clone(),
        password_file,
        tls_ca_file,
        connect_timeout: millis(
            cx,
            &db.connect_timeout_ms,
            "lease_database.connect_timeout_ms",
            defaults::DB_CONNECT_TIMEOUT_MS,
        )?,
        statement_timeout: millis(
            cx,
            &db.statement_timeout_ms,
            "lease_database.statement_timeout_ms",
            defaults::DB_STATEMENT_TIMEOUT_MS,
        )?,
    }))
}

/// A timeout of 100 to 60,000 ms.
fn millis(
    cx: &Ctx,
    v: &Option<Spanned<u64>>,
    key: &str,
    default: u64,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(Duration::from_millis(default)),
        Some(ms) if (100..=60_000).contains(ms.get_ref()) => {
            Ok(Duration::from_millis(*ms.get_ref()))
        }
        Some(ms) => Err(cx.err(ms.span(), key, "must be 100 to 60000 (milliseconds)")),
    }
}

impl LeaseDatabase {
    /// The password: the first line of `password_file`, else `PGPASSWORD`, else none (the URL's
    /// own, or trust/peer authentication).
    pub fn password(&self) -> Result<Option<String>, String> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("lease_database.password_file {}: {e}", path.display()))?;
            let line = text.lines().next().unwrap_or("").to_string();
            return Ok(Some(line));
        }
        Ok(std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()))
    }
}

impl LeaseDatabase {
    /// How the store connects, with the password and the CA file read.
    pub fn settings(&self) -> Result<crate::lease::pg::PgSettings, String> {
        Ok(crate::lease::pg::PgSettings {
            url: self.url.clone(),
            password: self.password()?,
            connect_timeout: self.connect_timeout,
            statement_timeout: self.statement_timeout,
            tls_ca: match &self.tls_ca_file {
                Some(path) => Some(crate::lease::pg::tls_roots(path).map_err(|e| e.to_string())?),
                None => None,
            },
        })
    }
}
