//! The append-only CRC-line logs leasedns keeps on disk (the lease journal, `lease::journal`;
//! the DNS update journal, `dns::journal`; the DDNS queue, `ddns::queue`) share everything
//! here: the line framing (`frame`), the torn-tail reader (`reader`), the atomic replacement of
//! a file (`replace`), the file-system seam with its power-cut fake (`fs`), and one repair
//! policy (`repair`). Knows no record's payload; never reads the clock.
//!
//! # The repair policy (every log)
//! - A torn last record (no newline: the write was cut short) is cut off quietly.
//! - A damaged record (bad checksum or payload) ends the log: the file is cut there with a
//!   warning naming file and offset, and the bytes cut off are appended to `<file>.damaged`.
//! - Zeros where a record would start are the end of the records when only zeros follow
//!   (written ahead by the lease journal). When good records follow, the zeros are a hole: its
//!   bytes are warned about and kept in `.damaged`, and the records after it are recovered
//!   while their checksums hold; the log is then rewritten without the hole.
//! - A failed append is cut back to the last good record; until that cut is made (and synced),
//!   every later append first retries it and fails while it cannot be made. A log never stays
//!   broken for good.

pub(crate) mod frame;
pub(crate) mod fs;
pub(crate) mod reader;
pub(crate) mod repair;
pub(crate) mod replace;

use std::path::{Path, PathBuf};

/// How a log's appends reach the disk (the `durability` key; `config` re-exports it): for the
/// lease journal, before a reply leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// write + fdatasync before replying (default).
    Fsync,
    /// write at once, fdatasync at most every `max_delay_ms`; replies still wait for the
    /// fdatasync that covers them, so many batches share one.
    Batch { max_delay_ms: u32 },
    /// write only; for tmpfs and tests.
    None,
}

/// The directory `path` is in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `path` with `suffix` appended to its file name (`leases` -> `leases.tmp`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
