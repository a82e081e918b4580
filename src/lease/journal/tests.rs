//! The lease journal's tests: golden records, replay, torn and damaged files, holes, crashes at
//! every step of a compaction, rollback after failures, fsync counts, dnsmasq import.
use super::*;
use std::time::Instant;

const NONE: Durability = Durability::None;

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn lease(n: u8, expires: u64, host: Option<&str>) -> Lease {
    let hwaddr = HwAddr::ethernet([2, 0, 0, 0, 0, n]);
    Lease {
        ip: ip(n),
        client: ClientId::from_hw(&hwaddr),
        hwaddr,
        hostname: host.map(Arc::from),
        expires: UnixTime(expires),
        state: LeaseState::Bound,
    }
}

fn up(l: &Lease) -> LeaseChange {
    LeaseChange::Upsert(l.clone())
}

fn rm(n: u8) -> LeaseChange {
    LeaseChange::Remove {
        ip: ip(n),
        reason: RemoveReason::Released,
    }
}

fn open(path: &Path, now: u64) -> (Journal, Vec<Lease>) {
    Journal::open(path, NONE, UnixTime(now)).expect("open")
}

fn len(path: &Path) -> u64 {
    fs::metadata(path).expect("metadata").len()
}

/// One encoded line, without its newline.
fn encode(change: &LeaseChange) -> String {
    let payload = match change {
        LeaseChange::Upsert(l) => upsert_payload(l).expect("journaled state"),
        LeaseChange::Remove { ip, reason } => remove_payload(*ip, *reason),
    };
    let mut s = String::new();
    push_record(&mut s, &payload);
    assert!(s.ends_with('\n') && s.matches('\n').count() == 1, "{s:?}");
    s.trim_end_matches('\n').to_string()
}

#[test]
fn record_golden_line_and_round_trip() {
    let a = lease(5, 1000, Some("laptop"));
    let line = encode(&up(&a));
    let payload = "U 10.0.0.5 1000 b 1 02:00:00:00:00:05 01020000000005 laptop";
    assert_eq!(
        line,
        format!("{:08x} {payload}", crc32fast::hash(payload.as_bytes()))
    );
    assert_eq!(parse_line(line.as_bytes()), Ok(Record::Upsert(a)));

    let mut odd = lease(6, u64::MAX, Some("a b%c\nd-é"));
    odd.state = LeaseState::Declined;
    odd.hwaddr = HwAddr::new(1, &[]);
    odd.client = ClientId::new(&[]);
    let mut dash = lease(7, 1, Some("-"));
    dash.hwaddr.htype = 6;
    for l in [odd, dash, lease(8, 2, None)] {
        let line = encode(&up(&l));
        assert_eq!(line.split(' ').count(), 9, "{line}");
        assert_eq!(parse_line(line.as_bytes()), Ok(Record::Upsert(l)));
    }
    assert_eq!(
        parse_line(encode(&rm(5)).as_bytes()),
        Ok(Record::Remove(ip(5)))
    );
}

#[test]
fn bad_lines_are_rejected_not_panicked_on() {
    let good = encode(&up(&lease(5, 1000, Some("laptop"))));
    let mut flipped = good.clone().into_bytes();
    flipped[20] ^= 1;
    for bad in [&b""[..], b"x", b"zzzzzzzz U", &flipped, b"00000000 "] {
        assert!(parse_line(bad).is_err(), "{bad:?}");
    }
    let payload = "U 10.0.0.5 1000 x 1 - - -";
    let unknown_state = format!("{:08x} {payload}", crc32fast::hash(payload.as_bytes()));
    assert!(parse_line(unknown_state.as_bytes()).is_err());
}

