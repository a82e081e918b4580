//! The durable log of dynamic DNS records (RFC 2136 UPDATE and DynDNS2): an append-only text
//! file replayed at start, compacted at start when mostly history, cut at a torn or damaged
//! tail. Owns the file; knows nothing of DNS messages, never reads the clock.
//!
//! # Format
//! The line framing of the lease journal (`lease::journal`): `<crc32 of payload, 8 hex>
//! <payload>\n`, one record per line. Payloads (fields separated by one space; names in DNS
//! presentation form, lowercase, without trailing dot; RDATA as lowercase hex of its wire form):
//! - `H leasedns-dns-journal 1 gen=0`: the first line.
//! - `+ <name> <ttl> <TYPE> <rdata hex>`: a record was added (or its TTL refreshed).
//! - `- <name> <TYPE>`: every record of that type was deleted.
//! - `- <name> *`: every record of the name was deleted.
//! - `x <name> <TYPE> <rdata hex>`: the record with that data was deleted.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_server::proto::rr::{RData, RecordType};
use hickory_server::proto::serialize::binary::{BinDecoder, BinEncodable, BinEncoder, Restrict};

use crate::config::Durability;
use crate::dns::dynamic::{DynOp, DynamicRecords};
use crate::lease::journal::{hex_field, hex_or_dash, parent_dir, push_record};
use crate::lease::logfile::{lines, open_log, replace_file};

const HEADER: &str = "H leasedns-dns-journal 1 gen=0";
/// Compact at open when the file holds this many more records than there are live records.
const COMPACT_SLACK: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum UpdateJournalError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: not a leasedns DNS journal (first line: {reason}); move it aside")]
    Format { path: String, reason: String },
    #[error("{path}: an earlier write failed and could not be undone; restart leasedns")]
    Broken { path: String },
}

pub struct UpdateJournal {
    path: PathBuf,
    file: File,
    durability: Durability,
    /// Length up to the last good record.
    len: u64,
    /// Records in the file (the header included).
    lines: usize,
    broken: bool,
}

impl UpdateJournal {
    /// Open (creating if needed) and replay; returns the dynamic records it holds.
    pub fn open(
        path: &Path,
        durability: Durability,
    ) -> Result<(UpdateJournal, DynamicRecords), UpdateJournalError> {
        let io_err = |source| UpdateJournalError::Io {
            path: path.display().to_string(),
            source,
        };
        let dir = parent_dir(path);
        fs::create_dir_all(&dir).map_err(io_err)?;
        let (bytes, file) = open_log(path).map_err(io_err)?;
        let (records, lines, good_len) = replay(path, &bytes)?;
        let mut journal = UpdateJournal {
            path: path.to_path_buf(),
            file,
            durability,
            len: good_len as u64,
            lines,
            broken: false,
        };
        if good_len < bytes.len() {
            tracing::warn!(file = %path.display(), offset = good_len, dropped_bytes = bytes.len() - good_len,
                "DNS update journal damaged: cut here, records before it kept");
        }
        if good_len == 0 || journal.wants_compaction(records.len()) || good_len < bytes.len() {
            journal.rewrite(&records)?;
        }
        Ok((journal, records))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append these changes in one write and (with `Durability::Fsync`) one fdatasync. On error
    /// nothing of the batch is kept.
    pub fn append(&mut self, ops: &[DynOp]) -> Result<(), UpdateJournalError> {
        if self.broken {
            return Err(UpdateJournalError::Broken {
                path: self.path.display().to_string(),
            });
        }
        let mut buf = String::new();
        for op in ops {
            push_record(&mut buf, &payload(op));
        }
        let written = self
            .file
            .write_all(buf.as_bytes())
            .and_then(|()| self.sync());
        if let Err(source) = written {
            if self.file.set_len(self.len).is_err() {
                self.broken = true;
            }
            return Err(self.io_err(source));
        }
        self.len += buf.len() as u64;
        self.lines += ops.len();
        Ok(())
    }

    /// Whether the file is mostly history next to `live` records.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.lines > 2 * live + COMPACT_SLACK
    }

    /// Rewrite the file as the header and `records` (atomically: see `rewrite`).
    pub fn compact(&mut self, records: &DynamicRecords) -> Result<(), UpdateJournalError> {
        self.rewrite(records)
    }

