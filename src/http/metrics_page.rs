//! Prometheus `/metrics`: what the page reads (`Metrics`: the DHCP thread's `Stats`, the DNS
//! front door's `Counters`, the upstream latency histogram, the DDNS queue depth) and its
//! rendering with the `metrics` encoder. Lives in `http`, which depends on both services, so
//! that `metrics` (the primitives the services record into) depends on neither.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dhcp::service::Stats;
use crate::dns::listen::Counters;
use crate::metrics::{Encoder, Histogram, Kind, OPERATIONS, SubnetUsage};

/// What `/metrics` reads: each subsystem's shared counters (those that run).
#[derive(Clone, Default)]
pub struct Metrics {
    pub dhcp: Option<Arc<Stats>>,
    pub dns: Option<Arc<Counters>>,
    /// Upstream answer times, nanoseconds (when forwarding).
    pub upstream_latency: Option<Arc<Histogram>>,
    /// Jobs waiting in the DDNS queue (when DDNS is on).
    pub ddns_depth: Option<Arc<AtomicU64>>,
}

impl Metrics {
    /// The whole exposition, in the text format.
    pub fn render(&self) -> String {
        let mut e = Encoder::default();
        e.family("leasedns_build_info", Kind::Gauge, "leasedns version.");
        e.sample(
            "leasedns_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        if let Some(stats) = &self.dhcp {
            dhcp_packets(&mut e, stats);
            dhcp_addresses(&mut e, stats);
            journal(&mut e, stats);
        }
        if let Some(dns) = &self.dns {
            dns_counters(&mut e, dns);
        }
        if let Some(latency) = &self.upstream_latency {
            let name = "leasedns_dns_upstream_seconds";
            e.family(
                name,
                Kind::Histogram,
                "Time from a query sent upstream to its answer.",
            );
            latency.encode(&mut e, name);
        }
        if let Some(depth) = &self.ddns_depth {
            e.single(
                "leasedns_ddns_queue_depth",
                Kind::Gauge,
                "DDNS update jobs waiting to be sent to the primaries.",
                depth.load(Ordering::Relaxed),
            );
        }
        e.finish()
    }
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn dhcp_packets(e: &mut Encoder, s: &Stats) {
    let name = "leasedns_dhcp4_packets_received_total";
    e.family(
        name,
        Kind::Counter,
        "DHCPv4 packets received, by message type (parse-failed: not decodable).",
    );
    for (i, op) in OPERATIONS.iter().enumerate() {
        e.sample(name, &[("operation", op)], s.detail.received_by_type.get(i));
    }
    e.sample(name, &[("operation", "parse-failed")], load(&s.malformed));
    let name = "leasedns_dhcp4_packets_sent_total";
    e.family(name, Kind::Counter, "DHCPv4 replies sent, by message type.");
    for op in ["offer", "ack", "nak"] {
        let i = OPERATIONS.iter().position(|o| *o == op).unwrap_or(8);
        e.sample(name, &[("operation", op)], s.detail.sent_by_type.get(i));
    }
    let name = "leasedns_dhcp4_packets_dropped_total";
    e.family(name, Kind::Counter, "DHCPv4 packets dropped unanswered before the engine: malformed, or on an interface or from a relay not served.");
    e.sample(name, &[("reason", "malformed")], load(&s.malformed));
    e.sample(name, &[("reason", "ignored")], load(&s.ignored));
    e.single(
        "leasedns_dhcp4_send_errors_total",
        Kind::Counter,
        "DHCPv4 replies that could not be encoded or sent.",
        load(&s.send_errors),
    );
}

/// Which number of a `SubnetUsage` a family shows.
type UsageField = fn(&SubnetUsage) -> u64;

fn dhcp_addresses(e: &mut Encoder, s: &Stats) {
    let rows = s.detail.usage.snapshot();
    let families: [(&str, &str, UsageField); 3] = [
        (
            "leasedns_dhcp4_total_addresses",
            "Addresses leasedns may hand out in the subnet: pool, class ranges, reservations (Kea: total-addresses).",
            |r| r.total,
        ),
        (
            "leasedns_dhcp4_assigned_addresses",
            "Bound leases in the subnet (Kea: assigned-addresses).",
            |r| r.assigned,
        ),
        (
            "leasedns_dhcp4_declined_addresses",
            "Addresses set aside after a DECLINE or an answered ping (Kea: declined-addresses).",
            |r| r.declined,
        ),
    ];
    for (name, help, value) in families {
        e.family(name, Kind::Gauge, help);
        for r in &rows {
            e.sample(name, &[("subnet", &r.subnet)], value(r));
        }
    }
    e.single(
        "leasedns_dhcp4_allocations_failed_total",
        Kind::Counter,
        "DISCOVERs that found no free address.",
        load(&s.detail.alloc_failed),
    );
    e.single(
        "leasedns_dhcp4_reclaimed_leases_total",
        Kind::Counter,
        "Leases (and decline holds) ended because their time was up.",
        load(&s.detail.reclaimed),
    );
}

fn journal(e: &mut Encoder, s: &Stats) {
    e.single(
        "leasedns_lease_journal_commits_total",
        Kind::Counter,
        "Lease journal commits (one fdatasync each, failed ones included).",
        load(&s.commits),
    );
    e.single(
        "leasedns_lease_journal_write_errors_total",
        Kind::Counter,
        "Lease journal writes or fdatasyncs that failed.",
        load(&s.journal_errors),
    );
    let name = "leasedns_lease_journal_fdatasync_seconds";
    e.family(
        name,
        Kind::Histogram,
        "Time one lease journal fdatasync took.",
    );
    s.detail.fdatasync.encode(e, name);
    let name = "leasedns_lease_journal_batch_changes";
    e.family(
        name,
        Kind::Histogram,
        "Lease changes made durable by one journal commit.",
    );
    s.detail.batch_changes.encode(e, name);
}

fn dns_counters(e: &mut Encoder, c: &Counters) {
    let rows: [(&str, &str, &AtomicU64); 5] = [
        (
            "leasedns_dns_responses_total",
            "DNS responses sent (every kind, UDP and TCP).",
            &c.answered,
        ),
        (
            "leasedns_dns_responses_refused_total",
            "DNS responses with rcode REFUSED (also in responses_total).",
            &c.refused,
        ),
        (
            "leasedns_dns_cache_hits_total",
            "DNS responses answered from the forwarding cache (also in responses_total).",
            &c.cached,
        ),
        (
            "leasedns_dns_forwarded_total",
            "DNS queries sent upstream (cache misses).",
            &c.forwarded,
        ),
        (
            "leasedns_dns_dropped_total",
            "DNS datagrams, messages and connections dropped unanswered (malformed, over a cap).",
            &c.dropped,
        ),
    ];
    for (name, help, v) in rows {
        e.single(name, Kind::Counter, help, load(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SYNC_BOUNDS_NS;
    use dhcproto::v4::MessageType;

    /// The whole exposition parses with a real Prometheus text parser, every family once.
    #[test]
    fn the_whole_output_parses() {
        let stats = Stats::default();
        stats.detail.received_by_type.bump(MessageType::Discover);
        stats.detail.sent_by_type.bump(MessageType::Offer);
        stats.detail.fdatasync.observe(300_000);
        stats.detail.batch_changes.observe(3);
        stats.detail.usage.set_rows(vec![SubnetUsage {
            subnet: "10.0.0.0/24".into(),
            total: 100,
            assigned: 0,
            declined: 0,
        }]);
        stats.detail.usage.update(&[(4, 1)]);
        let m = Metrics {
            dhcp: Some(Arc::new(stats)),
            dns: Some(Arc::new(Counters::default())),
            upstream_latency: Some(Arc::new(Histogram::new(&SYNC_BOUNDS_NS, 1e9))),
            ddns_depth: Some(Arc::new(AtomicU64::new(3))),
        };
        let text = m.render();
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("parses");
        let value = |name: &str, label: Option<(&str, &str)>| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
                .map(|s| match &s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => *v,
                    other => panic!("{name}: {other:?}"),
                })
        };
        let subnet = Some(("subnet", "10.0.0.0/24"));
        assert_eq!(
            value("leasedns_dhcp4_assigned_addresses", subnet),
            Some(4.0)
        );
        assert_eq!(
            value("leasedns_dhcp4_declined_addresses", subnet),
            Some(1.0)
        );
        assert_eq!(value("leasedns_dhcp4_total_addresses", subnet), Some(100.0));
        let discover = Some(("operation", "discover"));
        assert_eq!(
            value("leasedns_dhcp4_packets_received_total", discover),
            Some(1.0)
        );
        assert_eq!(value("leasedns_ddns_queue_depth", None), Some(3.0));
        let hist = scrape
            .samples
            .iter()
            .find(|s| s.metric == "leasedns_lease_journal_fdatasync_seconds")
            .expect("histogram");
        match &hist.value {
            prometheus_parse::Value::Histogram(buckets) => {
                let le_500us = buckets
                    .iter()
                    .find(|b| b.less_than == 0.0005)
                    .expect("bucket");
                assert_eq!(le_500us.count, 1.0);
            }
            other => panic!("not a histogram: {other:?}"),
        }
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), types, "every family declared once");
    }
}
