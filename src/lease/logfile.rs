//! What the append-only logs built on the lease journal's line framing share (the DNS update
//! journal, `dns::journal`, and the DDNS queue, `ddns::queue`): reading a log that may not
//! exist yet, walking its complete lines, and replacing it atomically. The framing itself (`push_record`, `checked_payload`)
//! stays in `lease::journal`. Knows nothing of any record's payload; never reads the clock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::lease::journal::{checked_payload, parent_dir, with_suffix};

/// The bytes of the log at `path` (none if there is no file yet), and the file opened (created
/// if needed) for appending.
pub(crate) fn open_log(path: &Path) -> io::Result<(Vec<u8>, File)> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok((bytes, file))
}

/// One complete line of a log.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    /// Offset of its first byte.
    pub start: usize,
    /// Offset just after its newline: the file is good up to here if this line is.
    pub end: usize,
    /// Its payload if the checksum matches (`checked_payload`), else why not.
    pub payload: Result<&'a str, String>,
}

/// The complete lines of `bytes` in order. A last line without its newline (a torn write) is not
/// one: a caller that stops at the first bad line compares the last good `end` with the length.
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let len = bytes.get(pos..)?.iter().position(|&b| b == b'\n')?;
        let line = Line {
            start: pos,
            end: pos + len + 1,
            payload: checked_payload(&bytes[pos..pos + len]),
        };
        pos = line.end;
        Some(line)
    })
}

/// Replace `path` with `content` atomically: written to `<path>.tmp` (synced with `fsync`),
/// renamed over `path` (the directory synced with `fsync`). Returns `path` opened for appending;
/// on error, the path the failing step was on.
pub(crate) fn replace_file(
    path: &Path,
    content: &[u8],
    fsync: bool,
) -> Result<File, (PathBuf, io::Error)> {
    let tmp = with_suffix(path, ".tmp");
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let mut file = File::create(&tmp).map_err(at(&tmp))?;
    file.write_all(content).map_err(at(&tmp))?;
    if fsync {
        file.sync_all().map_err(at(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(at(path))?;
    if fsync {
        let dir = parent_dir(path);
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(at(&dir))?;
    }
    OpenOptions::new().append(true).open(path).map_err(at(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::journal::push_record;

    #[test]
    fn lines_checks_each_one_and_leaves_a_torn_tail_out() {
        let mut text = String::new();
        push_record(&mut text, "first");
        push_record(&mut text, "second");
        let good = text.len();
        text.push_str("00000000 damaged\n");
        text.push_str("0badc0de torn");
        let got: Vec<Line> = lines(text.as_bytes()).collect();
        assert_eq!(got.len(), 3, "the torn tail is no line");
        assert_eq!(got[0].payload, Ok("first"));
        assert_eq!((got[1].start, got[1].end), (got[0].end, good));
        assert_eq!(got[1].payload, Ok("second"));
        assert_eq!(got[2].payload, Err("checksum mismatch".to_string()));
        assert_eq!(got[2].end, text.len() - "0badc0de torn".len());
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"no newline at all").count(), 0);
    }

    #[test]
    fn open_log_creates_a_missing_file_and_reads_an_existing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let (bytes, mut file) = open_log(&path).expect("opens");
        assert!(bytes.is_empty() && path.exists());
        file.write_all(b"one\n").expect("append");
        drop(file);
        let (bytes, mut file) = open_log(&path).expect("reopens");
        assert_eq!(bytes, b"one\n");
        file.write_all(b"two\n").expect("append");
        assert_eq!(fs::read(&path).expect("read"), b"one\ntwo\n");
        assert!(open_log(dir.path()).is_err(), "a directory is no log");
    }

    #[test]
    fn replace_file_swaps_the_content_and_appends_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        fs::write(&path, "old old old\n").expect("write");
        for fsync in [true, false] {
            let mut file = replace_file(&path, b"new\n", fsync).expect("replaced");
            file.write_all(b"more\n").expect("append");
            assert_eq!(fs::read_to_string(&path).expect("read"), "new\nmore\n");
            assert!(!with_suffix(&path, ".tmp").exists());
        }
        let missing = dir.path().join("no-such-dir").join("log");
        let (at, _) = replace_file(&missing, b"x", false).expect_err("no directory");
        assert_eq!(at, with_suffix(&missing, ".tmp"));
    }
}
