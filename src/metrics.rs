//! Prometheus metrics primitives (text exposition format 0.0.4): the lock-free counters and
//! histograms the DHCP thread and the DNS forwarder record into, the per-subnet usage the DHCP
//! thread publishes after each batch, and the text-format encoder. No sockets, no clock, and
//! nothing of `dhcp` or `dns`: the page that reads their counters and renders `/metrics` with
//! this encoder is `http::metrics_page` (so the services depend on this module, not it on them).
//!
//! Hand-written rather than `prometheus-client`: the daemon already keeps its counters as plain
//! atomics owned by each subsystem (`dhcp::service::Stats`, `dns::listen::Counters`); a registry
//! crate would want its own metric objects, so every counter would exist twice or every
//! subsystem would depend on it. The format is small (HELP, TYPE, samples, label escaping) and
//! `http::metrics_page`'s tests check the whole page with a real parser (`prometheus-parse`).
//!
//! Names follow Kea's: counters as the Stork exporter spells them (`kea_dhcp4_..._total` becomes
//! `leasedns_dhcp4_..._total`, same `operation` label), gauges after Kea's own statistics
//! (`assigned-addresses` becomes `leasedns_dhcp4_assigned_addresses{subnet}`): Stork's gauge
//! names end in `_total`, which `promtool check metrics` rejects for a gauge.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use dhcproto::v4::MessageType;

use crate::config::Config;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// DHCP message types as metric labels (Kea's operation names), in `type_index` order.
pub const OPERATIONS: [&str; 9] = [
    "discover", "offer", "request", "decline", "ack", "nak", "release", "inform", "unknown",
];

/// The label index of a DHCP message type (`OPERATIONS`); every other type is "unknown".
pub fn type_index(t: MessageType) -> usize {
    match t {
        MessageType::Discover => 0,
        MessageType::Offer => 1,
        MessageType::Request => 2,
        MessageType::Decline => 3,
        MessageType::Ack => 4,
        MessageType::Nak => 5,
        MessageType::Release => 6,
        MessageType::Inform => 7,
        _ => 8,
    }
}

/// One counter per DHCP message type: a relaxed add per packet, nothing else.
#[derive(Debug, Default)]
pub struct PerType([AtomicU64; 9]);

impl PerType {
    pub fn bump(&self, t: MessageType) {
        if let Some(c) = self.0.get(type_index(t)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, i: usize) -> u64 {
        self.0.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// A histogram of integer observations (nanoseconds, counts) with fixed upper bounds; rendered
/// divided by `unit` (1e9 turns nanoseconds into seconds; a division, so that 1,000 ns prints
/// as 0.000001 and not as 1000 x 1e-9's 0.0000010000000000000002). Lock-free: `observe` is one
/// bucket add, one sum add and one count add.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// Per bucket (not cumulative), the last one for values above every bound.
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
    unit: f64,
}

/// fdatasync latency buckets: 50 us to 2.5 s, in nanoseconds.
pub const SYNC_BOUNDS_NS: [u64; 14] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
    2_500_000_000,
];
/// Lease changes per journal commit: 1 to 1024.
pub const BATCH_BOUNDS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

impl Histogram {
    pub fn new(bounds: &'static [u64], unit: f64) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
            unit,
        }
    }

    pub fn observe(&self, value: u64) {
        let i = self.bounds.partition_point(|b| *b < value);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Their sum, in the observed unit.
    pub fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    /// Every `_bucket`, `_sum` and `_count` sample.
    pub fn encode(&self, e: &mut Encoder, name: &str) {
        let mut cumulative = 0;
        let bucket = format!("{name}_bucket");
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = match self.bounds.get(i) {
                Some(bound) => float(*bound as f64 / self.unit),
                None => "+Inf".to_string(),
            };
            e.sample(&bucket, &[("le", &le)], cumulative);
        }
        let sum = self.sum.load(Ordering::Relaxed) as f64 / self.unit;
        e.sample(&format!("{name}_sum"), &[], float(sum));
        // The count is the +Inf bucket (read once), so the two always agree.
        e.sample(&format!("{name}_count"), &[], cumulative);
    }
}

/// What the DHCP thread counts for `/metrics` beyond `Stats`' plain counters (a field of it).
#[derive(Debug)]
pub struct DhcpMetrics {
    pub received_by_type: PerType,
    pub sent_by_type: PerType,
    /// DISCOVERs that found no free address.
    pub alloc_failed: AtomicU64,
    /// Leases ended because their time was up.
    pub reclaimed: AtomicU64,
    /// fdatasync latency, nanoseconds.
    pub fdatasync: Histogram,
    /// Lease changes per commit.
    pub batch_changes: Histogram,
    pub usage: Usage,
}

impl Default for DhcpMetrics {
    fn default() -> Self {
        DhcpMetrics {
            received_by_type: PerType::default(),
            sent_by_type: PerType::default(),
            alloc_failed: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            fdatasync: Histogram::new(&SYNC_BOUNDS_NS, 1e9),
            batch_changes: Histogram::new(&BATCH_BOUNDS, 1.0),
            usage: Usage::default(),
        }
    }
}

/// One subnet's address usage, as the DHCP thread last published it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubnetUsage {
    /// "10.0.0.0/24".
    pub subnet: String,
    /// Addresses leasedns may hand out there: the pool, class ranges and reservations.
    pub total: u64,
    /// Bound leases.
    pub assigned: u64,
    /// Addresses set aside after a DECLINE or a ping that was answered.
    pub declined: u64,
}

