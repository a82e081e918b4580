//! Append-only durable lease log with length/checksum per record, snapshot compaction, and
//! recovery at start. Owns the files; knows nothing of DHCP packets.

use std::path::Path;

use crate::clock::UnixTime;
use crate::config::Durability;
use crate::lease::{Lease, LeaseChange};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub struct Journal {}

impl Journal {
    /// Open (creating if needed) and replay; returns the live leases (expired ones dropped).
    pub fn open(
        _path: &Path,
        _durability: Durability,
        _now: UnixTime,
    ) -> Result<(Journal, Vec<Lease>), JournalError> {
        todo!("journal::open")
    }
    /// Write these changes in one write and (in Fsync mode) one fdatasync.
    pub fn commit(&mut self, _changes: &[LeaseChange]) -> Result<(), JournalError> {
        todo!("journal::commit")
    }
    /// Compact when the log is much larger than the live set.
    pub fn maybe_compact(&mut self, _live: &[Lease]) -> Result<(), JournalError> {
        todo!("journal::maybe_compact")
    }
}
