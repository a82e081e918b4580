//! What the index holds, as the control API lists it (`GET /api/v1/names`): every static name
//! with its source (reservation, `[[dns.record]]`, hosts file), every lease name (published or
//! waiting for a name another holds) and every dynamic record. A read-only walk, O(n); no
//! locking here (the caller holds the read lock).

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::config::{DnsRecord, RecordData};
use crate::dns::names::Names;

/// Where a name comes from, strongest first.
pub const SOURCES: [&str; 5] = ["reservation", "config", "hosts", "lease", "dynamic"];

/// One record of one name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NameEntry {
    /// Fully qualified, lowercase, no trailing dot.
    pub name: String,
    /// "A", "AAAA", "CNAME", "MX", "TXT", "SRV", ...
    #[serde(rename = "type")]
    pub rtype: String,
    /// The record data in presentation form.
    pub value: String,
    /// "reservation", "config", "hosts", "lease" or "dynamic".
    pub source: &'static str,
    /// For a lease name: whether it is in DNS ("published") or waits ("waiting").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// For a lease name: when the lease ends (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

impl Names {
    /// Every name, sorted by name, then source (in `SOURCES` order), then value.
    pub fn listing(&self) -> Vec<NameEntry> {
        let mut out = Vec::new();
        let sources: [(&'static str, &[DnsRecord]); 3] = [
            ("reservation", &self.reservations),
            ("config", &self.config_records),
            ("hosts", &self.hosts_records),
        ];
        for (source, records) in sources {
            out.extend(records.iter().map(|r| {
                let (rtype, value) = record_text(&r.data);
                NameEntry {
                    name: r.name.clone(),
                    rtype: rtype.into(),
                    value,
                    source,
                    state: None,
                    expires: None,
                }
            }));
        }
        for claim in self.claims.iter() {
            let published = self.holder(&claim.label) == Some(claim.ip);
            out.push(lease_entry(
                self.fqdn_of(&claim.label),
                claim.ip,
                published,
                claim.expires,
            ));
        }
        for name in self.dynamic.names() {
            out.extend(self.dynamic.records(name).iter().map(|r| NameEntry {
                name: name.to_string(),
                rtype: r.rdata.record_type().to_string(),
                value: r.rdata.to_string(),
                source: "dynamic",
                state: None,
                expires: None,
            }));
        }
        let rank = |e: &NameEntry| SOURCES.iter().position(|s| *s == e.source);
        out.sort_by(|a, b| (&a.name, rank(a), &a.value).cmp(&(&b.name, rank(b), &b.value)));
        out
    }
}

fn lease_entry(name: String, ip: Ipv4Addr, published: bool, expires: u32) -> NameEntry {
    NameEntry {
        name,
        rtype: "A".into(),
        value: ip.to_string(),
        source: "lease",
        state: Some(if published { "published" } else { "waiting" }),
        expires: Some(u64::from(expires)),
    }
}

/// Type and presentation form of a static record.
fn record_text(data: &RecordData) -> (&'static str, String) {
    match data {
        RecordData::A(ip) => ("A", ip.to_string()),
        RecordData::Aaaa(ip) => ("AAAA", ip.to_string()),
        RecordData::Cname(target) => ("CNAME", target.clone()),
        RecordData::Mx {
            preference,
            exchange,
        } => ("MX", format!("{preference} {exchange}")),
        RecordData::Txt(strings) => {
            let quoted: Vec<String> = strings.iter().map(|s| format!("{s:?}")).collect();
            ("TXT", quoted.join(" "))
        }
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => ("SRV", format!("{priority} {weight} {port} {target}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::clock::UnixTime;
    use crate::config::{DnsRecord, RecordData};
    use crate::dns::names::Names;
    use crate::lease::{ClientId, HwAddr, Lease, LeaseChange, LeaseState};

    fn lease(ip: [u8; 4], mac: u8, host: &str) -> LeaseChange {
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, mac]);
        LeaseChange::Upsert(Lease {
            ip: ip.into(),
            client: ClientId::from_hw(&hw),
            hwaddr: hw,
            hostname: Some(Arc::from(host)),
            expires: UnixTime(5000),
            state: LeaseState::Bound,
        })
    }

    #[test]
    fn every_source_is_listed_with_lease_names_published_or_waiting() {
        let mut names = Names::new("lan", &[("nas".into(), [10, 0, 0, 5].into())]);
        names.set_config_records(vec![DnsRecord {
            name: "www.lan".into(),
            data: RecordData::Cname("nas.lan".into()),
        }]);
        names.apply(&[
            lease([10, 0, 0, 100], 1, "pc"),
            lease([10, 0, 0, 101], 2, "pc"),
            lease([10, 0, 0, 102], 3, "nas"),
        ]);
        let got: Vec<String> = names
            .listing()
            .iter()
            .map(|e| {
                let state = e.state.unwrap_or("-");
                format!("{} {} {} {} {state}", e.name, e.rtype, e.value, e.source)
            })
            .collect();
        assert_eq!(
            got,
            [
                "nas.lan A 10.0.0.5 reservation -",
                "nas.lan A 10.0.0.102 lease waiting",
                "pc.lan A 10.0.0.100 lease published",
                "pc.lan A 10.0.0.101 lease waiting",
                "www.lan CNAME nas.lan config -",
            ]
        );
        let json = serde_json::to_value(names.listing()).expect("json");
        assert_eq!(json[2]["expires"], 5000);
        assert_eq!(json[0].get("expires"), None);
    }
}
