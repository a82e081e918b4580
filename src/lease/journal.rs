//! The durable lease journal: an append-only text log, its compacted snapshot (written by a
//! background thread), recovery at start, and dnsmasq lease import. Owns the files; knows nothing
//! of DHCP packets, never reads the clock.
//!
//! # Files
//! - `<lease_file>`: the journal, appended to on every commit.
//! - `<lease_file>.prev`: the previous generation's journal while its snapshot is being written.
//! - `<lease_file>.snapshot`: the live leases as of a generation (written to `.snapshot.tmp`,
//!   fsynced, renamed into place, directory fsynced).
//! - `<lease_file>.next`: a new journal being created; deleted at start (it never holds records).
//! - `<lease_file>.damaged`: the bytes cut off a damaged journal at start, kept for a person.
//!
//! # Format
//! One record per line, `<crc32 of payload, 8 lowercase hex> <payload>\n`. Payload fields are
//! separated by one space:
//! - `H leasedns-journal 1 gen=<n>`: first line of the journal, generation `n`.
//! - `H leasedns-snapshot 1 gen=<n>`: first line of a snapshot holding the state after every
//!   record of journal generation `n` (and all before it). A journal whose generation is `<= n`
//!   is ignored at open.
//! - `U <ip> <expires> <b|d> <htype> <hwaddr aa:bb:..|-> <client id hex|-> <hostname|->`: a lease
//!   was granted or changed (`b` bound, `d` declined; `expires` in Unix seconds). Hostname bytes
//!   outside `[A-Za-z0-9._-]` are written as `%XX`.
//! - `R <ip> <released|expired|superseded>`: the lease on `ip` ended.
//!
//! Replay applies the snapshot, then `.prev`, then the journal, in order into a map by address
//! (last record wins). A line with a bad checksum, an unparsable payload or no final newline ends
//! the journal: the file is cut there (with a warning naming file and offset) and the records
//! before it are kept. A NUL byte where a record would start is the end of the records (see
//! "Preallocation"): the file is cut there quietly.
//!
//! # Preallocation
//! With durability `fsync` or `batch`, the journal is extended with written zeros, `PREALLOC`
//! bytes at a time, ahead of its records, and records are written in place over the zeros. An
//! fdatasync then writes only the data: the file's size does not change, so its inode is not
//! written, which saves one of the two disk writes per commit (and flash wear). When there is no
//! room for the zeros the journal simply grows as it is written.
//!
//! # Compaction without stopping the service
//! When the journal holds more than max(1000, 4 x live) records, the service thread *rotates*
//! (O(1): create `.next` with the header of generation n+1 and fsync it, rename the journal to
//! `.prev`, rename `.next` to the journal, fsync the directory) and goes on appending to
//! generation n+1. A background thread merges the current snapshot file and `.prev` (neither is
//! written to any more) into the snapshot of generation n, copying the last line of each live
//! lease byte for byte and holding only where those lines are (no copy of the leases), renames
//! it into place, fsyncs the directory, and only then deletes `.prev`. A crash at any point
//! leaves one of: the old snapshot + `.prev` (n) + journal (n+1), all replayed in order; or the
//! new snapshot (n), `.prev` (n, ignored as covered) + journal (n+1). Only one compaction runs at
//! a time. Lease lines that had expired when the journal was opened are left out (recovery
//! dropped them and no remove record follows).
//!
//! # Memory
//! Files are read as streams, line by line. Besides the leases it returns at open, the journal
//! keeps one packed copy of each durable lease (about 37 bytes, for `durable` and the renewal
//! headroom check).
//!
//! # Renewals with headroom
//! With a `renew_write_fraction` f > 0, a bound lease is written with
//! `expires + f x (expires - now)` (its lease time times f of headroom). A later upsert of the same
//! lease (same client, hardware address, name and state) whose expiry is not past the stored one
//! is already durable and is not written. Recovery then keeps an address a little longer than
//! granted, never shorter.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::clock::UnixTime;
use crate::config::Durability;
use crate::lease::dense::ByAddr;
use crate::lease::{
    AddrHash, ClientId, HW_MAX, HwAddr, Lease, LeaseChange, LeaseState, RemoveReason,
};

const JOURNAL_KIND: &str = "leasedns-journal";
const SNAPSHOT_KIND: &str = "leasedns-snapshot";
const VERSION: u32 = 1;
/// Compaction waits for at least this many journal records, whatever the live set.
const MIN_COMPACT_RECORDS: u64 = 1000;
/// A journal file shorter than this without any newline is a header torn at creation.
const MAX_HEADER_LEN: usize = 64;
/// Zeros written ahead of the records at a time (durability `fsync` and `batch`).
const PREALLOC: u64 = 256 << 10;
/// After a failed write, the next attempt to repair the file waits this long (seconds).
const RETRY_AFTER: u64 = 1;
/// The background snapshot writer retries a failed snapshot this often.
const SNAPSHOT_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a {kind} file ({reason}); move it aside or fix lease_file")]
    Format {
        path: String,
        kind: &'static str,
        reason: String,
    },
    #[error("{path}: version {found} is not supported (this build reads version {VERSION})")]
    Version { path: String, found: u32 },
    #[error("{path}: an earlier write failed and the file is not repaired yet; retrying")]
    Broken { path: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
}

/// What the journal has done since it was opened, and its current size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Non-empty commits written.
    pub commits: u64,
    /// Lease records written by commits.
    pub records: u64,
    /// Upserts not written because the stored expiry already covered them.
    pub skipped: u64,
    /// Bytes written to the journal and snapshots (headers included).
    pub bytes_written: u64,
    /// fsync/fdatasync calls on files and the directory.
    pub fsyncs: u64,
    /// Snapshots written (at open or in the background).
    pub compactions: u64,
    /// Writes or syncs that failed (their records were rolled back).
    pub failures: u64,
    /// The current journal's generation.
    pub generation: u64,
    /// Lease records in the current journal (since the last rotation, replayed ones included).
    pub journal_records: u64,
    /// Length of the journal file.
    pub journal_bytes: u64,
}

/// The journal's files, by role.
#[derive(Clone, Debug)]
struct Paths {
    journal: PathBuf,
    prev: PathBuf,
    next: PathBuf,
    snapshot: PathBuf,
    dir: PathBuf,
}

impl Paths {
    fn new(path: &Path) -> Paths {
        Paths {
            journal: path.to_path_buf(),
            prev: with_suffix(path, ".prev"),
            next: with_suffix(path, ".next"),
            snapshot: with_suffix(path, ".snapshot"),
            dir: parent_dir(path),
        }
    }
}

#[derive(Debug)]
pub struct Journal {
    paths: Paths,
    file: File,
    durability: Durability,
    /// Headroom written on bound leases, as a fraction of their lease time (0: none).
    renew_write_fraction: f64,
    generation: u64,
    /// Length of the journal up to its last written record.
    len: u64,
    /// Length known to be on disk (fsynced, or written in mode `none`).
    synced_len: u64,
    /// Length of the file: `len` plus the zeros written ahead of the records (`PREALLOC`).
    allocated: u64,
    journal_records: u64,
    synced_records: u64,
    /// The lease state a replay would produce from the written records, each lease packed
    /// (see `pack`) into one arena.
    on_disk: PackedLeases,
    /// `on_disk` entries replaced since the last sync (their arena offsets), to restore if the
    /// sync fails.
    undo: Vec<(Ipv4Addr, Option<u32>)>,
    /// A write failed and the file is not repaired: the time of the last repair attempt.
    failed: Option<UnixTime>,
    compactor: Compactor,
    stats: JournalStats,
}

impl Journal {
    /// Open (creating if needed) and replay; returns the live leases (expired ones dropped),
    /// sorted by address. A `.prev` left by an unfinished compaction is folded into a snapshot
    /// here.
    pub fn open(
        path: &Path,
        durability: Durability,
        now: UnixTime,
    ) -> Result<(Journal, Vec<Lease>), JournalError> {
        let paths = Paths::new(path);
        fs::create_dir_all(&paths.dir).map_err(io_err(&paths.dir))?;
        let _ = fs::remove_file(with_suffix(path, ".snapshot.tmp"));
        let _ = fs::remove_file(&paths.next);
        let (covered, mut leases) = read_snapshot(&paths.snapshot)?;
        let (last, had_prev) = read_prev(&paths.prev, covered, &mut leases)?;
        let existing = open_if_exists(path)?;
        let file = open_write(path)?;
        let mut journal = Journal {
            paths,
            file,
            durability,
            renew_write_fraction: 0.0,
            generation: last + 1,
            len: 0,
            synced_len: 0,
            allocated: 0,
            journal_records: 0,
            synced_records: 0,
            on_disk: PackedLeases::default(),
            undo: Vec::new(),
            failed: None,
            compactor: Compactor::idle(),
            stats: JournalStats::default(),
        };
        match existing {
            Some(existing) => journal.replay(existing, last, &mut leases)?,
            None => {
                journal.reset(last + 1)?;
                journal.sync_dir()?;
            }
        }
        // The replay's own vector becomes the result: no second copy of the leases.
        let live = into_live(leases, now);
        if had_prev {
            journal.compact_at_open(&live)?;
        }
        journal.on_disk.reserve(live.len());
        let mut packed = Vec::new();
        for lease in &live {
            if pack_into(&mut packed, lease, lease.expires) {
                journal.on_disk.insert(lease.ip, &packed);
            }
        }
        journal.on_disk.arena.shrink_to_fit();
        journal.compactor = Compactor::start(journal.paths.clone(), durability, now);
        Ok((journal, live))
    }

