//! Journal open on arbitrary files: any bytes in the journal and the snapshot either open (the
//! damaged tail cut and kept aside) or give an error; never a panic. Opening is a repair: a
//! second open of what the first left reads the same leases and finds nothing more to repair.
//!
//! Input: [snapshot length: u16 BE][snapshot bytes][journal bytes].
#![no_main]

use std::path::PathBuf;

use leasedns::clock::UnixTime;
use leasedns::config::Durability;
use leasedns::lease::journal::Journal;
use libfuzzer_sys::fuzz_target;

/// A tmpfs directory when there is one (every execution writes two files).
fn scratch() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = usize::from(u16::from_be_bytes([data[0], data[1]])).min(data.len() - 2);
    let (snapshot, journal) = data[2..].split_at(n);
    let dir = tempfile::tempdir_in(scratch()).expect("scratch directory");
    let path = dir.path().join("leases.journal");
    std::fs::write(&path, journal).expect("write journal");
    if !snapshot.is_empty() {
        std::fs::write(dir.path().join("leases.journal.snapshot"), snapshot).expect("snapshot");
    }
    let now = UnixTime(1_700_000_000);
    let Ok((first, leases)) = Journal::open(&path, Durability::None, now) else {
        return;
    };
    drop(first);
    let (_, again) = Journal::open(&path, Durability::None, now).expect("a repaired journal opens");
    let key = |v: &[leasedns::lease::Lease]| {
        let mut v: Vec<String> = v.iter().map(|l| format!("{l:?}")).collect();
        v.sort();
        v
    };
    assert_eq!(
        key(&leases),
        key(&again),
        "the second open read other leases"
    );
});
