//! The operator's commands over the control API (`leasedns leases|status|release`): a minimal
//! HTTP/1.1 client on a std `TcpStream` (one request, `Connection: close`), the API address
//! and token taken from the config, and the lease table's text rendering. Plain HTTP only
//! (the CLI talks to a loopback or LAN listener; a TLS listener is refused with a message).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Config;
use crate::dhcp::control::LeaseView;

/// How long the CLI waits for the server (connect, and each read or write).
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("the config has no [http] listen address with api = true")]
    NoApi,
    #[error("the API listener uses TLS; this command speaks plain HTTP only (use curl)")]
    Tls,
    #[error("talking to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("unreadable answer: {0}")]
    Answer(String),
}

/// Where and how to reach the API of a config.
pub struct Target {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Target {
    /// The first `[http] listen` address (a wildcard one reached on loopback) and the token.
    pub fn from_config(cfg: &Config) -> Result<Target, CtlError> {
        let h = &cfg.start.dns.http;
        let first = h.listen.first().filter(|_| h.api).ok_or(CtlError::NoApi)?;
        if h.tls_cert.is_some() {
            return Err(CtlError::Tls);
        }
        let mut addr = *first;
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
            _ => {}
        }
        let token = h.api_token.as_ref().map(|t| t.secret.clone());
        Ok(Target { addr, token })
    }

    /// One request; the body of a 2xx answer, or the server's `error` message.
    pub fn call(&self, method: &str, path: &str) -> Result<String, CtlError> {
        self.send(method, path, None)
    }

    /// One request with an optional JSON body.
    pub fn send(&self, method: &str, path: &str, json: Option<&str>) -> Result<String, CtlError> {
        let io = |source| CtlError::Io {
            addr: self.addr,
            source,
        };
        let mut stream = TcpStream::connect_timeout(&self.addr, TIMEOUT).map_err(io)?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            self.addr
        );
        if let Some(token) = &self.token {
            req.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(json) = json {
            req.push_str("Content-Type: application/json\r\n");
            req.push_str(&format!("Content-Length: {}\r\n\r\n{json}", json.len()));
        } else {
            req.push_str("\r\n");
        }
        stream.write_all(req.as_bytes()).map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(io)?;
        let (status, body) = parse_response(&raw)?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(body);
        Err(CtlError::Status { status, message })
    }

    pub fn leases(&self) -> Result<Vec<LeaseView>, CtlError> {
        self.leases_where("")
    }

    /// The leases matching `query` (the API's filters, e.g. `state=declined`; empty: all).
    pub fn leases_where(&self, query: &str) -> Result<Vec<LeaseView>, CtlError> {
        let body = self.call("GET", &leases_path(query))?;
        serde_json::from_str(&body).map_err(|e| CtlError::Answer(e.to_string()))
    }
}

/// `/api/v1/leases`, with `?query` when there is one.
pub fn leases_path(query: &str) -> String {
    match query {
        "" => "/api/v1/leases".to_string(),
        q => format!("/api/v1/leases?{q}"),
    }
}

/// `leasedns reserve IP [--name NAME] [--mac MAC]`: the lease on IP (or, with a MAC, any
/// address) becomes a reservation; a line saying what was reserved.
pub fn reserve(
    t: &Target,
    ip: &str,
    name: Option<String>,
    mac: Option<String>,
) -> Result<String, CtlError> {
    let body = serde_json::json!({ "name": name, "mac": mac }).to_string();
    let path = match mac {
        Some(_) => {
            let body = serde_json::json!({ "ip": ip, "name": name, "mac": mac }).to_string();
            return t
                .send("POST", "/api/v1/reservations", Some(&body))
                .and_then(|b| describe("reserved", &b));
        }
        None => format!("/api/v1/leases/{ip}/reserve"),
    };
    describe("reserved", &t.send("POST", &path, Some(&body))?)
}

/// `leasedns unreserve IP`: a line saying what was removed.
pub fn unreserve(t: &Target, ip: &str) -> Result<String, CtlError> {
    let body = t.call("DELETE", &format!("/api/v1/reservations/{ip}"))?;
    describe("removed the reservation of", &body)
}