    /// Write bound leases with `fraction` x lease time of headroom, and skip upserts that the
    /// stored expiry already covers (0 turns this off; values are clamped to 0..=1).
    pub fn set_renew_write_fraction(&mut self, fraction: f64) {
        self.renew_write_fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
    }

    /// Write these changes in one write and (unless durability is `none`) one fdatasync, as
    /// they are (no headroom, nothing skipped). `Offered` upserts are never journaled. On error
    /// nothing of the batch is kept.
    pub fn commit(&mut self, changes: &[LeaseChange]) -> Result<(), JournalError> {
        self.write_changes(None, changes)?;
        self.sync(None)
    }

    /// Like `commit`, with renewal headroom computed from `now` (see `set_renew_write_fraction`).
    pub fn commit_at(
        &mut self,
        now: UnixTime,
        changes: &[LeaseChange],
    ) -> Result<(), JournalError> {
        self.write(now, changes)?;
        self.sync(Some(now))
    }

    /// Write these changes without syncing (group commit across batches: call `sync` before the
    /// replies leave). Returns how many records were written. On error every record written
    /// since the last sync is rolled back (the file is cut back, `durable` forgets them).
    pub fn write(&mut self, now: UnixTime, changes: &[LeaseChange]) -> Result<u64, JournalError> {
        self.write_changes(Some(now), changes)
    }

    /// Make every written record durable (fdatasync unless durability is `none`), then start a
    /// background compaction if the journal is due for one. On error every record since the last
    /// sync is rolled back.
    pub fn sync(&mut self, now: Option<UnixTime>) -> Result<(), JournalError> {
        if self.len == self.synced_len && self.undo.is_empty() {
            return Ok(());
        }
        if self.durability != Durability::None {
            if let Err(e) = self.file.sync_data() {
                self.fail(now);
                return Err(io_err(&self.paths.journal)(e));
            }
            self.stats.fsyncs += 1;
        }
        self.synced_len = self.len;
        self.synced_records = self.journal_records;
        self.undo.clear();
        self.on_disk.maybe_shrink();
        self.maybe_compact();
        Ok(())
    }

    /// True when records were written since the last sync.
    pub fn has_unsynced(&self) -> bool {
        self.len != self.synced_len
    }

    /// The lease on `ip` as the disk holds it (after every written record), if any.
    pub fn durable(&self, ip: Ipv4Addr) -> Option<Lease> {
        unpack(ip, self.on_disk.get(ip)?)
    }

    /// Rotate and start a background snapshot when the journal holds more than
    /// max(1000, 4 x live) records and no compaction is running. O(1): the service may call it
    /// after every batch.
    pub fn maybe_compact(&mut self) {
        let limit = MIN_COMPACT_RECORDS.max(4 * self.on_disk.len() as u64);
        if self.journal_records > limit {
            self.compact_now();
        }
    }

    /// Start the next generation and have the background thread snapshot this one. Does nothing
    /// while a compaction runs, records are unsynced, or the journal is failed. A failed rotation
    /// is logged and leaves the current journal in charge.
    pub fn compact_now(&mut self) {
        if self.compactor.is_busy() || self.has_unsynced() || self.failed.is_some() {
            return;
        }
        let covered = self.generation;
        match self.rotate() {
            Ok(()) => {
                self.compactor.set_busy();
                self.compactor.send(covered);
            }
            Err(e) => tracing::warn!(error = %e, "lease journal rotation failed; will retry"),
        }
    }

