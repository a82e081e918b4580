//! The static records of the name index: what a config (named reservations, `[[dns.record]]`)
//! and its hosts file give (`StaticRecords`, swapped whole on reload), and the merged lookup
//! tables built from them (`Statics`). Pure: no files (see `dns::hosts`), no clock.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use tracing::info;

use crate::config::{Config, DnsRecord, RecordData};

/// The static names of one config with its hosts file already read: what `NameChange::Statics`
/// installs in one step (at start and on reload; no hosts file gives no host records).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StaticRecords {
    /// Named reservations: (label, address).
    pub reservations: Vec<(String, Ipv4Addr)>,
    /// `[[dns.record]]` entries.
    pub records: Vec<DnsRecord>,
    /// The hosts file's records (empty without `hosts_file`).
    pub hosts: Vec<DnsRecord>,
    /// Labels no lease may publish: `[dns] blocked_names`.
    pub blocked: Vec<String>,
}

impl StaticRecords {
    /// The static names of `cfg`, with `hosts` read from its hosts file (if it has one).
    pub fn of(cfg: &Config, hosts: Vec<DnsRecord>) -> StaticRecords {
        StaticRecords {
            reservations: cfg
                .reservations
                .iter()
                .filter_map(|r| r.name.clone().map(|n| (n, r.ip)))
                .collect(),
            records: cfg.dns.records.clone(),
            hosts,
            blocked: cfg.dns.blocked_names.clone(),
        }
    }
}

/// Named reservations as A records of `domain`: invalid labels are skipped and a name given to
/// two addresses keeps the first (both logged).
pub(super) fn reservation_records(domain: &str, pairs: &[(String, Ipv4Addr)]) -> Vec<DnsRecord> {
    let mut out: Vec<DnsRecord> = Vec::new();
    for (label, ip) in pairs {
        if !crate::dns::names::is_valid_label(label) {
            info!(label = %label, %ip, "static name is not a valid DNS label; not published");
            continue;
        }
        let name = format!("{}.{}", label.to_ascii_lowercase(), domain);
        if let Some(other) = out.iter().find(|r| r.name == name) {
            info!(fqdn = %name, %ip, other = ?other.data, "static name already given to another address; first wins");
            continue;
        }
        out.push(DnsRecord {
            name,
            data: RecordData::A(*ip),
        });
    }
    out
}

/// The static records, merged from their three sources in precedence order.
#[derive(Default)]
pub(super) struct Statics {
    /// Owner name (lowercase, no trailing dot) to its records, in source order.
    pub(super) by_name: HashMap<String, Vec<RecordData>>,
    /// PTR target of an address: the first static name given an A or AAAA for it.
    pub(super) by_ip: HashMap<IpAddr, String>,
    /// The label part of every static name `label.<domain>`: a lease label is checked here
    /// without building its full name.
    pub(super) labels: HashSet<String>,
    /// Every proper ancestor of a static name (`_tcp.lan` for `_smb._tcp.lan`): names that
    /// exist without records of their own (empty non-terminals, RFC 8020).
    pub(super) interior: HashSet<String>,
}

impl Statics {
    pub(super) fn build(
        domain: &str,
        reservations: &[DnsRecord],
        config: &[DnsRecord],
        hosts: &[DnsRecord],
    ) -> Statics {
        let mut statics = Statics::default();
        for r in reservations.iter().chain(config).chain(hosts) {
            statics.add(r);
        }
        let label = |name: &String| {
            name.strip_suffix(domain)?
                .strip_suffix('.')
                .map(String::from)
        };
        statics.labels = statics.by_name.keys().filter_map(label).collect();
        statics.interior = statics
            .by_name
            .keys()
            .flat_map(|name| {
                name.match_indices('.')
                    .map(move |(i, _)| name[i + 1..].to_string())
            })
            .collect();
        statics
    }

    fn add(&mut self, r: &DnsRecord) {
        let list = self.by_name.entry(r.name.clone()).or_default();
        let has_cname = list.iter().any(|d| matches!(d, RecordData::Cname(_)));
        let is_cname = matches!(r.data, RecordData::Cname(_));
        if (has_cname || (is_cname && !list.is_empty())) && list.first() != Some(&r.data) {
            info!(name = %r.name, "a CNAME cannot share its name with other records; ignored");
            return;
        }
        if list.contains(&r.data) {
            return;
        }
        // A host name given to two addresses keeps the first (as reservations always did).
        let ip = match r.data {
            RecordData::A(ip) => Some(IpAddr::V4(ip)),
            RecordData::Aaaa(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = ip {
            self.by_ip.entry(ip).or_insert_with(|| r.name.clone());
        }
        list.push(r.data.clone());
    }

    /// The first address (A or AAAA) of a static name.
    pub(super) fn first_addr(&self, fqdn: &str) -> Option<IpAddr> {
        self.by_name.get(fqdn)?.iter().find_map(|d| match d {
            RecordData::A(ip) => Some(IpAddr::V4(*ip)),
            RecordData::Aaaa(ip) => Some(IpAddr::V6(*ip)),
            _ => None,
        })
    }

    pub(super) fn first_a(&self, fqdn: &str) -> Option<Ipv4Addr> {
        self.by_name.get(fqdn)?.iter().find_map(|d| match d {
            RecordData::A(ip) => Some(*ip),
            _ => None,
        })
    }
}