#[test]
fn reopen_replays_upserts_and_removes_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state/leases.journal");
    // t=100: A and B granted; t=150: A released, B renewed; t=160: A granted again, C granted.
    let (mut j, leases) = open(&path, 100);
    assert!(leases.is_empty());
    let (a, b, c) = (
        lease(1, 1000, Some("a")),
        lease(2, 1000, None),
        lease(3, 1000, None),
    );
    j.commit(&[up(&a), up(&b)]).expect("commit");
    let b2 = lease(2, 2000, Some("bee"));
    j.commit(&[rm(1), up(&b2)]).expect("commit");
    drop(j);
    let (mut j, leases) = open(&path, 200);
    assert_eq!(leases, vec![b2.clone()]);
    j.commit(&[up(&a), up(&c), rm(3)]).expect("commit");
    drop(j);
    let (j, leases) = open(&path, 200);
    assert_eq!(leases, vec![a, b2]);
    assert_eq!(j.stats().journal_records, 7);
    let text = fs::read_to_string(&path).expect("read");
    assert!(
        text.lines()
            .next()
            .expect("header")
            .ends_with(" H leasedns-journal 1 gen=1")
    );
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (a, b, c) = (
        lease(1, 1000, Some("a")),
        lease(2, 1000, None),
        lease(3, 1000, None),
    );
    let (mut j, _) = open(&path, 100);
    j.commit(&[up(&a), up(&b)]).expect("commit");
    j.commit(&[rm(1)]).expect("commit");
    j.commit(&[up(&c)]).expect("commit");
    drop(j);
    let full = fs::read(&path).expect("read");
    let last_start = full[..full.len() - 1]
        .iter()
        .rposition(|&x| x == b'\n')
        .expect("nl")
        + 1;
    for cut in last_start..full.len() {
        fs::write(&path, &full[..cut]).expect("write");
        // The torn record is gone, everything before it is kept, the file is cut back.
        let (mut j, leases) = open(&path, 100);
        assert_eq!(leases, vec![b.clone()], "cut at {cut}");
        assert_eq!(len(&path), last_start as u64, "cut at {cut}");
        // Later commits append cleanly and replay.
        let d = lease(4, 1000, None);
        j.commit(&[up(&d)]).expect("commit");
        drop(j);
        let (_, leases) = open(&path, 100);
        assert_eq!(leases, vec![b.clone(), d], "cut at {cut}");
    }
    fs::write(&path, &full).expect("write");
    let (_, leases) = open(&path, 100);
    assert_eq!(leases, vec![b, c]);
    assert!(!with_suffix(&path, ".damaged").exists());
}

#[test]
fn corrupt_record_in_the_middle_cuts_there_and_saves_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (mut j, _) = open(&path, 100);
    for n in 1..=4 {
        j.commit(&[up(&lease(n, 1000, None))]).expect("commit");
    }
    drop(j);
    let mut bytes = fs::read(&path).expect("read");
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| i == 0 || bytes[i - 1] == b'\n')
        .collect();
    // Line 0 is the header, line 2 is lease 2: damage one byte of its payload.
    let second = starts[2];
    bytes[second + 12] ^= 0x20;
    fs::write(&path, &bytes).expect("write");

    let (mut j, leases) = open(&path, 100);
    assert_eq!(leases, vec![lease(1, 1000, None)]);
    assert_eq!(len(&path), second as u64);
    let saved = fs::read(with_suffix(&path, ".damaged")).expect("damaged tail saved");
    assert_eq!(saved, bytes[second..]);
    j.commit(&[up(&lease(9, 1000, None))]).expect("commit");
    drop(j);
    let (_, leases) = open(&path, 100);
    assert_eq!(leases, vec![lease(1, 1000, None), lease(9, 1000, None)]);
}

#[test]
fn expired_and_declined_past_their_time_are_dropped_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let mut declined_old = lease(3, 150, None);
    declined_old.state = LeaseState::Declined;
    let mut declined_live = lease(4, 250, None);
    declined_live.state = LeaseState::Declined;
    let changes = [
        up(&lease(1, 150, None)),
        up(&lease(2, 200, None)),
        up(&declined_old),
        up(&declined_live),
        up(&lease(5, 300, Some("live"))),
    ];
    let (mut j, _) = open(&path, 100);
    j.commit(&changes).expect("commit");
    drop(j);
    // At t=200 a lease expiring at 200 has ended.
    let (_, leases) = open(&path, 200);
    assert_eq!(leases, vec![declined_live, lease(5, 300, Some("live"))]);
}

#[test]
fn compaction_runs_in_the_background_keeps_the_state_and_shrinks_the_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (mut j, _) = open(&path, 100);
    let mut live: Vec<Lease> = (1..=3).map(|n| lease(n, 1000, Some("h"))).collect();
    for i in 0..1000u64 {
        let n = (i % 3) as usize;
        live[n].expires = UnixTime(1000 + i);
        j.commit(&[up(&live[n])]).expect("commit");
    }
    assert_eq!(
        j.stats().compactions,
        0,
        "1000 records is not over the limit"
    );
    let before = len(&path);
    // Record 1001 and 1002 cross the limit: the journal rotates, a thread writes the snapshot.
    live.push(lease(4, 5000, None));
    j.commit(&[up(&live[3]), rm(9)]).expect("commit");
    assert_eq!(j.stats().generation, 2, "rotated at once");
    assert!(j.wait_compacted(Duration::from_secs(5)));
    let stats = j.stats();
    assert_eq!(
        (stats.compactions, stats.generation, stats.journal_records),
        (1, 2, 0)
    );
    assert!(len(&path) < before / 100, "{} vs {before}", len(&path));
    assert!(!with_suffix(&path, ".prev").exists(), ".prev deleted");
    let snapshot = fs::read_to_string(j.snapshot_path()).expect("snapshot");
    assert_eq!(snapshot.lines().count(), 5);
    assert!(snapshot.starts_with(&format!(
        "{:08x} H leasedns-snapshot 1 gen=1\n",
        crc32fast::hash(b"H leasedns-snapshot 1 gen=1")
    )));
    j.commit(&[rm(1)]).expect("commit");
    drop(j);
    let (j, leases) = open(&path, 100);
    assert_eq!(leases, live[1..].to_vec());
    assert_eq!(j.stats().generation, 2);
}

