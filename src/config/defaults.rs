//! Every default of the config file, in one table: the checks of this module take their
//! defaults from here, and a test holds the README's config reference to `table()`.

/// Top level.
pub const DHCP_PORT: u16 = 67;
/// `arp_entries`: write an ARP entry to unicast a reply to a client without an address.
pub const ARP_ENTRIES: bool = true;
pub const CLIENT_PORT: u16 = 68;
pub const DURABILITY: &str = "fsync";
/// `batch_max_delay_ms`, for `durability = "batch"`.
pub const BATCH_MAX_DELAY_MS: u32 = 10;
pub const RENEW_WRITE_FRACTION: f64 = 0.5;
pub const OFFER_HOLD: u32 = 60;
pub const DECLINE_HOLD: u32 = 600;
pub const PING_CHECK: bool = false;
pub const PING_TIMEOUT_MS: u64 = 300;
pub const EXHAUSTED_WARN_INTERVAL: u32 = 60;
pub const RELAY_MAX_HOPS: u8 = 8;
pub const MAX_CLIENT_IDS_PER_MAC: u32 = 4;
/// `max_leases_per_relay_port`: no limit.
pub const MAX_LEASES_PER_RELAY_PORT: u32 = 0;
/// `dhcp_script_timeout`, seconds.
pub const DHCP_SCRIPT_TIMEOUT: u64 = 10;
pub const DHCP_SCRIPT_ON_RENEWAL: bool = false;
pub const INIT_REBOOT_UNKNOWN: &str = "silent";
/// `ddns_queue` is the lease file's name with this added.
pub const DDNS_QUEUE_SUFFIX: &str = ".ddns";

/// `[lease_database]`.
pub const DB_CONNECT_TIMEOUT_MS: u64 = 3000;
pub const DB_STATEMENT_TIMEOUT_MS: u64 = 5000;

/// `[dns]`.
pub const DNS_PORT: u16 = 53;
pub const DNS_TTL: u32 = 300;
pub const UPSTREAM_TIMEOUT_MS: u64 = 2000;
pub const CACHE_SIZE: usize = 10_000;
pub const EXPAND_BARE_NAMES: bool = false;
/// Names no DHCP client may publish by default: proxy auto-discovery (`wpad`, which browsers
/// and Windows look up to find a proxy: dnsmasq blocks it by default), ISATAP router discovery
/// (`isatap`, on Windows' DNS global query block list with `wpad`), and `localhost`.
pub const BLOCKED_NAMES: [&str; 3] = ["wpad", "isatap", "localhost"];
/// `dns.update_journal` is the lease file's name with this added.
pub const UPDATE_JOURNAL_SUFFIX: &str = ".dns";

/// `[[subnet]]`.
pub const LEASE_TIME: u32 = 3600;
pub const AUTHORITATIVE: bool = true;
pub const RAPID_COMMIT: bool = false;

/// `[http]`.
pub const HTTP_PORT: u16 = 8053;
pub const HTTP_RATE_LIMIT: u32 = 10;
pub const HTTP_MAX_CONNECTIONS: u32 = 64;
pub const HTTP_TTL: u32 = 60;
pub const HTTP_METRICS: bool = false;
pub const HTTP_API: bool = false;

/// `[[tsig_key]]` and `[[ddns_zone]]`.
pub const TSIG_FUDGE: u16 = 300;
pub const DDNS_TTL: u32 = 300;

/// Each key with a default, as the README's config reference names it (`dns.ttl`,
/// `subnet.lease_time`) and writes the default (without backticks).
pub fn table() -> Vec<(&'static str, String)> {
    let q = |s: &str| format!("\"{s}\"");
    vec![
        ("durability", q(DURABILITY)),
        ("batch_max_delay_ms", BATCH_MAX_DELAY_MS.to_string()),
        ("renew_write_fraction", RENEW_WRITE_FRACTION.to_string()),
        ("relay_max_hops", RELAY_MAX_HOPS.to_string()),
        ("max_client_ids_per_mac", MAX_CLIENT_IDS_PER_MAC.to_string()),
        (
            "max_leases_per_relay_port",
            MAX_LEASES_PER_RELAY_PORT.to_string(),
        ),
        ("dhcp_script_timeout", DHCP_SCRIPT_TIMEOUT.to_string()),
        ("dhcp_script_on_renewal", DHCP_SCRIPT_ON_RENEWAL.to_string()),
        ("init_reboot_unknown", q(INIT_REBOOT_UNKNOWN)),
        ("dhcp_port", DHCP_PORT.to_string()),
        ("arp_entries", ARP_ENTRIES.to_string()),
        ("client_port", CLIENT_PORT.to_string()),
        ("offer_hold", OFFER_HOLD.to_string()),
        ("decline_hold", DECLINE_HOLD.to_string()),
        ("ping_check", PING_CHECK.to_string()),
        ("ping_timeout_ms", PING_TIMEOUT_MS.to_string()),
        (
            "exhausted_warn_interval",
            EXHAUSTED_WARN_INTERVAL.to_string(),
        ),
        ("ddns_queue", format!("<lease_file>{DDNS_QUEUE_SUFFIX}")),
        (
            "lease_database.connect_timeout_ms",
            DB_CONNECT_TIMEOUT_MS.to_string(),
        ),
        (
            "lease_database.statement_timeout_ms",
            DB_STATEMENT_TIMEOUT_MS.to_string(),
        ),
        ("dns.ttl", DNS_TTL.to_string()),
        ("dns.upstream_timeout_ms", UPSTREAM_TIMEOUT_MS.to_string()),
        ("dns.cache_size", CACHE_SIZE.to_string()),
        ("dns.expand_bare_names", EXPAND_BARE_NAMES.to_string()),
        ("dns.blocked_names", format!("{BLOCKED_NAMES:?}")),
        (
            "dns.update_journal",
            format!("<lease_file>{UPDATE_JOURNAL_SUFFIX}"),
        ),
        ("subnet.lease_time", LEASE_TIME.to_string()),
        ("subnet.authoritative", AUTHORITATIVE.to_string()),
        ("subnet.rapid_commit", RAPID_COMMIT.to_string()),
        ("http.rate_limit", HTTP_RATE_LIMIT.to_string()),
        ("http.max_connections", HTTP_MAX_CONNECTIONS.to_string()),
        ("http.ttl", HTTP_TTL.to_string()),
        ("http.metrics", HTTP_METRICS.to_string()),
        ("http.api", HTTP_API.to_string()),
        ("tsig_key.fudge", TSIG_FUDGE.to_string()),
        ("ddns_zone.ttl", DDNS_TTL.to_string()),
    ]
}

/// `lease_file` with `suffix` added to its name (`/var/lib/leasedns/leases` + `.dns`).
pub fn beside(lease_file: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut p = lease_file.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}
