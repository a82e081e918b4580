//! The torn-tail reader every log is replayed with: the records of a file, one checked line at
//! a time, up to its first damaged line; zeros at the end (written ahead) end the records
//! quietly, zeros in the middle (a hole) are skipped and the records after them recovered.
//! Reads a stream (the lease journal may be several times the live set) or bytes in memory.
//! Knows no record's payload: the caller parses it.

use std::io;

use crate::log::frame::checked_payload;

/// Where and why the records of a file end before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Offset of the first byte not read as a good record (the end of the last good one).
    pub offset: usize,
    pub reason: String,
}

/// What reading a file found besides its records: where the good records end, the holes
/// skipped before that, and the damage that ended them early.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub good_len: usize,
    pub holes: Vec<(usize, usize)>,
    pub damage: Option<Damage>,
}

/// The records of a file, parsed by `parse(offset, payload)` from each line whose checksum
/// holds, up to its first damaged line (then `damage` says where and why, and `good_len` is the
/// length of the good part). After the first `next`, `buf` holds the first line as read (the
/// whole file when it has no newline). A read error ends the records too; `take_error` says so.
///
/// Zeros where a record would start are the end of the records when nothing but zeros follows
/// (written ahead by the lease journal). When records follow, they are a hole (a zeroed block
/// of the medium, or a page that never reached the disk while a later one did): the zeros and
/// the rest of the line they broke are skipped and listed in `holes`, and the records after
/// them are read on as long as their checksums hold. A file that starts with zeros has none.
pub(crate) struct Reader<R, F> {
    reader: R,
    parse: F,
    pub buf: Vec<u8>,
    /// Bytes read so far.
    offset: usize,
    /// Length up to the end of the last good record.
    pub good_len: usize,
    /// Skipped regions (offset, length): zeros and the partial line after them.
    pub holes: Vec<(usize, usize)>,
    /// Something was skipped after the last good record.
    skipping: bool,
    pub damage: Option<Damage>,
    error: Option<io::Error>,
}

impl<R: io::BufRead, T, F: FnMut(usize, &str) -> Result<T, String>> Reader<R, F> {
    pub(crate) fn new(reader: R, parse: F) -> Reader<R, F> {
        Reader {
            reader,
            parse,
            buf: Vec::with_capacity(256),
            offset: 0,
            good_len: 0,
            holes: Vec::new(),
            skipping: false,
            damage: None,
            error: None,
        }
    }

    /// What was found besides the records (after reading them all).
    pub(crate) fn into_found(self) -> Found {
        Found {
            good_len: self.good_len,
            holes: self.holes,
            damage: self.damage,
        }
    }

    /// The error that ended reading, if one did (once).
    pub(crate) fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    fn stop(&mut self, reason: String) -> Option<T> {
        self.damage = Some(Damage {
            offset: self.good_len,
            reason,
        });
        None
    }

    /// Consume the zero bytes at the reading position; how many there were.
    fn skip_zeros(&mut self) -> io::Result<usize> {
        let mut n = 0;
        loop {
            let buf = self.reader.fill_buf()?;
            let zeros = buf.iter().take_while(|&&b| b == 0).count();
            let more = !buf.is_empty() && zeros == buf.len();
            self.reader.consume(zeros);
            n += zeros;
            if !more {
                return Ok(n);
            }
        }
    }

    /// One line: the zeros before it (none before the first line: a file that starts with
    /// zeros has no records) and the line with its newline in `buf`; None at the end.
    fn read_line(&mut self) -> io::Result<Option<usize>> {
        self.buf.clear();
        let zeros = match self.offset {
            0 if matches!(self.reader.fill_buf()?, [0, ..]) => return Ok(None),
            _ => self.skip_zeros()?,
        };
        let read = self.reader.read_until(b'\n', &mut self.buf)?;
        self.offset += zeros + read;
        Ok((read > 0).then_some(zeros))
    }
}