#[test]
fn second_compaction_merges_the_snapshot_file_and_prev_without_expired_leases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    // Run 1 at t=100: leases 1..=3; lease 3 ends at 150, while the server is down.
    let (mut j, _) = open(&path, 100);
    let (a, b, c) = (
        lease(1, 1000, Some("a")),
        lease(2, 1000, None),
        lease(3, 150, None),
    );
    j.commit(&[up(&a), up(&b), up(&c)]).expect("commit");
    j.compact_now();
    assert!(j.wait_compacted(Duration::from_secs(5)));
    drop(j);

    // Run 2 at t=200: b renews, d arrives, a is released; then a compaction from the files.
    let (mut j, leases) = open(&path, 200);
    assert_eq!(leases, vec![a.clone(), b.clone()]);
    let b2 = lease(2, 2000, Some("b"));
    let d = lease(4, 3000, None);
    j.commit(&[up(&b2), up(&d), rm(1)]).expect("commit");
    j.compact_now();
    assert!(j.wait_compacted(Duration::from_secs(5)));
    let snapshot = fs::read_to_string(j.snapshot_path()).expect("snapshot");
    let lines: Vec<&str> = snapshot.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "header, b2, d; not a (released) nor c (expired)"
    );
    assert_eq!(lines[1], encode(&up(&b2)), "lines are copied byte for byte");
    assert_eq!(lines[2], encode(&up(&d)));
    assert!(!with_suffix(&path, ".prev").exists());
    drop(j);
    let (_, leases) = open(&path, 200);
    assert_eq!(leases, vec![b2, d]);
}

#[test]
fn the_packed_arena_replaces_restores_and_shrinks() {
    let mut store = PackedLeases::default();
    // t0: two leases stored; replacing one keeps the old record for an undo.
    assert_eq!(store.insert(ip(1), b"one"), None);
    assert_eq!(store.insert(ip(2), b"two"), None);
    let old = store.insert(ip(1), b"uno");
    assert_eq!(old, Some(0));
    assert_eq!((store.get(ip(1)), store.live), (Some(&b"uno"[..]), 8));
    // t1: the undo puts the first record back; removing and restoring works the same.
    store.restore(ip(1), old);
    assert_eq!(store.get(ip(1)), Some(&b"one"[..]));
    let gone = store.remove(ip(2));
    assert_eq!((store.get(ip(2)), store.len()), (None, 1));
    store.restore(ip(2), gone);
    assert_eq!(store.get(ip(2)), Some(&b"two"[..]));
    assert_eq!(store.live, 8);
    // t2: after many renewals the garbage is dropped and every lease reads the same.
    let big = vec![7u8; 4096];
    for _ in 0..600 {
        store.insert(ip(3), &big);
    }
    assert!(store.arena.len() > 2 << 20);
    store.maybe_shrink();
    assert_eq!(store.arena.len(), store.live);
    assert_eq!(store.live, 8 + 5 + 4096);
    assert_eq!(store.get(ip(1)), Some(&b"one"[..]));
    assert_eq!(store.get(ip(2)), Some(&b"two"[..]));
    assert_eq!(store.get(ip(3)), Some(&big[..]));
}

#[test]
fn packed_leases_round_trip_and_bad_ones_are_refused() {
    let mut odd = lease(6, u64::MAX, Some("é-x"));
    odd.state = LeaseState::Declined;
    odd.hwaddr = HwAddr::new(1, &[]);
    odd.client = ClientId::new(&[0; 300]);
    let with_id = |len: usize| {
        let mut l = lease(9, 5, Some("id"));
        l.client = ClientId::new(&vec![9; len]);
        l
    };
    let ids = [0, 3, 253, 254, 255, 256].map(with_id);
    for l in [lease(5, 1000, Some("laptop")), lease(7, 1, None), odd]
        .into_iter()
        .chain(ids)
    {
        let packed = pack(&l, l.expires).expect("packed");
        assert_eq!(unpack(l.ip, &packed), Some(l));
    }
    // The usual lease: 8 + 3 + 6 + 1 bytes and its name.
    let usual = pack(&lease(5, 1000, Some("laptop")), UnixTime(1000)).expect("packed");
    assert_eq!(usual.len(), 18 + 6);
    let mut offer = lease(8, 1, None);
    offer.state = LeaseState::Offered;
    assert_eq!(pack(&offer, offer.expires), None);
    let good = pack(&lease(5, 1000, None), UnixTime(1000)).expect("packed");
    for cut in 0..good.len() {
        assert_eq!(unpack(ip(5), &good[..cut]), None, "cut at {cut}");
    }
    let mut bad_state = good.to_vec();
    bad_state[8] = b'x';
    assert_eq!(unpack(ip(5), &bad_state), None);
}

