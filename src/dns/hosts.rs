//! The hosts file: a pure parser (`parse`) and the read that runs off the async workers
//! (`read`, blocking; `load`, for async callers). Nothing here touches the name index: the
//! records go into a `StaticRecords` that the index takes whole (`NameChange::Statics`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use tracing::{debug, info};

use crate::config::{Config, DnsRecord, RecordData};
use crate::dns::statics::StaticRecords;

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("hosts file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The blocking task that read the file did not finish (the runtime is stopping).
    #[error("hosts file {path}: the read did not finish")]
    Stopped { path: String },
}

/// Parse /etc/hosts text: "ADDRESS NAME [ALIAS...]", '#' starts a comment. A name without a
/// dot is a host of `domain`; a dotted name is taken as fully qualified. Bad lines are skipped
/// (and logged). Each name gets an A or AAAA; the first name of a line is its address's PTR.
pub fn parse(text: &str, domain: &str) -> Vec<DnsRecord> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(addr) = words.next() else { continue };
        let Ok(ip) = addr.parse::<IpAddr>() else {
            debug!(
                line = n + 1,
                addr, "hosts file: not an address; line skipped"
            );
            continue;
        };
        for word in words {
            let as_written = if word.contains('.') {
                format!("{}.", word.trim_end_matches('.'))
            } else {
                word.to_string()
            };
            let Some(name) = crate::config::qualify(&as_written, domain) else {
                debug!(
                    line = n + 1,
                    name = word,
                    "hosts file: not a valid name; skipped"
                );
                continue;
            };
            let data = match ip {
                IpAddr::V4(v4) => RecordData::A(v4),
                IpAddr::V6(v6) => RecordData::Aaaa(v6),
            };
            out.push(DnsRecord { name, data });
        }
    }
    out
}

/// Read and parse the hosts file at `path` (blocking: call off the async workers).
pub fn read(path: &Path, domain: &str) -> Result<Vec<DnsRecord>, HostsError> {
    let text = std::fs::read_to_string(path).map_err(|source| HostsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let records = parse(&text, domain);
    info!(path = %path.display(), records = records.len(), "hosts file read");
    Ok(records)
}

/// The static records of `cfg` with its hosts file (if any) read on a blocking thread: what a
/// start or a reload installs with `NameChange::Statics`. An unreadable file is an error and
/// nothing is installed.
pub async fn load(cfg: &Config) -> Result<StaticRecords, HostsError> {
    let hosts = match &cfg.dns.hosts_file {
        None => Vec::new(),
        Some(path) => read_off_async(path.clone(), cfg.start.domain.clone()).await?,
    };
    Ok(StaticRecords::of(cfg, hosts))
}

async fn read_off_async(path: PathBuf, domain: String) -> Result<Vec<DnsRecord>, HostsError> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || read(&path, &domain))
        .await
        .unwrap_or(Err(HostsError::Stopped { path: shown }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn rec(name: &str, data: RecordData) -> DnsRecord {
        DnsRecord {
            name: name.to_string(),
            data,
        }
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    #[test]
    fn hosts_text_parses_into_records() {
        let text = "# a comment\n\n10.0.0.30  tv  TV-Alias # trailing\nfd00::1 nas6\n\
                    192.0.2.1 www.example.org.\nnot-an-ip foo\n10.0.0.31 bad_name! ok\n";
        let r = parse(text, "lan");
        assert_eq!(
            r,
            vec![
                rec("tv.lan", RecordData::A(ip(30))),
                rec("tv-alias.lan", RecordData::A(ip(30))),
                rec("nas6.lan", RecordData::Aaaa("fd00::1".parse().unwrap())),
                rec(
                    "www.example.org",
                    RecordData::A(Ipv4Addr::new(192, 0, 2, 1))
                ),
                rec("ok.lan", RecordData::A(ip(31))),
            ]
        );
    }

    #[test]
    fn read_names_the_file_it_cannot_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hosts");
        std::fs::write(&path, "10.0.0.40 cam\n").expect("write");
        let records = read(&path, "lan").expect("read");
        assert_eq!(records, vec![rec("cam.lan", RecordData::A(ip(40)))]);
        let err = read(&dir.path().join("missing"), "lan").unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
