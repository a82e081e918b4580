//! The pending-update queue on disk, so updates not yet acknowledged by a primary survive a
//! restart. Owns one append-only file; knows nothing of DNS messages or sockets, never reads the
//! clock.
//!
//! # Format
//! The line framing of every log (`log::frame`):
//! `<crc32 of payload, 8 lowercase hex> <payload>\n`; the DHCID as lowercase hex (`-` if empty).
//! - `J <seq> <add|remove|remove-ptr> <ip> <expires> <fqdn> <dhcid hex>`: a job was queued.
//! - `D <seq>`: job `seq` is finished (acknowledged, or dropped after a permanent error).
//!
//! On open the jobs without a `D` are pending, in `seq` order; the file is then rewritten with
//! only the pending jobs. Damage is repaired as in every log (`crate::log`: a torn or damaged
//! tail cut and kept in `.damaged`, records after a hole recovered, a failed append cut back
//! and retried before the next one). It is emptied whenever the queue drains, and rewritten when
//! finished records dominate it.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::clock::UnixTime;
use crate::config::Durability;
use crate::ddns::update::{Job, Op};
#[cfg(test)]
use crate::log::frame::checked_payload;
use crate::log::frame::{hex_field, hex_or_dash, push_record};
use crate::log::fs::{LogFile, LogFs, RealFs};
use crate::log::reader::{Found, Reader};
use crate::log::repair::{self, Tail};

/// Rewrite the file once it holds this many records and mostly finished ones.
const COMPACT_AT: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

pub struct Queue {
    path: PathBuf,
    fs: Arc<dyn LogFs>,
    file: Box<dyn LogFile>,
    durability: Durability,
    next_seq: u64,
    pending: VecDeque<(u64, Job)>,
    /// Records in the file now.
    records: u64,
    /// The end of the last good record; a failed append is cut back to it.
    tail: Tail,
}

impl Queue {
    /// Opens (creating if needed) the queue at `path` and loads the pending jobs.
    pub fn open(path: &Path, durability: Durability) -> Result<Queue, QueueError> {
        Queue::open_on(RealFs::shared(), path, durability)
    }

    /// `open` on the file system `fs` (tests: a simulated disk that can lose power).
    pub(crate) fn open_on(
        fs: Arc<dyn LogFs>,
        path: &Path,
        durability: Durability,
    ) -> Result<Queue, QueueError> {
        let (bytes, file) = fs.open_log(path).map_err(|e| io_err(path, e))?;
        let (pending, next_seq, found) = replay(&bytes);
        repair::keep_found(fs.as_ref(), path, "DDNS queue", &bytes, &found);
        let mut q = Queue {
            path: path.to_path_buf(),
            fs,
            file,
            durability,
            next_seq,
            pending,
            records: 0,
            tail: Tail::default(),
        };
        q.rewrite()?;
        Ok(q)
    }

    /// Appends `jobs` (one write, one sync). They are queued in memory even if the write fails.
    pub fn push(&mut self, jobs: Vec<Job>) -> Result<(), QueueError> {
        let mut out = String::new();
        for job in jobs {
            let seq = self.next_seq;
            self.next_seq += 1;
            push_record(&mut out, &job_payload(seq, &job));
            self.pending.push_back((seq, job));
            self.records += 1;
        }
        self.append(&out)
    }

    /// The oldest pending job.
    pub fn front(&self) -> Option<&Job> {
        self.pending.front().map(|(_, j)| j)
    }

