//! The database schema, versioned: `schema_version` holds the version the tables are at, and
//! `MIGRATIONS[i]` takes them from version `i` to `i + 1`. `init` creates everything on an empty
//! database, `migrate` brings an older one up to date, and the store refuses to open any other
//! version than `LATEST` (so two builds never write one table set differently).

use postgres::Client;

use super::PgError;

/// Taken (transaction-scoped) by every transaction that changes `leases`, `lease_changes` or
/// the schema: one writer at a time, so `lease_changes.seq` is also commit order and a reader
/// that has seen `seq = n` never gets a smaller one later (a sequence alone does not promise
/// that: a transaction may take a number and commit after a later one).
pub const WRITE_LOCK: i64 = 0x6c65_6173_6564_6e73; // "leasedns"

/// The schema version this build reads and writes.
pub const LATEST: i32 = 1;

/// `MIGRATIONS[i]`: from version `i` to `i + 1`.
const MIGRATIONS: [&str; 1] = [r#"
CREATE TABLE schema_version (version integer NOT NULL);
INSERT INTO schema_version VALUES (0);
-- One row per address: the live (and not yet removed expired) leases of every node.
CREATE TABLE leases (
    ip       inet PRIMARY KEY,
    client   bytea NOT NULL,
    htype    smallint NOT NULL,
    hwaddr   bytea NOT NULL,
    hostname text,
    expires  bigint NOT NULL,          -- Unix seconds
    state    text NOT NULL CHECK (state IN ('bound', 'declined')),
    node     text NOT NULL,            -- the node that wrote the row last
    updated  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leases_client ON leases (client);
-- The change feed: every committed change, in commit order (seq), for other nodes to follow.
CREATE TABLE lease_changes (
    seq      bigserial PRIMARY KEY,
    node     text NOT NULL,
    ip       inet NOT NULL,
    kind     text NOT NULL CHECK (kind IN ('upsert', 'released', 'expired', 'superseded')),
    client   bytea,
    htype    smallint,
    hwaddr   bytea,
    hostname text,
    expires  bigint,
    state    text,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lease_changes_at ON lease_changes (at);
-- Changes up to `pruned_through` are gone: a node that has not seen them reads `leases` whole.
CREATE TABLE feed_state (pruned_through bigint NOT NULL);
INSERT INTO feed_state VALUES (0);
"#];

/// The version the database is at; `None` when it has no `schema_version` table (empty).
pub fn version(client: &mut Client) -> Result<Option<i32>, PgError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client.query_one("SELECT max(version) FROM schema_version", &[])?;
    Ok(Some(row.get::<_, Option<i32>>(0).unwrap_or(0)))
}

/// Create the schema on an empty database; returns the version reached.
pub fn init(client: &mut Client) -> Result<i32, PgError> {
    if let Some(v) = version(client)? {
        return Err(PgError::Schema(format!(
            "the database already holds a leasedns schema (version {v}); use `leasedns db migrate`"
        )));
    }
    upgrade(client, 0)
}

/// Bring an initialized database up to `LATEST`; returns (from, to).
pub fn migrate(client: &mut Client) -> Result<(i32, i32), PgError> {
    let Some(from) = version(client)? else {
        return Err(PgError::Schema(
            "the database holds no leasedns schema; use `leasedns db init`".into(),
        ));
    };
    if from > LATEST {
        return Err(newer(from));
    }
    Ok((from, upgrade(client, from)?))
}

/// Run the migrations after `from`, each in its own transaction under the write lock.
fn upgrade(client: &mut Client, from: i32) -> Result<i32, PgError> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        tx.batch_execute(sql)?;
        let to = i as i32 + 1;
        tx.execute("UPDATE schema_version SET version = $1", &[&to])?;
        tx.commit()?;
    }
    Ok(LATEST)
}

/// The store opens only a database at exactly `LATEST`.
pub fn check(client: &mut Client) -> Result<(), PgError> {
    match version(client)? {
        None => Err(PgError::Schema(
            "the database holds no leasedns schema; run `leasedns db init`".into(),
        )),
        Some(LATEST) => Ok(()),
        Some(v) if v < LATEST => Err(PgError::Schema(format!(
            "the database schema is version {v}, this build needs {LATEST}: run `leasedns db migrate`"
        ))),
        Some(v) => Err(newer(v)),
    }
}

fn newer(v: i32) -> PgError {
    PgError::Schema(format!(
        "the database schema is version {v}, newer than this build's {LATEST}: upgrade leasedns"
    ))
}
