//! The name index that leases and static records produce: A by name, PTR by address.
//! Shared read-mostly: the DHCP service applies a whole batch of changes under one write lock;
//! DNS queries take a read lock and never hold it across `.await`.

use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use crate::clock::UnixTime;
use crate::lease::LeaseChange;

pub type SharedNames = Arc<RwLock<Names>>;

/// An answer from the index: the address (or name), and when the record ends (None: static).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found<T> {
    pub value: T,
    pub expires: Option<UnixTime>,
}

pub struct Names {}

impl Names {
    /// `domain` without trailing dot; `statics` are (label, address) from config reservations.
    pub fn new(_domain: &str, _statics: &[(String, Ipv4Addr)]) -> Self {
        todo!("names::new")
    }
    pub fn apply(&mut self, _changes: &[LeaseChange]) {
        todo!("names::apply")
    }
    /// A record for a fully qualified name (lowercase, no trailing dot), e.g. "laptop.lan".
    pub fn lookup_a(&self, _fqdn: &str) -> Option<Found<Ipv4Addr>> {
        todo!()
    }
    /// PTR target (fully qualified, no trailing dot) for an address.
    pub fn lookup_ptr(&self, _ip: Ipv4Addr) -> Option<Found<String>> {
        todo!()
    }
    /// SOA serial; increases on every change.
    pub fn serial(&self) -> u32 {
        todo!()
    }
}