#[test]
fn replay_keeps_the_last_record_of_each_address_like_a_map() {
    // Upserts and removes at random on 40 addresses, against a BTreeMap; then the live
    // ones at t=25, sorted.
    let mut replayed = Replayed::default();
    let mut model = BTreeMap::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..4000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (x % 40) as u8;
        if (x >> 8).is_multiple_of(3) {
            replayed.remove(ip(n));
            model.remove(&ip(n));
        } else {
            let l = lease(n, (x >> 16) % 50, Some("h"));
            model.insert(l.ip, l.clone());
            replayed.upsert(l);
        }
        assert_eq!(replayed.len(), model.len());
        assert!(model.keys().all(|ip| replayed.position(*ip).is_some()));
    }
    let want: Vec<Lease> = model
        .into_values()
        .filter(|l| l.expires > UnixTime(25))
        .collect();
    assert_eq!(into_live(replayed, UnixTime(25)), want);
}

#[test]
fn hex_fields_parse_one_or_two_digits_and_reject_the_rest() {
    assert_eq!(hex_field("2:0A:ff", ':'), Ok(vec![2, 10, 255]));
    assert_eq!(hex_field("01020A", '\0'), Ok(vec![1, 2, 10]));
    assert_eq!(hex_field("-", ':'), Ok(vec![]));
    for (bad, sep) in [
        ("123:4", ':'),
        ("0g", ':'),
        ("1::2", ':'),
        ("abc", '\0'),
        ("zz", '\0'),
    ] {
        assert!(hex_field(bad, sep).is_err(), "{bad:?}");
    }
    assert!(
        hex_field("é1", '\0').is_err(),
        "multi-byte characters are not hex"
    );
}

#[test]
fn crash_after_rotation_before_the_snapshot_replays_prev_then_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (mut j, _) = open(&path, 100);
    let (a, b, c) = (
        lease(1, 1000, None),
        lease(2, 1000, None),
        lease(3, 1000, None),
    );
    j.commit(&[up(&a), up(&b)]).expect("commit");
    // Rotate without asking the thread for a snapshot: as if the process died right after.
    j.rotate().expect("rotate");
    j.commit(&[rm(1), up(&c)]).expect("commit");
    drop(j);
    assert!(with_suffix(&path, ".prev").exists());

    let (j, leases) = open(&path, 100);
    assert_eq!(leases, vec![b.clone(), c.clone()]);
    // Folded at open: the snapshot covers generation 2, the journal starts generation 3.
    assert_eq!((j.stats().generation, j.stats().compactions), (3, 1));
    assert!(!with_suffix(&path, ".prev").exists());
    drop(j);
    assert_eq!(open(&path, 100).1, vec![b, c]);
}

#[test]
fn crash_between_the_two_renames_of_a_rotation_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (mut j, _) = open(&path, 100);
    let a = lease(1, 1000, Some("a"));
    j.commit(&[up(&a)]).expect("commit");
    drop(j);
    // The journal became .prev; .next (header only) was not renamed yet.
    fs::rename(&path, with_suffix(&path, ".prev")).expect("rename");
    fs::write(with_suffix(&path, ".next"), journal_header(2)).expect("write");

    let (mut j, leases) = open(&path, 100);
    assert_eq!(leases, vec![a.clone()]);
    assert!(!with_suffix(&path, ".next").exists());
    let b = lease(2, 1000, None);
    j.commit(&[up(&b)]).expect("commit");
    drop(j);
    assert_eq!(open(&path, 100).1, vec![a, b]);
}

#[test]
fn crash_after_the_snapshot_before_prev_is_deleted_ignores_prev() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (mut j, _) = open(&path, 100);
    let (a, b) = (lease(1, 1000, None), lease(2, 1000, None));
    j.commit(&[up(&a), up(&b)]).expect("commit");
    let gen1 = fs::read(&path).expect("read");
    j.compact_now();
    assert!(j.wait_compacted(Duration::from_secs(5)));
    j.commit(&[rm(1)]).expect("commit");
    drop(j);
    // Put generation 1 back as .prev: replaying it would resurrect A.
    fs::write(with_suffix(&path, ".prev"), &gen1).expect("write");
    let (_, leases) = open(&path, 100);
    assert_eq!(leases, vec![b]);
    assert!(!with_suffix(&path, ".prev").exists());
}

