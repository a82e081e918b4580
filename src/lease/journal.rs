//! The durable lease journal: an append-only text log, its compacted snapshot, recovery at start,
//! and dnsmasq lease import. Owns the files; knows nothing of DHCP packets, never reads the clock.
//!
//! # Files
//! - `<lease_file>`: the journal, appended to on every commit.
//! - `<lease_file>.snapshot`: the live leases at the last compaction (written to `.snapshot.tmp`,
//!   fsynced, renamed into place, directory fsynced).
//! - `<lease_file>.damaged`: the bytes cut off a damaged journal at start, kept for a person.
//!
//! # Format
//! One record per line, `<crc32 of payload, 8 lowercase hex> <payload>\n`. Payload fields are
//! separated by one space:
//! - `H leasedns-journal 1 gen=<n>`: first line of the journal, generation `n`.
//! - `H leasedns-snapshot 1 gen=<n>`: first line of a snapshot holding the state after every
//!   record of journal generation `n`. On open a journal whose generation is `<= n` is ignored,
//!   so a crash between the snapshot's rename and the journal's reset cannot replay old records.
//! - `U <ip> <expires> <b|d> <htype> <hwaddr aa:bb:..|-> <client id hex|-> <hostname|->`: a lease
//!   was granted or changed (`b` bound, `d` declined; `expires` in Unix seconds). Hostname bytes
//!   outside `[A-Za-z0-9._-]` are written as `%XX`.
//! - `R <ip> <released|expired|superseded>`: the lease on `ip` ended.
//!
//! Replay applies records in order into a map by address (last record wins). A line with a bad
//! checksum, an unparsable payload or no final newline ends the journal: the file is cut there
//! (with a warning naming file and offset) and the records before it are kept.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::clock::UnixTime;
use crate::config::Durability;
use crate::lease::{ClientId, HwAddr, Lease, LeaseChange, LeaseState, RemoveReason};

const JOURNAL_KIND: &str = "leasedns-journal";
const SNAPSHOT_KIND: &str = "leasedns-snapshot";
const VERSION: u32 = 1;
/// Compaction waits for at least this many journal records, whatever the live set.
const MIN_COMPACT_RECORDS: u64 = 1000;
/// A journal file shorter than this without any newline is a header torn at creation.
const MAX_HEADER_LEN: usize = 64;

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
    #[error("{path}: an earlier write failed and could not be undone; reopen the journal")]
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
    /// Bytes written to the journal and snapshots (headers included).
    pub bytes_written: u64,
    /// fsync/fdatasync calls on files and the directory.
    pub fsyncs: u64,
    pub compactions: u64,
    /// The current journal's generation.
    pub generation: u64,
    /// Lease records in the current journal (since the last compaction, replayed ones included).
    pub journal_records: u64,
    /// Length of the journal file.
    pub journal_bytes: u64,
}

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    snapshot_path: PathBuf,
    file: File,
    durability: Durability,
    generation: u64,
    /// Length of the journal up to its last good record.
    len: u64,
    journal_records: u64,
    /// A failed write could not be rolled back; every later commit fails.
    broken: bool,
    stats: JournalStats,
}

impl Journal {
    /// Open (creating if needed) and replay; returns the live leases (expired ones dropped),
    /// sorted by address.
    pub fn open(
        path: &Path,
        durability: Durability,
        now: UnixTime,
    ) -> Result<(Journal, Vec<Lease>), JournalError> {
        let dir = parent_dir(path);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let snapshot_path = with_suffix(path, ".snapshot");
        let _ = fs::remove_file(with_suffix(path, ".snapshot.tmp"));
        let (covered, mut leases) = read_snapshot(&snapshot_path)?;
        let existing = read_if_exists(path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            snapshot_path,
            file,
            durability,
            generation: covered + 1,
            len: 0,
            journal_records: 0,
            broken: false,
            stats: JournalStats::default(),
        };
        match existing {
            Some(bytes) => journal.replay(&bytes, covered, &mut leases)?,
            None => {
                journal.reset(covered + 1)?;
                journal.sync_dir()?;
            }
        }
        let live = leases.into_values().filter(|l| l.expires > now).collect();
        Ok((journal, live))
    }

