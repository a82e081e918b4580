//! The PostgreSQL lease store: several leasedns nodes share one lease set, and the database
//! arbitrates every change (issue 18).
//!
//! # Why the blocking `postgres` client
//! The store is driven from the DHCP thread, a plain blocking loop (no async runtime), and a
//! sync lasts one transaction that the thread must wait for anyway before any ACK leaves. The
//! `postgres` crate is `tokio-postgres` (same maintainers, same protocol code) behind a
//! blocking API with its own small runtime per connection, so the DHCP thread simply calls
//! it. There is no pool: one connection writes (the DHCP thread is the one writer) and one
//! more, on the feed thread, LISTENs.
//!
//! # Protocol
//! - `write` queues the changes in memory (no round trip).
//! - `sync` runs one transaction with every queued change (group commit) under
//!   `schema::WRITE_LOCK`: each upsert and remove is conditional (`rows::UPSERT`,
//!   `rows::REMOVE`) and appends its feed entry in the same statement; one that affects no
//!   row lost a race, its address goes to `Synced::rejected` and `durable` learns what the
//!   database holds there instead. The transaction ends with `NOTIFY leasedns_leases`.
//! - `take_remote` hands over what the feed thread (`feed`) read: other nodes' changes in
//!   commit order.
//! - `durable(ip)` answers from `held`, the store's copy of the lease set, kept by `sync`,
//!   `take_remote` and reconciliation; each address remembers the change number that set it,
//!   so a late feed entry never overwrites a newer state.
//! - Losing the connection fails the sync (`StoreError::Database`: the service withholds the
//!   ACKs). The next sync reconnects (at most one attempt a second), and first reconciles
//!   `held` with the whole table: a COMMIT whose answer was lost may have landed, and its
//!   feed entries carry this node's id, which the feed skips.
//!
//! # Code
//! - this file: settings, errors, the store and its `LeaseStore` implementation;
//! - `schema`: versions, `init`, `migrate`;
//! - `rows`: leases to rows and back, the conditional statements;
//! - `feed`: the LISTEN thread;
//! - `tls`: TLS to the database (verified against `tls_ca_file`, or encrypted only);
//! - `tools`: `db import` / `db export` (whole lease sets in and out).

mod feed;
mod rows;
pub mod schema;
mod store;
#[cfg(test)]
pub mod testdb;
#[cfg(test)]
mod tests;
mod tls;
pub mod tools;

pub use store::PgStore;

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::RootCertStore;

/// How to reach the database (built by the daemon from `[lease_database]`).
#[derive(Clone, Debug)]
pub struct PgSettings {
    /// `postgresql://user@host:port/dbname?...` or `host=... dbname=...`.
    pub url: String,
    /// From `password_file` or `PGPASSWORD`; overrides one in the URL.
    pub password: Option<String>,
    pub connect_timeout: Duration,
    /// Longest a statement may run before the database cancels it (the DHCP thread waits).
    pub statement_timeout: Duration,
    /// The CAs of `tls_ca_file` (read once: `tls_roots`) the server's certificate must chain
    /// to; given, TLS is required.
    pub tls_ca: Option<Arc<RootCertStore>>,
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// From the client or the server (the message carries its cause: no `source`, so a chain of
    /// errors does not print it twice).
    #[error("{0}")]
    Db(String),
    #[error("{0}")]
    Schema(String),
    #[error("{0}")]
    Config(String),
}

impl From<postgres::Error> for PgError {
    /// The client's message and its causes in one line ("db error" alone says nothing; the
    /// server's message, an I/O error or a TLS alert is in the cause).
    fn from(e: postgres::Error) -> Self {
        let mut msg = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            msg.push_str(": ");
            msg.push_str(&c.to_string());
            cause = c.source();
        }
        PgError::Db(msg)
    }
}

/// The CAs of a PEM file, for `PgSettings::tls_ca`.
pub fn tls_roots(path: &std::path::Path) -> Result<Arc<RootCertStore>, PgError> {
    tls::roots(path).map(Arc::new)
}

impl PgSettings {
    /// Parse the URL and apply the settings the URL does not carry.
    pub fn config(&self) -> Result<postgres::Config, PgError> {
        let mut cfg: postgres::Config = self
            .url
            .parse()
            .map_err(|e| PgError::Config(format!("bad database URL: {e}")))?;
        if self.tls_ca.is_some() {
            if cfg.get_ssl_mode() == postgres::config::SslMode::Disable {
                return Err(PgError::Config(
                    "sslmode=disable contradicts lease_database.tls_ca_file".into(),
                ));
            }
            // A CA to check means TLS is wanted: never fall back to a plain connection.
            cfg.ssl_mode(postgres::config::SslMode::Require);
        }
        if let Some(p) = &self.password {
            cfg.password(p);
        }
        let timeout_ms = self.statement_timeout.as_millis();
        // A database host that vanishes (no RST) must not hold the DHCP thread for the
        // kernel's default retransmission time (15 minutes): unacknowledged data fails after
        // the statement timeout plus the connect timeout, an idle connection within ~16 s.
        cfg.connect_timeout(self.connect_timeout)
            .tcp_user_timeout(self.statement_timeout + self.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .options(&format!("-c statement_timeout={timeout_ms}"))
            .application_name("leasedns");
        Ok(cfg)
    }

    /// Open a connection (blocking; never from an async task: the client runs its own runtime).
    /// TLS as `sslmode` says (`prefer` by default: when the server offers it).
    pub fn connect(&self) -> Result<postgres::Client, PgError> {
        let cfg = self.config()?;
        if cfg.get_ssl_mode() == postgres::config::SslMode::Disable {
            return Ok(cfg.connect(postgres::NoTls)?);
        }
        Ok(cfg.connect(tls::connector(self.tls_ca.as_ref())?)?)
    }

    /// How the connection is protected, for the start log line.
    pub fn tls_mode(&self) -> &'static str {
        let mode = self.config().map(|c| c.get_ssl_mode());
        match (&self.tls_ca, mode) {
            (Some(_), _) => "TLS, server certificate verified",
            (None, Ok(postgres::config::SslMode::Disable)) => "no TLS",
            (None, Ok(postgres::config::SslMode::Require)) => {
                "TLS, server NOT authenticated (set tls_ca_file)"
            }
            (None, _) => "TLS when the server offers it, server NOT authenticated",
        }
    }

    /// The URL without its password, for log lines.
    pub fn describe(&self) -> String {
        match self.config() {
            Ok(cfg) => {
                let hosts: Vec<String> = cfg
                    .get_hosts()
                    .iter()
                    .map(|h| match h {
                        postgres::config::Host::Tcp(h) => h.clone(),
                        postgres::config::Host::Unix(p) => p.display().to_string(),
                    })
                    .collect();
                format!(
                    "lease database {} on {}",
                    cfg.get_dbname().unwrap_or("(default)"),
                    hosts.join(",")
                )
            }
            Err(_) => "lease database (bad URL)".into(),
        }
    }
}