#[test]
fn a_snapshot_covering_the_journal_makes_it_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (mut j, _) = open(&path, 100);
    let (a, b) = (lease(1, 1000, None), lease(2, 1000, None));
    j.commit(&[up(&a), up(&b)]).expect("commit");
    // A snapshot of generation 1 that no longer holds A (as after an open-time fold).
    let b2 = lease(2, 3000, Some("b"));
    write_snapshot(&Paths::new(&path), NONE, 1, std::slice::from_ref(&b2)).expect("snapshot");
    drop(j);

    let (mut j, leases) = open(&path, 100);
    assert_eq!(leases, vec![b2.clone()]);
    assert_eq!(j.stats().generation, 2);
    let c = lease(3, 1000, None);
    j.commit(&[up(&c)]).expect("commit");
    drop(j);
    let (_, leases) = open(&path, 100);
    assert_eq!(leases, vec![b2, c]);
}

#[test]
fn a_failed_write_rolls_back_and_the_journal_repairs_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (mut j, _) = open(&path, 100);
    let (a, b) = (lease(1, 1000, None), lease(2, 1000, None));
    j.commit_at(UnixTime(100), &[up(&a)]).expect("commit");
    let good_len = len(&path);
    // The disk refuses writes: a read-only handle stands in for a full disk.
    let writable = std::mem::replace(&mut j.file, File::open(&path).expect("open"));
    let err = j.commit_at(UnixTime(101), &[up(&b), rm(1)]);
    assert!(err.is_err());
    assert_eq!(j.durable(a.ip), Some(a.clone()), "rolled back");
    assert_eq!(j.durable(b.ip), None);
    assert_eq!(len(&path), good_len);
    // Still failing, and no retry within RETRY_AFTER.
    j.file = writable;
    let err = j.commit_at(UnixTime(101), &[up(&b)]).expect_err("waits");
    assert!(matches!(err, JournalError::Broken { .. }), "{err}");
    // A second later the file is repaired and writes work again.
    j.commit_at(UnixTime(102), &[up(&b)]).expect("repaired");
    assert_eq!(j.stats().failures, 1);
    drop(j);
    assert_eq!(open(&path, 100).1, vec![a, b]);
}

#[test]
fn crash_before_snapshot_rename_leaves_the_journal_in_charge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (mut j, _) = open(&path, 100);
    j.commit(&[up(&lease(1, 1000, None))]).expect("commit");
    drop(j);
    let tmp = with_suffix(&path, ".snapshot.tmp");
    fs::write(&tmp, b"half a snaps").expect("write");
    let (_, leases) = open(&path, 100);
    assert_eq!(leases, vec![lease(1, 1000, None)]);
    assert!(!tmp.exists());
}

#[test]
fn fsync_once_per_commit_and_never_without_durability() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut j, _) = Journal::open(&dir.path().join("n"), NONE, UnixTime(0)).expect("open");
    j.commit(&[up(&lease(1, 10, None))]).expect("commit");
    j.commit(
        &(1..=16)
            .map(|n| up(&lease(n, 10, None)))
            .collect::<Vec<_>>(),
    )
    .expect("commit");
    j.compact_now();
    assert!(j.wait_compacted(Duration::from_secs(5)));
    assert_eq!(j.stats().compactions, 1);
    assert_eq!(j.stats().fsyncs, 0);
    assert_eq!((j.stats().commits, j.stats().records), (2, 17));

    let path = dir.path().join("f");
    let (mut j, _) = Journal::open(&path, Durability::Fsync, UnixTime(0)).expect("open");
    let s0 = j.stats();
    j.commit(&[up(&lease(1, 10, None))]).expect("commit");
    let s1 = j.stats();
    j.commit(
        &(1..=16)
            .map(|n| up(&lease(n, 10, None)))
            .collect::<Vec<_>>(),
    )
    .expect("commit");
    let s2 = j.stats();
    j.commit(&[]).expect("empty commit");
    assert_eq!((s1.fsyncs - s0.fsyncs, s2.fsyncs - s1.fsyncs), (1, 1));
    assert_eq!(j.stats(), s2, "an empty commit does nothing");
    // The records, then the zeros written ahead of them (counted as written).
    let bytes = fs::read(&path).expect("read");
    assert_eq!(bytes.len() as u64, s1.journal_bytes + PREALLOC);
    assert!(bytes[..s2.journal_bytes as usize].ends_with(b"\n"));
    assert!(bytes[s2.journal_bytes as usize..].iter().all(|b| *b == 0));
    let records = s2.journal_bytes - s0.journal_bytes;
    assert_eq!(
        s2.bytes_written,
        len(&path) + records,
        "zeros, then records over them"
    );
}