/// `leasedns reservations [--json]`: the table, or the API's JSON.
pub fn reservations(t: &Target, json: bool) -> Result<String, CtlError> {
    let body = t.call("GET", "/api/v1/reservations")?;
    if json {
        return Ok(body);
    }
    let list: Vec<crate::dhcp::reserve::ReservationView> =
        serde_json::from_str(&body).map_err(|e| CtlError::Answer(e.to_string()))?;
    Ok(reservation_table(&list))
}

/// `reserved 10.0.0.7 for 02:.. (name)` from a reservation's JSON.
pub fn describe(what: &str, body: &str) -> Result<String, CtlError> {
    let r: crate::dhcp::reserve::ReservationView =
        serde_json::from_str(body).map_err(|e| CtlError::Answer(e.to_string()))?;
    let who = r.mac.or(r.client_id).unwrap_or_default();
    let name = r.name.unwrap_or_else(|| "-".into());
    Ok(format!("{what} {} for {who} ({name})", r.ip))
}

/// The `leasedns reservations` table: IP, MAC, NAME, SOURCE.
pub fn reservation_table(list: &[crate::dhcp::reserve::ReservationView]) -> String {
    let mut out = format!("{:<15}  {:<17}  {:<20}  SOURCE\n", "IP", "MAC", "NAME");
    for r in list {
        let who = r.mac.clone().or(r.client_id.clone()).unwrap_or_default();
        let name = r.name.as_deref().unwrap_or("-");
        out.push_str(&format!(
            "{:<15}  {who:<17}  {name:<20}  {}\n",
            r.ip, r.source
        ));
    }
    out
}

/// Status code and body of an HTTP/1.1 response (a Content-Length body, as the server sends).
fn parse_response(raw: &[u8]) -> Result<(u16, String), CtlError> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| CtlError::Answer("no end of headers".into()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| CtlError::Answer(format!("bad status line: {head:.40}")))?;
    Ok((status, body.to_string()))
}

/// The `leasedns leases` table: IP, MAC, HOST, EXPIRES (time left at `now`), STATE.
pub fn lease_table(leases: &[LeaseView], now: u64) -> String {
    let mut rows = vec![[
        "IP".to_string(),
        "MAC".into(),
        "HOST".into(),
        "EXPIRES".into(),
        "STATE".into(),
    ]];
    for l in leases {
        rows.push([
            l.ip.to_string(),
            l.mac.clone(),
            l.hostname.clone().unwrap_or_else(|| "-".into()),
            remaining(l.expires.saturating_sub(now)),
            l.state.clone(),
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `in 1h02m`, `in 45s`, `now`.
fn remaining(secs: u64) -> String {
    match secs {
        0 => "now".into(),
        s if s < 60 => format!("in {s}s"),
        s if s < 3600 => format!("in {}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("in {}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("in {}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_and_shows_time_left() {
        let lease = |ip: [u8; 4], host: Option<&str>, expires| LeaseView {
            ip: ip.into(),
            mac: "02:00:00:00:00:01".into(),
            client_id: "01".into(),
            hostname: host.map(str::to_string),
            expires,
            state: "bound".into(),
            subnet: None,
        };
        let t = lease_table(
            &[
                lease([10, 0, 0, 10], Some("laptop"), 1000 + 3725),
                lease([10, 0, 0, 9], None, 1000 + 42),
            ],
            1000,
        );
        assert_eq!(
            t,
            "IP         MAC                HOST    EXPIRES   STATE\n\
             10.0.0.10  02:00:00:00:00:01  laptop  in 1h02m  bound\n\
             10.0.0.9   02:00:00:00:00:01  -       in 42s    bound\n"
        );
        assert_eq!(remaining(0), "now");
        assert_eq!(remaining(61), "in 1m01s");
        assert_eq!(remaining(90_000), "in 1d01h");
    }

    #[test]
    fn responses_are_split_into_status_and_body() {
        let raw =
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\r\n{\"error\":\"x\"}";
        assert_eq!(
            parse_response(raw).expect("parsed"),
            (404, "{\"error\":\"x\"}".into())
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }
}
