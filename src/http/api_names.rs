//! The control API's name and pool reads (`api` routes them; same auth as every read):
//!
//! - `GET /api/v1/names`: every name with its source (`dns::names::NameEntry`): reservations,
//!   `[[dns.record]]`, the hosts file, lease names (published or waiting), dynamic records.
//! - `GET /api/v1/conflicts`: leases waiting for a name another lease or a static name holds
//!   (`Names::conflicts()`), oldest first.
//! - `GET /api/v1/pools`: per subnet, the addresses leasedns may hand out (`size`), bound,
//!   declined and free, as the DHCP thread last published them for `/metrics`.
//!
//! Reads the shared name index under its read lock (held to copy, never across `.await`) and
//! the published usage; never asks the DHCP thread.

use serde::Serialize;
use serde_json::{Value, json};

use crate::dns::names::{Holder, SharedNames};
use crate::http::api::Reply;
use crate::http::metrics_page::Metrics;

pub fn names(names: &SharedNames) -> Reply {
    let list = names.read().listing();
    Reply::json(200, &list)
}

pub fn conflicts(names: &SharedNames) -> Reply {
    let list = names.read().conflicts();
    let out: Vec<Value> = list
        .iter()
        .map(|c| {
            let (kind, ip) = match &c.holder {
                Holder::Lease(ip) => ("lease", Some(std::net::IpAddr::V4(*ip))),
                Holder::Static(ip) => ("static", *ip),
            };
            json!({
                "name": c.name,
                "holder": { "kind": kind, "ip": ip },
                "waiting": c.loser,
                "since": c.since.0,
            })
        })
        .collect();
    Reply::json(200, &out)
}

/// One subnet's pool usage.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Pool {
    pub subnet: String,
    pub size: u64,
    pub bound: u64,
    pub declined: u64,
    pub free: u64,
}

pub fn pools(metrics: &Metrics) -> Reply {
    let Some(dhcp) = &metrics.dhcp else {
        return Reply::error(503, "the DHCP service is not running");
    };
    let out: Vec<Pool> = dhcp
        .detail
        .usage
        .snapshot()
        .into_iter()
        .map(|u| Pool {
            free: u.total.saturating_sub(u.assigned + u.declined),
            subnet: u.subnet,
            size: u.total,
            bound: u.assigned,
            declined: u.declined,
        })
        .collect();
    Reply::json(200, &out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::UnixTime;
    use crate::dhcp::service::Stats;
    use crate::dns::names::{NameChange, NameIndex, Names};
    use crate::lease::{ClientId, HwAddr, Lease, LeaseChange, LeaseState};
    use crate::metrics::SubnetUsage;

    fn upsert(ip: [u8; 4], mac: u8, host: &str) -> LeaseChange {
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, mac]);
        LeaseChange::Upsert(Lease {
            ip: ip.into(),
            client: ClientId::from_hw(&hw),
            hwaddr: hw,
            hostname: Some(Arc::from(host)),
            expires: UnixTime(9000),
            state: LeaseState::Bound,
        })
    }

    fn body(reply: &Reply) -> Value {
        assert_eq!(reply.status, 200, "{}", reply.body);
        serde_json::from_str(&reply.body).expect("JSON")
    }

    #[test]
    fn conflicts_name_the_holder_and_the_waiting_lease() {
        let names: SharedNames =
            NameIndex::new(Names::new("lan", &[("nas".into(), [10, 0, 0, 5].into())]));
        let changes = &[
            upsert([10, 0, 0, 100], 1, "pc"),
            upsert([10, 0, 0, 101], 2, "pc"),
            upsert([10, 0, 0, 102], 3, "nas"),
        ];
        let now = UnixTime(700);
        names.apply(NameChange::Leases { now, changes });
        let got = body(&conflicts(&names));
        assert_eq!(
            got,
            json!([
                {"name": "nas.lan", "holder": {"kind": "static", "ip": "10.0.0.5"},
                 "waiting": "10.0.0.102", "since": 700},
                {"name": "pc.lan", "holder": {"kind": "lease", "ip": "10.0.0.100"},
                 "waiting": "10.0.0.101", "since": 700},
            ])
        );
        let listed = body(&super::names(&names));
        assert_eq!(listed.as_array().map(Vec::len), Some(4));
        assert_eq!(listed[0]["source"], "reservation");
    }

    #[test]
    fn pools_count_free_addresses_per_subnet() {
        let stats = Arc::new(Stats::default());
        stats.detail.usage.set_rows(vec![SubnetUsage {
            subnet: "10.0.0.0/24".into(),
            total: 100,
            assigned: 0,
            declined: 0,
        }]);
        stats.detail.usage.update(&[(7, 2)]);
        let metrics = Metrics {
            dhcp: Some(stats),
            ..Metrics::default()
        };
        assert_eq!(
            body(&pools(&metrics)),
            json!([{"subnet": "10.0.0.0/24", "size": 100, "bound": 7, "declined": 2, "free": 91}])
        );
        assert_eq!(pools(&Metrics::default()).status, 503);
    }
}
