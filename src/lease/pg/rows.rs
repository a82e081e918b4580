//! Rows to leases and back, and the statements one `sync` runs: conditional upserts and
//! removes that append to the change feed in the same statement (a CTE), so a change and its
//! feed entry are one write and the database alone decides who wins an address.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use postgres::{GenericClient, Row, Statement};

use super::PgError;
use crate::clock::UnixTime;
use crate::lease::{ClientId, HwAddr, Lease, LeaseState, RemoveReason};

/// An upsert wins only when the address is free, its lease expired (`$9` is now), or it is
/// already this client's. Zero rows affected: another client holds the address.
pub const UPSERT: &str = "
WITH up AS (
    INSERT INTO leases AS l (ip, client, htype, hwaddr, hostname, expires, state, node)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (ip) DO UPDATE SET client = EXCLUDED.client, htype = EXCLUDED.htype,
        hwaddr = EXCLUDED.hwaddr, hostname = EXCLUDED.hostname, expires = EXCLUDED.expires,
        state = EXCLUDED.state, node = EXCLUDED.node, updated = now()
    WHERE l.client = EXCLUDED.client OR l.expires <= $9
    RETURNING ip)
INSERT INTO lease_changes (node, ip, kind, client, htype, hwaddr, hostname, expires, state)
SELECT $8, ip, 'upsert', $2, $3, $4, $5, $6, $7 FROM up
RETURNING seq";

/// A remove deletes the row only while it is still this client's lease (`$2`); an expiry
/// (`$3` false) only while the row has expired by `$4` (another node may have renewed it).
pub const REMOVE: &str = "
WITH del AS (
    DELETE FROM leases WHERE ip = $1 AND client = $2 AND ($3 OR expires <= $4) RETURNING ip)
INSERT INTO lease_changes (node, ip, kind) SELECT $5, ip, $6 FROM del
RETURNING seq";

/// A client holds one address: once its lease on `$2` is written, its other bound leases
/// (granted meanwhile by a node that had not yet followed the first) are deleted, each with
/// its feed entry. Declined rows are left alone (they hold an address aside, not a client).
pub const SUPERSEDE: &str = "
WITH del AS (
    DELETE FROM leases WHERE client = $1 AND ip <> $2 AND state = 'bound' RETURNING ip)
INSERT INTO lease_changes (node, ip, kind) SELECT $3, ip, 'superseded' FROM del
RETURNING ip, seq";

/// The statements of a sync, prepared once per connection: each then costs one round trip
/// (bind and execute) instead of two (parse and describe first, for an unnamed statement).
pub struct Statements {
    upsert: Statement,
    remove: Statement,
    supersede: Statement,
}

impl Statements {
    pub fn prepare(c: &mut impl GenericClient) -> Result<Statements, PgError> {
        Ok(Statements {
            upsert: c.prepare(UPSERT)?,
            remove: c.prepare(REMOVE)?,
            supersede: c.prepare(SUPERSEDE)?,
        })
    }
}

pub const COLUMNS: &str = "ip, client, htype, hwaddr, hostname, expires, state";

/// The highest change number committed so far.
pub const LAST_SEQ: &str = "SELECT coalesce(max(seq), 0)::bigint FROM lease_changes";

pub fn state_name(state: LeaseState) -> &'static str {
    match state {
        LeaseState::Declined => "declined",
        LeaseState::Bound | LeaseState::Offered => "bound",
    }
}

pub fn reason_name(reason: RemoveReason) -> &'static str {
    match reason {
        RemoveReason::Released => "released",
        RemoveReason::Expired => "expired",
        RemoveReason::Superseded => "superseded",
    }
}

pub fn reason_from(kind: &str) -> RemoveReason {
    match kind {
        "released" => RemoveReason::Released,
        "expired" => RemoveReason::Expired,
        _ => RemoveReason::Superseded,
    }
}

/// Unix seconds as the database stores them (bigint).
pub fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