    /// Wait (up to `timeout`) until no background compaction runs; true when idle.
    pub fn wait_compacted(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.compactor.is_busy() {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    pub fn stats(&self) -> JournalStats {
        let c = &self.compactor.shared;
        JournalStats {
            generation: self.generation,
            journal_records: self.journal_records,
            journal_bytes: self.len,
            bytes_written: self.stats.bytes_written + c.bytes.load(Ordering::Relaxed),
            fsyncs: self.stats.fsyncs + c.fsyncs.load(Ordering::Relaxed),
            compactions: self.stats.compactions + c.compactions.load(Ordering::Relaxed),
            ..self.stats
        }
    }

    pub fn path(&self) -> &Path {
        &self.paths.journal
    }

    pub fn snapshot_path(&self) -> &Path {
        &self.paths.snapshot
    }

    /// Serialize and append; see `write`.
    fn write_changes(
        &mut self,
        now: Option<UnixTime>,
        changes: &[LeaseChange],
    ) -> Result<u64, JournalError> {
        if changes.is_empty() {
            return Ok(0);
        }
        self.repair(now)?;
        let mut buf = String::with_capacity(changes.len() * 100);
        let mut records = 0;
        for change in changes {
            if self.push(&mut buf, now, change) {
                records += 1;
            }
        }
        if records == 0 {
            return Ok(0);
        }
        self.preallocate(buf.len() as u64);
        if let Err(e) = self.file.write_all_at(buf.as_bytes(), self.len) {
            self.fail(now);
            return Err(io_err(&self.paths.journal)(e));
        }
        self.allocated = self.allocated.max(self.len + buf.len() as u64);
        self.len += buf.len() as u64;
        self.journal_records += records;
        self.stats.bytes_written += buf.len() as u64;
        self.stats.commits += 1;
        self.stats.records += records;
        Ok(records)
    }

    /// Make room for `more` bytes of records by writing zeros ahead of them (`PREALLOC` at a
    /// time), so that syncing them does not change the file's size. Best effort: when the zeros
    /// cannot be written (a full disk), the file is put back and grows as records are written.
    fn preallocate(&mut self, more: u64) {
        if self.durability == Durability::None || self.len + more <= self.allocated {
            return;
        }
        let end = self.len + more + PREALLOC;
        let zeros = vec![0u8; (end - self.allocated) as usize];
        match self.file.write_all_at(&zeros, self.allocated) {
            Ok(()) => {
                self.stats.bytes_written += zeros.len() as u64;
                self.allocated = end;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot preallocate the lease journal");
                let _ = self.file.set_len(self.allocated);
            }
        }
    }

    /// Cut the file to `len` (dropping the zeros ahead of the records, if any).
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.allocated = len;
        self.file.set_len(len)
    }

    /// Serialize one change into `buf` and apply it to `on_disk`; false when nothing is written.
    fn push(&mut self, buf: &mut String, now: Option<UnixTime>, change: &LeaseChange) -> bool {
        let (ip, new) = match change {
            LeaseChange::Upsert(lease) => {
                if lease.state == LeaseState::Offered {
                    tracing::warn!(ip = %lease.ip, "offered lease passed to the journal; not written");
                    return false;
                }
                if now.is_some() && self.covered(lease) {
                    self.stats.skipped += 1;
                    return false;
                }
                let expires = self.with_headroom(now, lease);
                if !push_record_with(buf, |out| write_upsert_payload(out, lease, expires)) {
                    return false;
                }
                (lease.ip, pack(lease, expires))
            }
            LeaseChange::Remove { ip, reason } => {
                push_record_with(buf, |out| {
                    write_remove_payload(out, *ip, *reason);
                    true
                });
                (*ip, None)
            }
        };
        let old = match new {
            Some(payload) => self.on_disk.insert(ip, &payload),
            None => self.on_disk.remove(ip),
        };
        self.undo.push((ip, old));
        true
    }

    /// True when the stored record of this lease already grants at least this expiry.
    fn covered(&self, lease: &Lease) -> bool {
        self.renew_write_fraction > 0.0
            && lease.state == LeaseState::Bound
            && self.on_disk.get(lease.ip).is_some_and(|stored| {
                pack(lease, lease.expires).is_some_and(|wanted| covers(stored, &wanted))
            })
    }

    /// The expiry written for `lease`: with headroom when it is bound and `now` is known.
    fn with_headroom(&self, now: Option<UnixTime>, lease: &Lease) -> UnixTime {
        match now {
            Some(now) if lease.state == LeaseState::Bound && self.renew_write_fraction > 0.0 => {
                let headroom = now.until(lease.expires) as f64 * self.renew_write_fraction;
                lease.expires.plus(headroom as u64)
            }
            _ => lease.expires,
        }
    }

    /// Undo everything since the last sync after a failed write or sync, and cut the file back.
    fn fail(&mut self, now: Option<UnixTime>) {
        self.stats.failures += 1;
        while let Some((ip, old)) = self.undo.pop() {
            self.on_disk.restore(ip, old);
        }
        self.journal_records = self.synced_records;
        self.len = self.synced_len;
        // Whatever the cut achieves, the next write repairs first (after RETRY_AFTER).
        let _ = self.truncate(self.synced_len);
        self.failed = Some(now.unwrap_or_default());
    }

    /// After a failure: cut the file to its durable length and sync it (and the directory),
    /// at most once per RETRY_AFTER seconds; until that works every write fails.
    fn repair(&mut self, now: Option<UnixTime>) -> Result<(), JournalError> {
        let Some(since) = self.failed else {
            return Ok(());
        };
        let path = self.paths.journal.display().to_string();
        let broken = || JournalError::Broken { path: path.clone() };
        if let Some(now) = now
            && now < since.plus(RETRY_AFTER)
        {
            return Err(broken());
        }
        let repaired = self
            .truncate(self.synced_len)
            .and_then(|()| self.file.sync_data())
            .and_then(|()| File::open(&self.paths.dir).and_then(|d| d.sync_all()));
        match repaired {
            Ok(()) => {
                self.failed = None;
                tracing::info!(file = %self.paths.journal.display(), "lease journal repaired");
                Ok(())
            }
            Err(_) => {
                self.failed = Some(now.unwrap_or_default());
                Err(broken())
            }
        }
    }

    /// Apply an existing journal file over the leases so far, cutting a damaged tail.
    fn replay(
        &mut self,
        existing: File,
        covered: u64,
        leases: &mut Replayed,
    ) -> Result<(), JournalError> {
        let path = self.paths.journal.clone();
        let mut lines = Lines::new(io::BufReader::with_capacity(1 << 16, existing));
        let first = lines.next();
        lines.check(&path)?;
        let generation = header_generation(&path, JOURNAL_KIND, &lines.buf, first.as_ref())?;
        let Some(generation) = generation.filter(|g| *g > covered) else {
            // Empty, torn at creation, or already folded into the snapshot.
            return self.reset(covered + 1);
        };
        if generation > covered + 1 {
            tracing::warn!(
                file = %path.display(),
                generation,
                snapshot_generation = covered,
                "lease journal is newer than its snapshot; leases may be missing"
            );
        }
        self.journal_records = apply(leases, &mut lines);
        lines.check(&path)?;
        self.synced_records = self.journal_records;
        self.generation = generation;
        self.len = lines.good_len as u64;
        self.synced_len = self.len;
        if let Some(damage) = &lines.damage {
            self.cut(damage)?;
        } else {
            // Zeros written ahead of the records (or nothing): written again as needed.
            self.truncate(self.len).map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Truncate the journal at a damaged record, saving what is cut off for a person.
    fn cut(&mut self, damage: &Damage) -> Result<(), JournalError> {
        let path = self.paths.journal.clone();
        let mut tail = Vec::new();
        File::open(&path)
            .and_then(|f| {
                let mut f = io::BufReader::new(f);
                io::Seek::seek(&mut f, io::SeekFrom::Start(damage.offset as u64))?;
                io::Read::read_to_end(&mut f, &mut tail)
            })
            .map_err(io_err(&path))?;
        tracing::warn!(
            file = %path.display(),
            offset = damage.offset,
            reason = %damage.reason,
            dropped_bytes = tail.len(),
            "lease journal damaged: cut here, records before it kept"
        );
        if tail.contains(&b'\n') {
            let saved = with_suffix(&path, ".damaged");
            if let Err(e) = fs::write(&saved, tail) {
                tracing::warn!(file = %saved.display(), error = %e, "cannot save damaged journal tail");
            }
        }
        self.truncate(damage.offset as u64).map_err(io_err(&path))?;
        self.sync_journal()
    }

    /// Empty the journal and start generation `generation` with its header.
    fn reset(&mut self, generation: u64) -> Result<(), JournalError> {
        let header = journal_header(generation);
        let written = self
            .truncate(0)
            .and_then(|()| self.file.write_all_at(header.as_bytes(), 0))
            .map_err(io_err(&self.paths.journal))
            .and_then(|()| self.sync_journal());
        written?;
        self.generation = generation;
        self.len = header.len() as u64;
        self.synced_len = self.len;
        self.allocated = self.len;
        self.journal_records = 0;
        self.synced_records = 0;
        self.stats.bytes_written += header.len() as u64;
        Ok(())
    }

    /// `.prev` was left by a compaction that did not finish: write the snapshot of everything
    /// replayed (covering this journal's generation), drop `.prev`, start the next generation.
    fn compact_at_open(&mut self, leases: &[Lease]) -> Result<(), JournalError> {
        let (bytes, fsyncs) =
            write_snapshot(&self.paths, self.durability, self.generation, leases)?;
        self.stats.bytes_written += bytes;
        self.stats.fsyncs += fsyncs;
        self.stats.compactions += 1;
        let _ = fs::remove_file(&self.paths.prev);
        self.reset(self.generation + 1)?;
        tracing::info!(
            leases = leases.len(),
            generation = self.generation,
            "lease journal compacted at start"
        );
        Ok(())
    }

    /// Create `.next` with the next generation's header, swap it in, keep the old one as `.prev`.
    fn rotate(&mut self) -> Result<(), JournalError> {
        let p = self.paths.clone();
        let header = journal_header(self.generation + 1);
        let _ = fs::remove_file(&p.next);
        let created = open_new(&p.next).and_then(|mut f| {
            f.write_all(header.as_bytes()).map_err(io_err(&p.next))?;
            if self.durability != Durability::None {
                f.sync_data().map_err(io_err(&p.next))?;
                self.stats.fsyncs += 1;
            }
            Ok(f)
        });
        let file = match created {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&p.next);
                return Err(e);
            }
        };
        fs::rename(&p.journal, &p.prev).map_err(io_err(&p.prev))?;
        if let Err(e) = fs::rename(&p.next, &p.journal) {
            let _ = fs::rename(&p.prev, &p.journal);
            let _ = fs::remove_file(&p.next);
            return Err(io_err(&p.journal)(e));
        }
        self.file = file;
        self.generation += 1;
        self.len = header.len() as u64;
        self.synced_len = self.len;
        self.allocated = self.len;
        self.journal_records = 0;
        self.synced_records = 0;
        self.stats.bytes_written += header.len() as u64;
        if let Err(e) = self.sync_dir() {
            // Records must not land in a file whose name may not survive a crash.
            self.failed = Some(UnixTime(0));
            return Err(e);
        }
        Ok(())
    }

    fn sync_journal(&mut self) -> Result<(), JournalError> {
        if self.durability != Durability::None {
            self.file.sync_data().map_err(io_err(&self.paths.journal))?;
            self.stats.fsyncs += 1;
        }
        Ok(())
    }

    /// Make renames and file creations in the journal's directory durable.
    fn sync_dir(&mut self) -> Result<(), JournalError> {
        if self.durability != Durability::None {
            sync_dir(&self.paths.dir)?;
            self.stats.fsyncs += 1;
        }
        Ok(())
    }
}

/// Counters and flags shared with the snapshot thread.
#[derive(Debug, Default)]
struct CompactorShared {
    busy: AtomicBool,
    stop: AtomicBool,
    bytes: AtomicU64,
    fsyncs: AtomicU64,
    compactions: AtomicU64,
}

/// The background snapshot writer. It keeps no copy of the leases: asked for the snapshot of a
/// rotated generation, it merges the current snapshot file and `.prev` (both closed to writers
/// by then) into a new snapshot, holding only where each live lease's line is.
#[derive(Debug)]
struct Compactor {
    /// The generation to snapshot (its journal is `.prev`).
    tx: Option<mpsc::Sender<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<CompactorShared>,
}

impl Compactor {
    fn idle() -> Compactor {
        Compactor {
            tx: None,
            thread: None,
            shared: Arc::default(),
        }
    }

    /// `opened`: the time the journal was opened; lease lines expired by then are left out of
    /// snapshots (recovery dropped them, and no remove record will ever follow).
    fn start(paths: Paths, durability: Durability, opened: UnixTime) -> Compactor {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(CompactorShared::default());
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("lease-snapshot".into())
            .spawn(move || snapshot_worker(&paths, durability, opened, &rx, &worker));
        match thread {
            Ok(handle) => Compactor {
                tx: Some(tx),
                thread: Some(handle),
                shared,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the lease snapshot thread; no compaction");
                Compactor::idle()
            }
        }
    }

