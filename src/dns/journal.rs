//! The durable log of dynamic DNS records (RFC 2136 UPDATE and DynDNS2): an append-only text
//! file replayed at start, compacted at start when mostly history, repaired as every log is
//! (`crate::log`: a torn or damaged tail cut and kept in `.damaged`, records after a hole
//! recovered, a failed append cut back and retried). Owns the file; knows nothing of DNS
//! messages, never reads the clock.
//!
//! # Format
//! The line framing of every log (`log::frame`): `<crc32 of payload, 8 hex>
//! <payload>\n`, one record per line. Payloads (fields separated by one space; names in DNS
//! presentation form, lowercase, without trailing dot; RDATA as lowercase hex of its wire form):
//! - `H leasedns-dns-journal 1 gen=0`: the first line.
//! - `+ <name> <ttl> <TYPE> <rdata hex>`: a record was added (or its TTL refreshed).
//! - `- <name> <TYPE>`: every record of that type was deleted.
//! - `- <name> *`: every record of the name was deleted.
//! - `x <name> <TYPE> <rdata hex>`: the record with that data was deleted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use hickory_server::proto::rr::{RData, RecordType};
use hickory_server::proto::serialize::binary::{BinDecoder, BinEncodable, BinEncoder, Restrict};

use crate::config::Durability;
use crate::dns::dynamic::{DynOp, DynamicRecords};
use crate::log::frame::{hex_field, hex_or_dash, push_record};
use crate::log::fs::{LogFile, LogFs, RealFs};
use crate::log::parent_dir;
use crate::log::reader::{Found, Reader};
use crate::log::repair::{self, Tail};

const HEADER: &str = "H leasedns-dns-journal 1 gen=0";
/// Compact at open when the file holds this many more records than there are live records.
const COMPACT_SLACK: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum UpdateJournalError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: not a leasedns DNS journal (first line: {reason}); move it aside")]
    Format { path: String, reason: String },
    #[error(
        "{path}: an earlier write failed and could not be undone yet; retried on the next update"
    )]
    Broken { path: String },
}

pub struct UpdateJournal {
    path: PathBuf,
    fs: Arc<dyn LogFs>,
    file: Box<dyn LogFile>,
    durability: Durability,
    /// The end of the last good record; a failed append is cut back to it.
    tail: Tail,
    /// Records in the file (the header included).
    lines: usize,
}