#[test]
fn commits_land_inside_the_zeros_written_ahead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (mut j, _) = Journal::open(&path, Durability::Fsync, UnixTime(0)).expect("open");
    j.commit(&[up(&lease(1, 10, None))]).expect("commit");
    let allocated = len(&path);
    assert!(allocated >= PREALLOC, "zeros written ahead");
    for n in 2..=200 {
        j.commit(&[up(&lease(n, 10, Some("a-host")))])
            .expect("commit");
    }
    assert_eq!(len(&path), allocated, "the file's size did not change");
    drop(j);
    // Reopened: every record, nothing called damaged, the zeros dropped until needed.
    let (mut j, leases) = Journal::open(&path, Durability::Fsync, UnixTime(1)).expect("reopen");
    assert_eq!(leases.len(), 200);
    assert!(!with_suffix(&path, ".damaged").exists());
    assert_eq!(len(&path), j.stats().journal_bytes);
    j.commit(&[up(&lease(201, 10, None))]).expect("commit");
    drop(j);
    assert_eq!(open(&path, 1).1.len(), 201);
}

#[test]
fn records_after_unwritten_zeros_are_recovered_and_the_hole_kept() {
    // Batch mode, crash: a later page reached the disk, an earlier one did not. The record
    // after the hole checks out, so it is replayed (a lease written but maybe not yet
    // acknowledged is what a lost ACK leaves too); the hole is warned about and kept.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let batch = Durability::Batch { max_delay_ms: 10 };
    let (mut j, _) = Journal::open(&path, batch, UnixTime(0)).expect("open");
    j.commit(&[up(&lease(1, 10, None))]).expect("commit");
    let good = j.stats().journal_bytes as usize;
    j.commit(&[up(&lease(2, 10, None)), up(&lease(3, 10, None))])
        .expect("commit");
    let end = j.stats().journal_bytes as usize;
    drop(j);
    let mut bytes = fs::read(&path).expect("read");
    let second = good + (end - good) / 2;
    bytes[good..second].fill(0);
    fs::write(&path, &bytes).expect("write");
    let leases = open(&path, 1).1;
    assert_eq!(
        leases.iter().map(|l| l.ip).collect::<Vec<_>>(),
        [ip(1), ip(3)]
    );
    // Records 2 and 3 have the same length: the zeros end where record 3 starts.
    assert_eq!(bytes[second - 1], 0);
    let kept = fs::read(with_suffix(&path, ".damaged")).expect("hole kept");
    assert_eq!(kept, bytes[good..second]);
}

#[test]
fn a_zeroed_block_in_the_middle_is_skipped_and_every_record_after_it_recovered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (mut j, _) = Journal::open(&path, Durability::Fsync, UnixTime(0)).expect("open");
    for n in 1..=40 {
        j.commit(&[up(&lease(n, 100, Some("host")))])
            .expect("commit");
    }
    let written = j.stats().journal_bytes as usize;
    drop(j);
    let mut bytes = fs::read(&path).expect("read");
    assert!(bytes.len() > written, "zeros written ahead of the records");
    // A 512-byte block of the medium reads back as zeros: it starts inside record ~5 and
    // ends inside record ~15.
    let starts: Vec<usize> = (1..written).filter(|&i| bytes[i - 1] == b'\n').collect();
    let hole = starts[5] + 7..starts[5] + 7 + 512;
    bytes[hole.clone()].fill(0);
    fs::write(&path, &bytes).expect("write");
    let first_lost = starts.iter().position(|&s| s > hole.start).expect("line") - 1;
    let next_good = *starts.iter().find(|&&s| s >= hole.end).expect("line");
    let (mut j, leases) = Journal::open(&path, Durability::Fsync, UnixTime(1)).expect("open");
    let recovered: Vec<u8> = leases.iter().map(|l| l.ip.octets()[3]).collect();
    let lost_from = u8::try_from(first_lost).expect("small");
    let after =
        u8::try_from(starts.iter().position(|&s| s == next_good).expect("line")).expect("small");
    let expected: Vec<u8> = (1..=lost_from).chain(after + 1..=40).collect();
    assert_eq!(recovered, expected, "every record outside the block");
    assert!(
        expected.len() >= 25,
        "most records after the hole came back: {expected:?}"
    );
    // The skipped bytes are kept, the file is rewritten without the hole.
    let kept = fs::read(with_suffix(&path, ".damaged")).expect("kept");
    assert_eq!(kept, bytes[starts[first_lost]..next_good]);
    j.commit(&[up(&lease(41, 100, None))]).expect("commit");
    drop(j);
    fs::remove_file(with_suffix(&path, ".damaged")).expect("rm");
    let (_, leases) = Journal::open(&path, Durability::Fsync, UnixTime(1)).expect("open");
    assert_eq!(leases.len(), expected.len() + 1);
    assert!(!with_suffix(&path, ".damaged").exists(), "no hole any more");
}