    fn send(&self, generation: u64) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(generation);
        }
    }

    /// Busy while a snapshot is being written, and permanently without a thread.
    fn is_busy(&self) -> bool {
        self.tx.is_none() || self.shared.busy.load(Ordering::Acquire)
    }

    fn set_busy(&self) {
        self.shared.busy.store(true, Ordering::Release);
    }
}

impl Drop for Compactor {
    /// Let a snapshot in progress finish (a failing one gives up), then end the thread.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn snapshot_worker(
    paths: &Paths,
    durability: Durability,
    opened: UnixTime,
    rx: &mpsc::Receiver<u64>,
    shared: &CompactorShared,
) {
    while let Ok(generation) = rx.recv() {
        snapshot_until_done(paths, durability, generation, opened, shared);
        shared.busy.store(false, Ordering::Release);
    }
}

/// Write the snapshot of `generation` and delete `.prev`, retrying until it works or the journal
/// is dropped.
fn snapshot_until_done(
    paths: &Paths,
    durability: Durability,
    generation: u64,
    opened: UnixTime,
    shared: &CompactorShared,
) {
    let mut warned = false;
    loop {
        match merge_snapshot(paths, durability, generation, opened) {
            Ok((bytes, fsyncs, leases)) => {
                shared.bytes.fetch_add(bytes, Ordering::Relaxed);
                shared.fsyncs.fetch_add(fsyncs, Ordering::Relaxed);
                shared.compactions.fetch_add(1, Ordering::Relaxed);
                let _ = fs::remove_file(&paths.prev);
                tracing::info!(leases, generation, "lease journal compacted");
                return;
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, generation, "cannot write the lease snapshot; retrying");
                    warned = true;
                }
                if shared.stop.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(SNAPSHOT_RETRY);
            }
        }
    }
}

/// Where the latest line of a live lease is: which file (0 snapshot, 1 `.prev`), at what
/// offset, how long (newline included).
#[derive(Clone, Copy, Debug)]
struct Loc {
    file: u8,
    len: u32,
    offset: u64,
}

/// The snapshot of `generation` from the files: the current snapshot, then `.prev` (when newer),
/// last line of each address winning, copied byte for byte. Returns the bytes written, the
/// fsyncs done and the number of leases.
fn merge_snapshot(
    paths: &Paths,
    durability: Durability,
    generation: u64,
    opened: UnixTime,
) -> Result<(u64, u64, usize), JournalError> {
    let mut locs = BTreeMap::new();
    let snapshot = index_file(&paths.snapshot, SNAPSHOT_KIND, 0, 0, opened, &mut locs)?;
    let covered = snapshot.as_ref().map_or(0, |(_, g)| *g);
    let prev = index_file(&paths.prev, JOURNAL_KIND, 1, covered + 1, opened, &mut locs)?;
    let files = [snapshot.map(|(f, _)| f), prev.map(|(f, _)| f)];
    let mut line = Vec::new();
    let (bytes, fsyncs) = install_snapshot(paths, durability, generation, |out| {
        for loc in locs.values() {
            let file = files[usize::from(loc.file)]
                .as_ref()
                .ok_or_else(|| io::Error::other("indexed file vanished"))?;
            line.resize(loc.len as usize, 0);
            file.read_exact_at(&mut line, loc.offset)?;
            out.write_all(&line)?;
        }
        Ok(())
    })?;
    Ok((bytes, fsyncs, locs.len()))
}

/// Index the lease lines of a snapshot or journal into `locs` (later lines win, removes and
/// leases expired at `opened` take the address out), when its generation is at least
/// `min_generation`. Stops at the first damaged line, as recovery does. Returns the open file
/// and its generation, `None` if it does not exist or is empty.
fn index_file(
    path: &Path,
    kind: &'static str,
    file_id: u8,
    min_generation: u64,
    opened: UnixTime,
    locs: &mut BTreeMap<Ipv4Addr, Loc>,
) -> Result<Option<(File, u64)>, JournalError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut reader = io::BufReader::with_capacity(1 << 16, &file);
    let mut buf = Vec::with_capacity(256);
    // The next line; none where zeros written ahead of the records begin.
    let mut read_line = |buf: &mut Vec<u8>| {
        buf.clear();
        if reader.fill_buf().map_err(io_err(path))?.first() == Some(&0) {
            return Ok(0);
        }
        reader.read_until(b'\n', buf).map_err(io_err(path))
    };
    let mut offset = read_line(&mut buf)? as u64;
    let first = buf.strip_suffix(b"\n").and_then(|l| parse_line(l).ok());
    let Some(generation) = header_generation(path, kind, &buf, first.as_ref())? else {
        return Ok(None);
    };
    if generation < min_generation {
        return Ok(Some((file, generation)));
    }
    loop {
        let n = read_line(&mut buf)?;
        let Some(line) = buf.strip_suffix(b"\n") else {
            break;
        };
        match parse_line(line) {
            Ok(Record::Upsert(lease)) if lease.expires > opened => {
                let len =
                    u32::try_from(n).map_err(|_| io_err(path)(io::Error::other("long line")))?;
                locs.insert(
                    lease.ip,
                    Loc {
                        file: file_id,
                        len,
                        offset,
                    },
                );
            }
            Ok(Record::Upsert(lease)) => {
                locs.remove(&lease.ip);
            }
            Ok(Record::Remove(ip)) => {
                locs.remove(&ip);
            }
            Ok(Record::Header { .. }) | Err(_) => break,
        }
        offset += n as u64;
    }
    Ok(Some((file, generation)))
}

/// Write the leases of `leases` as the snapshot of `generation`; see `install_snapshot`.
fn write_snapshot(
    paths: &Paths,
    durability: Durability,
    generation: u64,
    leases: &[Lease],
) -> Result<(u64, u64), JournalError> {
    install_snapshot(paths, durability, generation, |out| {
        let mut line = String::with_capacity(128);
        for lease in leases {
            if let Some(payload) = upsert_payload(lease) {
                line.clear();
                push_record(&mut line, &payload);
                out.write_all(line.as_bytes())?;
            }
        }
        Ok(())
    })
}

/// Write the snapshot header of `generation` and what `body` writes to `.snapshot.tmp`, fsync,
/// rename over `.snapshot`, fsync the directory; returns the bytes written and the fsyncs done.
fn install_snapshot(
    paths: &Paths,
    durability: Durability,
    generation: u64,
    body: impl FnOnce(&mut Counted<io::BufWriter<File>>) -> io::Result<()>,
) -> Result<(u64, u64), JournalError> {
    let tmp = with_suffix(&paths.journal, ".snapshot.tmp");
    let mut header = String::new();
    push_record(&mut header, &header_payload(SNAPSHOT_KIND, generation));
    let written = (|| -> Result<u64, JournalError> {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut out = Counted {
            inner: io::BufWriter::with_capacity(1 << 16, file),
            bytes: 0,
        };
        out.write_all(header.as_bytes())
            .and_then(|()| body(&mut out))
            .map_err(io_err(&tmp))?;
        let bytes = out.bytes;
        let file = out
            .inner
            .into_inner()
            .map_err(|e| io_err(&tmp)(e.into_error()))?;
        if durability != Durability::None {
            file.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &paths.snapshot).map_err(io_err(&paths.snapshot))?;
        if durability != Durability::None {
            sync_dir(&paths.dir)?;
        }
        Ok(bytes)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    let bytes = written?;
    let fsyncs = if durability == Durability::None { 0 } else { 2 };
    Ok((bytes, fsyncs))
}

/// A writer that counts the bytes written through it.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: io::Write> io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The journal, for writing at given offsets (records go over the zeros written ahead).
fn open_write(path: &Path) -> Result<File, JournalError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))
}

/// A new file (written from its start: the next journal's header).
fn open_new(path: &Path) -> Result<File, JournalError> {
    OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(path)
        .map_err(io_err(path))
}

fn journal_header(generation: u64) -> String {
    let mut header = String::new();
    push_record(&mut header, &header_payload(JOURNAL_KIND, generation));
    header
}

