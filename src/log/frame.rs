//! The line framing every leasedns log shares: `<crc32 of payload, 8 lowercase hex> <payload>\n`
//! (`push_record`, `checked_payload`), the hex fields records use (`hex_or_dash`, `hex_field`),
//! and `Ascii`, a writer that formats a payload without core::fmt. Knows no record's payload.

use std::net::Ipv4Addr;

/// The payload of one `<crc32 hex> <payload>` line (without its newline), if the checksum
/// matches and it is UTF-8. Shared with the DNS update journal and the DDNS queue.
pub(crate) fn checked_payload(line: &[u8]) -> Result<&str, String> {
    let payload = checked_payload_bytes(line)?;
    std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8".to_string())
}

/// The payload of a line (without its newline) whose checksum matches.
fn checked_payload_bytes(line: &[u8]) -> Result<&[u8], String> {
    if line.len() < 10 || line[8] != b' ' {
        return Err("no checksum field".into());
    }
    let (hex, payload) = (&line[..8], &line[9..]);
    let mut crc = 0u32;
    for &b in hex {
        let digit = hex_digit(b).ok_or("bad checksum field")?;
        crc = crc << 4 | u32::from(digit);
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

pub(crate) fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

pub(crate) fn push_record(out: &mut String, payload: &str) {
    let crc = crc32fast::hash(payload.as_bytes());
    let mut head = *b"00000000 ";
    for (i, d) in head.iter_mut().take(8).enumerate() {
        *d = LOWER_HEX[((crc >> (28 - 4 * i)) & 15) as usize];
    }
    out.reserve(payload.len() + 10);
    out.push_str(std::str::from_utf8(&head).unwrap_or_default());
    out.push_str(payload);
    out.push('\n');
}

/// `push_record` of the payload that `write` writes (into a stack buffer, no string of its
/// own); when `write` says false, nothing is appended.
pub(crate) fn push_record_with(out: &mut String, write: impl FnOnce(&mut Ascii) -> bool) -> bool {
    let mut a = Ascii::new();
    if !write(&mut a) {
        return false;
    }
    push_record(out, a.as_str());
    true
}

/// ASCII text written byte by byte without core::fmt: in a stack buffer while it fits, on the
/// heap past that (a long client id or name).
pub(crate) struct Ascii {
    buf: [u8; 160],
    n: usize,
    spill: Vec<u8>,
}

impl Ascii {
    pub(crate) fn new() -> Self {
        Ascii {
            buf: [0; 160],
            n: 0,
            spill: Vec::new(),
        }
    }

    /// Append one byte; callers only ever pass ASCII.
    pub(crate) fn push(&mut self, b: u8) {
        if self.spill.is_empty()
            && let Some(slot) = self.buf.get_mut(self.n)
        {
            *slot = b;
            self.n += 1;
            return;
        }
        if self.spill.is_empty() {
            self.spill.extend_from_slice(&self.buf);
        }
        self.spill.push(b);
    }

    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.n..self.n + bytes.len()) {
            Some(dst) if self.spill.is_empty() => {
                dst.copy_from_slice(bytes);
                self.n += bytes.len();
            }
            _ => bytes.iter().for_each(|b| self.push(*b)),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        let bytes = if self.spill.is_empty() {
            self.buf.get(..self.n).unwrap_or_default()
        } else {
            &self.spill
        };
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    /// Decimal digits of `n`.
    pub(crate) fn u64(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.extend(digits.get(i..).unwrap_or_default());
    }

    /// Dotted-quad `ip`, as its Display writes it.
    pub(crate) fn ipv4(&mut self, ip: Ipv4Addr) {
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b'.');
            }
            if octet >= 100 {
                self.push(b'0' + octet / 100);
            }
            if octet >= 10 {
                self.push(b'0' + octet / 10 % 10);
            }
            self.push(b'0' + octet % 10);
        }
    }

    /// Lowercase hex of `bytes` (colon-separated or run together), `-` when empty.
    pub(crate) fn hex(&mut self, bytes: &[u8], colons: bool) {
        if bytes.is_empty() {
            self.push(b'-');
        }
        let step = if colons { 3 } else { 2 };
        // Straight into the stack buffer when it has room (a MAC, a client id)...
        if self.spill.is_empty()
            && let Some(dst) = self.buf.get_mut(self.n..self.n + bytes.len() * step)
        {
            for (d, b) in dst.chunks_exact_mut(step).zip(bytes) {
                d[0] = LOWER_HEX[usize::from(b >> 4)];
                d[1] = LOWER_HEX[usize::from(b & 15)];
                if let Some(colon) = d.get_mut(2) {
                    *colon = b':';
                }
            }
            // ... with no colon after the last byte.
            self.n += (bytes.len() * step).saturating_sub(step - 2);
            return;
        }
        for (i, b) in bytes.iter().enumerate() {
            if colons && i > 0 {
                self.push(b':');
            }
            self.push(LOWER_HEX[usize::from(b >> 4)]);
            self.push(LOWER_HEX[usize::from(b & 15)]);
        }
    }

    /// Hostnames are validated labels already; anything else is escaped so a record stays one
    /// line of space-separated fields. A lone `-` is escaped too, since `-` means "no hostname".
    pub(crate) fn escaped(&mut self, name: &str) {
        const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";
        for b in name.bytes() {
            let safe = b.is_ascii_alphanumeric() || b"._-".contains(&b);
            if safe && name != "-" {
                self.push(b);
            } else {
                self.push(b'%');
                self.push(UPPER_HEX[usize::from(b >> 4)]);
                self.push(UPPER_HEX[usize::from(b & 15)]);
            }
        }
    }
}

