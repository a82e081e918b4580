//! Leases stored once, in one dense vector, found by address through a table of 4-byte
//! positions (plus hashbrown's control byte): about 72 + 7 bytes a lease. Shared by the lease
//! table (which adds its client and expiry indexes) and journal replay. Pure data structure: no
//! clock, no I/O, no policy.
//!
//! A removal moves the last lease into the hole (`swap_remove`); the address index follows it,
//! and the caller is told where it went so that indexes of its own can follow too.

use std::net::Ipv4Addr;

use hashbrown::HashTable;

use crate::lease::{Lease, addr_hash};

#[derive(Debug, Default)]
pub struct ByAddr {
    /// At most one lease per IPv4 address: fewer than 2^32, so a position fits a u32.
    leases: Vec<Lease>,
    /// Positions in `leases`, by the hash of the lease's address.
    index: HashTable<u32>,
}

/// A position as the index stores it.
pub fn pos(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

impl ByAddr {
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    pub fn as_slice(&self) -> &[Lease] {
        &self.leases
    }

    /// The lease at position `i`.
    pub fn at(&self, i: usize) -> Option<&Lease> {
        self.leases.get(i)
    }

    /// The position of the lease on `ip`.
    pub fn position(&self, ip: Ipv4Addr) -> Option<usize> {
        let leases = &self.leases;
        let found = self.index.find(addr_hash(ip), |&i| {
            leases.get(i as usize).is_some_and(|l| l.ip == ip)
        });
        found.map(|&i| i as usize)
    }

    /// Append a lease for an address that has none; returns its position.
    pub fn push(&mut self, lease: Lease) -> usize {
        debug_assert!(self.position(lease.ip).is_none(), "{} held twice", lease.ip);
        let i = self.leases.len();
        let hash = addr_hash(lease.ip);
        self.leases.push(lease);
        let ByAddr { leases, index } = self;
        index.insert_unique(hash, pos(i), |&p| rehash(leases, p));
        i
    }

    /// Put `lease` at position `i` in place of the lease there, which must be on the same
    /// address (the index does not change); returns the old lease.
    pub fn replace(&mut self, i: usize, lease: Lease) -> Option<Lease> {
        let slot = self.leases.get_mut(i)?;
        debug_assert_eq!(slot.ip, lease.ip, "replace keeps the address");
        Some(std::mem::replace(slot, lease))
    }

    /// Insert or replace the lease on `lease.ip` (last one wins); returns its position.
    pub fn upsert(&mut self, lease: Lease) -> usize {
        match self.position(lease.ip) {
            Some(i) => {
                self.replace(i, lease);
                i
            }
            None => self.push(lease),
        }
    }

    /// Remove the lease at position `i`: the last lease moves into its place (and the address
    /// index with it). Returns the removed lease; when a lease moved, it is now at `i` and was
    /// at `len()`.
    pub fn swap_remove(&mut self, i: usize) -> Option<Lease> {
        let old = self.leases.get(i)?;
        if let Ok(entry) = self.index.find_entry(addr_hash(old.ip), |&p| p == pos(i)) {
            entry.remove();
        }
        let old = self.leases.swap_remove(i);
        let from = pos(self.leases.len());
        if let Some(moved) = self.leases.get(i)
            && let Some(p) = self.index.find_mut(addr_hash(moved.ip), |&p| p == from)
        {
            *p = pos(i);
        }
        Some(old)
    }

    /// Forget the lease on `ip`, if any.
    pub fn remove(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        self.swap_remove(self.position(ip)?)
    }

    /// Make room for `additional` more leases.
    pub fn reserve(&mut self, additional: usize) {
        let ByAddr { leases, index } = self;
        leases.reserve(additional);
        index.reserve(additional, |&p| rehash(leases, p));
    }

    /// Bytes held on the heap (the vector's capacity and the index).
    pub fn heap_bytes(&self) -> usize {
        self.leases.capacity() * std::mem::size_of::<Lease>() + self.index.allocation_size()
    }

    /// The leases, in no particular order (the index is dropped).
    pub fn into_vec(self) -> Vec<Lease> {
        self.leases
    }
}

/// The address hash of the lease at position `p` (for rehashing).
fn rehash(leases: &[Lease], p: u32) -> u64 {
    leases.get(p as usize).map_or(0, |l| addr_hash(l.ip))
}
