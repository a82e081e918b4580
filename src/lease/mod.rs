//! Lease types shared by the DHCP engine, the journal and the DNS name index.
//! `table` holds live leases with their indexes; `journal` makes changes durable; `logfile` is
//! what the other logs on the journal's line framing share (the DNS update journal, the DDNS queue).

pub mod journal;
pub(crate) mod logfile;
pub mod table;

use crate::clock::UnixTime;
use std::fmt;
use std::net::Ipv4Addr;

/// Who a lease belongs to: option 61 (client identifier) bytes when the client sent one,
/// otherwise the hardware type byte followed by chaddr (as RFC 2132 suggests for option 61).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub Vec<u8>);

impl ClientId {
    /// The identity of a client that sent no option 61.
    pub fn from_hw(hw: &HwAddr) -> Self {
        let mut v = Vec::with_capacity(1 + hw.bytes.len());
        v.push(hw.htype);
        v.extend_from_slice(&hw.bytes);
        ClientId(v)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}
impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({self})")
    }
}

/// Hardware address from chaddr: type (1 = Ethernet) and up to 16 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct HwAddr {
    pub htype: u8,
    pub bytes: Vec<u8>,
}

impl HwAddr {
    pub fn ethernet(mac: [u8; 6]) -> Self {
        HwAddr {
            htype: 1,
            bytes: mac.to_vec(),
        }
    }
}

impl fmt::Display for HwAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.bytes.iter().enumerate() {
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
    pub hostname: Option<String>,
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