pub(crate) const LOWER_HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes` run together (`sep` "") or separated by `sep`, `-` when empty.
pub(crate) fn hex_or_dash(bytes: &[u8], sep: &str) -> String {
    let mut a = Ascii::new();
    a.hex(bytes, !sep.is_empty());
    let out = a.as_str();
    if !sep.is_empty() && sep != ":" {
        return out.replace(':', sep);
    }
    out.to_string()
}

/// Parse hex bytes, either separated by `sep` (one or two digits each) or (with `sep == '\0'`)
/// run together two digits a byte; `-` is empty.
pub(crate) fn hex_field(field: &str, sep: char) -> Result<Vec<u8>, String> {
    if field == "-" {
        return Ok(Vec::new());
    }
    let bad = || format!("bad hex {field:?}");
    let b = field.as_bytes();
    if sep == '\0' {
        if !b.len().is_multiple_of(2) {
            return Err(bad());
        }
        return b
            .chunks_exact(2)
            .map(|p| Some(hex_digit(p[0])? << 4 | hex_digit(p[1])?))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad);
    }
    let mut out = Vec::with_capacity(b.len().div_ceil(3));
    for p in field.split(sep) {
        let byte = match p.as_bytes() {
            [lo] => hex_digit(*lo),
            [hi, lo] => hex_digit(*hi).zip(hex_digit(*lo)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        out.push(byte.ok_or_else(bad)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_formatting_writes_what_core_fmt_writes() {
        let text = |write: &dyn Fn(&mut Ascii)| {
            let mut a = Ascii::new();
            write(&mut a);
            a.as_str().to_string()
        };
        for n in [0, 7, 9, 10, 99, 100, 255, 1_700_000_000, u64::MAX] {
            assert_eq!(text(&|a| a.u64(n)), n.to_string());
        }
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "9.99.100.7",
            "192.168.100.20",
            "255.255.255.255",
        ] {
            let ip: Ipv4Addr = ip.parse().expect("address");
            assert_eq!(text(&|a| a.ipv4(ip)), ip.to_string());
        }
        // Past the stack buffer (160 bytes) too.
        for len in [0usize, 1, 6, 53, 54, 80, 200] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            let want: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
            assert_eq!(text(&|a| a.hex(&bytes, true)), dash(want.join(":")));
            assert_eq!(text(&|a| a.hex(&bytes, false)), dash(want.concat()));
        }
        let long = "a-b".repeat(70);
        assert_eq!(text(&|a| a.escaped(&long)), long);
        assert_eq!(text(&|a| a.escaped("-")), "%2D");
        assert_eq!(text(&|a| a.escaped("x y")), "x%20y");
        // A record written through the stack buffer frames exactly as one from its payload.
        let payload = "R 10.0.0.7 superseded";
        let (mut a, mut b) = (String::from("x\n"), String::from("x\n"));
        push_record(&mut a, payload);
        assert_eq!(
            a,
            format!("x\n{:08x} {payload}\n", crc32fast::hash(payload.as_bytes()))
        );
        assert!(push_record_with(&mut b, |out| {
            out.extend(payload.as_bytes());
            true
        }));
        assert_eq!(a, b);
        assert!(!push_record_with(&mut b, |_| false));
        assert_eq!(a, b, "a refused payload leaves nothing behind");
    }
}