    /// The oldest job is finished: forget it.
    pub fn pop(&mut self) -> Result<(), QueueError> {
        let Some((seq, _)) = self.pending.pop_front() else {
            return Ok(());
        };
        if self.pending.is_empty() {
            return self.rewrite();
        }
        if self.records >= COMPACT_AT && self.records > 4 * self.pending.len() as u64 {
            return self.rewrite();
        }
        let mut out = String::new();
        push_record(&mut out, &format!("D {seq}"));
        self.records += 1;
        self.append(&out)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn append(&mut self, text: &str) -> Result<(), QueueError> {
        if text.is_empty() {
            return Ok(());
        }
        // Synced in every mode but `none`: a queued job must not be lost.
        let fsync = self.durability != Durability::None;
        self.tail
            .append(self.file.as_mut(), text.as_bytes(), fsync)
            .map_err(|e| io_err(&self.path, e))
    }

    /// Replaces the file with only the pending jobs (written aside, synced, renamed).
    fn rewrite(&mut self) -> Result<(), QueueError> {
        let mut out = String::new();
        for (seq, job) in &self.pending {
            push_record(&mut out, &job_payload(*seq, job));
        }
        // The file and its directory are synced in every mode but `none`, as appends are.
        let fsync = self.durability != Durability::None;
        self.file = self
            .fs
            .replace(&self.path, out.as_bytes(), fsync)
            .map_err(|(path, source)| io_err(&path, source))?;
        self.records = self.pending.len() as u64;
        self.tail = Tail::new(out.len() as u64);
        Ok(())
    }
}

/// The pending jobs in `bytes`, the next free sequence number, and what else the reader found
/// (`log::reader`: records up to a damaged one, across holes).
fn replay(bytes: &[u8]) -> (VecDeque<(u64, Job)>, u64, Found) {
    let mut pending: VecDeque<(u64, Job)> = VecDeque::new();
    let mut next_seq = 1;
    let mut reader = Reader::new(bytes, |_, p: &str| parse_payload(p));
    for record in reader.by_ref() {
        match record {
            Record::Job(seq, job) => {
                next_seq = next_seq.max(seq + 1);
                pending.push_back((seq, job));
            }
            Record::Done(seq) => pending.retain(|(s, _)| *s != seq),
        }
    }
    (pending, next_seq, reader.into_found())
}

#[derive(Debug)]
enum Record {
    Job(u64, Job),
    Done(u64),
}

fn job_payload(seq: u64, job: &Job) -> String {
    let op = match job.op {
        Op::Add => "add",
        Op::Remove => "remove",
        Op::RemoveReverse => "remove-ptr",
    };
    format!(
        "J {seq} {op} {} {} {} {}",
        job.ip,
        job.expires.0,
        job.fqdn,
        hex_or_dash(&job.dhcid, "")
    )
}

fn parse_payload(payload: &str) -> Result<Record, String> {
    let fields: Vec<&str> = payload.split(' ').collect();
    let num = |s: &str| s.parse::<u64>().map_err(|_| format!("bad number {s:?}"));
    match fields.as_slice() {
        ["D", seq] => Ok(Record::Done(num(seq)?)),
        ["J", seq, op, ip, expires, fqdn, hex] => Ok(Record::Job(
            num(seq)?,
            Job {
                op: match *op {
                    "add" => Op::Add,
                    "remove" => Op::Remove,
                    "remove-ptr" => Op::RemoveReverse,
                    other => return Err(format!("bad operation {other:?}")),
                },
                ip: ip
                    .parse::<Ipv4Addr>()
                    .map_err(|_| format!("bad address {ip:?}"))?,
                expires: UnixTime(num(expires)?),
                fqdn: fqdn.to_string(),
                dhcid: hex_field(hex, '\0')?,
            },
        )),
        _ => Err("unknown record".into()),
    }
}

fn io_err(path: &Path, source: io::Error) -> QueueError {
    QueueError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn job(op: Op, last: u8, name: &str) -> Job {
        Job {
            op,
            fqdn: format!("{name}.lan"),
            ip: Ipv4Addr::new(10, 0, 0, last),
            dhcid: vec![0, 0, 1, last, 0xff],
            expires: UnixTime(1000 + u64::from(last)),
        }
    }

    fn open(path: &Path) -> Queue {
        Queue::open(path, Durability::Fsync).expect("opens")
    }

    fn drain(q: &mut Queue) -> Vec<Job> {
        let mut out = Vec::new();
        while let Some(j) = q.front().cloned() {
            out.push(j);
            q.pop().expect("pops");
        }
        out
    }

    #[test]
    fn pending_jobs_survive_a_restart_in_order_and_finished_ones_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("leases.ddns");
        let mut q = open(&path);
        q.push(vec![job(Op::Add, 100, "a"), job(Op::Add, 101, "b")])
            .expect("push");
        q.push(vec![job(Op::Remove, 100, "a")]).expect("push");
        q.pop().expect("a acknowledged");
        drop(q);

        let mut q = open(&path);
        assert_eq!(q.len(), 2);
        q.push(vec![job(Op::RemoveReverse, 102, "c")])
            .expect("push");
        assert_eq!(
            drain(&mut q),
            vec![
                job(Op::Add, 101, "b"),
                job(Op::Remove, 100, "a"),
                job(Op::RemoveReverse, 102, "c")
            ]
        );
        assert_eq!(
            fs::metadata(&path).expect("file").len(),
            0,
            "emptied when drained"
        );
        drop(q);
        assert!(open(&path).is_empty());
    }

