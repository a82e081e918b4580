//! Lease types shared by the DHCP engine, the journal and the DNS name index.
//! `table` holds live leases with their indexes (`tally`: bound and declined per subnet); `journal` makes changes durable (on the
//! framing of `crate::log`); `store` is the seam the DHCP service commits through.

pub mod dense;
pub mod journal;
pub mod pg;
pub mod store;
pub mod table;
pub mod tally;

use crate::clock::UnixTime;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Who a lease belongs to: option 61 (client identifier) bytes when the client sent one,
/// otherwise the hardware type byte followed by chaddr (as RFC 2132 suggests for option 61).
///
/// Memory: 24 bytes; up to 22 bytes (every type-plus-MAC id, most DUID-based ones) are kept
/// inline, longer ones in one heap allocation.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientId(IdRepr);

/// Hashed as its bytes in one write (the client chooses them: maps keep std's keyed hasher).
impl std::hash::Hash for ClientId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
    }
}

/// Inline bytes (unused ones zero, so derived equality sees only the id), or a boxed slice for
/// an id longer than `INLINE_ID`.
#[derive(Clone, PartialEq, Eq)]
enum IdRepr {
    Inline { len: u8, bytes: [u8; INLINE_ID] },
    Heap(Box<[u8]>),
}

const INLINE_ID: usize = 22;

impl ClientId {
    pub fn new(bytes: &[u8]) -> Self {
        ClientId(match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= INLINE_ID => {
                let mut inline = [0; INLINE_ID];
                inline[..bytes.len()].copy_from_slice(bytes);
                IdRepr::Inline { len, bytes: inline }
            }
            _ => IdRepr::Heap(bytes.into()),
        })
    }

    /// The identity of a client that sent no option 61.
    pub fn from_hw(hw: &HwAddr) -> Self {
        let mut v = [0u8; 17];
        v[0] = hw.htype;
        let bytes = hw.bytes();
        v[1..=bytes.len()].copy_from_slice(bytes);
        ClientId::new(&v[..=bytes.len()])
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            IdRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            IdRepr::Heap(b) => b,
        }
    }
}

impl From<Vec<u8>> for ClientId {
    fn from(v: Vec<u8>) -> Self {
        ClientId::new(&v)
    }
}

impl From<&[u8]> for ClientId {
    fn from(v: &[u8]) -> Self {
        ClientId::new(v)
    }
}

impl PartialOrd for ClientId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ClientId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, self.as_bytes())
    }
}
impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({self})")
    }
}

/// Hardware address from chaddr: type (1 = Ethernet) and up to 16 bytes, inline (18 bytes, no
/// heap). Unused bytes are zero, so derived equality and hashing see only the address.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct HwAddr {
    pub htype: u8,
    len: u8,
    buf: [u8; HW_MAX],
}

/// The size of chaddr: no hardware address is longer.
pub const HW_MAX: usize = 16;

impl HwAddr {
    /// Type `htype` and address `bytes`, cut to 16 bytes (the size of chaddr).
    pub fn new(htype: u8, bytes: &[u8]) -> Self {
        let bytes = bytes.get(..HW_MAX).unwrap_or(bytes);
        let mut buf = [0; HW_MAX];
        buf[..bytes.len()].copy_from_slice(bytes);
        HwAddr {
            htype,
            len: bytes.len() as u8,
            buf,
        }
    }

    pub fn ethernet(mac: [u8; 6]) -> Self {
        HwAddr::new(1, &mac)
    }

    /// The address bytes (chaddr cut to hlen).
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len).min(HW_MAX)]
    }
}

impl PartialOrd for HwAddr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HwAddr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.htype, self.bytes()).cmp(&(other.htype, other.bytes()))
    }
}

