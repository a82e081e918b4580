//! The packed on-disk index: one packed copy of each durable lease in one arena (about 37
//! bytes a lease), what `Journal::durable` answers from and a failed sync is undone in.
use super::*;

/// The packed leases of `Journal::on_disk` in one growing arena, each record its length (one
/// byte, or `LONG` and a u32) and the packed bytes, and an index from address to record
/// offset. 100,000 named leases take about 3.7 MB this way (25 bytes a record, 12 of index),
/// against 8 MB as one boxed slice each (allocator overhead and fat pointers).
/// A replaced record stays in the arena (the undo of a failed sync points at it) until
/// `maybe_shrink` copies the live records into a fresh arena, once most of it is garbage.
#[derive(Debug, Default)]
pub(super) struct PackedLeases {
    pub(super) index: HashMap<Ipv4Addr, u32, AddrHash>,
    pub(super) arena: Vec<u8>,
    /// Bytes of the arena that live records take (with their length prefixes).
    pub(super) live: usize,
}

/// A length byte that says a u32 length follows (in the arena, and for a packed client id).
pub(super) const LONG: u8 = u8::MAX;

/// Append `len`: one byte below `LONG`, else `LONG` and the u32.
pub(super) fn push_len(out: &mut Vec<u8>, len: u32) {
    match u8::try_from(len) {
        Ok(short) if short < LONG => out.push(short),
        _ => {
            out.push(LONG);
            out.extend_from_slice(&len.to_le_bytes());
        }
    }
}

/// A length written by `push_len` and the bytes after it.
pub(super) fn read_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    if first < LONG {
        return Some((usize::from(first), rest));
    }
    let (len, rest) = rest.split_first_chunk::<4>()?;
    Some((usize::try_from(u32::from_le_bytes(*len)).ok()?, rest))
}

/// The bytes `push_len` takes for `len`.
pub(super) fn len_size(len: usize) -> usize {
    if len < usize::from(LONG) { 1 } else { 5 }
}

