//! The JSON control API under `/api/v1/` (`http.api`): routes, the bearer-token check, lease
//! filters and the status document. Leases are asked of the DHCP thread through
//! `dhcp::control::Control` (it owns the table); this module never touches the engine, and it
//! owns no sockets (`http` serves it).
//!
//! - `GET /api/v1/leases[?subnet=&mac=&hostname=&state=]`: a JSON array of leases.
//! - `GET /api/v1/leases/{ip}`: one lease, 404 when there is none.
//! - `DELETE /api/v1/leases/{ip}`: the lease ends now (journaled, name gone); the ended lease.
//! - `GET /api/v1/status`: version, uptime, lease counts, DHCP and DNS counters.
//! - `GET /api/v1/names`, `/conflicts`, `/pools`: see `api_names`.
//! - `GET /api/v1/events`: Server-Sent Events of lease and name changes (`http::events`).
//! - Reservations and `POST /api/v1/reload`: `http::ops` (asked first by `respond`).
//!
//! Every change needs `Authorization: Bearer TOKEN`; so do reads from anywhere but loopback.
//! Failures are `{"error": "..."}` with a 4xx or 5xx status.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hyper::Method;
use serde_json::{Value, json};

use crate::dhcp::control::{Control, ControlError, LeaseView};
use crate::http::api_names;
use crate::http::metrics_page::Metrics;

/// Where the API lives.
pub const PREFIX: &str = "/api/v1/";

/// What the API needs: the way to the DHCP thread, the token, the counters.
pub struct Api {
    pub control: Control,
    pub token: String,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    /// The DNS name index (`/names`, `/conflicts`).
    pub names: crate::dns::names::SharedNames,
    /// Lease and name changes (`/events`).
    pub events: crate::dhcp::events::Events,
    /// The daemon's reload, for `POST /api/v1/reload` (`ops`).
    pub reload: Option<crate::http::ops::Reloader>,
}

/// An answer: status and JSON body.
#[derive(Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, value: &impl serde::Serialize) -> Reply {
        match serde_json::to_string(value) {
            Ok(body) => Reply { status, body },
            Err(e) => Reply::error(500, &format!("encoding the answer: {e}")),
        }
    }

    pub fn error(status: u16, message: &str) -> Reply {
        Reply {
            status,
            body: json!({ "error": message }).to_string(),
        }
    }

    /// 401: whether a token was missing or wrong is not told apart.
    pub fn unauthorized() -> Reply {
        Reply::error(
            401,
            "a valid bearer token is required (Authorization: Bearer TOKEN)",
        )
    }
}

/// One request to a path under `PREFIX`.
pub struct Call<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: &'a str,
    pub authorization: Option<&'a str>,
    pub peer: IpAddr,
    /// The request body (at most `ops::MAX_BODY` bytes).
    pub body: &'a [u8],
}

impl Api {
    pub async fn respond(&self, call: &Call<'_>) -> Reply {
        let rest = call.path.strip_prefix(PREFIX).unwrap_or("");
        let change = call.method != Method::GET && call.method != Method::HEAD;
        if let Some(reply) = self.ops(call, rest).await {
            return reply;
        }
        let route = match rest.split_once('/') {
            // `events` is streamed by `http::events`; here only to answer a wrong method.
            None if matches!(
                rest,
                "leases" | "status" | "names" | "conflicts" | "pools" | "events"
            ) =>
            {
                Route::Collection(rest)
            }
            Some(("leases", ip)) if !ip.is_empty() && !ip.contains('/') => Route::Lease(ip),
            _ => return Reply::error(404, &format!("no such resource: {}", call.path)),
        };
        let allowed: &[Method] = match route {
            Route::Collection(_) => &[Method::GET],
            Route::Lease(_) => &[Method::GET, Method::DELETE],
        };
        if !allowed.contains(call.method) {
            let m = format!("{} is not allowed on {}", call.method, call.path);
            return Reply::error(405, &m);
        }
        if !authorized(call.authorization, &self.token, call.peer, change) {
            return Reply::unauthorized();
        }
        match route {
            Route::Collection("leases") => self.leases(call.query).await,
            Route::Collection("names") => api_names::names(&self.names),
            Route::Collection("conflicts") => api_names::conflicts(&self.names),
            Route::Collection("pools") => api_names::pools(&self.metrics),
            Route::Collection(_) => self.status().await,
            Route::Lease(ip) => {
                let Ok(ip) = ip.parse::<Ipv4Addr>() else {
                    return Reply::error(400, &format!("`{ip}` is not an IPv4 address"));
                };
                if call.method == Method::DELETE {
                    self.end(ip).await
                } else {
                    self.lease(ip).await
                }
            }
        }
    }