/// A lease from a row of `COLUMNS` (starting at column `at`); `None` for a row that is not
/// a usable IPv4 lease.
pub fn lease_from(row: &Row, at: usize) -> Result<Option<Lease>, PgError> {
    let IpAddr::V4(ip) = row.try_get::<_, IpAddr>(at)? else {
        return Ok(None);
    };
    let client: Option<Vec<u8>> = row.try_get(at + 1)?;
    let htype: Option<i16> = row.try_get(at + 2)?;
    let hwaddr: Option<Vec<u8>> = row.try_get(at + 3)?;
    let hostname: Option<String> = row.try_get(at + 4)?;
    let expires: Option<i64> = row.try_get(at + 5)?;
    let state: Option<String> = row.try_get(at + 6)?;
    let (Some(client), Some(htype), Some(hwaddr), Some(expires)) = (client, htype, hwaddr, expires)
    else {
        return Ok(None);
    };
    Ok(Some(Lease {
        ip,
        client: ClientId::new(&client),
        hwaddr: HwAddr::new(htype as u8, &hwaddr),
        hostname: hostname.map(Arc::from),
        expires: UnixTime(u64::try_from(expires).unwrap_or(0)),
        state: match state.as_deref() {
            Some("declined") => LeaseState::Declined,
            _ => LeaseState::Bound,
        },
    }))
}

/// Write `lease` if the database lets this client have its address; the change's `seq`, or
/// `None` when another client holds it.
pub fn upsert(
    c: &mut impl GenericClient,
    sql: &Statements,
    node: &str,
    lease: &Lease,
    now: UnixTime,
) -> Result<Option<i64>, PgError> {
    let ip = IpAddr::V4(lease.ip);
    let rows = c.query(
        &sql.upsert,
        &[
            &ip,
            &lease.client.as_bytes(),
            &i16::from(lease.hwaddr.htype),
            &lease.hwaddr.bytes(),
            &lease.hostname.as_deref(),
            &secs(lease.expires),
            &state_name(lease.state),
            &node,
            &secs(now),
        ],
    )?;
    Ok(rows.first().map(|r| r.get(0)))
}

/// After `lease` was written: delete the client's other bound leases (`SUPERSEDE`); each
/// address freed, with its change's `seq`.
pub fn supersede(
    c: &mut impl GenericClient,
    sql: &Statements,
    node: &str,
    lease: &Lease,
) -> Result<Vec<(Ipv4Addr, i64)>, PgError> {
    let rows = c.query(
        &sql.supersede,
        &[&lease.client.as_bytes(), &IpAddr::V4(lease.ip), &node],
    )?;
    let mut freed = Vec::with_capacity(rows.len());
    for row in rows {
        if let IpAddr::V4(ip) = row.try_get::<_, IpAddr>(0)? {
            freed.push((ip, row.try_get(1)?));
        }
    }
    Ok(freed)
}

/// Delete the lease `held` (what this node knows is on the address) if the row still is that
/// client's lease; the change's `seq`, or `None` when it is not (gone, or someone else's).
pub fn remove(
    c: &mut impl GenericClient,
    sql: &Statements,
    node: &str,
    held: &Lease,
    reason: RemoveReason,
    now: UnixTime,
) -> Result<Option<i64>, PgError> {
    let any_expiry = reason != RemoveReason::Expired;
    let rows = c.query(
        &sql.remove,
        &[
            &IpAddr::V4(held.ip),
            &held.client.as_bytes(),
            &any_expiry,
            &secs(now),
            &node,
            &reason_name(reason),
        ],
    )?;
    Ok(rows.first().map(|r| r.get(0)))
}

/// The lease the database holds on `ip` now.
pub fn current(c: &mut impl GenericClient, ip: Ipv4Addr) -> Result<Option<Lease>, PgError> {
    let sql = format!("SELECT {COLUMNS} FROM leases WHERE ip = $1");
    match c.query_opt(&sql, &[&IpAddr::V4(ip)])? {
        Some(row) => lease_from(&row, 0),
        None => Ok(None),
    }
}

/// Every lease row (expired ones too), with the change number they reflect. Run inside a
/// repeatable-read transaction so both come from one snapshot.
pub fn all(c: &mut impl GenericClient) -> Result<(Vec<Lease>, i64), PgError> {
    let seq: i64 = c.query_one(LAST_SEQ, &[])?.get(0);
    let sql = format!("SELECT {COLUMNS} FROM leases ORDER BY ip");
    let mut leases = Vec::new();
    for row in c.query(&sql, &[])? {
        leases.extend(lease_from(&row, 0)?);
    }
    Ok((leases, seq))
}
