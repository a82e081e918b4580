//! Compaction: rotation of the journal on the service thread (O(1)), and the background
//! thread that merges the snapshot and `.prev` into the next snapshot without a copy of the
//! leases; also the compaction at open.
use super::*;

impl Journal {
    /// `.prev` was left by a compaction that did not finish: write the snapshot of everything
    /// replayed (covering this journal's generation), drop `.prev`, start the next generation.
    pub(super) fn compact_at_open(&mut self, leases: &[Lease]) -> Result<(), JournalError> {
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
    pub(super) fn rotate(&mut self) -> Result<(), JournalError> {
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
}

/// Counters and flags shared with the snapshot thread.
#[derive(Debug, Default)]
pub(super) struct CompactorShared {
    pub(super) busy: AtomicBool,
    pub(super) stop: AtomicBool,
    pub(super) bytes: AtomicU64,
    pub(super) fsyncs: AtomicU64,
    pub(super) compactions: AtomicU64,
}

/// The background snapshot writer. It keeps no copy of the leases: asked for the snapshot of a
/// rotated generation, it merges the current snapshot file and `.prev` (both closed to writers
/// by then) into a new snapshot, holding only where each live lease's line is.
#[derive(Debug)]
pub(super) struct Compactor {
    /// The generation to snapshot (its journal is `.prev`).
    pub(super) tx: Option<mpsc::Sender<u64>>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
    pub(super) shared: Arc<CompactorShared>,
}

impl Compactor {
    pub(super) fn idle() -> Compactor {
        Compactor {
            tx: None,
            thread: None,
            shared: Arc::default(),
        }
    }

    /// `opened`: the time the journal was opened; lease lines expired by then are left out of
    /// snapshots (recovery dropped them, and no remove record will ever follow).
    pub(super) fn start(paths: Paths, durability: Durability, opened: UnixTime) -> Compactor {
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

    pub(super) fn send(&self, generation: u64) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(generation);
        }
    }

    /// Busy while a snapshot is being written, and permanently without a thread.
    pub(super) fn is_busy(&self) -> bool {
        self.tx.is_none() || self.shared.busy.load(Ordering::Acquire)
    }

    pub(super) fn set_busy(&self) {
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

pub(super) fn snapshot_worker(
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
pub(super) fn snapshot_until_done(
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
pub(super) struct Loc {
    file: u8,
    len: u32,
    offset: u64,
}

/// The snapshot of `generation` from the files: the current snapshot, then `.prev` (when newer),
/// last line of each address winning, copied byte for byte. Returns the bytes written, the
/// fsyncs done and the number of leases.
pub(super) fn merge_snapshot(
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
pub(super) fn index_file(
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
pub(super) fn write_snapshot(
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
pub(super) fn install_snapshot(
    paths: &Paths,
    durability: Durability,
    generation: u64,
    body: impl FnOnce(&mut Counted<io::BufWriter<File>>) -> io::Result<()>,
) -> Result<(u64, u64), JournalError> {
    let tmp = with_suffix(&paths.journal, ".snapshot.tmp");
    let mut header = String::new();
    push_record(&mut header, &header_payload(SNAPSHOT_KIND, generation));
    let written = (|| -> Result<u64, JournalError> {
        let file = create_temp(&tmp).map_err(io_err(&tmp))?;
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
pub(super) struct Counted<W> {
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

pub(super) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    crate::log::replace::sync_dir(dir).map_err(io_err(dir))
}

/// The journal, for writing at given offsets (records go over the zeros written ahead).
pub(super) fn open_write(path: &Path) -> Result<File, JournalError> {
    private_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))
}

/// A new file (written from its start: the next journal's header), made by `create_temp`.
pub(super) fn open_new(path: &Path) -> Result<File, JournalError> {
    create_temp(path).map_err(io_err(path))
}