    async fn leases(&self, query: &str) -> Reply {
        let filter = match Filter::parse(query) {
            Ok(f) => f,
            Err(m) => return Reply::error(400, &m),
        };
        match self.control.leases().await {
            Ok(mut all) => {
                all.retain(|l| filter.matches(l));
                all.sort_by_key(|l| l.ip);
                Reply::json(200, &all)
            }
            Err(e) => control_failed(&e),
        }
    }

    async fn lease(&self, ip: Ipv4Addr) -> Reply {
        match self.control.leases().await {
            Ok(all) => match all.into_iter().find(|l| l.ip == ip) {
                Some(l) => Reply::json(200, &l),
                None => Reply::error(404, &format!("no lease on {ip}")),
            },
            Err(e) => control_failed(&e),
        }
    }

    async fn end(&self, ip: Ipv4Addr) -> Reply {
        match self.control.end(ip).await {
            Ok(Some(l)) => Reply::json(200, &l),
            Ok(None) => Reply::error(404, &format!("no lease on {ip}")),
            Err(e) => control_failed(&e),
        }
    }

    async fn status(&self) -> Reply {
        let counts = match self.control.counts().await {
            Ok(c) => c,
            Err(e) => return control_failed(&e),
        };
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let dhcp = self.metrics.dhcp.as_ref().map(|s| {
            json!({
                "received": load(&s.received), "malformed": load(&s.malformed),
                "ignored": load(&s.ignored), "replies": load(&s.replies),
                "send_errors": load(&s.send_errors), "commits": load(&s.commits),
                "journal_errors": load(&s.journal_errors),
            })
        });
        let dns = self.metrics.dns.as_ref().map(|c| {
            json!({
                "responses": load(&c.answered), "cache_hits": load(&c.cached),
                "forwarded": load(&c.forwarded), "refused": load(&c.refused),
                "dropped": load(&c.dropped),
            })
        });
        let status: Value = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "leases": counts,
            "dhcp": dhcp,
            "dns": dns,
        });
        Reply::json(200, &status)
    }
}

enum Route<'a> {
    Collection(&'a str),
    Lease(&'a str),
}

fn control_failed(e: &ControlError) -> Reply {
    Reply::error(503, &e.to_string())
}

/// Changes always need the token; reads need it unless they come from loopback.
pub fn authorized(header: Option<&str>, token: &str, peer: IpAddr, change: bool) -> bool {
    if !change && peer.to_canonical().is_loopback() {
        return true;
    }
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    same_secret(given.trim().as_bytes(), token.as_bytes())
}

/// Equal, in time that depends on the lengths only (not on where the bytes differ).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /api/v1/leases` query filters; all given ones must match.
#[derive(Debug, Default, PartialEq)]
pub struct Filter {
    pub subnet: Option<(Ipv4Addr, u8)>,
    /// Lowercase `aa:bb:..`.
    pub mac: Option<String>,
    /// Lowercase host name (the label).
    pub hostname: Option<String>,
    pub state: Option<String>,
}

impl Filter {
    /// Parse `subnet=10.0.0.0/24&mac=..&hostname=..&state=bound`; errors name the parameter.
    pub fn parse(query: &str) -> Result<Filter, String> {
        let mut f = Filter::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(raw).ok_or(format!("{key}: bad percent-encoding"))?;
            match key {
                "subnet" => f.subnet = Some(parse_subnet(&value)?),
                "mac" => f.mac = Some(value.to_ascii_lowercase().replace('-', ":")),
                "hostname" => f.hostname = Some(value.to_ascii_lowercase()),
                "state" if matches!(value.as_str(), "bound" | "declined") => f.state = Some(value),
                "state" => return Err(format!("state: `{value}` is not bound or declined")),
                other => return Err(format!("unknown filter `{other}`")),
            }
        }
        Ok(f)
    }

    pub fn matches(&self, l: &LeaseView) -> bool {
        let in_subnet = |(net, len): (Ipv4Addr, u8)| {
            let mask = crate::config::prefix_mask(len);
            u32::from(l.ip) & mask == u32::from(net) & mask
        };
        self.subnet.is_none_or(in_subnet)
            && self.mac.as_ref().is_none_or(|m| *m == l.mac)
            && self
                .hostname
                .as_ref()
                .is_none_or(|h| l.hostname.as_deref() == Some(h.as_str()))
            && self.state.as_ref().is_none_or(|s| *s == l.state)
    }
}

