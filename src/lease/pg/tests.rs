//! The store against a real PostgreSQL (`testdb`): skipped, with a line saying so, only where
//! PostgreSQL is not installed.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::testdb::TestDb;
use super::*;
use crate::clock::UnixTime;
use crate::lease::store::LeaseStore;
use crate::lease::{ClientId, HwAddr, Lease, LeaseChange, LeaseState, RemoveReason};

const NOW: UnixTime = UnixTime(1_900_000_000);

fn db() -> Option<TestDb> {
    let db = TestDb::start();
    if db.is_none() {
        eprintln!("SKIPPED: PostgreSQL is not installed (/usr/lib/postgresql/*/bin)");
    }
    db
}

fn lease(last: u8, client: u8, expires: u64) -> Lease {
    let hw = HwAddr::ethernet([2, 0, 0, 0, 0, client]);
    Lease {
        ip: Ipv4Addr::new(10, 0, 0, last),
        client: ClientId::from_hw(&hw),
        hwaddr: hw,
        hostname: Some(Arc::from(format!("host{client}").as_str())),
        expires: UnixTime(expires),
        state: LeaseState::Bound,
    }
}

fn commit(store: &mut PgStore, changes: &[LeaseChange]) -> Vec<Ipv4Addr> {
    store.write(NOW, changes).unwrap();
    store.sync(NOW).unwrap().rejected
}

/// Changes from the feed, waiting until `n` arrived (or 20 s passed).
fn remote(store: &mut PgStore, n: usize) -> Vec<LeaseChange> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(store.take_remote());
        std::thread::sleep(Duration::from_millis(20));
    }
    got
}