/// Apply `.prev` over the snapshot's leases when it is newer than the snapshot; returns the
/// last generation applied and whether a `.prev` exists at all.
fn read_prev(
    path: &Path,
    covered: u64,
    leases: &mut Replayed,
) -> Result<(u64, bool), JournalError> {
    let Some(file) = open_if_exists(path)? else {
        return Ok((covered, false));
    };
    let mut lines = Lines::new(io::BufReader::with_capacity(1 << 16, file));
    let first = lines.next();
    lines.check(path)?;
    match header_generation(path, JOURNAL_KIND, &lines.buf, first.as_ref())? {
        Some(generation) if generation > covered => {
            apply(leases, &mut lines);
            lines.check(path)?;
            if let Some(damage) = lines.damage {
                tracing::warn!(file = %path.display(), offset = damage.offset, reason = %damage.reason,
                    "previous lease journal damaged: records after this offset are lost");
            }
            Ok((generation, true))
        }
        _ => {
            // Already covered by the snapshot: the compaction only did not get to delete it.
            let _ = fs::remove_file(path);
            Ok((covered, false))
        }
    }
}

/// Read a snapshot: the generation it covers (0 without one) and its leases by address.
fn read_snapshot(path: &Path) -> Result<(u64, Replayed), JournalError> {
    let mut leases = Replayed::default();
    let Some(file) = open_if_exists(path)? else {
        return Ok((0, leases));
    };
    let mut lines = Lines::new(io::BufReader::with_capacity(1 << 16, file));
    let first = lines.next();
    lines.check(path)?;
    let Some(covered) = header_generation(path, SNAPSHOT_KIND, &lines.buf, first.as_ref())? else {
        tracing::warn!(file = %path.display(), "lease snapshot is empty or torn; ignoring it");
        return Ok((0, leases));
    };
    apply(&mut leases, &mut lines);
    lines.check(path)?;
    if let Some(damage) = lines.damage {
        tracing::warn!(
            file = %path.display(),
            offset = damage.offset,
            reason = %damage.reason,
            "lease snapshot damaged: leases after this offset are lost"
        );
    }
    Ok((covered, leases))
}

/// The file opened for reading, `None` if it does not exist. Files are read as streams, one
/// line at a time: a journal may be several times the size of the live lease set.
fn open_if_exists(path: &Path) -> Result<Option<File>, JournalError> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// The generation in a file's header; `None` for an empty file or a header torn at creation.
fn header_generation(
    path: &Path,
    kind: &'static str,
    bytes: &[u8],
    first: Option<&Record>,
) -> Result<Option<u64>, JournalError> {
    let format = |reason: String| JournalError::Format {
        path: path.display().to_string(),
        kind,
        reason,
    };
    match first {
        Some(Record::Header {
            kind: found,
            version,
            generation,
        }) => {
            if found != kind {
                return Err(format(format!("header says {found:?}")));
            }
            if *version != VERSION {
                let path = path.display().to_string();
                return Err(JournalError::Version {
                    path,
                    found: *version,
                });
            }
            Ok(Some(*generation))
        }
        Some(_) => Err(format("first record is not a header".into())),
        None if bytes.len() < MAX_HEADER_LEN && !bytes.contains(&b'\n') => Ok(None),
        None => Err(format("first line is not a valid header".into())),
    }
}

/// Apply one lease record; false for a header (which is not a lease record).
fn apply_one(leases: &mut Replayed, record: Record) -> bool {
    match record {
        Record::Upsert(lease) => {
            leases.upsert(lease);
        }
        Record::Remove(ip) => {
            leases.remove(ip);
        }
        Record::Header { .. } => return false,
    }
    true
}

/// Apply every record after the header, moving each lease into the map (no copies); returns
/// how many were applied.
fn apply<R: io::BufRead>(leases: &mut Replayed, lines: &mut Lines<R>) -> u64 {
    let mut n = 0;
    for record in lines {
        n += u64::from(apply_one(leases, record));
    }
    n
}

/// The leases of a replay, last record wins: each lease once in one vector (which `open`
/// returns as it is, sorted), found by address (`dense::ByAddr`). About 72 + 7 bytes a lease,
/// against 81 bytes times the headroom of a `HashMap<Ipv4Addr, Lease>` and then a vector copied
/// out of it.
type Replayed = ByAddr;

/// The leases of a replay that are live at `now`, sorted by address.
fn into_live(replayed: Replayed, now: UnixTime) -> Vec<Lease> {
    let mut live = replayed.into_vec();
    live.retain(|l| l.expires > now);
    live.sort_unstable_by_key(|l| l.ip);
    live.shrink_to_fit();
    live
}

/// The records of a file, one line at a time, up to its first damaged line (then `damage` says
/// where and why, and `good_len` is the length of the good part). After the first `next`, `buf`
/// holds the first line as read (the whole file when it has no newline). A read error ends the
/// records too; `check` reports it.
struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    /// Length up to the end of the last good record.
    good_len: usize,
    damage: Option<Damage>,
    error: Option<io::Error>,
}

struct Damage {
    offset: usize,
    reason: String,
}

impl<R: io::BufRead> Lines<R> {
    fn new(reader: R) -> Lines<R> {
        Lines {
            reader,
            buf: Vec::with_capacity(256),
            good_len: 0,
            damage: None,
            error: None,
        }
    }

    /// Fail if reading the file failed.
    fn check(&mut self, path: &Path) -> Result<(), JournalError> {
        match self.error.take() {
            Some(e) => Err(io_err(path)(e)),
            None => Ok(()),
        }
    }

    fn stop(&mut self, reason: String) -> Option<Record> {
        self.damage = Some(Damage {
            offset: self.good_len,
            reason,
        });
        None
    }
}