impl<R: io::BufRead, T, F: FnMut(usize, &str) -> Result<T, String>> Iterator for Reader<R, F> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        while self.damage.is_none() && self.error.is_none() {
            let zeros = match self.read_line() {
                Ok(Some(zeros)) => zeros,
                // Only zeros up to the end (written ahead of the records), or the end.
                Ok(None) if !self.skipping => return None,
                Ok(None) => return self.stop("zeros, then no good record".to_string()),
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            };
            let start = self.offset - self.buf.len();
            let Some(line) = self.buf.strip_suffix(b"\n") else {
                return self.stop("torn last record (no newline)".to_string());
            };
            let broken = zeros > 0 || line.contains(&0);
            match checked_payload(line).and_then(|p| (self.parse)(start, p)) {
                Ok(record) => {
                    if start > self.good_len {
                        self.holes.push((self.good_len, start - self.good_len));
                    }
                    self.good_len = self.offset;
                    self.skipping = false;
                    return Some(record);
                }
                // The rest of a record whose start was zeroed: part of the hole.
                Err(_) if broken => self.skipping = true,
                Err(reason) => return self.stop(reason),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::frame::push_record;

    /// The records of `bytes` with their offsets, and what else the reader found.
    fn read(bytes: &[u8]) -> (Vec<(usize, String)>, Found) {
        let mut reader = Reader::new(bytes, |at, p: &str| Ok((at, p.to_string())));
        let records = reader.by_ref().collect();
        (records, reader.into_found())
    }

    #[test]
    fn checked_lines_in_order_up_to_a_damaged_one() {
        let mut text = String::new();
        push_record(&mut text, "first");
        push_record(&mut text, "second");
        let good = text.len();
        text.push_str("00000000 damaged\n");
        push_record(&mut text, "after the damage");
        let (records, reader) = read(text.as_bytes());
        assert_eq!(
            records,
            [(0, "first".to_string()), (15, "second".to_string())]
        );
        assert_eq!(reader.good_len, good);
        let damage = reader.damage.expect("damaged");
        assert_eq!(
            (damage.offset, damage.reason.as_str()),
            (good, "checksum mismatch")
        );
        assert!(reader.holes.is_empty());
    }

    #[test]
    fn a_torn_tail_ends_the_records_and_an_empty_file_has_none() {
        let mut text = String::new();
        push_record(&mut text, "whole");
        let good = text.len();
        text.push_str("0badc0de torn");
        let (records, reader) = read(text.as_bytes());
        assert_eq!(records.len(), 1);
        assert_eq!(reader.good_len, good);
        assert_eq!(
            reader.damage.map(|d| d.reason),
            Some("torn last record (no newline)".to_string())
        );
        let (records, reader) = read(b"");
        assert!(records.is_empty() && reader.damage.is_none());
    }

    #[test]
    fn zeros_at_the_end_are_quiet_and_zeros_in_the_middle_are_a_hole() {
        let mut text = String::new();
        push_record(&mut text, "one");
        let good = text.len();
        let mut ahead = text.clone().into_bytes();
        ahead.extend([0u8; 100]);
        let (records, reader) = read(&ahead);
        assert_eq!(records.len(), 1);
        assert!(reader.damage.is_none() && reader.holes.is_empty());
        assert_eq!(reader.good_len, good);
        // A record whose first half was zeroed, then a good one.
        let (mut two, mut three) = (String::new(), String::new());
        push_record(&mut two, "two");
        push_record(&mut three, "three");
        let mut hole = text.into_bytes();
        hole.extend([0u8; 7]);
        hole.extend(&two.as_bytes()[7..]);
        let after = hole.len();
        hole.extend(three.as_bytes());
        let (records, reader) = read(&hole);
        assert_eq!(
            records,
            [(0, "one".to_string()), (after, "three".to_string())]
        );
        assert_eq!(reader.holes, [(good, after - good)]);
        assert!(reader.damage.is_none());
        // Zeros, then only a broken line: the records end at the zeros.
        let mut bad = ahead.clone();
        bad.extend(b"garbage\n");
        let (records, reader) = read(&bad);
        assert_eq!(records.len(), 1);
        assert_eq!(reader.damage.map(|d| d.offset), Some(good));
    }

    #[test]
    fn the_parser_sees_each_offset_and_its_error_ends_the_records() {
        let mut text = String::new();
        for p in ["H header", "x", "H header"] {
            push_record(&mut text, p);
        }
        let mut reader = Reader::new(text.as_bytes(), |at, p: &str| match p {
            "H header" if at > 0 => Err("header in the middle".to_string()),
            p => Ok(p.len()),
        });
        assert_eq!(reader.by_ref().collect::<Vec<_>>(), [8, 1]);
        assert_eq!(
            reader.damage.map(|d| d.reason),
            Some("header in the middle".to_string())
        );
    }
}
