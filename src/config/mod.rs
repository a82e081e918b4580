//! Configuration: the validated `Config` read from a TOML file, and `check-config`'s errors
//! that name the file, line and field. Opens no sockets.
//!
//! The files, by section: `raw` (serde types: exactly what the file says), `load` (raw to
//! `Config`, the top-level keys and shared checks), `dhcp` (server-wide DHCP settings, client
//! classes, options), `subnet` (`[[subnet]]`, `[[host]]`), `dns` (`[dns]`, static records),
//! `tsig` (`[[tsig_key]]`), `http` (`[http]`, `[[dyndns_user]]`), `ddns` (`[[ddns_zone]]`),
//! `defaults` (every default, in one table), `error` (`ConfigError` and where an error is).
//!
//! `Config::start` holds what only a restart changes (`Startup`); a reload replaces the rest.

mod ddns;
pub mod defaults;
mod dhcp;
mod dns;
mod error;
mod http;
mod leasedb;
mod load;
mod raw;
mod script;
mod subnet;
mod tsig;
mod user;

use std::path::PathBuf;

pub use ddns::{DdnsConfig, DdnsZone};
pub use dhcp::{ClientClass, DhcpGlobals, GrantSettings, OptionSpec, Route};
pub use dns::{
    DEFAULT_BLOCKED_NAMES, DnsConfig, DnsRecord, DnsStartup, NameMatch, RecordData, is_label,
    qualify,
};
pub use error::ConfigError;
pub use http::{ApiToken, DynDnsUser, HttpConfig};
pub use leasedb::LeaseDatabase;
pub use script::DhcpScript;
pub use subnet::{Reservation, Subnet, SubnetSettings, prefix_mask};
pub use tsig::{TsigKeyConfig, UpdateRule};
pub use user::{RunAs, run_as};

pub use crate::log::Durability;

/// The whole config: what a reload may change at the top level, and `start`, what it may not.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this came from (for messages).
    pub path: PathBuf,
    /// Settings bound at start (files, sockets, ports, what the DNS server and the DDNS task
    /// copy when they start). A reload keeps the running `Startup` as a whole: see
    /// `Config::keep_start`.
    pub start: Startup,
    /// Interfaces to serve DHCP on (names). Empty: every interface that has an address in a subnet.
    pub interfaces: Vec<String>,
    /// Lease reuse: a renewal while the stored lease still has at least (1 - this) of its lease
    /// time left is answered with the time left and not written (0 writes every renewal).
    /// 0..=1, default 0.5.
    pub renew_write_fraction: f64,
    /// How long an OFFER holds its address for the client (seconds).
    pub offer_hold: u32,
    /// How long a declined address is put aside (seconds).
    pub decline_hold: u32,
    /// The live part of `[dns]`: static records, the hosts file, blocked names.
    pub dns: DnsConfig,
    pub subnets: Vec<Subnet>,
    pub reservations: Vec<Reservation>,
    /// Server-wide DHCP settings: ping check, warnings, client classes.
    pub dhcp: DhcpGlobals,
}

/// The settings only a restart changes.
#[derive(Clone, Debug, PartialEq)]
pub struct Startup {
    /// The local domain, lowercase, without trailing dot, e.g. "lan".
    pub domain: String,
    /// Lease journal file.
    pub lease_file: PathBuf,
    pub durability: Durability,
    /// UDP port the DHCP server listens on (67) and the port clients listen on (68).
    pub dhcp_port: u16,
    pub client_port: u16,
    /// `arp_entries`: reply to a local client without an address by unicast after writing an
    /// ARP entry (needs CAP_NET_ADMIN, kept after the drop), or, when false, by broadcast
    /// (RFC 2131 §4.1 allows it; no capability kept for it).
    pub arp_entries: bool,
    /// The parts of `[dns]`, `[[tsig_key]]`, `[http]` and `[[dyndns_user]]` bound at start.
    pub dns: DnsStartup,
    /// Outbound RFC 2136 updates to DNS servers elsewhere (`[[ddns_zone]]`, `ddns_queue`).
    pub ddns: DdnsConfig,
    /// `user` and `group` to drop to after binding (`privdrop`).
    pub run_as: RunAs,
    /// `dhcp_script`: run on every lease change, as dnsmasq's `--dhcp-script` (`script`).
    pub dhcp_script: Option<DhcpScript>,
    /// `[lease_database]`: the shared PostgreSQL lease store instead of the journal.
    pub lease_database: Option<LeaseDatabase>,
}

impl Startup {
    /// The keys of the settings that differ in `new`. Every field is named below without `..`,
    /// so a field added to `Startup` (or `DnsStartup`, `DdnsConfig`) that this does not compare
    /// does not compile.
    pub fn changed(&self, new: &Startup) -> Vec<&'static str> {
        let Startup {
            domain,
            lease_file,
            durability,
            dhcp_port,
            client_port,
            arp_entries,
            dns,
            ddns,
            run_as,
            dhcp_script,
            lease_database,
        } = self;
        let DdnsConfig { zones, queue_file } = ddns;
        let mut out = Vec::new();
        let mut differ = |key, differs: bool| out.extend(differs.then_some(key));
        differ("domain", *domain != new.domain);
        differ("lease_file", *lease_file != new.lease_file);
        differ("durability", *durability != new.durability);
        differ("dhcp_port", *dhcp_port != new.dhcp_port);
        differ("client_port", *client_port != new.client_port);
        differ("arp_entries", *arp_entries != new.arp_entries);
        differ("dhcp_script", *dhcp_script != new.dhcp_script);
        differ("user", run_as.user != new.run_as.user);
        differ("group", run_as.group != new.run_as.group);
        differ("ddns_zone", *zones != new.ddns.zones);
        differ("ddns_queue", *queue_file != new.ddns.queue_file);
        differ("lease_database", *lease_database != new.lease_database);
        out.extend(dns.changed(&new.dns));
        out
    }
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parse and validate config text; `path` is only used in messages and the result.
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
        let de =
            toml::Deserializer::parse(text).map_err(|e| error::from_toml(text, path, None, &e))?;
        // serde_path_to_error: toml's own errors name only the last key; this says where it
        // is (`subnet[0].pool_start`).
        let raw: raw::Root = serde_path_to_error::deserialize(de)
            .map_err(|e| error::from_toml(text, path, Some(e.path()), e.inner()))?;
        load::root(raw, text, path)
    }

    /// For a reload: put back the `running` start-only settings, returning the keys of those
    /// this file changed (they need a restart). Everything else in `self` takes effect.
    pub fn keep_start(&mut self, running: &Startup) -> Vec<&'static str> {
        let changed = running.changed(&self.start);
        self.start = running.clone();
        changed
    }
}

#[cfg(test)]
mod tests;
