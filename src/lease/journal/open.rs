//! Opening the lease journal: replay of the snapshot, `.prev` and the journal in order (each
//! read as a stream by `log::reader`), the repair of what is damaged (`log::repair`: a damaged
//! tail cut and kept, a hole skipped, kept and compacted away), and the live leases returned.
use super::*;

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
        let (covered, mut leases, snapshot_holes) = read_snapshot(&paths.snapshot)?;
        let (last, had_prev) = read_prev(&paths.prev, covered, &mut leases)?;
        let existing = open_if_exists(path)?;
        let file = open_write(path)?;
        let mut journal = Journal {
            paths,
            file,
            durability,
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
        let holes = match existing {
            Some(existing) => journal.replay(existing, last, &mut leases)?,
            None => {
                journal.reset(last + 1)?;
                journal.sync_dir()?;
                false
            }
        };
        // The replay's own vector becomes the result: no second copy of the leases.
        let live = into_live(leases, now);
        // A hole skipped in any file is rewritten away (its bytes are in `.damaged`).
        if had_prev || holes || snapshot_holes {
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

    /// Apply an existing journal file over the leases so far, cutting a damaged tail. True when
    /// records were recovered after a hole (the caller compacts, so the hole goes away).
    pub(super) fn replay(
        &mut self,
        existing: File,
        covered: u64,
        leases: &mut Replayed,
    ) -> Result<bool, JournalError> {
        let path = self.paths.journal.clone();
        let mut lines = lines(existing);
        let first = lines.next();
        check(&mut lines, &path)?;
        let generation = header_generation(&path, JOURNAL_KIND, &lines.buf, first.as_ref())?;
        let Some(generation) = generation.filter(|g| *g > covered) else {
            // Empty, torn at creation, or already folded into the snapshot.
            return self.reset(covered + 1).map(|()| false);
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
        check(&mut lines, &path)?;
        self.synced_records = self.journal_records;
        self.generation = generation;
        self.len = lines.good_len as u64;
        self.synced_len = self.len;
        save_holes(&path, &lines.holes);
        if let Some(damage) = &lines.damage {
            self.cut(damage)?;
        } else {
            // Zeros written ahead of the records (or nothing): written again as needed.
            self.truncate(self.len).map_err(io_err(&path))?;
        }
        Ok(!lines.holes.is_empty())
    }

    /// Truncate the journal at a damaged record, saving what is cut off for a person.
    pub(super) fn cut(&mut self, damage: &Damage) -> Result<(), JournalError> {
        let path = self.paths.journal.clone();
        let mut tail = Vec::new();
        File::open(&path)
            .and_then(|f| {
                let mut f = io::BufReader::new(f);
                io::Seek::seek(&mut f, io::SeekFrom::Start(damage.offset as u64))?;
                io::Read::read_to_end(&mut f, &mut tail)
            })
            .map_err(io_err(&path))?;
        repair::keep_tail(&RealFs, &path, "lease journal", damage, &tail);
        self.truncate(damage.offset as u64).map_err(io_err(&path))?;
        self.sync_journal()
    }

    /// Empty the journal and start generation `generation` with its header.
    pub(super) fn reset(&mut self, generation: u64) -> Result<(), JournalError> {
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
}

pub(super) fn journal_header(generation: u64) -> String {
    let mut header = String::new();
    push_record(&mut header, &header_payload(JOURNAL_KIND, generation));
    header
}

/// Apply `.prev` over the snapshot's leases when it is newer than the snapshot; returns the
/// last generation applied and whether a `.prev` exists at all.
pub(super) fn read_prev(
    path: &Path,
    covered: u64,
    leases: &mut Replayed,
) -> Result<(u64, bool), JournalError> {
    let Some(file) = open_if_exists(path)? else {
        return Ok((covered, false));
    };
    let mut lines = lines(file);
    let first = lines.next();
    check(&mut lines, path)?;
    match header_generation(path, JOURNAL_KIND, &lines.buf, first.as_ref())? {
        Some(generation) if generation > covered => {
            apply(leases, &mut lines);
            check(&mut lines, path)?;
            save_holes(path, &lines.holes);
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

/// Read a snapshot: the generation it covers (0 without one), its leases by address, and
/// whether records were recovered after a hole in it.
pub(super) fn read_snapshot(path: &Path) -> Result<(u64, Replayed, bool), JournalError> {
    let mut leases = Replayed::default();
    let Some(file) = open_if_exists(path)? else {
        return Ok((0, leases, false));
    };
    let mut lines = lines(file);
    let first = lines.next();
    check(&mut lines, path)?;
    let Some(covered) = header_generation(path, SNAPSHOT_KIND, &lines.buf, first.as_ref())? else {
        tracing::warn!(file = %path.display(), "lease snapshot is empty or torn; ignoring it");
        return Ok((0, leases, false));
    };
    apply(&mut leases, &mut lines);
    check(&mut lines, path)?;
    save_holes(path, &lines.holes);
    if let Some(damage) = lines.damage {
        tracing::warn!(
            file = %path.display(),
            offset = damage.offset,
            reason = %damage.reason,
            "lease snapshot damaged: leases after this offset are lost"
        );
    }
    Ok((covered, leases, !lines.holes.is_empty()))
}

/// The file opened for reading, `None` if it does not exist. Files are read as streams, one
/// line at a time: a journal may be several times the size of the live lease set.
pub(super) fn open_if_exists(path: &Path) -> Result<Option<File>, JournalError> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// The generation in a file's header; `None` for an empty file or a header torn at creation.
pub(super) fn header_generation(
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
pub(super) fn apply_one(leases: &mut Replayed, record: Record) -> bool {
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
pub(super) fn apply(leases: &mut Replayed, lines: &mut Lines) -> u64 {
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
pub(super) type Replayed = ByAddr;

/// The leases of a replay that are live at `now`, sorted by address.
pub(super) fn into_live(replayed: Replayed, now: UnixTime) -> Vec<Lease> {
    let mut live = replayed.into_vec();
    live.retain(|l| l.expires > now);
    live.sort_unstable_by_key(|l| l.ip);
    live.shrink_to_fit();
    live
}

/// The records of a lease file (journal or snapshot), read as a stream.
pub(super) type Lines = Reader<io::BufReader<File>, fn(usize, &str) -> Result<Record, String>>;

pub(super) fn lines(file: File) -> Lines {
    Reader::new(io::BufReader::with_capacity(1 << 16, file), parse_record)
}

/// A record at offset `start`: only the first may be a header.
fn parse_record(start: usize, payload: &str) -> Result<Record, String> {
    parse_payload(payload).and_then(|r| match r {
        Record::Header { .. } if start > 0 => Err("header in the middle".to_string()),
        r => Ok(r),
    })
}

/// Fail if reading the file failed.
fn check(lines: &mut Lines, path: &Path) -> Result<(), JournalError> {
    match lines.take_error() {
        Some(e) => Err(io_err(path)(e)),
        None => Ok(()),
    }
}

/// Warn about each hole of `path` that replay skipped and keep its bytes in `.damaged`.
fn save_holes(path: &Path, holes: &[(usize, usize)]) {
    repair::keep_holes(&RealFs, path, "lease file", holes, |offset, len| {
        let mut bytes = vec![0u8; len];
        File::open(path).and_then(|f| f.read_exact_at(&mut bytes, offset as u64))?;
        Ok(bytes)
    });
}
