//! leasedns: a DHCPv4 server and an embedded DNS server sharing one lease table.
//!
//! # Layout
//! - `config`: the TOML file read into a validated `Config`, one file per section (`subnet`,
//!   `dns`, `http`, ...) beside the raw serde types (`raw`) and the `defaults` table; what only a
//!   restart changes is `Config::start` (`Startup`); errors name file, line, key path and value.
//! - `clock`: `UnixTime` and the `Clock` trait (time is passed in everywhere else).
//! - `lease`: lease types, the lease `table` (with `dense` storage and the per-subnet `tally`,
//!   home of `prefix_mask`, which `config` re-exports),
//!   the durable `journal` (open/replay, write, compaction, packed index, records, dnsmasq
//!   import) and the `store` seam the DHCP service commits through.
//! - `log`: what every CRC-line log shares (the lease journal, the DNS update journal, the DDNS
//!   queue): `frame`, the torn-tail `reader`, atomic `replace`, the `fs` seam with its power-cut
//!   fake, one `repair` policy, and `Durability` (how appends reach the disk; `config`
//!   re-exports it).
//! - `dhcp`: `wire` (bytes <-> requests/replies: `decode`, `reply`, `encode`), `engine` (pure
//!   RFC 2131, a file per concern: `discover`, `request`, `release`, `expiry`, `reply`),
//!   `alloc`, `options`, `dest` (where replies go), `ping` (the check before an offer),
//!   `relayport` (leases per relay agent port), `pipeline` (the sans-IO commit: store writes,
//!   group commit, rollback), `service` (the DHCP thread's blocking poll/recvmmsg loop that owns
//!   the engine), `control` (the control API's commands to that loop), `reserve` (reservations
//!   saved through the API, merged with the config's), `events` (the bus of durable lease and
//!   name changes the DHCP thread feeds: broadcast, a slow reader lags, the DHCP thread never
//!   waits).
//! - `keys`: TSIG keys, password hashes and the record types an update key may be granted
//!   (what `config` validates and `dns`/`http` use; imports nothing from the crate).
//! - `dns`: `names` (the index leases produce; `NameChange` is the one way it changes;
//!   `names::view` lists it for the API), `statics` and `hosts` (static records, the hosts
//!   file's parser and read), `listen`, `batch` and `wire` (the front door: sockets, caps,
//!   wire-format helpers), `fast` (local answers in wire form), `forward`
//!   (upstreams and the answer cache), `zone` and `server` (hickory handlers and policy),
//!   `update`, `tsig`, `dynamic`, `journal` (RFC 2136 and its records), `xfr` and `notify`
//!   (secondaries), `ratelog` (rate-limited log lines).
//! - `ddns`: outbound RFC 2136 updates to other DNS servers (DHCID, TSIG, a queue on disk).
//! - `http`: the HTTP listener; DynDNS2 `/nic/update`, Prometheus `/metrics` (`metrics_page`:
//!   reads the DHCP and DNS counters, renders them with the `metrics` encoder), the JSON control
//!   API `/api/v1/` (`api`; `ops`: reservations and reload; `api_names`: names, conflicts, pools;
//!   `events`: the SSE stream), the status page `/status` (`status`, its files compiled in).
//! - `ctl`: the CLI's side of the control API (`leasedns leases|status|release|reserve|reload`).
//! - `script`: the dnsmasq-compatible `dhcp_script`, told every lease change once, across
//!   restarts.
//! - `metrics`: the counters, histograms and per-subnet usage the services record into, and the
//!   text-format encoder; imports nothing of `dhcp` or `dns` (`http::metrics_page` reads those).
//! - `net`: socket building and ioctls, no protocol logic (re-exports `wake::Wake`).
//! - `privdrop`: the `user`/`group` keys; at start, bind the fixed ports, hand the lease files
//!   to that user, switch to it keeping only the capabilities still needed.
//! - `sdnotify`: systemd readiness, reload, stop and watchdog notifications.
//! - `wake`: `Wake`, the eventfd that wakes the DHCP thread's wait from other threads (the lease
//!   store, the control channel); imports nothing from the crate.
//! - `daemon`: wiring, signals, shutdown.
#![deny(unsafe_code)]

pub mod clock;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod dbtool;
pub mod ddns;
pub mod dhcp;
pub mod dns;
pub mod http;
pub mod keys;
pub mod lease;
pub(crate) mod log;
pub mod metrics;
#[allow(unsafe_code)]
pub mod net;
pub mod privdrop;
pub mod script;
pub mod sdnotify;
pub mod wake;

/// The tracing directives for `LEASEDNS_LOG` (None: unset): hickory's server crates stay at
/// warn unless the user names hickory, since they log one info line per query of some kinds
/// (those with the DO bit) and our own per-query lines are at debug.
pub fn log_directives(given: Option<&str>) -> String {
    const HICKORY_QUIET: &str = "hickory_server=warn,hickory_net=warn,hickory_proto=warn";
    match given.map(str::trim) {
        None | Some("") => format!("info,{HICKORY_QUIET}"),
        Some(given) if given.contains("hickory") => given.to_string(),
        Some(given) => format!("{given},{HICKORY_QUIET}"),
    }
}

/// Completes (changes to `true`) when the process is shutting down.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;

#[cfg(test)]
mod tests {
    #[test]
    fn hickory_stays_at_warn_unless_named() {
        let quiet = "hickory_server=warn,hickory_net=warn,hickory_proto=warn";
        assert_eq!(super::log_directives(None), format!("info,{quiet}"));
        assert_eq!(super::log_directives(Some("info")), format!("info,{quiet}"));
        assert_eq!(
            super::log_directives(Some("info,leasedns=debug")),
            format!("info,leasedns=debug,{quiet}")
        );
        assert_eq!(
            super::log_directives(Some("debug,hickory_server=info")),
            "debug,hickory_server=info"
        );
    }
}