impl UpdateJournal {
    /// Open (creating if needed) and replay; returns the dynamic records it holds.
    pub fn open(
        path: &Path,
        durability: Durability,
    ) -> Result<(UpdateJournal, DynamicRecords), UpdateJournalError> {
        let dir = parent_dir(path);
        fs::create_dir_all(&dir).map_err(|source| UpdateJournalError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        UpdateJournal::open_on(RealFs::shared(), path, durability)
    }

    /// `open` on the file system `fs` (tests: a simulated disk that can lose power).
    pub(crate) fn open_on(
        fs: Arc<dyn LogFs>,
        path: &Path,
        durability: Durability,
    ) -> Result<(UpdateJournal, DynamicRecords), UpdateJournalError> {
        let io_err = |source| UpdateJournalError::Io {
            path: path.display().to_string(),
            source,
        };
        let (bytes, file) = fs.open_log(path).map_err(io_err)?;
        let (records, lines, found) = replay(path, &bytes)?;
        let damaged = repair::keep_found(fs.as_ref(), path, "DNS update journal", &bytes, &found);
        let mut journal = UpdateJournal {
            path: path.to_path_buf(),
            fs,
            file,
            durability,
            tail: Tail::new(found.good_len as u64),
            lines,
        };
        // Damage, or zeros after the records (a crash while the file grew): written away.
        let unclean = damaged || found.good_len < bytes.len();
        if found.good_len == 0 || journal.wants_compaction(records.len()) || unclean {
            journal.rewrite(&records)?;
        }
        Ok((journal, records))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append these changes in one write and (unless `Durability::None`) one fdatasync. On error
    /// nothing of the batch is kept (the file is cut back; if it cannot be, the next append
    /// retries the cut first and fails with `Broken` while it cannot be made).
    ///
    /// fdatasync in every mode but `none`: the NOERROR (or `good`) that follows must not be
    /// lost. `batch` shares nothing here (updates are rare), so it is as safe as `fsync`.
    pub fn append(&mut self, ops: &[DynOp]) -> Result<(), UpdateJournalError> {
        let fsync = self.durability != Durability::None;
        if self.tail.repair(self.file.as_mut(), fsync).is_err() {
            return Err(UpdateJournalError::Broken {
                path: self.path.display().to_string(),
            });
        }
        let mut buf = String::new();
        for op in ops {
            push_record(&mut buf, &payload(op));
        }
        let written = self.tail.append(self.file.as_mut(), buf.as_bytes(), fsync);
        written.map_err(|e| self.io_err(e))?;
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
        let fsync = self.durability != Durability::None;
        self.file =
            self.fs
                .replace(&self.path, buf.as_bytes(), fsync)
                .map_err(|(path, source)| UpdateJournalError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
        self.tail = Tail::new(buf.len() as u64);
        self.lines = 1 + records.len();
        Ok(())
    }

    fn io_err(&self, source: io::Error) -> UpdateJournalError {
        UpdateJournalError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }
}

/// Apply every good record (`log::reader`: up to a damaged one, across holes); returns the
/// records, how many lines were read, and what else the reader found. A first line that is
/// whole and not the header is a foreign file, refused.
fn replay(path: &Path, bytes: &[u8]) -> Result<(DynamicRecords, usize, Found), UpdateJournalError> {
    let mut reader = Reader::new(bytes, |start, p: &str| match start {
        0 => (p == HEADER).then_some(None).ok_or_else(|| p.to_string()),
        _ => parse(p).map(Some),
    });
    let (mut records, mut count) = (DynamicRecords::default(), 0);
    for op in reader.by_ref() {
        if let Some(op) = op {
            records.apply(&op);
        }
        count += 1;
    }
    let whole_first_line = reader.buf.ends_with(b"\n");
    let found = reader.into_found();
    match &found.damage {
        Some(damage) if damage.offset == 0 && whole_first_line => Err(UpdateJournalError::Format {
            path: path.display().to_string(),
            reason: damage.reason.clone(),
        }),
        _ => Ok((records, count, found)),
    }
}

fn payload(op: &DynOp) -> String {
    match op {
        DynOp::Add {
            name,
            ttl,
            rdata,
            overrides,
        } => {
            // "+!": written by a key or user that may override config and lease names.
            let tag = if *overrides { "+!" } else { "+" };
            format!("{tag} {name} {ttl} {} {}", rdata.record_type(), hex(rdata))
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
        [tag @ ("+" | "+!"), n, ttl, t, data] => Ok(DynOp::Add {
            name: name(n)?,
            ttl: ttl.parse().map_err(|_| format!("bad ttl {ttl:?}"))?,
            rdata: unhex(rtype(t)?, data)?,
            overrides: *tag == "+!",
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
    use crate::log::fs::sim::SimFs;
    use hickory_server::proto::rr::Name;
    use hickory_server::proto::rr::rdata::{A, MX, SRV, TXT};
    use std::fs::OpenOptions;
    use std::io::Write as _;
    use std::net::Ipv4Addr;

    fn ops() -> Vec<DynOp> {
        let n = |s: &str| Name::from_ascii(s).expect("name");
        vec![
            DynOp::Add {
                name: "home.lan".into(),
                ttl: 60,
                rdata: RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                overrides: true,
            },
            DynOp::Add {
                name: "_acme-challenge.www.lan".into(),
                ttl: 30,
                rdata: RData::TXT(TXT::new(vec!["token one".into(), "two".into()])),
                overrides: false,
            },
            DynOp::Add {
                name: "lan".into(),
                ttl: 300,
                rdata: RData::MX(MX::new(10, n("mail.lan."))),
                overrides: false,
            },
            DynOp::Add {
                name: "_sip._udp.lan".into(),
                ttl: 300,
                rdata: RData::SRV(SRV::new(0, 5, 5060, n("pbx.lan."))),
                overrides: false,
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
            "+! home.lan 60 A c0000201",
            "readable by a person; \"+!\" marks a record that may override config and lease names"
        );
        let Ok(DynOp::Add { overrides, .. }) = parse("+ home.lan 60 A c0000201") else {
            panic!("a plain + line parses");
        };
        assert!(
            !overrides,
            "records journaled before the mark existed never override"
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
    fn a_failed_write_is_cut_back_and_the_journal_recovers_without_a_restart() {
        let disk = SimFs::default();
        let path = Path::new("/sim/leases.dns");
        let (mut j, _) =
            UpdateJournal::open_on(disk.shared(), path, Durability::Fsync).expect("open");
        j.append(&ops()[..1]).expect("append");
        // The write lands, its fdatasync fails, and so does the cut back.
        disk.fail(1, 2);
        j.append(&ops()[1..2]).expect_err("sync failed");
        disk.fail(0, 1);
        let err = j.append(&ops()[2..3]).expect_err("still failed");
        assert!(matches!(err, UpdateJournalError::Broken { .. }), "{err}");
        // The disk works again: the cut is made, the journal goes on.
        j.append(&ops()[3..4]).expect("repaired");
        disk.power_cut();
        let (_, records) =
            UpdateJournal::open_on(disk.shared(), path, Durability::Fsync).expect("reopen");
        let mut acknowledged = DynamicRecords::default();
        acknowledged.apply(&ops()[0]);
        acknowledged.apply(&ops()[3]);
        assert_eq!(records, acknowledged, "exactly the acknowledged updates");
    }

    #[test]
    fn records_after_a_hole_are_recovered_and_the_damage_kept() {
        let disk = SimFs::default();
        let path = Path::new("/sim/leases.dns");
        let (mut j, _) =
            UpdateJournal::open_on(disk.shared(), path, Durability::Fsync).expect("open");
        for op in &ops()[..3] {
            j.append(std::slice::from_ref(op)).expect("append");
        }
        drop(j);
        // The second record's first bytes were never written (a page that did not reach the disk).
        let mut bytes = disk.read(path);
        let second = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(1)
            .expect("2 lines")
            .0
            + 1;
        bytes[second..second + 20].fill(0);
        let (_, mut file) = disk.open_log(path).expect("open");
        file.set_len(0).expect("cut");
        file.append(&bytes).expect("write");
        let (_, records) =
            UpdateJournal::open_on(disk.shared(), path, Durability::Fsync).expect("reopen");
        let mut expected = DynamicRecords::default();
        expected.apply(&ops()[0]);
        expected.apply(&ops()[2]);
        assert_eq!(records, expected, "the record after the hole is recovered");
        let damaged = disk.read(&crate::log::with_suffix(path, ".damaged"));
        assert!(
            damaged.starts_with(&[0; 20]),
            "the hole is kept for a person"
        );
        assert!(
            !disk.read(path).contains(&0),
            "the journal is rewritten without the hole"
        );
        // Zeros after the last record (the file grew, its data did not land): cut away too.
        let (_, mut file) = disk.open_log(path).expect("open");
        file.append(&[0; 64]).expect("zeros");
        let (_, again) =
            UpdateJournal::open_on(disk.shared(), path, Durability::Fsync).expect("reopen");
        assert_eq!(again, records);
        assert!(!disk.read(path).contains(&0), "the zeros are gone");
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
                overrides: false,
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

    fn a_record(i: u32, overrides: bool) -> DynOp {
        DynOp::Add {
            name: format!("h{}.lan", i % 50),
            ttl: 60,
            rdata: RData::A(A(Ipv4Addr::from(0xc000_0200 + i))),
            overrides,
        }
    }

    /// Appends 600 acknowledged changes (with deletes, so the file compacts along the way) on
    /// a simulated disk, cuts the power after each of several points, and reopens: the records
    /// are exactly those acknowledged. Returns how many cuts lost an acknowledged record.
    fn cuts_that_lose_acknowledged_records(durability: Durability) -> usize {
        let path = Path::new("/sim/leases.dns");
        let mut lost = 0;
        for cut_after in [1, 7, 150, 333, 599] {
            let disk = SimFs::default();
            let (mut j, _) = UpdateJournal::open_on(disk.shared(), path, durability).expect("open");
            let mut acknowledged = DynamicRecords::default();
            for i in 0..=cut_after {
                let op = match i % 3 {
                    2 => DynOp::DeleteName {
                        name: format!("h{}.lan", i % 50),
                    },
                    _ => a_record(i, i % 2 == 0),
                };
                j.append(std::slice::from_ref(&op)).expect("append");
                acknowledged.apply(&op);
                if j.wants_compaction(acknowledged.len()) {
                    j.compact(&acknowledged).expect("compact");
                }
            }
            disk.power_cut();
            let (_, replayed) =
                UpdateJournal::open_on(disk.shared(), path, durability).expect("reopen");
            lost += usize::from(replayed != acknowledged);
        }
        lost
    }

    #[test]
    fn every_acknowledged_update_survives_a_power_cut_in_fsync_and_batch_mode() {
        assert_eq!(cuts_that_lose_acknowledged_records(Durability::Fsync), 0);
        let batch = Durability::Batch { max_delay_ms: 10 };
        assert_eq!(cuts_that_lose_acknowledged_records(batch), 0);
    }

    #[test]
    fn the_power_cut_test_catches_a_missing_fsync() {
        // Without fsync (as batch mode was before), acknowledged updates are lost at a cut.
        assert!(cuts_that_lose_acknowledged_records(Durability::None) > 0);
    }

    #[test]
    fn the_journal_file_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dns = dir.path().join("leases.dns");
        drop(UpdateJournal::open(&dns, Durability::Fsync).expect("dns"));
        crate::log::replace::checks::assert_private(&dns);
    }
}