impl PackedLeases {
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Room in the index for `leases` more (the arena grows by doubling; its untouched tail
    /// takes no memory).
    pub(super) fn reserve(&mut self, leases: usize) {
        self.index.reserve(leases);
    }

    pub(super) fn record(&self, offset: u32) -> Option<&[u8]> {
        let at = usize::try_from(offset).ok()?;
        let (len, rest) = read_len(self.arena.get(at..)?)?;
        rest.get(..len)
    }

    /// The bytes the record at `offset` takes in the arena (length prefix included).
    pub(super) fn size(&self, offset: Option<u32>) -> usize {
        offset
            .and_then(|o| self.record(o))
            .map_or(0, |r| r.len() + len_size(r.len()))
    }

    pub(super) fn get(&self, ip: Ipv4Addr) -> Option<&[u8]> {
        self.record(*self.index.get(&ip)?)
    }

    /// Store `packed` for `ip`; returns the offset of the record it replaces. A record that
    /// does not fit a u32 length or offset (a 4 GB arena) is not stored.
    pub(super) fn insert(&mut self, ip: Ipv4Addr, packed: &[u8]) -> Option<u32> {
        let (Ok(offset), Ok(len)) = (u32::try_from(self.arena.len()), u32::try_from(packed.len()))
        else {
            return self.remove(ip);
        };
        push_len(&mut self.arena, len);
        self.arena.extend_from_slice(packed);
        self.live += packed.len() + len_size(packed.len());
        let old = self.index.insert(ip, offset);
        self.live = self.live.saturating_sub(self.size(old));
        old
    }

    /// Forget `ip`; returns the offset of its record.
    pub(super) fn remove(&mut self, ip: Ipv4Addr) -> Option<u32> {
        let old = self.index.remove(&ip);
        self.live = self.live.saturating_sub(self.size(old));
        old
    }

    /// Point `ip` back at an earlier record (`None`: no lease), as an undo does.
    pub(super) fn restore(&mut self, ip: Ipv4Addr, offset: Option<u32>) {
        let current = match offset {
            Some(o) => self.index.insert(ip, o),
            None => self.index.remove(&ip),
        };
        self.live = self.live.saturating_sub(self.size(current)) + self.size(offset);
    }

    /// Copy the live records into a fresh arena when garbage is most of it (call only with no
    /// undo pending: the offsets change).
    pub(super) fn maybe_shrink(&mut self) {
        let garbage = self.arena.len().saturating_sub(self.live);
        if garbage <= self.live || garbage < 1 << 20 {
            return;
        }
        let mut arena = Vec::with_capacity(self.live);
        let old = std::mem::take(&mut self.arena);
        for offset in self.index.values_mut() {
            let at = usize::try_from(*offset).unwrap_or(usize::MAX);
            let record = old.get(at..).and_then(read_len).and_then(|(len, rest)| {
                let size = len + len_size(len);
                old.get(at..at + size).filter(|_| rest.len() >= len)
            });
            *offset = u32::try_from(arena.len()).unwrap_or(u32::MAX);
            arena.extend_from_slice(record.unwrap_or_default());
        }
        self.arena = arena;
        self.live = self.arena.len();
    }
}

/// The packed client-id length byte of an id that is its hardware type and address.
pub(super) const IMPLIED_ID: u8 = LONG - 1;

/// A bound or declined lease packed for `on_disk`, written with expiry `expires`: expiry (u64),
/// state, hardware type, hardware address (after a u8 length), client id (`IMPLIED_ID` and no
/// bytes when it is type + hardware address, else its length as `push_len` writes it, with
/// `IMPLIED_ID` taken as a long length), then the host name (the rest; empty for none). About
/// 24 bytes; `None` for an offer.
pub(super) fn pack(lease: &Lease, expires: UnixTime) -> Option<Box<[u8]>> {
    let mut out = Vec::new();
    pack_into(&mut out, lease, expires).then(|| out.into_boxed_slice())
}

/// `pack` into `out` (cleared first); false for an offer.
pub(super) fn pack_into(out: &mut Vec<u8>, lease: &Lease, expires: UnixTime) -> bool {
    let state = match lease.state {
        LeaseState::Bound => b'b',
        LeaseState::Declined => b'd',
        LeaseState::Offered => return false,
    };
    let host = lease.hostname.as_deref().unwrap_or("").as_bytes();
    let hw = lease.hwaddr.bytes();
    // The usual client id (type + hardware address) is implied, not stored.
    let client = match lease.client == ClientId::from_hw(&lease.hwaddr) {
        true => None,
        false => Some(lease.client.as_bytes()),
    };
    out.clear();
    out.reserve(16 + hw.len() + client.map_or(0, <[u8]>::len) + host.len());
    out.extend_from_slice(&expires.0.to_le_bytes());
    out.extend_from_slice(&[state, lease.hwaddr.htype]);
    out.push(hw.len() as u8); // at most 16
    out.extend_from_slice(hw);
    match client {
        None => out.push(IMPLIED_ID),
        Some(id) => {
            let len = u32::try_from(id.len()).unwrap_or(u32::MAX);
            match u8::try_from(len) {
                Ok(short) if short < IMPLIED_ID => out.push(short),
                _ => {
                    out.push(LONG);
                    out.extend_from_slice(&len.to_le_bytes());
                }
            }
            out.extend_from_slice(id);
        }
    }
    out.extend_from_slice(host);
    true
}

/// The lease on `ip` from its packed form (see `pack`).
pub(super) fn unpack(ip: Ipv4Addr, packed: &[u8]) -> Option<Lease> {
    let (expires, rest) = packed.split_first_chunk::<8>()?;
    let ([state, htype, hw_len], rest) = rest.split_first_chunk::<3>().map(|(h, r)| (*h, r))?;
    let hw_len = usize::from(hw_len);
    let (hw, rest) = (rest.get(..hw_len)?, rest.get(hw_len..)?);
    if hw.len() > HW_MAX {
        return None;
    }
    let hwaddr = HwAddr::new(htype, hw);
    let (client, rest) = match rest.split_first()? {
        (&IMPLIED_ID, rest) => (ClientId::from_hw(&hwaddr), rest),
        _ => {
            let (len, rest) = read_len(rest)?;
            (ClientId::new(rest.get(..len)?), rest.get(len..)?)
        }
    };
    let hostname = match rest {
        [] => None,
        name => Some(String::from_utf8(name.to_vec()).ok()?),
    };
    Some(Lease {
        ip,
        client,
        hwaddr,
        hostname: hostname.map(Arc::from),
        expires: UnixTime(u64::from_le_bytes(*expires)),
        state: match state {
            b'b' => LeaseState::Bound,
            b'd' => LeaseState::Declined,
            _ => return None,
        },
    })
}
