//! The durable lease journal: an append-only text log, its compacted snapshot (written by a
//! background thread), recovery at start, and dnsmasq lease import. Owns the files; knows nothing
//! of DHCP packets, never reads the clock. The framing, the torn-tail reader and the repair
//! policy are those of every log (`crate::log`).
//!
//! # Code
//! - this file: the `Journal` type, its errors and statistics, its file names (`Paths`);
//! - `open`: open and replay (snapshot, `.prev`, journal), cutting or skipping damage;
//! - `write`: commit, write, sync, preallocation, rollback and repair after a failure;
//! - `compact`: rotation and the background snapshot thread;
//! - `packed`: the packed on-disk index of durable leases (`durable`);
//! - `record`: the record payloads (encoding and parsing);
//! - `dnsmasq`: import of a dnsmasq lease file.
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
//! before it are kept. A NUL byte where a record would start is the end of the records when only
//! zeros follow (see "Preallocation"): the file is cut there quietly. When records follow the
//! zeros, they are a hole (a zeroed block of the medium, or a page that did not reach the disk
//! while a later one did): the zeros and the broken line after them are skipped, warned about
//! and kept in `.damaged`, the records after them are replayed while their checksums hold, and
//! the files are compacted at once so the hole is gone.
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
//! keeps one packed copy of each durable lease (about 37 bytes, for `durable`).
//!
//! # Expiry
//! A lease is written with exactly the expiry the client was granted, so recovery never keeps
//! an address (or its name) past the end of the client's lease. Renewals that need no write are
//! decided by the DHCP engine (lease reuse, `renew_write_fraction`), not here.

mod compact;
mod dnsmasq;
mod open;
mod packed;
mod record;
#[cfg(test)]
mod tests;
mod write;

pub use dnsmasq::{ImportError, import_dnsmasq};

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead as _, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::clock::UnixTime;
use crate::lease::dense::ByAddr;
use crate::lease::{
    AddrHash, ClientId, HW_MAX, HwAddr, Lease, LeaseChange, LeaseState, RemoveReason,
};
use crate::log::Durability;
use crate::log::frame::{Ascii, checked_payload, hex_field, push_record, push_record_with};
use crate::log::fs::RealFs;
use crate::log::reader::{Damage, Reader};
use crate::log::replace::{create_temp, private_options};
use crate::log::{parent_dir, repair, with_suffix};

use compact::*;
use open::*;
use packed::*;
use record::*;

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

/// What the journal has done since it was opened, and its current size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Non-empty commits written.
    pub commits: u64,
    /// Lease records written by commits.
    pub records: u64,
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

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}