    /// Write these changes in one write and (in Fsync mode) one fdatasync. `Offered` upserts are
    /// never journaled and are skipped. On error nothing of the batch is kept.
    pub fn commit(&mut self, changes: &[LeaseChange]) -> Result<(), JournalError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.check_usable()?;
        let mut buf = String::with_capacity(changes.len() * 100);
        let mut records = 0;
        for change in changes {
            if push_change(&mut buf, change) {
                records += 1;
            }
        }
        if records == 0 {
            return Ok(());
        }
        self.append(buf.as_bytes())?;
        self.journal_records += records;
        self.stats.commits += 1;
        self.stats.records += records;
        Ok(())
    }

    /// Compact when the journal holds more than max(1000, 4 x live) records. `live` must be the
    /// state after every committed change (the lease table).
    pub fn maybe_compact(&mut self, live: &[Lease]) -> Result<(), JournalError> {
        let limit = MIN_COMPACT_RECORDS.max(4 * live.len() as u64);
        if self.journal_records > limit {
            self.compact_now(live)?;
        }
        Ok(())
    }

    /// Write `live` as the snapshot covering this generation, then start the next generation.
    pub fn compact_now(&mut self, live: &[Lease]) -> Result<(), JournalError> {
        self.check_usable()?;
        self.write_snapshot(live)?;
        self.reset(self.generation + 1)?;
        self.stats.compactions += 1;
        tracing::info!(
            file = %self.path.display(),
            leases = live.len(),
            generation = self.generation,
            "lease journal compacted"
        );
        Ok(())
    }

    pub fn stats(&self) -> JournalStats {
        JournalStats {
            generation: self.generation,
            journal_records: self.journal_records,
            journal_bytes: self.len,
            ..self.stats
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshot_path(&self) -> &Path {
        &self.snapshot_path
    }

    fn check_usable(&self) -> Result<(), JournalError> {
        if self.broken {
            return Err(JournalError::Broken {
                path: self.path.display().to_string(),
            });
        }
        Ok(())
    }

    /// Apply an existing journal file over the snapshot's leases, cutting a damaged tail.
    fn replay(
        &mut self,
        bytes: &[u8],
        covered: u64,
        leases: &mut BTreeMap<Ipv4Addr, Lease>,
    ) -> Result<(), JournalError> {
        let scan = scan(bytes);
        let generation = header_generation(&self.path, JOURNAL_KIND, bytes, &scan)?;
        let Some(generation) = generation.filter(|g| *g > covered) else {
            // Empty, torn at creation, or already folded into the snapshot.
            return self.reset(covered + 1);
        };
        if generation > covered + 1 {
            tracing::warn!(
                file = %self.path.display(),
                generation,
                snapshot_generation = covered,
                "lease journal is newer than its snapshot; leases may be missing"
            );
        }
        self.journal_records = apply(leases, &scan.records[1..]);
        self.generation = generation;
        self.len = scan.good_len as u64;
        if let Some(damage) = &scan.damage {
            self.cut(bytes, damage)?;
        }
        Ok(())
    }

    /// Truncate the journal at a damaged record, saving what is cut off for a person.
    fn cut(&mut self, bytes: &[u8], damage: &Damage) -> Result<(), JournalError> {
        let tail = &bytes[damage.offset..];
        tracing::warn!(
            file = %self.path.display(),
            offset = damage.offset,
            reason = %damage.reason,
            dropped_bytes = tail.len(),
            "lease journal damaged: cut here, records before it kept"
        );
        if tail.contains(&b'\n') {
            let saved = with_suffix(&self.path, ".damaged");
            if let Err(e) = fs::write(&saved, tail) {
                tracing::warn!(file = %saved.display(), error = %e, "cannot save damaged journal tail");
            }
        }
        self.file
            .set_len(damage.offset as u64)
            .map_err(io_err(&self.path))?;
        self.sync_journal()
    }

    /// Append one buffer and fdatasync it; on failure cut the file back to its last good record.
    fn append(&mut self, buf: &[u8]) -> Result<(), JournalError> {
        let result = self
            .file
            .write_all(buf)
            .map_err(io_err(&self.path))
            .and_then(|()| self.sync_journal());
        if let Err(e) = result {
            if self.file.set_len(self.len).is_err() {
                self.broken = true;
            }
            return Err(e);
        }
        self.len += buf.len() as u64;
        self.stats.bytes_written += buf.len() as u64;
        Ok(())
    }

    /// Empty the journal and start generation `generation` with its header.
    fn reset(&mut self, generation: u64) -> Result<(), JournalError> {
        let mut header = String::new();
        push_record(&mut header, &header_payload(JOURNAL_KIND, generation));
        let written = self
            .file
            .set_len(0)
            .and_then(|()| self.file.write_all(header.as_bytes()))
            .map_err(io_err(&self.path))
            .and_then(|()| self.sync_journal());
        if let Err(e) = written {
            self.broken = true;
            return Err(e);
        }
        self.generation = generation;
        self.len = header.len() as u64;
        self.journal_records = 0;
        self.stats.bytes_written += header.len() as u64;
        Ok(())
    }

    /// Write `live` to `.snapshot.tmp`, fsync, rename over `.snapshot`, fsync the directory.
    fn write_snapshot(&mut self, live: &[Lease]) -> Result<(), JournalError> {
        let tmp = with_suffix(&self.path, ".snapshot.tmp");
        let mut buf = String::with_capacity(64 + live.len() * 100);
        push_record(&mut buf, &header_payload(SNAPSHOT_KIND, self.generation));
        for lease in live {
            if let Some(payload) = upsert_payload(lease) {
                push_record(&mut buf, &payload);
            }
        }
        let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(buf.as_bytes()).map_err(io_err(&tmp))?;
        self.stats.bytes_written += buf.len() as u64;
        if self.durability == Durability::Fsync {
            file.sync_all().map_err(io_err(&tmp))?;
            self.stats.fsyncs += 1;
        }
        fs::rename(&tmp, &self.snapshot_path).map_err(io_err(&self.snapshot_path))?;
        self.sync_dir()
    }

    fn sync_journal(&mut self) -> Result<(), JournalError> {
        if self.durability == Durability::Fsync {
            self.file.sync_data().map_err(io_err(&self.path))?;
            self.stats.fsyncs += 1;
        }
        Ok(())
    }

    /// Make renames and file creations in the journal's directory durable.
    fn sync_dir(&mut self) -> Result<(), JournalError> {
        if self.durability == Durability::Fsync {
            let dir = parent_dir(&self.path);
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&dir))?;
            self.stats.fsyncs += 1;
        }
        Ok(())
    }
}