#[test]
fn zeros_then_nothing_good_is_cut_and_kept_but_zeros_alone_are_quiet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (mut j, _) = open(&path, 0);
    j.commit(&[up(&lease(1, 100, None))]).expect("commit");
    drop(j);
    let good = fs::read(&path).expect("read");
    // Only zeros after the records: quiet, nothing kept.
    let mut bytes = good.clone();
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&path, &bytes).expect("write");
    assert_eq!(open(&path, 1).1.len(), 1);
    assert!(!with_suffix(&path, ".damaged").exists());
    // Zeros, then a line that does not check out, then the end: cut there, bytes kept.
    let mut bytes = good.clone();
    bytes.extend_from_slice(&[0u8; 100]);
    bytes.extend_from_slice(b"12345678 not a record\n");
    fs::write(&path, &bytes).expect("write");
    assert_eq!(open(&path, 1).1.len(), 1);
    assert_eq!(len(&path), good.len() as u64);
    let kept = fs::read(with_suffix(&path, ".damaged")).expect("kept");
    assert_eq!(kept, bytes[good.len()..]);
}

#[test]
fn batches_written_before_one_sync_share_its_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let batch = Durability::Batch { max_delay_ms: 10 };
    let (mut j, _) = Journal::open(&path, batch, UnixTime(0)).expect("open");
    let s0 = j.stats();
    for n in 1..=3 {
        j.write(UnixTime(0), &[up(&lease(n, 100, None))])
            .expect("write");
    }
    assert!(j.has_unsynced());
    assert_eq!(j.stats().fsyncs, s0.fsyncs, "writes do not sync");
    j.sync(Some(UnixTime(0))).expect("sync");
    assert_eq!(j.stats().fsyncs, s0.fsyncs + 1);
    assert!(!j.has_unsynced());
    j.sync(Some(UnixTime(0))).expect("nothing to sync");
    assert_eq!(j.stats().fsyncs, s0.fsyncs + 1);
    drop(j);
    assert_eq!(open(&path, 0).1.len(), 3);
}

#[test]
fn offered_leases_are_never_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (mut j, _) = open(&path, 0);
    let mut offered = lease(1, 10, None);
    offered.state = LeaseState::Offered;
    let before = j.stats();
    j.commit(&[up(&offered)]).expect("commit");
    assert_eq!(j.stats(), before);
    j.commit(&[up(&offered), up(&lease(2, 10, None))])
        .expect("commit");
    drop(j);
    assert_eq!(open(&path, 0).1, vec![lease(2, 10, None)]);
}

#[test]
fn a_foreign_or_newer_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let dnsmasq = "1700000000 02:00:00:00:00:01 10.0.0.1 host *\n";
    fs::write(&path, dnsmasq).expect("write");
    let err = Journal::open(&path, NONE, UnixTime(0)).expect_err("refused");
    assert!(matches!(err, JournalError::Format { .. }), "{err}");
    assert_eq!(fs::read_to_string(&path).expect("read"), dnsmasq);

    let mut v2 = String::new();
    push_record(&mut v2, "H leasedns-journal 2 gen=1");
    fs::write(&path, &v2).expect("write");
    let err = Journal::open(&path, NONE, UnixTime(0)).expect_err("refused");
    assert!(
        matches!(err, JournalError::Version { found: 2, .. }),
        "{err}"
    );
}

#[test]
fn a_header_torn_at_creation_starts_a_fresh_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    fs::write(&path, b"5e0b6f01 H leasedns-jo").expect("write");
    let (mut j, leases) = open(&path, 0);
    assert!(leases.is_empty());
    j.commit(&[up(&lease(1, 10, None))]).expect("commit");
    drop(j);
    assert_eq!(open(&path, 0).1, vec![lease(1, 10, None)]);
}

#[test]
fn dnsmasq_lease_file_imports_v4_leases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dnsmasq.leases");
    let sample = "\
1700000100 02:00:00:00:00:01 10.0.0.1 Laptop 01:02:00:00:00:00:01
1700000200 02:00:00:00:00:02 10.0.0.2 * *
0 06-aa:bb 10.0.0.3 bad_name *
duid 00:01:00:01:2c:1f:2a:3b:02:00:00:00:00:01
1700000300 12345678 fd00::5 phone 00:01:00:01:2c:1f:2a:3b:02:00:00:00:00:09
";
    fs::write(&path, sample).expect("write");
    let leases = import_dnsmasq(&path).expect("import");
    let mut first = lease(1, 1_700_000_100, Some("laptop"));
    first.client = ClientId::new(&[1, 2, 0, 0, 0, 0, 1]);
    let second = lease(2, 1_700_000_200, None);
    let hwaddr = HwAddr::new(6, &[0xaa, 0xbb]);
    let third = Lease {
        ip: ip(3),
        client: ClientId::new(&[6, 0xaa, 0xbb]),
        hwaddr,
        hostname: None,
        expires: UnixTime(u64::MAX),
        state: LeaseState::Bound,
    };
    assert_eq!(leases, vec![first, second, third]);
}

