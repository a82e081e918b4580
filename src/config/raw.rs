//! Raw serde types: exactly what the file says, with spans for the semantic checks.

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    pub domain: Spanned<String>,
    #[serde(default)]
    pub interfaces: Vec<String>,
    pub lease_file: Spanned<String>,
    #[serde(default)]
    pub durability: Option<Spanned<String>>,
    pub batch_max_delay_ms: Option<Spanned<u32>>,
    pub renew_write_fraction: Option<Spanned<f64>>,
    pub dhcp_port: Option<u16>,
    pub arp_entries: Option<bool>,
    pub client_port: Option<u16>,
    pub offer_hold: Option<u32>,
    pub decline_hold: Option<u32>,
    #[serde(default)]
    pub dns: Option<Dns>,
    #[serde(default)]
    pub subnet: Vec<Spanned<Subnet>>,
    #[serde(default)]
    pub host: Vec<Spanned<Host>>,
    pub ddns_queue: Option<Spanned<String>>,
    #[serde(default)]
    pub ddns_zone: Vec<Spanned<DdnsZone>>,
    pub ping_check: Option<bool>,
    pub ping_timeout_ms: Option<Spanned<u64>>,
    pub exhausted_warn_interval: Option<u32>,
    pub init_reboot_unknown: Option<Spanned<String>>,
    pub relay_max_hops: Option<Spanned<u8>>,
    pub max_client_ids_per_mac: Option<u32>,
    pub max_leases_per_relay_port: Option<u32>,
    #[serde(default)]
    pub class: Vec<Spanned<Class>>,
    #[serde(default)]
    pub tsig_key: Vec<Spanned<TsigKey>>,
    #[serde(default)]
    pub http: Option<Http>,
    #[serde(default)]
    pub dyndns_user: Vec<Spanned<DynDnsUser>>,
    pub user: Option<Spanned<String>>,
    pub dhcp_script: Option<Spanned<String>>,
    pub dhcp_script_timeout: Option<Spanned<u64>>,
    pub dhcp_script_on_renewal: Option<bool>,
    pub group: Option<Spanned<String>>,
    pub lease_database: Option<LeaseDatabase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseDatabase {
    pub url: Spanned<String>,
    pub password_file: Option<Spanned<String>>,
    pub connect_timeout_ms: Option<Spanned<u64>>,
    pub statement_timeout_ms: Option<Spanned<u64>>,
    pub tls_ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsigKey {
    pub name: Spanned<String>,
    pub algorithm: Spanned<String>,
    pub secret: Spanned<String>,
    pub fudge: Option<u16>,
    #[serde(default)]
    pub allow: Vec<Spanned<Allow>>,
    #[serde(default)]
    pub may_override: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    pub name: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub subdomains: bool,
    pub types: Spanned<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Http {
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
    pub rate_limit: Option<Spanned<u32>>,
    pub ttl: Option<u32>,
    pub max_connections: Option<Spanned<u32>>,
    pub metrics: Option<Spanned<bool>>,
    #[serde(default)]
    pub metrics_from: Vec<Spanned<String>>,
    pub api: Option<Spanned<bool>>,
    pub api_token_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynDnsUser {
    pub name: Spanned<String>,
    pub password_hash: Spanned<String>,
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    #[serde(default)]
    pub may_override: bool,
}

/// `[[subnet.option]]`, `[[host.option]]`, `[[class.option]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Opt {
    pub code: Spanned<i64>,
    #[serde(rename = "type")]
    pub otype: Spanned<String>,
    pub value: Spanned<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub network: Spanned<String>,
    pub gateway: Spanned<std::net::Ipv4Addr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Class {
    pub name: Spanned<String>,
    pub vendor_class: Option<Spanned<String>>,
    pub user_class: Option<Spanned<String>>,
    pub mac_prefix: Option<Spanned<String>>,
    pub subnet: Option<Spanned<String>>,
    pub pool_start: Option<Spanned<std::net::Ipv4Addr>>,
    pub pool_end: Option<Spanned<std::net::Ipv4Addr>>,
    pub lease_time: Option<Spanned<u32>>,
    pub renew_time: Option<Spanned<u32>>,
    pub rebind_time: Option<Spanned<u32>>,
    pub next_server: Option<Spanned<std::net::Ipv4Addr>>,
    pub server_name: Option<Spanned<String>>,
    pub boot_file: Option<Spanned<String>>,
    #[serde(default)]
    pub option: Vec<Spanned<Opt>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DdnsZone {
    pub zone: Spanned<String>,
    pub primary: Spanned<String>,
    pub key_name: Option<Spanned<String>>,
    pub key_algorithm: Option<Spanned<String>>,
    pub key_secret: Option<Spanned<String>>,
    pub ttl: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    pub ttl: Option<u32>,
    #[serde(default)]
    pub upstreams: Vec<Spanned<String>>,
    pub upstream_timeout_ms: Option<Spanned<u64>>,
    pub cache_size: Option<usize>,
    pub recursion_from: Option<Vec<Spanned<String>>>,
    pub hosts_file: Option<Spanned<String>>,
    pub expand_bare_names: Option<bool>,
    pub blocked_names: Option<Vec<Spanned<String>>>,
    pub update_journal: Option<Spanned<String>>,
    #[serde(default)]
    pub transfer_to: Vec<Spanned<String>>,
    #[serde(default)]
    pub transfer_keys: Vec<Spanned<String>>,
    #[serde(default)]
    pub record: Vec<Spanned<Record>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub rtype: Spanned<String>,
    pub value: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    pub network: Spanned<String>,
    pub pool_start: Spanned<std::net::Ipv4Addr>,
    pub pool_end: Spanned<std::net::Ipv4Addr>,
    pub router: Option<Spanned<std::net::Ipv4Addr>>,
    pub dns_servers: Option<Vec<std::net::Ipv4Addr>>,
    pub lease_time: Option<Spanned<u32>>,
    pub interface: Option<String>,
    pub authoritative: Option<bool>,
    pub rapid_commit: Option<bool>,
    #[serde(default)]
    pub domain_search: Vec<Spanned<String>>,
    #[serde(default)]
    pub ntp_servers: Vec<std::net::Ipv4Addr>,
    #[serde(default)]
    pub relays: Vec<std::net::Ipv4Addr>,
    pub mtu: Option<Spanned<u16>>,
    pub renew_time: Option<Spanned<u32>>,
    pub rebind_time: Option<Spanned<u32>>,
    pub next_server: Option<Spanned<std::net::Ipv4Addr>>,
    pub server_name: Option<Spanned<String>>,
    pub boot_file: Option<Spanned<String>>,
    #[serde(default)]
    pub routes: Vec<Spanned<Route>>,
    #[serde(default)]
    pub option: Vec<Spanned<Opt>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub mac: Option<Spanned<String>>,
    pub client_id: Option<Spanned<String>>,
    pub ip: Spanned<std::net::Ipv4Addr>,
    pub name: Option<Spanned<String>>,
    pub lease_time: Option<Spanned<u32>>,
    pub renew_time: Option<Spanned<u32>>,
    pub rebind_time: Option<Spanned<u32>>,
    pub next_server: Option<Spanned<std::net::Ipv4Addr>>,
    pub server_name: Option<Spanned<String>>,
    pub boot_file: Option<Spanned<String>>,
    #[serde(default)]
    pub option: Vec<Spanned<Opt>>,
}

/// The grant keys of a subnet, class or host, borrowed for `validate::grant`.
pub struct GrantKeys<'a> {
    pub renew_time: &'a Option<Spanned<u32>>,
    pub rebind_time: &'a Option<Spanned<u32>>,
    pub next_server: &'a Option<Spanned<std::net::Ipv4Addr>>,
    pub server_name: &'a Option<Spanned<String>>,
    pub boot_file: &'a Option<Spanned<String>>,
    pub lease_time: Option<u32>,
}

macro_rules! grant_keys {
    ($t:ty) => {
        impl $t {
            pub fn grant_keys(&self, lease_time: Option<u32>) -> GrantKeys<'_> {
                GrantKeys {
                    renew_time: &self.renew_time,
                    rebind_time: &self.rebind_time,
                    next_server: &self.next_server,
                    server_name: &self.server_name,
                    boot_file: &self.boot_file,
                    lease_time,
                }
            }
        }
    };
}
grant_keys!(Subnet);
grant_keys!(Class);
grant_keys!(Host);