/// One row per configured subnet with its total; assigned and declined start at zero.
pub fn subnet_rows(cfg: &Config) -> Vec<SubnetUsage> {
    cfg.subnets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut ranges = vec![(u32::from(s.pool_start), u32::from(s.pool_end))];
            for c in &cfg.dhcp.classes {
                if let (Some(ci), Some((a, b))) = (c.subnet, c.pool)
                    && ci == i
                {
                    ranges.push((u32::from(a), u32::from(b)));
                }
            }
            let mask = crate::config::prefix_mask(s.prefix_len);
            let net = u32::from(s.network) & mask;
            let reserved = cfg
                .reservations
                .iter()
                .map(|r| u32::from(r.ip))
                .filter(|ip| ip & mask == net);
            SubnetUsage {
                subnet: format!("{}/{}", s.network, s.prefix_len),
                total: union_size(ranges, reserved),
                assigned: 0,
                declined: 0,
            }
        })
        .collect()
}

/// How many addresses the inclusive `ranges` and the single `extra` addresses hold together.
fn union_size(mut ranges: Vec<(u32, u32)>, extra: impl Iterator<Item = u32>) -> u64 {
    ranges.retain(|(a, b)| a <= b);
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if u64::from(a) <= u64::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let mut total: u64 = merged.iter().map(|(a, b)| u64::from(b - a) + 1).sum();
    let mut singles: Vec<u32> = extra
        .filter(|ip| !merged.iter().any(|(a, b)| a <= ip && ip <= b))
        .collect();
    singles.sort_unstable();
    singles.dedup();
    total += singles.len() as u64;
    total
}

/// Per-subnet usage shared between the DHCP thread (writer, after a batch that changed it)
/// and the HTTP task (reader, per scrape). std Mutex: held only to copy a few numbers per
/// subnet, never across `.await`, never per packet; the subnet list changes on reload, so a
/// fixed array of atomics would not do.
#[derive(Debug, Default)]
pub struct Usage(Mutex<Vec<SubnetUsage>>);

impl Usage {
    /// Replace the rows (a new engine: start or reload).
    pub fn set_rows(&self, rows: Vec<SubnetUsage>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = rows;
    }

    /// Copy `(assigned, declined)` per subnet, in config order.
    pub fn update(&self, counts: &[(u64, u64)]) {
        let mut rows = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (row, (assigned, declined)) in rows.iter_mut().zip(counts) {
            row.assigned = *assigned;
            row.declined = *declined;
        }
    }

    pub fn snapshot(&self) -> Vec<SubnetUsage> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Prometheus metric types.
#[derive(Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Writes the text format: `family` then its samples.
#[derive(Default)]
pub struct Encoder {
    out: String,
}

impl Encoder {
    /// `# HELP` and `# TYPE` lines of a metric family.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample line; label values are escaped (backslash, double quote, newline).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A float as the text format writes it (`+Inf`, `-Inf`, `NaN`; otherwise Rust's shortest
/// round-trip form, which Go's ParseFloat reads).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut e = Encoder::default();
        e.family("x_total", Kind::Counter, "a \\ b\nc");
        e.sample("x_total", &[("a", "q\"uo\\te\nnl"), ("b", "2")], 7);
        assert_eq!(
            e.finish(),
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\nx_total{a=\"q\\\"uo\\\\te\\nnl\",b=\"2\"} 7\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_scaled() {
        static BOUNDS: [u64; 3] = [1_000, 10_000, 100_000];
        let h = Histogram::new(&BOUNDS, 1e9);
        for v in [500, 1_000, 5_000, 1_000_000] {
            h.observe(v);
        }
        let mut e = Encoder::default();
        h.encode(&mut e, "s");
        let text = e.finish();
        let want = "s_bucket{le=\"0.000001\"} 2\ns_bucket{le=\"0.00001\"} 3\n\
                    s_bucket{le=\"0.0001\"} 3\ns_bucket{le=\"+Inf\"} 4\n\
                    s_sum 0.0010065\ns_count 4\n";
        assert_eq!(text, want);
    }

    #[test]
    fn floats_in_the_text_format() {
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(0.25), "0.25");
        assert_eq!(float(2.0), "2");
    }

    #[test]
    fn subnet_total_counts_pool_class_ranges_and_reservations_once() {
        // Pool .10-.19, a class range .15-.24 overlapping it, a reservation inside the pool and
        // two outside (one twice).
        let ranges = vec![(10, 19), (15, 24)];
        let extra = [12u32, 30, 31, 31].into_iter();
        assert_eq!(union_size(ranges, extra), 15 + 2);
        assert_eq!(
            union_size(vec![(5, 4)], std::iter::empty()),
            0,
            "empty range"
        );
        assert_eq!(union_size(vec![(0, u32::MAX)], [7].into_iter()), 1 << 32);
    }

    #[test]
    fn per_type_counts_and_unknown_types() {
        let p = PerType::default();
        p.bump(MessageType::Discover);
        p.bump(MessageType::Discover);
        p.bump(MessageType::Ack);
        p.bump(MessageType::LeaseQuery);
        assert_eq!(p.get(type_index(MessageType::Discover)), 2);
        assert_eq!(p.get(4), 1);
        assert_eq!(p.get(8), 1);
        assert_eq!(OPERATIONS[type_index(MessageType::Nak)], "nak");
    }
}