#[test]
fn dnsmasq_import_errors_name_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dnsmasq.leases");
    let cases = [
        (
            "1700000100 02:00:00:00:00:01 10.0.0.1 a *\n\n1 2 3\n",
            3,
            "expected 5 fields",
        ),
        ("soon 02:00:00:00:00:01 10.0.0.1 a *\n", 1, "bad expiry"),
        ("1 02:00:00:00:00:01 10.0.0.300 a *\n", 1, "bad address"),
        ("1 02:zz:00:00:00:01 10.0.0.1 a *\n", 1, "bad hex"),
    ];
    for (text, line_no, reason) in cases {
        fs::write(&path, text).expect("write");
        let err = import_dnsmasq(&path).expect_err("error");
        let ImportError::Line {
            line, reason: got, ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(*line, line_no, "{err}");
        assert!(got.contains(reason), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("dnsmasq.leases:{line_no}: ")),
            "{err}"
        );
    }
}

/// Prints throughput with fdatasync (run with --nocapture); asserts only correctness.
#[test]
fn fsync_commit_throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let (mut j, _) = Journal::open(&path, Durability::Fsync, UnixTime(0)).expect("open");
    for batch in [1usize, 16] {
        let commits = 200u64;
        let before = j.stats();
        let start = Instant::now();
        for i in 0..commits {
            let changes: Vec<LeaseChange> = (0..batch)
                .map(|k| {
                    up(&lease(
                        ((i as usize * batch + k) % 250) as u8 + 1,
                        1_700_000_000,
                        Some("host-name"),
                    ))
                })
                .collect();
            j.commit(&changes).expect("commit");
        }
        let secs = start.elapsed().as_secs_f64();
        assert!(j.wait_compacted(Duration::from_secs(10)));
        let after = j.stats();
        // One fdatasync per commit; a compaction adds two (rotation) and two (snapshot).
        let compactions = after.compactions - before.compactions;
        assert_eq!(after.fsyncs - before.fsyncs, commits + 4 * compactions);
        let records = after.records - before.records;
        let bytes = after.bytes_written - before.bytes_written;
        println!(
            "fsync, {batch} record(s)/commit: {:.0} commits (fsyncs)/s, {:.0} records/s, {:.1} bytes/record, {compactions} compaction(s)",
            commits as f64 / secs,
            records as f64 / secs,
            bytes as f64 / records as f64
        );
    }
    drop(j);
    let (_, leases) = Journal::open(&path, NONE, UnixTime(0)).expect("reopen");
    assert_eq!(leases.len(), 250);
}

#[test]
fn lease_journal_files_are_private_and_planted_temporaries_are_not_followed() {
    use crate::log::replace::checks::{assert_private, plant};
    use std::fs::OpenOptions;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases");
    let change = |n: u8| {
        let hwaddr = HwAddr::ethernet([2, 0, 0, 0, 0, n]);
        LeaseChange::Upsert(Lease {
            ip: std::net::Ipv4Addr::new(10, 0, 0, n),
            client: ClientId::from_hw(&hwaddr),
            hwaddr,
            hostname: None,
            expires: UnixTime(1000),
            state: LeaseState::Bound,
        })
    };
    let (mut j, _) = Journal::open(&path, Durability::Fsync, UnixTime(100)).expect("open");
    j.commit(&[change(1), change(2)]).expect("commit");
    // Symlinks at both temporary names of a compaction, to files that must stay as they are.
    let next = plant(dir.path(), &with_suffix(&path, ".next"), "victim-next");
    let snap = plant(
        dir.path(),
        &with_suffix(&path, ".snapshot.tmp"),
        "victim-snap",
    );
    j.compact_now();
    assert!(j.wait_compacted(std::time::Duration::from_secs(10)));
    assert_eq!(j.stats().compactions, 1, "the compaction ran");
    assert_eq!(fs::read(&next).expect("read"), b"victim\n");
    assert_eq!(fs::read(&snap).expect("read"), b"victim\n");
    j.commit(&[change(3)]).expect("commit");
    assert_private(&path);
    assert_private(j.snapshot_path());
    drop(j);
    // A damaged record: the bytes cut off go to a private `.damaged`.
    let mut file = OpenOptions::new().append(true).open(&path).expect("open");
    file.write_all(b"00000000 not a record\n").expect("append");
    drop(file);
    let (_, leases) = Journal::open(&path, Durability::Fsync, UnixTime(100)).expect("reopen");
    assert_eq!(leases.len(), 3);
    assert_private(&with_suffix(&path, ".damaged"));
    assert_private(&path);
}