impl<R: io::BufRead> Iterator for Lines<R> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.damage.is_some() || self.error.is_some() {
            return None;
        }
        let pos = self.good_len;
        self.buf.clear();
        match self.reader.fill_buf() {
            // Zeros written ahead of the records: the end of them.
            Ok([0, ..]) => return None,
            Ok(_) => {}
            Err(e) => {
                self.error = Some(e);
                return None;
            }
        }
        match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                self.error = Some(e);
                return None;
            }
        }
        let Some(line) = self.buf.strip_suffix(b"\n") else {
            return self.stop("torn last record (no newline)".to_string());
        };
        let parsed = parse_line(line).and_then(|r| match r {
            Record::Header { .. } if pos > 0 => Err("header in the middle".to_string()),
            r => Ok(r),
        });
        match parsed {
            Ok(record) => {
                self.good_len = pos + self.buf.len();
                Some(record)
            }
            Err(reason) => self.stop(reason),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Record {
    Header {
        kind: String,
        version: u32,
        generation: u64,
    },
    Upsert(Lease),
    Remove(Ipv4Addr),
}

/// Check a line's checksum and parse its payload.
fn parse_line(line: &[u8]) -> Result<Record, String> {
    parse_payload(checked_payload(line)?)
}

/// The payload of one `<crc32 hex> <payload>` line (without its newline), if the checksum
/// matches and it is UTF-8. Shared with the DNS update journal and the DDNS queue.
pub(crate) fn checked_payload(line: &[u8]) -> Result<&str, String> {
    let payload = checked_payload_bytes(line)?;
    std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8".to_string())
}

/// The payload of a line (without its newline) whose checksum matches.
fn checked_payload_bytes(line: &[u8]) -> Result<&[u8], String> {
    if line.len() < 10 || line[8] != b' ' {
        return Err("no checksum field".into());
    }
    let (hex, payload) = (&line[..8], &line[9..]);
    let mut crc = 0u32;
    for &b in hex {
        let digit = hex_digit(b).ok_or("bad checksum field")?;
        crc = crc << 4 | u32::from(digit);
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Exactly `N` more space-separated fields, or an error naming the record.
fn fields<'a, const N: usize>(
    it: &mut std::str::Split<'a, char>,
    record: &str,
) -> Result<[&'a str; N], String> {
    let mut out = [""; N];
    for slot in &mut out {
        *slot = it.next().ok_or_else(|| format!("short {record} record"))?;
    }
    if it.next().is_some() {
        return Err(format!("long {record} record"));
    }
    Ok(out)
}

fn parse_payload(payload: &str) -> Result<Record, String> {
    let mut it = payload.split(' ');
    match it.next().unwrap_or("") {
        "H" => {
            let [kind, version, generation] = fields(&mut it, "header")?;
            Ok(Record::Header {
                kind: kind.to_string(),
                version: number(version, "version")?,
                generation: generation
                    .strip_prefix("gen=")
                    .ok_or("header without gen=")
                    .and_then(|g| g.parse().map_err(|_| "bad generation"))?,
            })
        }
        "U" => parse_upsert(fields(&mut it, "upsert")?).map(Record::Upsert),
        "R" => {
            let [ip, _reason] = fields(&mut it, "remove")?;
            Ok(Record::Remove(number(ip, "address")?))
        }
        other => Err(format!("unknown record {other:?}")),
    }
}

fn parse_upsert(f: [&str; 7]) -> Result<Lease, String> {
    let [ip, expires, state, htype, hw, client, host] = f;
    Ok(Lease {
        ip: number(ip, "address")?,
        expires: UnixTime(number(expires, "expiry")?),
        state: match state {
            "b" => LeaseState::Bound,
            "d" => LeaseState::Declined,
            _ => return Err(format!("bad state {state:?}")),
        },
        hwaddr: hw_addr(number(htype, "hardware type")?, hex_field(hw, ':')?)?,
        client: ClientId::from(hex_field(client, '\0')?),
        hostname: match host {
            "-" => None,
            escaped => Some(unescape(escaped)?.into()),
        },
    })
}

/// A hardware address of at most 16 bytes (the size of chaddr).
fn hw_addr(htype: u8, bytes: Vec<u8>) -> Result<HwAddr, String> {
    if bytes.len() > HW_MAX {
        return Err(format!("hardware address of {} bytes", bytes.len()));
    }
    Ok(HwAddr::new(htype, &bytes))
}

fn number<T: std::str::FromStr>(field: &str, what: &str) -> Result<T, String> {
    field.parse().map_err(|_| format!("bad {what} {field:?}"))
}

#[cfg(test)]
fn remove_payload(ip: Ipv4Addr, reason: RemoveReason) -> String {
    let mut a = Ascii::new();
    write_remove_payload(&mut a, ip, reason);
    a.as_str().to_string()
}

/// `R <ip> <reason>`.
fn write_remove_payload(a: &mut Ascii, ip: Ipv4Addr, reason: RemoveReason) {
    let reason = match reason {
        RemoveReason::Released => "released",
        RemoveReason::Expired => "expired",
        RemoveReason::Superseded => "superseded",
    };
    a.extend(b"R ");
    a.ipv4(ip);
    a.push(b' ');
    a.extend(reason.as_bytes());
}

pub(crate) fn push_record(out: &mut String, payload: &str) {
    let crc = crc32fast::hash(payload.as_bytes());
    let mut head = *b"00000000 ";
    for (i, d) in head.iter_mut().take(8).enumerate() {
        *d = LOWER_HEX[((crc >> (28 - 4 * i)) & 15) as usize];
    }
    out.reserve(payload.len() + 10);
    out.push_str(std::str::from_utf8(&head).unwrap_or_default());
    out.push_str(payload);
    out.push('\n');
}

/// `push_record` of the payload that `write` writes (into a stack buffer, no string of its
/// own); when `write` says false, nothing is appended.
fn push_record_with(out: &mut String, write: impl FnOnce(&mut Ascii) -> bool) -> bool {
    let mut a = Ascii::new();
    if !write(&mut a) {
        return false;
    }
    push_record(out, a.as_str());
    true
}

/// ASCII text written byte by byte without core::fmt: in a stack buffer while it fits, on the
/// heap past that (a long client id or name).
struct Ascii {
    buf: [u8; 160],
    n: usize,
    spill: Vec<u8>,
}

impl Ascii {
    fn new() -> Self {
        Ascii {
            buf: [0; 160],
            n: 0,
            spill: Vec::new(),
        }
    }

    /// Append one byte; callers only ever pass ASCII.
    fn push(&mut self, b: u8) {
        if self.spill.is_empty()
            && let Some(slot) = self.buf.get_mut(self.n)
        {
            *slot = b;
            self.n += 1;
            return;
        }
        if self.spill.is_empty() {
            self.spill.extend_from_slice(&self.buf);
        }
        self.spill.push(b);
    }

    fn extend(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.n..self.n + bytes.len()) {
            Some(dst) if self.spill.is_empty() => {
                dst.copy_from_slice(bytes);
                self.n += bytes.len();
            }
            _ => bytes.iter().for_each(|b| self.push(*b)),
        }
    }

    fn as_str(&self) -> &str {
        let bytes = if self.spill.is_empty() {
            self.buf.get(..self.n).unwrap_or_default()
        } else {
            &self.spill
        };
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    /// Decimal digits of `n`.
    fn u64(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.extend(digits.get(i..).unwrap_or_default());
    }

    /// Dotted-quad `ip`, as its Display writes it.
    fn ipv4(&mut self, ip: Ipv4Addr) {
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b'.');
            }
            if octet >= 100 {
                self.push(b'0' + octet / 100);
            }
            if octet >= 10 {
                self.push(b'0' + octet / 10 % 10);
            }
            self.push(b'0' + octet % 10);
        }
    }

    /// Lowercase hex of `bytes` (colon-separated or run together), `-` when empty.
    fn hex(&mut self, bytes: &[u8], colons: bool) {
        if bytes.is_empty() {
            self.push(b'-');
        }
        let step = if colons { 3 } else { 2 };
        // Straight into the stack buffer when it has room (a MAC, a client id)...
        if self.spill.is_empty()
            && let Some(dst) = self.buf.get_mut(self.n..self.n + bytes.len() * step)
        {
            for (d, b) in dst.chunks_exact_mut(step).zip(bytes) {
                d[0] = LOWER_HEX[usize::from(b >> 4)];
                d[1] = LOWER_HEX[usize::from(b & 15)];
                if let Some(colon) = d.get_mut(2) {
                    *colon = b':';
                }
            }
            // ... with no colon after the last byte.
            self.n += (bytes.len() * step).saturating_sub(step - 2);
            return;
        }
        for (i, b) in bytes.iter().enumerate() {
            if colons && i > 0 {
                self.push(b':');
            }
            self.push(LOWER_HEX[usize::from(b >> 4)]);
            self.push(LOWER_HEX[usize::from(b & 15)]);
        }
    }

    /// Hostnames are validated labels already; anything else is escaped so a record stays one
    /// line of space-separated fields. A lone `-` is escaped too, since `-` means "no hostname".
    fn escaped(&mut self, name: &str) {
        const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";
        for b in name.bytes() {
            let safe = b.is_ascii_alphanumeric() || b"._-".contains(&b);
            if safe && name != "-" {
                self.push(b);
            } else {
                self.push(b'%');
                self.push(UPPER_HEX[usize::from(b >> 4)]);
                self.push(UPPER_HEX[usize::from(b & 15)]);
            }
        }
    }
}

const LOWER_HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn hand_formatting_writes_what_core_fmt_writes() {
        let text = |write: &dyn Fn(&mut Ascii)| {
            let mut a = Ascii::new();
            write(&mut a);
            a.as_str().to_string()
        };
        for n in [0, 7, 9, 10, 99, 100, 255, 1_700_000_000, u64::MAX] {
            assert_eq!(text(&|a| a.u64(n)), n.to_string());
        }
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "9.99.100.7",
            "192.168.100.20",
            "255.255.255.255",
        ] {
            let ip: Ipv4Addr = ip.parse().expect("address");
            assert_eq!(text(&|a| a.ipv4(ip)), ip.to_string());
        }
        // Past the stack buffer (160 bytes) too.
        for len in [0usize, 1, 6, 53, 54, 80, 200] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            let want: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
            assert_eq!(text(&|a| a.hex(&bytes, true)), dash(want.join(":")));
            assert_eq!(text(&|a| a.hex(&bytes, false)), dash(want.concat()));
        }
        let long = "a-b".repeat(70);
        assert_eq!(text(&|a| a.escaped(&long)), long);
        assert_eq!(text(&|a| a.escaped("-")), "%2D");
        assert_eq!(text(&|a| a.escaped("x y")), "x%20y");
        // A record written through the stack buffer frames exactly as one from its payload.
        let payload = remove_payload(Ipv4Addr::new(10, 0, 0, 7), RemoveReason::Superseded);
        assert_eq!(payload, "R 10.0.0.7 superseded");
        let (mut a, mut b) = (String::from("x\n"), String::from("x\n"));
        push_record(&mut a, &payload);
        assert_eq!(
            a,
            format!("x\n{:08x} {payload}\n", crc32fast::hash(payload.as_bytes()))
        );
        assert!(push_record_with(&mut b, |out| {
            out.extend(payload.as_bytes());
            true
        }));
        assert_eq!(a, b);
        assert!(!push_record_with(&mut b, |_| false));
        assert_eq!(a, b, "a refused payload leaves nothing behind");
    }
}

fn header_payload(kind: &str, generation: u64) -> String {
    format!("H {kind} {VERSION} gen={generation}")
}

fn upsert_payload(lease: &Lease) -> Option<String> {
    upsert_payload_at(lease, lease.expires)
}

/// Two packed leases of one address: true when they are the same lease (state, hardware
/// address, client and name) and `stored` expires no earlier than `wanted`.
fn covers(stored: &[u8], wanted: &[u8]) -> bool {
    match (
        stored.split_first_chunk::<8>(),
        wanted.split_first_chunk::<8>(),
    ) {
        (Some((a, a_rest)), Some((b, b_rest))) => {
            a_rest == b_rest && u64::from_le_bytes(*a) >= u64::from_le_bytes(*b)
        }
        _ => false,
    }
}

