//! `dig` run inside a namespace against one server: status and answer records, parsed. Knows
//! nothing about which server answers.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::netns::Host;
use crate::proc::{poll, run};

/// One DNS answer as dig saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Header status (`NOERROR`, `NXDOMAIN`, `REFUSED`, ...); `NOREPLY` when no server answered.
    pub status: String,
    /// RDATA of every answer record, e.g. `10.51.0.100` or `alpha.lan.`.
    pub records: Vec<String>,
    /// Header flags, e.g. `qr`, `aa`, `tc`, `rd`, `ra`.
    pub flags: Vec<String>,
    /// Authority records as `TYPE RDATA`, e.g. `SOA lan. hostmaster.lan. 7 3600 600 86400 60`.
    pub authority: Vec<String>,
}

impl Answer {
    pub fn is_nxdomain(&self) -> bool {
        self.status == "NXDOMAIN"
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The SOA record of the authority section (negative answers carry one).
    pub fn soa(&self) -> Option<&str> {
        self.authority.iter().find_map(|r| r.strip_prefix("SOA "))
    }
}

/// `dig @server +time=1 +tries=3 NAME TYPE` from namespace `from`.
pub fn query(from: &Host, server: Ipv4Addr, name: &str, rtype: &str) -> Result<Answer> {
    query_with(from, server, name, rtype, &[])
}

/// Like `query`, with extra dig options (e.g. `+tcp`, `+bufsize=512`, `+ignore`).
pub fn query_with(
    from: &Host,
    server: Ipv4Addr,
    name: &str,
    rtype: &str,
    options: &[&str],
) -> Result<Answer> {
    let mut cmd = from.exec("dig");
    cmd.args([
        &format!("@{server}"),
        "+time=1",
        "+tries=3",
        "+noall",
        "+comments",
        "+answer",
        "+authority",
    ]);
    cmd.args(options);
    if rtype == "PTR" {
        cmd.args(["-x", name]);
    } else {
        cmd.args([name, rtype]);
    }
    let out = run(&mut cmd, Duration::from_secs(8))?;
    // dig exits 9 when no server replied.
    if out.status.code() == Some(9) {
        return Ok(Answer {
            status: "NOREPLY".into(),
            records: Vec::new(),
            flags: Vec::new(),
            authority: Vec::new(),
        });
    }
    if !out.status.success() {
        bail!("dig {name} {rtype} failed ({}): {}", out.status, out.all());
    }
    parse(&out.stdout)
}

/// The A records of `name`.
pub fn a(from: &Host, server: Ipv4Addr, name: &str) -> Result<Answer> {
    query(from, server, name, "A")
}

/// The PTR records of `ip` (`dig -x`).
pub fn ptr(from: &Host, server: Ipv4Addr, ip: Ipv4Addr) -> Result<Answer> {
    query(from, server, &ip.to_string(), "PTR")
}

/// `dig +short` equivalent: the answer records, or an error when the status is not NOERROR.
pub fn short(from: &Host, server: Ipv4Addr, name: &str, rtype: &str) -> Result<Vec<String>> {
    let answer = query(from, server, name, rtype)?;
    if answer.status != "NOERROR" {
        bail!("{name} {rtype}: {}", answer.status);
    }
    Ok(answer.records)
}

/// Waits until `name` (A) and `ip` (PTR) are NXDOMAIN, up to `timeout`.
pub fn wait_gone(
    from: &Host,
    server: Ipv4Addr,
    name: &str,
    ip: Ipv4Addr,
    timeout: Duration,
) -> Result<()> {
    poll(timeout, || {
        let (fwd, rev) = (a(from, server, name)?, ptr(from, server, ip)?);
        if fwd.is_nxdomain() && rev.is_nxdomain() {
            Ok(Some(()))
        } else {
            bail!("{name} still answers {fwd:?}, {ip} PTR still answers {rev:?}")
        }
    })
}

/// Checks that `fqdn` resolves to exactly `ip` and `ip` back to `fqdn`.
pub fn assert_resolves(from: &Host, server: Ipv4Addr, fqdn: &str, ip: Ipv4Addr) -> Result<()> {
    let fwd = a(from, server, fqdn)?;
    if fwd.status != "NOERROR" || fwd.records != vec![ip.to_string()] {
        bail!("{fqdn} A: expected [{ip}], got {fwd:?}");
    }
    let rev = ptr(from, server, ip)?;
    let want = format!("{}.", fqdn.trim_end_matches('.'));
    if rev.status != "NOERROR" || !rev.records.iter().any(|r| r.eq_ignore_ascii_case(&want)) {
        bail!("{ip} PTR: expected {want}, got {rev:?}");
    }
    Ok(())
}

/// Parses `dig +noall +comments +answer +authority` output.
fn parse(text: &str) -> Result<Answer> {
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .map(|s| s.trim().to_string());
    let Some(status) = status else {
        bail!("no status in dig output: {text}");
    };
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .and_then(|rest| rest.split(';').next())
        .map(|f| f.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let (mut records, mut authority) = (Vec::new(), Vec::new());
    let mut in_authority = false;
    for line in text.lines() {
        if line.starts_with(";; ") && line.ends_with("SECTION:") {
            in_authority = line.contains("AUTHORITY");
            continue;
        }
        if line.trim().is_empty() || line.starts_with(';') {
            continue;
        }
        // name TTL class type rdata...
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 {
            continue;
        }
        if in_authority {
            authority.push(fields[3..].join(" "));
        } else {
            records.push(fields[4..].join(" "));
        }
    }
    Ok(Answer {
        status,
        records,
        flags,
        authority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_records() {
        let text = ";; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n\
                    ;; flags: qr aa rd; QUERY: 1, ANSWER: 1\n\nalpha.lan.\t\t300\tIN\tA\t10.51.0.100\n";
        let answer = parse(text).expect("parses");
        assert_eq!(answer.status, "NOERROR");
        assert_eq!(answer.records, vec!["10.51.0.100".to_string()]);
        assert!(answer.has_flag("aa") && !answer.has_flag("tc"));
        assert_eq!(answer.soa(), None);

        let nx = parse(";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 2\n").expect("parses");
        assert!(nx.is_nxdomain());
        assert!(nx.records.is_empty());

        let nodata = parse(
            ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 3\n\
             ;; flags: qr aa rd tc; QUERY: 1, ANSWER: 0, AUTHORITY: 1\n\n\
             ;; AUTHORITY SECTION:\nlan.\t\t60\tIN\tSOA\tlan. hostmaster.lan. 7 3600 600 86400 60\n",
        )
        .expect("parses");
        assert!(nodata.records.is_empty() && nodata.has_flag("tc"));
        assert_eq!(
            nodata.soa(),
            Some("lan. hostmaster.lan. 7 3600 600 86400 60")
        );
    }
}