#[test]
fn two_nodes_the_database_decides_who_gets_an_address_and_each_follows_the_other() {
    let Some(db) = db() else { return };
    tools::init(&db.settings()).unwrap();
    let (mut a, none) = PgStore::open(db.settings(), NOW).unwrap();
    assert!(none.is_empty());
    let (mut b, _) = PgStore::open(db.settings(), NOW).unwrap();
    let l1 = lease(5, 1, NOW.0 + 600);
    // t0: A grants .5 to client 1; B, not knowing yet, tries it for client 2 and loses.
    assert!(commit(&mut a, &[LeaseChange::Upsert(l1.clone())]).is_empty());
    let l2 = lease(5, 2, NOW.0 + 600);
    assert_eq!(commit(&mut b, &[LeaseChange::Upsert(l2)]), vec![l1.ip]);
    assert_eq!(
        b.durable(l1.ip),
        Some(l1.clone()),
        "B learns what the database holds"
    );
    // t1: B's feed brings A's grant; A's own feed never brings it back.
    assert_eq!(remote(&mut b, 1), vec![LeaseChange::Upsert(l1.clone())]);
    // t2: the same client renewing through B wins; A follows.
    let renewed = lease(5, 1, NOW.0 + 1200);
    assert!(commit(&mut b, &[LeaseChange::Upsert(renewed.clone())]).is_empty());
    assert_eq!(
        remote(&mut a, 1),
        vec![LeaseChange::Upsert(renewed.clone())]
    );
    assert!(a.take_remote().is_empty());
    assert_eq!(a.durable(l1.ip), Some(renewed.clone()));
    // t3: A's stale expiry of the old lease (it has not seen the renewal yet) is refused...
    let expire = LeaseChange::Remove {
        ip: l1.ip,
        reason: RemoveReason::Expired,
    };
    let later = UnixTime(NOW.0 + 700);
    a.held.insert(l1.ip, l1.clone());
    a.write(later, std::slice::from_ref(&expire)).unwrap();
    assert_eq!(a.sync(later).unwrap().rejected, vec![l1.ip]);
    assert_eq!(a.durable(l1.ip), Some(renewed.clone()));
    // ...while a release by the client goes through, and B follows.
    let release = LeaseChange::Remove {
        ip: l1.ip,
        reason: RemoveReason::Released,
    };
    assert!(commit(&mut a, std::slice::from_ref(&release)).is_empty());
    assert_eq!(a.durable(l1.ip), None);
    assert_eq!(remote(&mut b, 1), vec![release]);
    assert_eq!(b.durable(l1.ip), None);
    // t4: an expired lease's address goes to whoever asks next.
    let short = lease(6, 3, NOW.0 + 10);
    assert!(commit(&mut a, &[LeaseChange::Upsert(short.clone())]).is_empty());
    let taker = lease(6, 4, NOW.0 + 600);
    b.write(later, &[LeaseChange::Upsert(taker.clone())])
        .unwrap();
    assert!(b.sync(later).unwrap().rejected.is_empty());
    let mut c = db.settings().connect().unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM leases WHERE client = $1",
            &[&taker.client.as_bytes()],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[test]
fn a_lost_database_fails_the_sync_and_the_store_reconnects_by_itself() {
    let Some(mut db) = db() else { return };
    tools::init(&db.settings()).unwrap();
    let (mut a, _) = PgStore::open(db.settings(), NOW).unwrap();
    let l1 = lease(7, 1, NOW.0 + 600);
    assert!(commit(&mut a, &[LeaseChange::Upsert(l1.clone())]).is_empty());
    db.stop();
    // t0: nothing can be made durable: the sync fails (the service withholds the ACK).
    let l2 = lease(8, 2, NOW.0 + 600);
    a.write(NOW, &[LeaseChange::Upsert(l2.clone())]).unwrap();
    assert!(matches!(a.sync(NOW), Err(StoreError::Database(_))));
    assert_eq!(a.durable(l2.ip), None);
    // A batch with nothing to write (a reused lease's renewal) still syncs: its ACK leaves.
    a.write(NOW, &[]).unwrap();
    assert_eq!(a.sync(NOW).unwrap(), Synced::default());
    // t1: the database is back: a later sync reconnects and works; nothing ACKed was lost.
    db.restart();
    std::thread::sleep(Duration::from_millis(1100)); // past the retry pause after t0's failure
    a.write(NOW, &[LeaseChange::Upsert(l2.clone())]).unwrap();
    assert!(a.sync(NOW).unwrap().rejected.is_empty());
    // t2: a restart while connected: the first sync after it still works (one retry on a new
    // connection), so no grant waits for the client to ask again.
    db.restart();
    let l3 = lease(9, 3, NOW.0 + 600);
    assert!(commit(&mut a, &[LeaseChange::Upsert(l3.clone())]).is_empty());
    let (_, live) = PgStore::open(db.settings(), NOW).unwrap();
    assert_eq!(live, vec![l1, l2, l3]);
}

use crate::lease::store::{StoreError, Synced};

#[test]
fn schema_versions_and_import_export() {
    let Some(db) = db() else { return };
    let s = db.settings();
    // t0: an empty database is refused with what to do.
    let err = PgStore::open(s.clone(), NOW).err().unwrap().to_string();
    assert!(err.contains("db init"), "{err}");
    assert!(matches!(tools::migrate(&s), Err(PgError::Schema(_))));
    assert_eq!(tools::init(&s).unwrap(), schema::LATEST);
    assert!(
        tools::init(&s)
            .unwrap_err()
            .to_string()
            .contains("db migrate")
    );
    assert_eq!(
        tools::migrate(&s).unwrap(),
        (schema::LATEST, schema::LATEST)
    );
    // t1: import writes live leases, skips expired ones, refuses held addresses.
    let live = lease(9, 1, NOW.0 + 600);
    let gone = lease(10, 2, NOW.0 - 1);
    let got = tools::import(&s, &[live.clone(), gone], NOW).unwrap();
    assert_eq!(
        got,
        tools::Imported {
            written: 1,
            refused: vec![]
        }
    );
    let other = lease(9, 3, NOW.0 + 600);
    let got = tools::import(&s, &[other], NOW).unwrap();
    assert_eq!(got.refused, vec![live.ip]);
    assert_eq!(tools::export(&s, NOW).unwrap(), vec![live]);
    // t2: a newer schema than this build is refused.
    let mut c = s.connect().unwrap();
    c.execute("UPDATE schema_version SET version = 99", &[])
        .unwrap();
    let err = PgStore::open(s, NOW).err().unwrap().to_string();
    assert!(err.contains("newer"), "{err}");
}

#[test]
fn a_remove_written_before_another_nodes_change_arrived_ends_only_the_lease_it_meant() {
    let Some(db) = db() else { return };
    tools::init(&db.settings()).unwrap();
    let (mut a, _) = PgStore::open(db.settings(), NOW).unwrap();
    let (mut b, _) = PgStore::open(db.settings(), NOW).unwrap();
    let old = lease(11, 1, NOW.0 + 10);
    assert!(commit(&mut a, &[LeaseChange::Upsert(old.clone())]).is_empty());
    // t0: A writes client 1's release (durability "batch": not synced yet)...
    let later = UnixTime(NOW.0 + 60);
    let release = LeaseChange::Remove {
        ip: old.ip,
        reason: RemoveReason::Released,
    };
    a.write(later, std::slice::from_ref(&release)).unwrap();
    // ...meanwhile B gives the expired address to client 2, and A's feed brings that in.
    let new = lease(11, 2, later.0 + 600);
    b.write(later, &[LeaseChange::Upsert(new.clone())]).unwrap();
    assert!(b.sync(later).unwrap().rejected.is_empty());
    assert_eq!(remote(&mut a, 1), vec![LeaseChange::Upsert(new.clone())]);
    // t1: A's sync must not delete client 2's lease: the release was client 1's.
    assert_eq!(a.sync(later).unwrap().rejected, vec![old.ip]);
    assert_eq!(a.durable(old.ip), Some(new.clone()));
    assert_eq!(tools::export(&db.settings(), later).unwrap(), vec![new]);
}

#[test]
fn a_client_granted_a_second_address_by_a_node_not_yet_following_keeps_only_the_newer() {
    let Some(db) = db() else { return };
    tools::init(&db.settings()).unwrap();
    let (mut a, _) = PgStore::open(db.settings(), NOW).unwrap();
    let (mut b, _) = PgStore::open(db.settings(), NOW).unwrap();
    // t0: A grants .7 to client 3; B, before its feed brings that, grants .8 to the same client.
    let first = lease(7, 3, NOW.0 + 600);
    assert!(commit(&mut a, &[LeaseChange::Upsert(first.clone())]).is_empty());
    let second = lease(8, 3, NOW.0 + 600);
    assert!(commit(&mut b, &[LeaseChange::Upsert(second.clone())]).is_empty());
    // The database keeps one address per client: the newer grant, the older one freed.
    assert_eq!(b.durable(first.ip), None);
    assert_eq!(b.durable(second.ip), Some(second.clone()));
    let superseded = LeaseChange::Remove {
        ip: first.ip,
        reason: RemoveReason::Superseded,
    };
    // B's own table and DNS drop the older address (B may have followed it meanwhile).
    let at_b = remote(&mut b, 1);
    assert!(at_b.contains(&superseded), "{at_b:?}");
    // A follows both: the older address freed, the client on the newer one.
    let at_a = remote(&mut a, 2);
    assert!(at_a.contains(&superseded), "{at_a:?}");
    assert!(
        at_a.contains(&LeaseChange::Upsert(second.clone())),
        "{at_a:?}"
    );
    assert_eq!(a.durable(first.ip), None);
    // A declined address is not a client's lease: a later grant to that client leaves it set
    // aside.
    let mut declined = lease(9, 4, NOW.0 + 600);
    declined.state = LeaseState::Declined;
    assert!(commit(&mut a, &[LeaseChange::Upsert(declined.clone())]).is_empty());
    let fresh = lease(10, 4, NOW.0 + 600);
    assert!(commit(&mut a, &[LeaseChange::Upsert(fresh)]).is_empty());
    assert_eq!(a.durable(declined.ip), Some(declined));
}

/// Whether this connection is encrypted, as the server sees it.
fn encrypted(c: &mut postgres::Client) -> bool {
    let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    c.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn tls_verifies_the_server_against_its_ca_and_refuses_what_it_cannot_trust() {
    let Some(db) = TestDb::start_tls() else {
        eprintln!("SKIPPED: PostgreSQL is not installed (/usr/lib/postgresql/*/bin)");
        return;
    };
    // Verified against the CA that signed the server's certificate; the store runs over it.
    let verified = db.settings();
    assert!(verified.tls_mode().contains("verified"));
    assert!(encrypted(&mut verified.connect().unwrap()));
    tools::init(&verified).unwrap();
    let (mut store, _) = PgStore::open(verified.clone(), NOW).unwrap();
    let l = lease(5, 1, NOW.0 + 600);
    assert!(commit(&mut store, &[LeaseChange::Upsert(l.clone())]).is_empty());
    assert_eq!(store.durable(l.ip), Some(l));

    // A CA that did not sign it: refused, naming the certificate.
    let other = tempfile::tempdir().unwrap();
    super::testdb::make_certificates(other.path());
    let wrong_ca = PgSettings {
        tls_ca: Some(tls_roots(&other.path().join("ca.pem")).unwrap()),
        ..verified.clone()
    };
    let e = wrong_ca.connect().err().expect("an unknown CA").to_string();
    assert!(e.contains("certificate"), "{e}");
    // The right CA but another name than the certificate's (127.0.0.1 only).
    let wrong_name = PgSettings {
        url: format!("postgresql://leasedns@localhost:{}/postgres", db.port),
        ..verified.clone()
    };
    let e = wrong_name
        .connect()
        .err()
        .expect("a wrong name")
        .to_string();
    assert!(
        e.contains("certificate") || e.contains("NotValidForName"),
        "{e}"
    );
    // A CA file with no certificate in it: a config error naming the setting.
    let empty = other.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = tls_roots(&empty).expect_err("no CA").to_string();
    assert!(e.contains("lease_database.tls_ca_file"), "{e}");

    // No CA: sslmode=require encrypts without authenticating the server (libpq's require).
    let unverified = PgSettings {
        url: format!("{}?sslmode=require", db.url()),
        tls_ca: None,
        ..verified.clone()
    };
    assert!(unverified.tls_mode().contains("NOT authenticated"));
    assert!(encrypted(&mut unverified.connect().unwrap()));
    // sslmode=disable: the server takes TLS connections only (hostssl) and refuses it.
    let plain = PgSettings {
        url: format!("{}?sslmode=disable", db.url()),
        ..unverified
    };
    let e = plain.connect().err().expect("hostssl only").to_string();
    assert!(e.contains("pg_hba.conf"), "{e}");
}