    /// Replace the file with the header and one `+` line per live record: written to `.tmp`,
    /// synced, renamed over the journal, directory synced.
    fn rewrite(&mut self, records: &DynamicRecords) -> Result<(), UpdateJournalError> {
        let mut buf = String::new();
        push_record(&mut buf, HEADER);
        for op in records.as_adds() {
            push_record(&mut buf, &payload(&op));
        }
        let fsync = self.durability == Durability::Fsync;
        self.file = replace_file(&self.path, buf.as_bytes(), fsync).map_err(|(path, source)| {
            UpdateJournalError::Io {
                path: path.display().to_string(),
                source,
            }
        })?;
        self.len = buf.len() as u64;
        self.lines = 1 + records.len();
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        if self.durability == Durability::Fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn io_err(&self, source: io::Error) -> UpdateJournalError {
        UpdateJournalError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }
}

/// Apply every good line; returns the records, how many lines were read, and the length up to
/// the end of the last good line (a torn or damaged line ends the replay).
fn replay(path: &Path, bytes: &[u8]) -> Result<(DynamicRecords, usize, usize), UpdateJournalError> {
    let mut records = DynamicRecords::default();
    let (mut good_len, mut count) = (0, 0);
    for line in lines(bytes) {
        let pos = line.start;
        let parsed = line.payload.and_then(|p| {
            if pos == 0 {
                return (p == HEADER).then_some(None).ok_or(p.to_string());
            }
            parse(p).map(Some)
        });
        match parsed {
            Ok(Some(op)) => {
                records.apply(&op);
            }
            Ok(None) => {}
            Err(reason) if pos == 0 => {
                return Err(UpdateJournalError::Format {
                    path: path.display().to_string(),
                    reason,
                });
            }
            Err(reason) => {
                tracing::warn!(file = %path.display(), offset = pos, %reason, "bad DNS journal record");
                break;
            }
        }
        count += 1;
        good_len = line.end;
    }
    Ok((records, count, good_len))
}

fn payload(op: &DynOp) -> String {
    match op {
        DynOp::Add { name, ttl, rdata } => {
            format!("+ {name} {ttl} {} {}", rdata.record_type(), hex(rdata))
        }
        DynOp::DeleteRrset { name, rtype } => format!("- {name} {rtype}"),
        DynOp::DeleteName { name } => format!("- {name} *"),
        DynOp::DeleteRr { name, rdata } => {
            format!("x {name} {} {}", rdata.record_type(), hex(rdata))
        }
    }
}

fn parse(payload: &str) -> Result<DynOp, String> {
    let fields: Vec<&str> = payload.split(' ').collect();
    let name = |n: &str| {
        (!n.is_empty() && n.is_ascii())
            .then(|| n.to_string())
            .ok_or(format!("bad name {n:?}"))
    };
    let rtype = |t: &str| RecordType::from_str(t).map_err(|_| format!("bad type {t:?}"));
    match fields.as_slice() {
        ["+", n, ttl, t, data] => Ok(DynOp::Add {
            name: name(n)?,
            ttl: ttl.parse().map_err(|_| format!("bad ttl {ttl:?}"))?,
            rdata: unhex(rtype(t)?, data)?,
        }),
        ["-", n, "*"] => Ok(DynOp::DeleteName { name: name(n)? }),
        ["-", n, t] => Ok(DynOp::DeleteRrset {
            name: name(n)?,
            rtype: rtype(t)?,
        }),
        ["x", n, t, data] => Ok(DynOp::DeleteRr {
            name: name(n)?,
            rdata: unhex(rtype(t)?, data)?,
        }),
        _ => Err(format!("unknown record {payload:?}")),
    }
}

/// RDATA in wire form (names uncompressed), as lowercase hex.
fn hex(rdata: &RData) -> String {
    let mut bytes = Vec::new();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_canonical_form(true);
    if rdata.emit(&mut encoder).is_err() {
        return "-".to_string();
    }
    hex_or_dash(&bytes, "")
}

fn unhex(rtype: RecordType, field: &str) -> Result<RData, String> {
    let bytes = hex_field(field, '\0')?;
    let length = u16::try_from(bytes.len()).map_err(|_| "RDATA too long".to_string())?;
    let mut decoder = BinDecoder::new(&bytes);
    RData::read(&mut decoder, rtype, Restrict::new(length))
        .map_err(|e| format!("bad {rtype} RDATA: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::rr::Name;
    use hickory_server::proto::rr::rdata::{A, MX, SRV, TXT};
    use std::fs::OpenOptions;
    use std::net::Ipv4Addr;

    fn ops() -> Vec<DynOp> {
        let n = |s: &str| Name::from_ascii(s).expect("name");
        vec![
            DynOp::Add {
                name: "home.lan".into(),
                ttl: 60,
                rdata: RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            },
            DynOp::Add {
                name: "_acme-challenge.www.lan".into(),
                ttl: 30,
                rdata: RData::TXT(TXT::new(vec!["token one".into(), "two".into()])),
            },
            DynOp::Add {
                name: "lan".into(),
                ttl: 300,
                rdata: RData::MX(MX::new(10, n("mail.lan."))),
            },
            DynOp::Add {
                name: "_sip._udp.lan".into(),
                ttl: 300,
                rdata: RData::SRV(SRV::new(0, 5, 5060, n("pbx.lan."))),
            },
            DynOp::DeleteRrset {
                name: "lan".into(),
                rtype: RecordType::MX,
            },
            DynOp::DeleteRr {
                name: "_sip._udp.lan".into(),
                rdata: RData::SRV(SRV::new(0, 5, 5060, n("pbx.lan."))),
            },
        ]
    }

    #[test]
    fn every_op_round_trips_through_its_line() {
        for op in ops() {
            assert_eq!(parse(&payload(&op)), Ok(op.clone()), "{}", payload(&op));
        }
        let del = DynOp::DeleteName {
            name: "home.lan".into(),
        };
        assert_eq!(payload(&del), "- home.lan *");
        assert_eq!(parse(&payload(&del)), Ok(del));
        assert_eq!(
            payload(&ops()[0]),
            "+ home.lan 60 A c0000201",
            "readable by a person"
        );
    }

    #[test]
    fn reopen_replays_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("leases.dns");
        let (mut j, records) = UpdateJournal::open(&path, Durability::Fsync).expect("open");
        assert!(records.is_empty());
        j.append(&ops()).expect("append");
        let mut expected = DynamicRecords::default();
        for op in ops() {
            expected.apply(&op);
        }
        drop(j);
        let (_, records) = UpdateJournal::open(&path, Durability::None).expect("reopen");
        assert_eq!(records, expected);
        assert_eq!(records.len(), 2);
        // A crash in the middle of a write: half a line at the end.
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"0badc0de + torn.lan 60 A c0")
            .expect("write");
        drop(file);
        let (mut j, records) = UpdateJournal::open(&path, Durability::None).expect("reopen");
        assert_eq!(records, expected, "the torn record is dropped");
        // Appending after the cut gives a clean file again.
        let del = DynOp::DeleteName {
            name: "home.lan".into(),
        };
        j.append(std::slice::from_ref(&del)).expect("append");
        expected.apply(&del);
        let (_, records) = UpdateJournal::open(&path, Durability::None).expect("reopen");
        assert_eq!(records, expected);
        assert!(!fs::read_to_string(&path).expect("read").contains("torn"));
    }

    #[test]
    fn a_flipped_byte_ends_replay_at_that_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("leases.dns");
        let (mut j, _) = UpdateJournal::open(&path, Durability::None).expect("open");
        j.append(&ops()[..2]).expect("append");
        drop(j);
        let text = fs::read_to_string(&path).expect("read");
        // One RDATA nibble of the last record changes: its checksum no longer matches.
        let cut = text.trim_end().len() - 1;
        let flipped = if &text[cut..cut + 1] == "0" { "1" } else { "0" };
        fs::write(&path, format!("{}{flipped}\n", &text[..cut])).expect("write");
        let (_, records) = UpdateJournal::open(&path, Durability::None).expect("reopen");
        assert_eq!(records.len(), 1, "only the record before the damage");
        assert!(records.has("home.lan"));
    }

    #[test]
    fn history_is_compacted_at_open_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("leases.dns");
        let (mut j, _) = UpdateJournal::open(&path, Durability::None).expect("open");
        for i in 0..400u32 {
            j.append(&[DynOp::Add {
                name: "home.lan".into(),
                ttl: 60,
                rdata: RData::A(A(Ipv4Addr::from(0xc000_0200 + (i % 200)))),
            }])
            .expect("append");
            j.append(&[DynOp::DeleteRrset {
                name: "home.lan".into(),
                rtype: RecordType::A,
            }])
            .expect("append");
        }
        drop(j);
        let (_, records) = UpdateJournal::open(&path, Durability::None).expect("reopen");
        assert!(records.is_empty());
        let lines = fs::read_to_string(&path).expect("read").lines().count();
        assert_eq!(lines, 1, "only the header is left");
        fs::write(&path, "not a journal\n").expect("write");
        let err = UpdateJournal::open(&path, Durability::None)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("not a leasedns DNS journal"),
            "{err}"
        );
    }
}