fn parse_subnet(value: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("subnet: `{value}` is not ADDRESS/PREFIX (e.g. 10.0.0.0/24)");
    let (addr, len) = value.split_once('/').ok_or_else(bad)?;
    let addr = addr.parse::<Ipv4Addr>().map_err(|_| bad())?;
    let len = len
        .parse::<u8>()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(bad)?;
    Ok((addr, len))
}

/// `%XX` and `+` decoded; None when an escape is bad or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(ip: [u8; 4], mac: &str, host: Option<&str>, state: &str) -> LeaseView {
        LeaseView {
            ip: ip.into(),
            mac: mac.into(),
            client_id: "01020000000001".into(),
            hostname: host.map(str::to_string),
            expires: 1_700_000_000,
            state: state.into(),
            subnet: Some("10.0.0.0/24".into()),
        }
    }

    #[test]
    fn a_lease_in_json_has_every_field() {
        let l = view([10, 0, 0, 7], "02:00:00:00:00:01", Some("pc"), "bound");
        let text = serde_json::to_string(&l).expect("encodes");
        assert_eq!(
            text,
            r#"{"ip":"10.0.0.7","mac":"02:00:00:00:00:01","client_id":"01020000000001","hostname":"pc","expires":1700000000,"state":"bound","subnet":"10.0.0.0/24"}"#
        );
        let back: LeaseView = serde_json::from_str(&text).expect("decodes");
        assert_eq!(back, l);
        let none = view([10, 0, 0, 8], "02:00:00:00:00:02", None, "declined");
        assert!(
            serde_json::to_string(&none)
                .expect("encodes")
                .contains(r#""hostname":null"#)
        );
        let err = Reply::error(400, "`x\"y` is bad");
        assert_eq!(err.body, r#"{"error":"`x\"y` is bad"}"#);
    }

    #[test]
    fn filters_match_every_given_field() {
        let a = view([10, 0, 0, 7], "02:00:00:00:00:01", Some("pc"), "bound");
        let b = view([10, 0, 1, 9], "02:00:00:00:00:02", None, "declined");
        let f = |q: &str| Filter::parse(q).expect("valid");
        assert!(f("").matches(&a) && f("").matches(&b));
        assert!(f("subnet=10.0.0.0/24").matches(&a));
        assert!(!f("subnet=10.0.0.0/24").matches(&b));
        assert!(f("subnet=10.0.0.0%2F16").matches(&b));
        assert!(f("mac=02%3A00%3A00%3A00%3A00%3A01").matches(&a));
        assert!(f("mac=02-00-00-00-00-01").matches(&a));
        assert!(!f("mac=02:00:00:00:00:01").matches(&b));
        assert!(f("hostname=PC&state=bound").matches(&a));
        assert!(!f("hostname=pc&state=declined").matches(&a));
        assert!(f("state=declined").matches(&b));
        assert!(!f("hostname=pc").matches(&b));
        let err = |q: &str| Filter::parse(q).expect_err("invalid");
        assert!(err("subnet=10.0.0.0").contains("10.0.0.0"));
        assert!(err("subnet=10.0.0.0/33").contains("subnet"));
        assert!(err("state=gone").contains("gone"));
        assert!(err("colour=red").contains("colour"));
        assert!(err("mac=%zz").contains("mac"));
    }

    #[test]
    fn the_token_guards_changes_and_remote_reads() {
        let token = "0123456789abcdef";
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        let lan: IpAddr = "10.0.0.5".parse().expect("ip");
        let good = Some("Bearer 0123456789abcdef");
        assert!(authorized(None, token, lo, false), "loopback reads");
        assert!(authorized(None, token, mapped, false));
        assert!(!authorized(None, token, lan, false), "remote reads need it");
        assert!(authorized(good, token, lan, false));
        assert!(!authorized(None, token, lo, true), "changes need it");
        assert!(authorized(good, token, lo, true));
        assert!(!authorized(
            Some("Bearer 0123456789abcdeX"),
            token,
            lo,
            true
        ));
        assert!(!authorized(Some("Bearer 0123456789abcde"), token, lo, true));
        assert!(!authorized(Some("Basic 0123456789abcdef"), token, lo, true));
        assert!(!authorized(Some("Bearer "), token, lan, true));
    }
}