    #[test]
    fn torn_or_corrupt_tail_keeps_the_records_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q");
        let mut q = open(&path);
        q.push(vec![job(Op::Add, 100, "a"), job(Op::Add, 101, "b")])
            .expect("push");
        drop(q);
        let text = fs::read_to_string(&path).expect("read");
        // Corrupt the second record's payload; then a torn third line.
        let corrupt = text.replacen("b.lan", "x.lan", 1) + "0000";
        fs::write(&path, corrupt).expect("write");
        let q = open(&path);
        assert_eq!(q.len(), 1);
        assert_eq!(q.front(), Some(&job(Op::Add, 100, "a")));
        let rewritten = fs::read_to_string(&path).expect("read");
        assert_eq!(rewritten.lines().count(), 1, "rewritten without the damage");
    }

    #[test]
    fn sequence_numbers_continue_after_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q");
        let mut q = open(&path);
        q.push(vec![job(Op::Add, 1, "a"), job(Op::Add, 2, "b")])
            .expect("push");
        q.pop().expect("pop");
        drop(q);
        let mut q = open(&path);
        q.push(vec![job(Op::Add, 3, "c")]).expect("push");
        q.pop().expect("pop b");
        drop(q);
        // If "c" had reused b's number, b's D record would have removed it.
        let q = open(&path);
        assert_eq!(q.front(), Some(&job(Op::Add, 3, "c")));
    }

    #[test]
    fn a_long_outage_compacts_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q");
        let mut q = Queue::open(&path, Durability::None).expect("opens");
        q.push(vec![job(Op::Add, 1, "keep")]).expect("push");
        for i in 0..1200u32 {
            q.push(vec![job(Op::Add, (i % 200) as u8 + 2, "x")])
                .expect("push");
        }
        // Everything but "keep" and the newest few finishes.
        for _ in 0..1198 {
            let front = q.front().cloned().expect("job");
            q.pop().expect("pop");
            if front.fqdn == "keep.lan" {
                q.push(vec![front]).expect("requeue");
            }
        }
        let lines = fs::read_to_string(&path).expect("read").lines().count();
        assert!(lines < 1000, "{lines} records for {} pending", q.len());
        drop(q);
        assert_eq!(
            Queue::open(&path, Durability::None).expect("opens").len(),
            4
        );
    }

    #[test]
    fn a_failed_append_is_cut_back_and_a_hole_does_not_hide_later_jobs() {
        use crate::log::fs::sim::SimFs;
        let disk = SimFs::default();
        let path = Path::new("/sim/leases.ddns");
        let mut q = Queue::open_on(disk.shared(), path, Durability::Fsync).expect("open");
        q.push(vec![job(Op::Add, 1, "a")]).expect("push");
        // The write lands, its fdatasync fails: the record is cut back off the file.
        disk.fail(1, 1);
        q.push(vec![job(Op::Add, 2, "b")]).expect_err("sync failed");
        q.push(vec![job(Op::Add, 3, "c")]).expect("push");
        let text = String::from_utf8(disk.read(path)).expect("text");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains("b.lan"), "the failed record is gone: {text}");
        // Zero the first record's start: the one after the hole is still pending after a restart.
        let mut bytes = disk.read(path);
        bytes[..12].fill(0);
        bytes.splice(0..0, {
            let mut first = String::new();
            push_record(&mut first, "D 99");
            first.into_bytes()
        });
        let (_, mut file) = disk.open_log(path).expect("open");
        file.set_len(0).expect("cut");
        file.append(&bytes).expect("write");
        let q = Queue::open_on(disk.shared(), path, Durability::Fsync).expect("reopen");
        assert_eq!(q.front(), Some(&job(Op::Add, 3, "c")));
        assert!(
            disk.read(&crate::log::with_suffix(path, ".damaged"))
                .starts_with(&[0; 12])
        );
    }

    #[test]
    fn garbage_lines_never_panic() {
        for line in ["", "x", "12345678", "zzzzzzzz J", "00000000 J 1 add"] {
            let parsed = checked_payload(line.as_bytes()).and_then(parse_payload);
            assert!(parsed.is_err(), "{line:?}");
        }
    }

    /// Pushes and finishes jobs on a simulated disk (the file drains and is rewritten, and
    /// compacts), cuts the power at several points and reopens: the pending jobs are exactly
    /// those acknowledged as queued and not yet finished. Returns how many cuts lost one.
    fn cuts_that_lose_pending_jobs(durability: Durability) -> usize {
        use crate::log::fs::sim::SimFs;
        let path = Path::new("/sim/leases.ddns");
        let mut lost = 0;
        for cut_after in [0, 3, 40, 1500, 2999] {
            let disk = SimFs::default();
            let mut q = Queue::open_on(disk.shared(), path, durability).expect("open");
            for i in 0..=cut_after {
                let n = u8::try_from(i % 250).expect("small");
                q.push(vec![job(Op::Add, n, &format!("h{i}.lan"))])
                    .expect("push");
                if i % 4 != 3 {
                    q.pop().expect("pop");
                }
            }
            let pending: Vec<Job> = q.pending.iter().map(|(_, j)| j.clone()).collect();
            disk.power_cut();
            let mut q = Queue::open_on(disk.shared(), path, durability).expect("reopen");
            lost += usize::from(drain(&mut q) != pending);
        }
        lost
    }

    #[test]
    fn every_acknowledged_job_survives_a_power_cut_in_fsync_and_batch_mode() {
        assert_eq!(cuts_that_lose_pending_jobs(Durability::Fsync), 0);
        assert_eq!(
            cuts_that_lose_pending_jobs(Durability::Batch { max_delay_ms: 10 }),
            0
        );
        assert!(
            cuts_that_lose_pending_jobs(Durability::None) > 0,
            "without fsync the cut loses jobs: the test would catch a missing one"
        );
    }

    #[test]
    fn the_queue_file_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ddns = dir.path().join("leases.ddns");
        drop(Queue::open(&ddns, Durability::Fsync).expect("ddns"));
        crate::log::replace::checks::assert_private(&ddns);
    }
}
