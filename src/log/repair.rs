//! The one repair policy of every log (see the `log` module docs): what a reader found wrong
//! is warned about, with file and offset, and the bytes cut off or skipped are kept in
//! `<file>.damaged` for a person; a failed append is cut back to the last good record (`Tail`).
//! The caller then rewrites or cuts its file so that the damage is gone.

use std::io;
use std::path::Path;

use crate::log::fs::{LogFile, LogFs};
use crate::log::reader::{Damage, Found};

/// Keep `bytes`, cut from or skipped in the log at `path`, in `<path>.damaged` (best effort: a
/// failure is warned about, the repair goes on).
pub(crate) fn keep_damaged(fs: &dyn LogFs, path: &Path, bytes: &[u8]) {
    if let Err(e) = fs.keep_damaged(path, bytes) {
        tracing::warn!(file = %path.display(), error = %e, "cannot save damaged log bytes");
    }
}

/// Warn about each hole (offset, length) the reader skipped in the log at `path` (`what`:
/// "lease journal", ...), and keep its bytes, as `read_at(offset, length)` gives them.
pub(crate) fn keep_holes(
    fs: &dyn LogFs,
    path: &Path,
    what: &str,
    holes: &[(usize, usize)],
    mut read_at: impl FnMut(usize, usize) -> io::Result<Vec<u8>>,
) {
    for &(offset, len) in holes {
        tracing::warn!(log = what, file = %path.display(), offset, bytes = len,
            "zeroed or unreadable block in the middle: skipped, records after it recovered");
        match read_at(offset, len) {
            Ok(bytes) => keep_damaged(fs, path, &bytes),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the skipped block")
            }
        }
    }
}

/// Warn that the log at `path` is cut at `damage`, and keep the bytes cut off (`tail`) unless
/// they are only a torn last record (no newline: a write cut short, nothing to look at).
pub(crate) fn keep_tail(fs: &dyn LogFs, path: &Path, what: &str, damage: &Damage, tail: &[u8]) {
    tracing::warn!(
        log = what,
        file = %path.display(),
        offset = damage.offset,
        reason = %damage.reason,
        dropped_bytes = tail.len(),
        "damaged: cut here, records before it kept"
    );
    if tail.contains(&b'\n') {
        keep_damaged(fs, path, tail);
    }
}

/// The policy for a log read whole into `bytes`: warn about and keep its holes and damaged
/// tail. True when anything was wrong (the caller rewrites the file without it).
pub(crate) fn keep_found(
    fs: &dyn LogFs,
    path: &Path,
    what: &str,
    bytes: &[u8],
    found: &Found,
) -> bool {
    keep_holes(fs, path, what, &found.holes, |offset, len| {
        Ok(bytes[offset..offset + len].to_vec())
    });
    if let Some(damage) = &found.damage {
        keep_tail(fs, path, what, damage, &bytes[damage.offset..]);
    }
    !found.holes.is_empty() || found.damage.is_some()
}

/// The end of the last good record of an append-only log, and the failure policy of its
/// appends: a failed append (or its sync) is cut back to that end; while the cut cannot be
/// made, the log is failed and every later append retries the cut first.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    /// Length up to the end of the last good (and, with `fsync`, synced) record.
    pub len: u64,
    failed: bool,
}

impl Tail {
    pub(crate) fn new(len: u64) -> Tail {
        Tail { len, failed: false }
    }

    /// Append `bytes` (and sync them when `fsync`). On error nothing of them is kept: the file
    /// is cut back (if that fails too, `is_failed` until `repair` works).
    pub(crate) fn append(
        &mut self,
        file: &mut dyn LogFile,
        bytes: &[u8],
        fsync: bool,
    ) -> io::Result<()> {
        self.repair(file, fsync)?;
        let written = file
            .append(bytes)
            .and_then(|()| if fsync { file.sync_data() } else { Ok(()) });
        match written {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.failed = cut_back(file, self.len, fsync).is_err();
                Err(e)
            }
        }
    }

    /// After a failure: cut the file back to `len` (and sync) now; Ok when not failed.
    pub(crate) fn repair(&mut self, file: &mut dyn LogFile, fsync: bool) -> io::Result<()> {
        if self.failed {
            cut_back(file, self.len, fsync)?;
            self.failed = false;
            tracing::info!("log repaired after a failed write");
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn is_failed(&self) -> bool {
        self.failed
    }
}

/// Cut `file` to `len` and (with `fsync`) sync it.
pub(crate) fn cut_back(file: &mut dyn LogFile, len: u64, fsync: bool) -> io::Result<()> {
    file.set_len(len)?;
    if fsync {
        file.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::fs::sim::SimFs;
    use crate::log::with_suffix;

    #[test]
    fn a_failed_append_is_cut_back_and_the_cut_retried_until_it_works() {
        let disk = SimFs::default();
        let path = Path::new("/sim/log");
        let (_, mut file) = disk.open_log(path).expect("open");
        let mut tail = Tail::new(0);
        tail.append(file.as_mut(), b"one\n", true).expect("append");
        // The append works, its sync fails, and so does the cut back.
        disk.fail(1, 2);
        tail.append(file.as_mut(), b"two\n", true)
            .expect_err("failed");
        assert!(tail.is_failed(), "the cut did not work");
        assert_eq!(
            disk.read(path),
            b"one\ntwo\n",
            "the unsynced record is still there"
        );
        disk.fail(0, 1);
        tail.append(file.as_mut(), b"three\n", true)
            .expect_err("the cut fails again: no append");
        assert_eq!(disk.read(path), b"one\ntwo\n");
        tail.append(file.as_mut(), b"three\n", true)
            .expect("repaired, appended");
        assert!(!tail.is_failed());
        assert_eq!(disk.read(path), b"one\nthree\n");
        assert_eq!(tail.len, 10);
    }

    #[test]
    fn holes_and_a_damaged_tail_are_kept_but_a_torn_write_is_not() {
        let disk = SimFs::default();
        let path = Path::new("/sim/log");
        let bytes = b"good\n\0\0\0ad\nmore\nbad line\nnext\n";
        let damage = Damage {
            offset: 16,
            reason: "checksum mismatch".into(),
        };
        let found = Found {
            good_len: 16,
            holes: vec![(5, 6)],
            damage: Some(damage),
        };
        assert!(keep_found(&disk, path, "test log", bytes, &found));
        assert_eq!(
            disk.read(&with_suffix(path, ".damaged")),
            b"\0\0\0ad\nbad line\nnext\n"
        );
        let torn = Damage {
            offset: 5,
            reason: "torn".into(),
        };
        let found = Found {
            good_len: 5,
            holes: Vec::new(),
            damage: Some(torn),
        };
        assert!(keep_found(
            &disk,
            Path::new("/sim/b"),
            "test log",
            b"good\nto",
            &found
        ));
        assert!(disk.read(Path::new("/sim/b.damaged")).is_empty());
        assert!(!keep_found(
            &disk,
            path,
            "test log",
            b"good\n",
            &Found::default()
        ));
    }
}