impl fmt::Display for HwAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
impl fmt::Debug for HwAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HwAddr({}/{self})", self.htype)
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, b: &[u8]) -> fmt::Result {
    for x in b {
        write!(f, "{x:02x}")?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseState {
    /// Held for a client between OFFER and REQUEST; never journaled, never in DNS.
    Offered,
    /// Granted by an ACK; journaled and published in DNS.
    Bound,
    /// Put aside after a DECLINE (or a conflict) until `expires`; owned by no one.
    Declined,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub client: ClientId,
    pub hwaddr: HwAddr,
    /// The client's host name as a validated DNS label (lowercase), if it sent a usable one
    /// or a reservation gives one.
    /// Shared (one allocation) with the DNS name index that publishes it.
    pub hostname: Option<Arc<str>>,
    pub expires: UnixTime,
    pub state: LeaseState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveReason {
    Released,
    Expired,
    /// The client moved to another address or the address was reassigned.
    Superseded,
}

/// One change to the lease set, in the order the engine made it. The journal writes these, the
/// DNS name index applies them, after the batch is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseChange {
    /// A lease was granted, renewed, or changed (state Bound or Declined; never Offered).
    Upsert(Lease),
    /// The lease on `ip` ended.
    Remove { ip: Ipv4Addr, reason: RemoveReason },
}

impl LeaseChange {
    /// The address the change is about.
    pub fn ip(&self) -> Ipv4Addr {
        match self {
            LeaseChange::Upsert(l) => l.ip,
            LeaseChange::Remove { ip, .. } => *ip,
        }
    }
}

/// A fast hash for keys the server chooses itself: its pool addresses, interface indexes. One
/// multiply spreads the value over the high bits and a rotate brings them down to the low bits
/// that pick a bucket. Not for keys a client controls (client ids keep std's keyed SipHash).
#[derive(Clone, Copy, Debug, Default)]
pub struct AddrHasher(u64);

/// Odd, with its bits spread (2^64 / the golden ratio).
const ADDR_HASH_K: u64 = 0x9e37_79b9_7f4a_7c15;

impl std::hash::Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.wrapping_add(n).wrapping_mul(ADDR_HASH_K);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// Hash maps and sets keyed by addresses or indexes use this (see `AddrHasher`).
pub type AddrHash = std::hash::BuildHasherDefault<AddrHasher>;

/// The `AddrHasher` hash of an address (for hashbrown tables that take the hash directly).
pub fn addr_hash(ip: std::net::Ipv4Addr) -> u64 {
    use std::hash::Hasher as _;
    let mut h = AddrHasher::default();
    h.write_u32(u32::from(ip));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_hash_spreads_strided_addresses_over_the_low_bits() {
        // Addresses 256 apart (one per /24) share their low byte: the bucket bits must not.
        let ips = (0..4096u32).map(|i| Ipv4Addr::from(0x0a00_0001 + (i << 8)));
        let buckets: std::collections::HashSet<u64> = ips.map(|ip| addr_hash(ip) & 4095).collect();
        assert!(
            buckets.len() > 2400,
            "{} of 4096 buckets used",
            buckets.len()
        );
        let mut set: std::collections::HashSet<Ipv4Addr, AddrHash> = Default::default();
        set.extend((1..=1000u32).map(|i| Ipv4Addr::from(0x0a00_0000 + i)));
        assert!(set.contains(&Ipv4Addr::new(10, 0, 3, 232)));
        assert!(!set.contains(&Ipv4Addr::new(10, 0, 3, 233)));
    }

    #[test]
    fn ids_and_addresses_are_inline_and_compare_by_their_bytes() {
        // t0: a type-plus-MAC id and a 22-byte id stay inline; a 23-byte one goes to the heap.
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, 9]);
        let id = ClientId::from_hw(&hw);
        assert_eq!(id.as_bytes(), &[1, 2, 0, 0, 0, 0, 9]);
        assert!(matches!(id.0, IdRepr::Inline { len: 7, .. }));
        assert!(matches!(ClientId::new(&[7; 22]).0, IdRepr::Inline { .. }));
        let long = ClientId::new(&[7; 23]);
        assert!(matches!(long.0, IdRepr::Heap(_)));
        assert_eq!(long.as_bytes(), &[7; 23]);
        assert_eq!(ClientId::new(&[0; 300]).as_bytes().len(), 300);
        // t1: equality and order see the bytes only, not the padding.
        assert_ne!(ClientId::new(&[1]), ClientId::new(&[1, 0]));
        assert!(ClientId::new(&[1]) < ClientId::new(&[1, 0]));
        assert!(ClientId::new(&[2]) > ClientId::new(&[1; 30]));
        assert_eq!(ClientId::from(vec![1, 2]), ClientId::new(&[1, 2]));
        assert_eq!(format!("{id}"), "01020000000009");
        // t2: a hardware address keeps at most the 16 bytes of chaddr.
        assert_eq!(HwAddr::new(1, &[5; 20]).bytes(), &[5; 16]);
        assert_ne!(HwAddr::new(1, &[]), HwAddr::new(1, &[0]));
        assert!(HwAddr::new(1, &[9]) < HwAddr::new(2, &[]));
        assert_eq!(format!("{hw}"), "02:00:00:00:00:09");
    }

    #[test]
    fn a_lease_is_small() {
        // The lease table holds one per address: 100,000 of them in the perf test.
        assert!(std::mem::size_of::<HwAddr>() <= 18);
        assert!(std::mem::size_of::<ClientId>() <= 24);
        assert!(
            std::mem::size_of::<Lease>() <= 72,
            "{}",
            std::mem::size_of::<Lease>()
        );
    }
}
