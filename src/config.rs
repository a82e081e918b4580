//! Configuration: raw serde types (`raw`), the validated `Config` built from them, and errors
//! that name the file, line and field. Opens no sockets.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::lease::{ClientId, HwAddr};

/// How lease changes reach the disk before a reply leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// write + fdatasync before replying (default).
    Fsync,
    /// write only; for tmpfs and tests.
    None,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The file this came from (for messages).
    pub path: PathBuf,
    /// Interfaces to serve DHCP on (names). Empty: every interface that has an address in a subnet.
    pub interfaces: Vec<String>,
    /// The local domain, lowercase, without trailing dot, e.g. "lan".
    pub domain: String,
    /// UDP port the DHCP server listens on (67) and the port clients listen on (68).
    pub dhcp_port: u16,
    pub client_port: u16,
    /// Lease journal file.
    pub lease_file: PathBuf,
    pub durability: Durability,
    /// How long an OFFER holds its address for the client (seconds).
    pub offer_hold: u32,
    /// How long a declined address is put aside (seconds).
    pub decline_hold: u32,
    pub dns: DnsConfig,
    pub subnets: Vec<Subnet>,
    pub reservations: Vec<Reservation>,
}

#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Addresses to answer DNS on, UDP and TCP. Empty: no DNS server.
    pub listen: Vec<SocketAddr>,
    /// TTL of local records; lease records never exceed the lease's remaining time.
    pub ttl: u32,
    /// Upstream servers for other names; empty: REFUSED.
    pub upstreams: Vec<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    pub pool_start: Ipv4Addr,
    pub pool_end: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    /// Lease time in seconds.
    pub lease_time: u32,
    /// Serve this subnet only on this interface (else: any interface with an address in it).
    pub interface: Option<String>,
    /// NAK requests for addresses that are not ours on this segment (true by default).
    pub authoritative: bool,
}

impl Subnet {
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix_len))
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = prefix_mask(self.prefix_len);
        u32::from(ip) & m == u32::from(self.network) & m
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !prefix_mask(self.prefix_len))
    }
    pub fn in_pool(&self, ip: Ipv4Addr) -> bool {
        ip >= self.pool_start && ip <= self.pool_end
    }
}

pub fn prefix_mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix_len.min(32))) }
}

/// A fixed address (and optionally a name) for one client, by MAC or client identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub hwaddr: Option<HwAddr>,
    pub client_id: Option<ClientId>,
    pub ip: Ipv4Addr,
    /// Lowercase DNS label.
    pub name: Option<String>,
}
