//! `leasedns db import` and `db export`: whole lease sets into and out of the database. An
//! import goes through the same conditional upsert as the DHCP service (an address another
//! client holds in the database is left alone and reported), in one transaction under the
//! write lock, and appears in the change feed, so running nodes pick the leases up.

use std::net::Ipv4Addr;

use postgres::IsolationLevel;

use super::feed::CHANNEL;
use super::schema::{self, WRITE_LOCK};
use super::{PgError, PgSettings, rows};
use crate::clock::UnixTime;
use crate::lease::{Lease, LeaseState};

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub written: usize,
    /// Addresses another client holds in the database (not imported).
    pub refused: Vec<Ipv4Addr>,
}

/// Write the live `leases` (expired and offered ones are skipped) into the database.
pub fn import(settings: &PgSettings, leases: &[Lease], now: UnixTime) -> Result<Imported, PgError> {
    let mut client = settings.connect()?;
    schema::check(&mut client)?;
    let node = format!("import:{}", std::process::id());
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
    let sql = rows::Statements::prepare(&mut tx)?;
    let mut out = Imported::default();
    for lease in leases {
        if lease.expires <= now || lease.state == LeaseState::Offered {
            continue;
        }
        match rows::upsert(&mut tx, &sql, &node, lease, now)? {
            Some(_) => out.written += 1,
            None => out.refused.push(lease.ip),
        }
    }
    if out.written > 0 {
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &node])?;
    }
    tx.commit()?;
    Ok(out)
}

/// The live leases the database holds, by address.
pub fn export(settings: &PgSettings, now: UnixTime) -> Result<Vec<Lease>, PgError> {
    let mut client = settings.connect()?;
    schema::check(&mut client)?;
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let (leases, _) = rows::all(&mut tx)?;
    tx.commit()?;
    Ok(leases.into_iter().filter(|l| l.expires > now).collect())
}

/// `db init`: the schema on an empty database; the version reached.
pub fn init(settings: &PgSettings) -> Result<i32, PgError> {
    schema::init(&mut settings.connect()?)
}

/// `db migrate`: (from, to).
pub fn migrate(settings: &PgSettings) -> Result<(i32, i32), PgError> {
    schema::migrate(&mut settings.connect()?)
}