/// Read a snapshot: the generation it covers (0 without one) and its leases by address.
fn read_snapshot(path: &Path) -> Result<(u64, BTreeMap<Ipv4Addr, Lease>), JournalError> {
    let mut leases = BTreeMap::new();
    let Some(bytes) = read_if_exists(path)? else {
        return Ok((0, leases));
    };
    let scan = scan(&bytes);
    let Some(covered) = header_generation(path, SNAPSHOT_KIND, &bytes, &scan)? else {
        tracing::warn!(file = %path.display(), "lease snapshot is empty or torn; ignoring it");
        return Ok((0, leases));
    };
    apply(&mut leases, &scan.records[1..]);
    if let Some(damage) = scan.damage {
        tracing::warn!(
            file = %path.display(),
            offset = damage.offset,
            reason = %damage.reason,
            "lease snapshot damaged: leases after this offset are lost"
        );
    }
    Ok((covered, leases))
}

fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, JournalError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// The generation in a file's header; `None` for an empty file or a header torn at creation.
fn header_generation(
    path: &Path,
    kind: &'static str,
    bytes: &[u8],
    scan: &Scan,
) -> Result<Option<u64>, JournalError> {
    let format = |reason: String| JournalError::Format {
        path: path.display().to_string(),
        kind,
        reason,
    };
    match scan.records.first() {
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

/// Apply lease records in order; returns how many were applied.
fn apply(leases: &mut BTreeMap<Ipv4Addr, Lease>, records: &[Record]) -> u64 {
    let mut n = 0;
    for record in records {
        match record {
            Record::Upsert(lease) => {
                leases.insert(lease.ip, lease.clone());
            }
            Record::Remove(ip) => {
                leases.remove(ip);
            }
            Record::Header { .. } => continue,
        }
        n += 1;
    }
    n
}

/// The records of a file up to its first damaged line.
struct Scan {
    records: Vec<Record>,
    /// Length up to the end of the last good record.
    good_len: usize,
    damage: Option<Damage>,
}

struct Damage {
    offset: usize,
    reason: String,
}

fn scan(bytes: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            let reason = "torn last record (no newline)".to_string();
            let damage = Some(Damage {
                offset: pos,
                reason,
            });
            return Scan {
                records,
                good_len: pos,
                damage,
            };
        };
        let parsed = parse_line(&rest[..end]).and_then(|r| match r {
            Record::Header { .. } if pos > 0 => Err("header in the middle".to_string()),
            r => Ok(r),
        });
        match parsed {
            Ok(record) => records.push(record),
            Err(reason) => {
                let damage = Some(Damage {
                    offset: pos,
                    reason,
                });
                return Scan {
                    records,
                    good_len: pos,
                    damage,
                };
            }
        }
        pos += end + 1;
    }
    Scan {
        records,
        good_len: pos,
        damage: None,
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
/// matches. Shared with the DNS update journal (`dns::journal`).
pub(crate) fn checked_payload(line: &[u8]) -> Result<&str, String> {
    if line.len() < 10 || line[8] != b' ' {
        return Err("no checksum field".into());
    }
    let (crc, payload) = (&line[..8], &line[9..]);
    let crc = std::str::from_utf8(crc)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or("bad checksum field")?;
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8".to_string())
}

fn parse_payload(payload: &str) -> Result<Record, String> {
    let fields: Vec<&str> = payload.split(' ').collect();
    match fields.as_slice() {
        ["H", kind, version, generation] => Ok(Record::Header {
            kind: kind.to_string(),
            version: number(version, "version")?,
            generation: generation
                .strip_prefix("gen=")
                .ok_or("header without gen=")
                .and_then(|g| g.parse().map_err(|_| "bad generation"))?,
        }),
        ["U", ip, expires, state, htype, hw, client, host] => Ok(Record::Upsert(Lease {
            ip: number(ip, "address")?,
            expires: UnixTime(number(expires, "expiry")?),
            state: match *state {
                "b" => LeaseState::Bound,
                "d" => LeaseState::Declined,
                _ => return Err(format!("bad state {state:?}")),
            },
            hwaddr: HwAddr {
                htype: number(htype, "hardware type")?,
                bytes: hex_field(hw, ':')?,
            },
            client: ClientId(hex_field(client, '\0')?),
            hostname: match *host {
                "-" => None,
                escaped => Some(unescape(escaped)?),
            },
        })),
        ["R", ip, _reason] => Ok(Record::Remove(number(ip, "address")?)),
        _ => Err(format!(
            "unknown record {:?}",
            fields.first().unwrap_or(&"")
        )),
    }
}

fn number<T: std::str::FromStr>(field: &str, what: &str) -> Result<T, String> {
    field.parse().map_err(|_| format!("bad {what} {field:?}"))
}

/// Serialize one change; false for changes that are never journaled (`Offered`).
fn push_change(out: &mut String, change: &LeaseChange) -> bool {
    match change {
        LeaseChange::Upsert(lease) => match upsert_payload(lease) {
            Some(payload) => push_record(out, &payload),
            None => {
                tracing::warn!(ip = %lease.ip, "offered lease passed to the journal; not written");
                return false;
            }
        },
        LeaseChange::Remove { ip, reason } => {
            let reason = match reason {
                RemoveReason::Released => "released",
                RemoveReason::Expired => "expired",
                RemoveReason::Superseded => "superseded",
            };
            push_record(out, &format!("R {ip} {reason}"));
        }
    }
    true
}

pub(crate) fn push_record(out: &mut String, payload: &str) {
    let _ = writeln!(out, "{:08x} {payload}", crc32fast::hash(payload.as_bytes()));
}

fn header_payload(kind: &str, generation: u64) -> String {
    format!("H {kind} {VERSION} gen={generation}")
}

fn upsert_payload(lease: &Lease) -> Option<String> {
    let state = match lease.state {
        LeaseState::Bound => 'b',
        LeaseState::Declined => 'd',
        LeaseState::Offered => return None,
    };
    let host = match &lease.hostname {
        // An empty name is no name.
        Some(name) if !name.is_empty() => escape(name),
        _ => "-".to_string(),
    };
    Some(format!(
        "U {} {} {state} {} {} {} {host}",
        lease.ip,
        lease.expires.0,
        lease.hwaddr.htype,
        hex_or_dash(&lease.hwaddr.bytes, ":"),
        hex_or_dash(&lease.client.0, ""),
    ))
}

pub(crate) fn hex_or_dash(bytes: &[u8], sep: &str) -> String {
    if bytes.is_empty() {
        return "-".to_string();
    }
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push_str(sep);
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parse hex bytes, either separated by `sep` or (with `sep == '\0'`) run together; `-` is empty.
pub(crate) fn hex_field(field: &str, sep: char) -> Result<Vec<u8>, String> {
    if field == "-" {
        return Ok(Vec::new());
    }
    let bad = || format!("bad hex {field:?}");
    let pairs: Vec<&str> = if sep == '\0' {
        if !field.len().is_multiple_of(2) || !field.is_ascii() {
            return Err(bad());
        }
        (0..field.len())
            .step_by(2)
            .map(|i| &field[i..i + 2])
            .collect()
    } else {
        field.split(sep).collect()
    };
    pairs
        .iter()
        .map(|p| match p.len() {
            1 | 2 if p.bytes().all(|b| b.is_ascii_hexdigit()) => u8::from_str_radix(p, 16).ok(),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)
}

/// Hostnames are validated labels already; anything else is escaped so a record stays one line
/// of space-separated fields. A lone `-` is escaped too, since `-` means "no hostname".
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        let safe = b.is_ascii_alphanumeric() || b"._-".contains(&b);
        if safe && name != "-" {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn unescape(field: &str) -> Result<String, String> {
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
        Some((htype, bytes)) => HwAddr {
            htype: u8::from_str_radix(htype, 16)
                .map_err(|_| format!("bad hardware type {htype:?}"))?,
            bytes: if bytes.is_empty() {
                Vec::new()
            } else {
                hex_field(bytes, ':')?
            },
        },
        None => HwAddr {
            htype: 1,
            bytes: hex_field(mac, ':')?,
        },
    };
    let client = match *client {
        "*" => ClientId::from_hw(&hwaddr),
        hex => ClientId(hex_field(hex, ':')?),
    };
    let ip: Ipv4Addr = number(ip, "address")?;
    let hostname = match *host {
        "*" => None,
        name if is_dns_label(name) => Some(name.to_ascii_lowercase()),
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
            hostname: host.map(str::to_string),
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
        let mut s = String::new();
        assert!(push_change(&mut s, change));
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
        odd.hwaddr.bytes.clear();
        odd.client = ClientId(vec![]);
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
    fn compaction_keeps_the_state_and_shrinks_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("leases");
        let (mut j, _) = open(&path, 100);
        let mut live: Vec<Lease> = (1..=3).map(|n| lease(n, 1000, Some("h"))).collect();
        for i in 0..1000u64 {
            let n = (i % 3) as usize;
            live[n].expires = UnixTime(1000 + i);
            j.commit(&[up(&live[n])]).expect("commit");
        }
        j.maybe_compact(&live).expect("compact");
        assert_eq!(
            j.stats().compactions,
            0,
            "1000 records is not over the limit"
        );
        live.push(lease(4, 5000, None));
        j.commit(&[up(&live[3]), rm(9)]).expect("commit");
        let before = len(&path);
        j.maybe_compact(&live).expect("compact");
        let stats = j.stats();
        assert_eq!(
            (stats.compactions, stats.generation, stats.journal_records),
            (1, 2, 0)
        );
        assert!(len(&path) < before / 100, "{} vs {before}", len(&path));
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
    fn crash_between_snapshot_rename_and_journal_reset_ignores_the_old_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("leases");
        let (mut j, _) = open(&path, 100);
        let (a, b) = (lease(1, 1000, None), lease(2, 1000, None));
        j.commit(&[up(&a), up(&b)]).expect("commit");
        // The table has meanwhile dropped A without a journal record. Compaction writes the
        // snapshot of generation 1 and the process dies before the journal is reset.
        let b2 = lease(2, 3000, Some("b"));
        j.write_snapshot(std::slice::from_ref(&b2))
            .expect("snapshot");
        drop(j);
        assert!(
            fs::read_to_string(&path)
                .expect("journal")
                .contains("gen=1")
        );

        // Replaying the old journal would resurrect A and revert B's expiry: it is ignored.
        let (mut j, leases) = open(&path, 100);
        assert_eq!(leases, vec![b2.clone()]);
        assert_eq!(j.stats().generation, 2);
        let c = lease(3, 1000, None);
        j.commit(&[up(&c)]).expect("commit");
        drop(j);
        let (_, leases) = open(&path, 100);
        assert_eq!(leases, vec![b2, c]);
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
        j.compact_now(&[lease(1, 10, None)]).expect("compact");
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
        assert_eq!(s2.journal_bytes, len(&path));
        assert_eq!(s2.bytes_written, len(&path));
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
        first.client = ClientId(vec![1, 2, 0, 0, 0, 0, 1]);
        let second = lease(2, 1_700_000_200, None);
        let hwaddr = HwAddr {
            htype: 6,
            bytes: vec![0xaa, 0xbb],
        };
        let third = Lease {
            ip: ip(3),
            client: ClientId(vec![6, 0xaa, 0xbb]),
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
            let after = j.stats();
            assert_eq!(after.fsyncs - before.fsyncs, commits);
            let records = after.records - before.records;
            let bytes = after.bytes_written - before.bytes_written;
            println!(
                "fsync, {batch} record(s)/commit: {:.0} commits/s, {:.0} records/s, {:.1} bytes/record",
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
