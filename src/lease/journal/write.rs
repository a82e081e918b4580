//! Writing the lease journal: commit, write and sync (group commit), the zeros written ahead
//! (preallocation), the rollback of everything since the last sync after a failed write or
//! sync, and the repair of the file before the next write.
use super::*;

impl Journal {
    /// Write these changes in one write and (unless durability is `none`) one fdatasync, as
    /// they are. `Offered` upserts are never journaled. On error nothing of the batch is kept.
    pub fn commit(&mut self, changes: &[LeaseChange]) -> Result<(), JournalError> {
        self.write_changes(None, changes)?;
        self.sync(None)
    }

    /// Like `commit`, with `now` for the repair timer after a failure.
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
    pub(super) fn write_changes(
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
            if self.push(&mut buf, change) {
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
    pub(super) fn preallocate(&mut self, more: u64) {
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
    pub(super) fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.allocated = len;
        self.file.set_len(len)
    }

    /// Serialize one change into `buf` and apply it to `on_disk`; false when nothing is written.
    pub(super) fn push(&mut self, buf: &mut String, change: &LeaseChange) -> bool {
        let (ip, new) = match change {
            LeaseChange::Upsert(lease) => {
                if lease.state == LeaseState::Offered {
                    tracing::warn!(ip = %lease.ip, "offered lease passed to the journal; not written");
                    return false;
                }
                let expires = lease.expires;
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

    /// Undo everything since the last sync after a failed write or sync, and cut the file back.
    pub(super) fn fail(&mut self, now: Option<UnixTime>) {
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
    pub(super) fn repair(&mut self, now: Option<UnixTime>) -> Result<(), JournalError> {
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
        // The policy of every log (`log::repair::cut_back`), plus the directory: a rotation
        // may have failed to make the journal's name durable.
        self.allocated = self.synced_len;
        let repaired = repair::cut_back(&mut self.file, self.synced_len, true)
            .and_then(|()| crate::log::replace::sync_dir(&self.paths.dir));
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

    pub(super) fn sync_journal(&mut self) -> Result<(), JournalError> {
        if self.durability != Durability::None {
            self.file.sync_data().map_err(io_err(&self.paths.journal))?;
            self.stats.fsyncs += 1;
        }
        Ok(())
    }

    /// Make renames and file creations in the journal's directory durable.
    pub(super) fn sync_dir(&mut self) -> Result<(), JournalError> {
        if self.durability != Durability::None {
            sync_dir(&self.paths.dir)?;
            self.stats.fsyncs += 1;
        }
        Ok(())
    }
}