/// The packed leases of `Journal::on_disk` in one growing arena, each record its length (one
/// byte, or `LONG` and a u32) and the packed bytes, and an index from address to record
/// offset. 100,000 named leases take about 3.7 MB this way (25 bytes a record, 12 of index),
/// against 8 MB as one boxed slice each (allocator overhead and fat pointers).
/// A replaced record stays in the arena (the undo of a failed sync points at it) until
/// `maybe_shrink` copies the live records into a fresh arena, once most of it is garbage.
#[derive(Debug, Default)]
struct PackedLeases {
    index: HashMap<Ipv4Addr, u32, AddrHash>,
    arena: Vec<u8>,
    /// Bytes of the arena that live records take (with their length prefixes).
    live: usize,
}

/// A length byte that says a u32 length follows (in the arena, and for a packed client id).
const LONG: u8 = u8::MAX;

/// Append `len`: one byte below `LONG`, else `LONG` and the u32.
fn push_len(out: &mut Vec<u8>, len: u32) {
    match u8::try_from(len) {
        Ok(short) if short < LONG => out.push(short),
        _ => {
            out.push(LONG);
            out.extend_from_slice(&len.to_le_bytes());
        }
    }
}

/// A length written by `push_len` and the bytes after it.
fn read_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    if first < LONG {
        return Some((usize::from(first), rest));
    }
    let (len, rest) = rest.split_first_chunk::<4>()?;
    Some((usize::try_from(u32::from_le_bytes(*len)).ok()?, rest))
}

/// The bytes `push_len` takes for `len`.
fn len_size(len: usize) -> usize {
    if len < usize::from(LONG) { 1 } else { 5 }
}

impl PackedLeases {
    fn len(&self) -> usize {
        self.index.len()
    }

    /// Room in the index for `leases` more (the arena grows by doubling; its untouched tail
    /// takes no memory).
    fn reserve(&mut self, leases: usize) {
        self.index.reserve(leases);
    }

    fn record(&self, offset: u32) -> Option<&[u8]> {
        let at = usize::try_from(offset).ok()?;
        let (len, rest) = read_len(self.arena.get(at..)?)?;
        rest.get(..len)
    }

    /// The bytes the record at `offset` takes in the arena (length prefix included).
    fn size(&self, offset: Option<u32>) -> usize {
        offset
            .and_then(|o| self.record(o))
            .map_or(0, |r| r.len() + len_size(r.len()))
    }

    fn get(&self, ip: Ipv4Addr) -> Option<&[u8]> {
        self.record(*self.index.get(&ip)?)
    }

    /// Store `packed` for `ip`; returns the offset of the record it replaces. A record that
    /// does not fit a u32 length or offset (a 4 GB arena) is not stored.
    fn insert(&mut self, ip: Ipv4Addr, packed: &[u8]) -> Option<u32> {
        let (Ok(offset), Ok(len)) = (u32::try_from(self.arena.len()), u32::try_from(packed.len()))
        else {
            return self.remove(ip);
        };
        push_len(&mut self.arena, len);
        self.arena.extend_from_slice(packed);
        self.live += packed.len() + len_size(packed.len());
        let old = self.index.insert(ip, offset);
        self.live = self.live.saturating_sub(self.size(old));
        old
    }

    /// Forget `ip`; returns the offset of its record.
    fn remove(&mut self, ip: Ipv4Addr) -> Option<u32> {
        let old = self.index.remove(&ip);
        self.live = self.live.saturating_sub(self.size(old));
        old
    }

    /// Point `ip` back at an earlier record (`None`: no lease), as an undo does.
    fn restore(&mut self, ip: Ipv4Addr, offset: Option<u32>) {
        let current = match offset {
            Some(o) => self.index.insert(ip, o),
            None => self.index.remove(&ip),
        };
        self.live = self.live.saturating_sub(self.size(current)) + self.size(offset);
    }

    /// Copy the live records into a fresh arena when garbage is most of it (call only with no
    /// undo pending: the offsets change).
    fn maybe_shrink(&mut self) {
        let garbage = self.arena.len().saturating_sub(self.live);
        if garbage <= self.live || garbage < 1 << 20 {
            return;
        }
        let mut arena = Vec::with_capacity(self.live);
        let old = std::mem::take(&mut self.arena);
        for offset in self.index.values_mut() {
            let at = usize::try_from(*offset).unwrap_or(usize::MAX);
            let record = old.get(at..).and_then(read_len).and_then(|(len, rest)| {
                let size = len + len_size(len);
                old.get(at..at + size).filter(|_| rest.len() >= len)
            });
            *offset = u32::try_from(arena.len()).unwrap_or(u32::MAX);
            arena.extend_from_slice(record.unwrap_or_default());
        }
        self.arena = arena;
        self.live = self.arena.len();
    }
}

/// The packed client-id length byte of an id that is its hardware type and address.
const IMPLIED_ID: u8 = LONG - 1;

/// A bound or declined lease packed for `on_disk`, written with expiry `expires`: expiry (u64),
/// state, hardware type, hardware address (after a u8 length), client id (`IMPLIED_ID` and no
/// bytes when it is type + hardware address, else its length as `push_len` writes it, with
/// `IMPLIED_ID` taken as a long length), then the host name (the rest; empty for none). About
/// 24 bytes; `None` for an offer.
fn pack(lease: &Lease, expires: UnixTime) -> Option<Box<[u8]>> {
    let mut out = Vec::new();
    pack_into(&mut out, lease, expires).then(|| out.into_boxed_slice())
}

/// `pack` into `out` (cleared first); false for an offer.
fn pack_into(out: &mut Vec<u8>, lease: &Lease, expires: UnixTime) -> bool {
    let state = match lease.state {
        LeaseState::Bound => b'b',
        LeaseState::Declined => b'd',
        LeaseState::Offered => return false,
    };
    let host = lease.hostname.as_deref().unwrap_or("").as_bytes();
    let hw = lease.hwaddr.bytes();
    // The usual client id (type + hardware address) is implied, not stored.
    let client = match lease.client == ClientId::from_hw(&lease.hwaddr) {
        true => None,
        false => Some(lease.client.as_bytes()),
    };
    out.clear();
    out.reserve(16 + hw.len() + client.map_or(0, <[u8]>::len) + host.len());
    out.extend_from_slice(&expires.0.to_le_bytes());
    out.extend_from_slice(&[state, lease.hwaddr.htype]);
    out.push(hw.len() as u8); // at most 16
    out.extend_from_slice(hw);
    match client {
        None => out.push(IMPLIED_ID),
        Some(id) => {
            let len = u32::try_from(id.len()).unwrap_or(u32::MAX);
            match u8::try_from(len) {
                Ok(short) if short < IMPLIED_ID => out.push(short),
                _ => {
                    out.push(LONG);
                    out.extend_from_slice(&len.to_le_bytes());
                }
            }
            out.extend_from_slice(id);
        }
    }
    out.extend_from_slice(host);
    true
}

/// The lease on `ip` from its packed form (see `pack`).
fn unpack(ip: Ipv4Addr, packed: &[u8]) -> Option<Lease> {
    let (expires, rest) = packed.split_first_chunk::<8>()?;
    let ([state, htype, hw_len], rest) = rest.split_first_chunk::<3>().map(|(h, r)| (*h, r))?;
    let hw_len = usize::from(hw_len);
    let (hw, rest) = (rest.get(..hw_len)?, rest.get(hw_len..)?);
    if hw.len() > HW_MAX {
        return None;
    }
    let hwaddr = HwAddr::new(htype, hw);
    let (client, rest) = match rest.split_first()? {
        (&IMPLIED_ID, rest) => (ClientId::from_hw(&hwaddr), rest),
        _ => {
            let (len, rest) = read_len(rest)?;
            (ClientId::new(rest.get(..len)?), rest.get(len..)?)
        }
    };
    let hostname = match rest {
        [] => None,
        name => Some(String::from_utf8(name.to_vec()).ok()?),
    };
    Some(Lease {
        ip,
        client,
        hwaddr,
        hostname: hostname.map(Arc::from),
        expires: UnixTime(u64::from_le_bytes(*expires)),
        state: match state {
            b'b' => LeaseState::Bound,
            b'd' => LeaseState::Declined,
            _ => return None,
        },
    })
}

/// The upsert payload of `lease` written with expiry `expires`; `None` for an offer.
fn upsert_payload_at(lease: &Lease, expires: UnixTime) -> Option<String> {
    let mut a = Ascii::new();
    write_upsert_payload(&mut a, lease, expires).then(|| a.as_str().to_string())
}

/// The upsert payload of `lease` (with expiry `expires`); false for an offer.
fn write_upsert_payload(a: &mut Ascii, lease: &Lease, expires: UnixTime) -> bool {
    let state = match lease.state {
        LeaseState::Bound => b'b',
        LeaseState::Declined => b'd',
        LeaseState::Offered => return false,
    };
    a.extend(b"U ");
    a.ipv4(lease.ip);
    a.push(b' ');
    a.u64(expires.0);
    a.extend(&[b' ', state, b' ']);
    a.u64(u64::from(lease.hwaddr.htype));
    a.push(b' ');
    a.hex(lease.hwaddr.bytes(), true);
    a.push(b' ');
    a.hex(lease.client.as_bytes(), false);
    a.push(b' ');
    match &lease.hostname {
        // An empty name is no name.
        Some(name) if !name.is_empty() => a.escaped(name),
        _ => a.push(b'-'),
    }
    true
}

/// Lowercase hex of `bytes` run together (`sep` "") or separated by `sep`, `-` when empty.
pub(crate) fn hex_or_dash(bytes: &[u8], sep: &str) -> String {
    let mut a = Ascii::new();
    a.hex(bytes, !sep.is_empty());
    let out = a.as_str();
    if !sep.is_empty() && sep != ":" {
        return out.replace(':', sep);
    }
    out.to_string()
}

/// Parse hex bytes, either separated by `sep` (one or two digits each) or (with `sep == '\0'`)
/// run together two digits a byte; `-` is empty.
pub(crate) fn hex_field(field: &str, sep: char) -> Result<Vec<u8>, String> {
    if field == "-" {
        return Ok(Vec::new());
    }
    let bad = || format!("bad hex {field:?}");
    let b = field.as_bytes();
    if sep == '\0' {
        if !b.len().is_multiple_of(2) {
            return Err(bad());
        }
        return b
            .chunks_exact(2)
            .map(|p| Some(hex_digit(p[0])? << 4 | hex_digit(p[1])?))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad);
    }
    let mut out = Vec::with_capacity(b.len().div_ceil(3));
    for p in field.split(sep) {
        let byte = match p.as_bytes() {
            [lo] => hex_digit(*lo),
            [hi, lo] => hex_digit(*hi).zip(hex_digit(*lo)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        out.push(byte.ok_or_else(bad)?);
    }
    Ok(out)
}

fn unescape(field: &str) -> Result<String, String> {
    if !field.contains('%') {
        return Ok(field.to_string());
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = field.get(i + 1..i + 3).ok_or("truncated % escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad % escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "hostname is not UTF-8".to_string())
}

pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Read a dnsmasq lease file (`<expiry> <mac> <ip> <hostname|*> <clientid|*>` per line) as
/// bound leases, later lines winning for the same address. `duid` and IPv6 lines are skipped;
/// an expiry of 0 (dnsmasq's infinite lease) becomes the largest time. Expired leases are kept
/// (the caller knows `now`). A hostname that is not a valid DNS label is dropped with a warning.
pub fn import_dnsmasq(path: &Path) -> Result<Vec<Lease>, ImportError> {
    let shown = path.display().to_string();
    let text = fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: shown.clone(),
        source,
    })?;
    let mut leases = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_error = |reason| ImportError::Line {
            path: shown.clone(),
            line: index + 1,
            reason,
        };
        match parse_dnsmasq_line(line).map_err(line_error)? {
            Some(lease) => {
                leases.insert(lease.ip, lease);
            }
            None => continue,
        }
    }
    Ok(leases.into_values().collect())
}

fn parse_dnsmasq_line(line: &str) -> Result<Option<Lease>, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [expiry, mac, ip, host, client] = fields.as_slice() else {
        if fields.is_empty() || fields[0] == "duid" {
            return Ok(None);
        }
        let n = fields.len();
        return Err(format!(
            "expected 5 fields (expiry mac ip hostname clientid), found {n}"
        ));
    };
    if ip.contains(':') {
        return Ok(None); // an IPv6 lease: `<expiry> <iaid> <ipv6> <hostname> <duid>`
    }
    let expires = match number::<u64>(expiry, "expiry")? {
        0 => UnixTime(u64::MAX),
        t => UnixTime(t),
    };
    let hwaddr = match mac.split_once('-') {
        Some((htype, bytes)) => hw_addr(
            u8::from_str_radix(htype, 16).map_err(|_| format!("bad hardware type {htype:?}"))?,
            if bytes.is_empty() {
                Vec::new()
            } else {
                hex_field(bytes, ':')?
            },
        )?,
        None => hw_addr(1, hex_field(mac, ':')?)?,
    };
    let client = match *client {
        "*" => ClientId::from_hw(&hwaddr),
        hex => ClientId::from(hex_field(hex, ':')?),
    };
    let ip: Ipv4Addr = number(ip, "address")?;
    let hostname = match *host {
        "*" => None,
        name if is_dns_label(name) => Some(name.to_ascii_lowercase().into()),
        name => {
            tracing::warn!(%ip, hostname = name, "dnsmasq lease hostname is not a DNS label; dropped");
            None
        }
    };
    let state = LeaseState::Bound;
    Ok(Some(Lease {
        ip,
        client,
        hwaddr,
        hostname,
        expires,
        state,
    }))
}

/// RFC 1123 label: 1 to 63 letters, digits and hyphens, not starting or ending with a hyphen.
fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
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
    fn covers_compares_everything_but_a_later_expiry() {
        let packed = |l: &Lease| pack(l, l.expires).expect("packed");
        let stored = packed(&lease(1, 2000, Some("a")));
        let same_earlier = packed(&lease(1, 1500, Some("a")));
        let later = packed(&lease(1, 2500, Some("a")));
        let renamed = packed(&lease(1, 1500, Some("b")));
        let unnamed = packed(&lease(1, 1500, None));
        let mut declined = lease(1, 1500, Some("a"));
        declined.state = LeaseState::Declined;
        assert!(covers(&stored, &stored));
        assert!(covers(&stored, &same_earlier));
        assert!(!covers(&stored, &later));
        assert!(!covers(&stored, &renamed));
        assert!(!covers(&stored, &unnamed));
        assert!(!covers(&stored, &packed(&declined)));
        assert!(
            !covers(&stored[..7], &stored),
            "too short to hold an expiry"
        );
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

    /// One client renewing at T1 (half its lease time) 1,000 times: bytes written with and
    /// without headroom (run with --nocapture to see the figures).
    #[test]
    fn renewals_inside_the_headroom_are_not_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lease_time = 3600;
        let mut bytes = Vec::new();
        for fraction in [0.0, 0.5] {
            let path = dir.path().join(format!("leases-{fraction}"));
            let (mut j, _) = open(&path, 0);
            j.set_renew_write_fraction(fraction);
            let before = j.stats();
            let mut granted = lease(1, 0, Some("laptop"));
            for i in 0..1000u64 {
                let now = UnixTime(1_000_000 + i * lease_time / 2);
                granted.expires = now.plus(lease_time);
                j.commit_at(now, &[up(&granted)]).expect("commit");
                let stored = j.durable(granted.ip).expect("stored");
                assert!(stored.expires >= granted.expires, "renewal {i} not covered");
            }
            let after = j.stats();
            let written = after.bytes_written - before.bytes_written;
            println!(
                "renew_write_fraction={fraction}: {} records, {} skipped, {written} bytes per 1000 renewals",
                after.records - before.records,
                after.skipped
            );
            bytes.push(written);
            drop(j);
            // Recovery keeps the stored (later) expiry.
            let (_, leases) = open(&path, 0);
            assert!(leases[0].expires >= granted.expires);
        }
        assert!(bytes[1] * 2 <= bytes[0] + 100, "{bytes:?}");
        // A changed name or owner is always written, whatever the headroom.
        let path = dir.path().join("changes");
        let (mut j, _) = open(&path, 0);
        j.set_renew_write_fraction(0.5);
        let a = lease(1, 3600, Some("a"));
        j.commit_at(UnixTime(0), &[up(&a)]).expect("commit");
        let renamed = Lease {
            hostname: Some("b".into()),
            ..a.clone()
        };
        j.commit_at(UnixTime(10), &[up(&renamed)]).expect("commit");
        assert_eq!((j.stats().records, j.stats().skipped), (2, 0));
        assert_eq!(
            j.durable(a.ip).expect("stored").expires,
            UnixTime(3600 + 1795)
        );
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
    fn records_after_unwritten_zeros_are_not_replayed() {
        // Batch mode, crash: a later page reached the disk, an earlier one did not.
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
        assert_eq!(leases.iter().map(|l| l.ip).collect::<Vec<_>>(), [ip(1)]);
        assert!(!with_suffix(&path, ".damaged").exists());
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
}
