//! The control API's operator changes (`api` routes here first): runtime reservations and
//! the config reload. Reservations are changed by the DHCP thread (`dhcp::control`, one
//! writer; the file beside the journal is written before the answer); a reload is asked of the
//! daemon's loop, which runs the same validation as SIGHUP. No sockets here.
//!
//! - `GET /api/v1/reservations`: every reservation, `source` "config" or "api".
//! - `POST /api/v1/reservations` `{"ip": .., "mac": .., "name": ..}`: reserve (201).
//! - `DELETE /api/v1/reservations/{ip}`: remove one made through the API.
//! - `POST /api/v1/leases/{ip}/reserve` (body optional: `{"name": ..}` or `{"mac": ..}`): the
//!   lease's address becomes its client's reservation (201).
//! - `POST /api/v1/reload`: reread the config; a bad one is refused with where and why
//!   (`file`, `line`, `field`, `value`, `message`) and the running config stays.

use std::net::Ipv4Addr;

use hyper::Method;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::dhcp::reserve::{self, ReserveError};
use crate::http::api::{Api, Call, Reply, authorized};

/// Biggest request body the API reads.
pub const MAX_BODY: usize = 16 * 1024;

/// Why a reload was refused: the message, and where when the config file was at fault.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReloadFailure {
    pub error: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub field: Option<String>,
    /// The bad value as written in the file (quotes included), when one value is at fault.
    pub value: Option<String>,
    pub message: Option<String>,
}

impl ReloadFailure {
    /// From the error and its sources (a `ConfigError` among them gives file, line, field).
    pub fn new(e: &(dyn std::error::Error + 'static), text: String) -> ReloadFailure {
        let mut failure = ReloadFailure {
            error: text,
            file: None,
            line: None,
            field: None,
            value: None,
            message: None,
        };
        let mut cause = Some(e);
        while let Some(err) = cause {
            if let Some(crate::config::ConfigError::Invalid {
                path,
                line,
                field,
                value,
                message,
            }) = err.downcast_ref()
            {
                failure.file = Some(path.clone());
                failure.line = Some(*line);
                failure.field = Some(field.clone());
                failure.value = value.clone();
                failure.message = Some(message.clone());
                break;
            }
            if let Some(crate::config::ConfigError::Read { path, .. }) = err.downcast_ref() {
                failure.file = Some(path.clone());
                break;
            }
            cause = err.source();
        }
        failure
    }
}

/// One reload request to the daemon's loop, answered with the reloaded file or the failure.
pub type ReloadAsk = oneshot::Sender<Result<String, ReloadFailure>>;

/// The API's way to the daemon's reload (the same one SIGHUP takes).
#[derive(Clone)]
pub struct Reloader(pub mpsc::Sender<ReloadAsk>);

impl Api {
    /// The routes this module serves; None for any other path.
    pub async fn ops(&self, call: &Call<'_>, rest: &str) -> Option<Reply> {
        let route = match rest.split_once('/') {
            None if rest == "reservations" => Op::Reservations,
            None if rest == "reload" => Op::Reload,
            Some(("reservations", ip)) if !ip.is_empty() && !ip.contains('/') => Op::One(ip),
            Some(("leases", tail)) => match tail.split_once('/') {
                Some((ip, "reserve")) if !ip.is_empty() => Op::Reserve(ip),
                _ => return None,
            },
            _ => return None,
        };
        let allowed: &[Method] = match route {
            Op::Reservations => &[Method::GET, Method::POST],
            Op::Reload | Op::Reserve(_) => &[Method::POST],
            Op::One(_) => &[Method::DELETE],
        };
        if !allowed.contains(call.method) {
            let m = format!("{} is not allowed on {}", call.method, call.path);
            return Some(Reply::error(405, &m));
        }
        let change = call.method != Method::GET;
        if !authorized(call.authorization, &self.token, call.peer, change) {
            return Some(Reply::unauthorized());
        }
        Some(match route {
            Op::Reservations if change => self.reserve(parse_body(call.body, None)).await,
            Op::Reservations => self.reservations().await,
            Op::Reserve(ip) => match parse_ip(ip) {
                Ok(ip) => self.reserve(parse_body(call.body, Some(ip))).await,
                Err(reply) => reply,
            },
            Op::One(ip) => match parse_ip(ip) {
                Ok(ip) => reserve_reply(200, self.control.unreserve(ip).await),
                Err(reply) => reply,
            },
            Op::Reload => self.reload().await,
        })
    }

    async fn reservations(&self) -> Reply {
        match self.control.reservations().await {
            Ok(list) => Reply::json(200, &list),
            Err(e) => Reply::error(503, &e.to_string()),
        }
    }

    async fn reserve(&self, req: Result<reserve::Request, Reply>) -> Reply {
        match req {
            Ok(req) => reserve_reply(201, self.control.reserve(req).await),
            Err(reply) => reply,
        }
    }

    async fn reload(&self) -> Reply {
        let Some(Reloader(tx)) = &self.reload else {
            return Reply::error(503, "reload is not available");
        };
        let (ask, answer) = oneshot::channel();
        if tx.send(ask).await.is_err() {
            return Reply::error(503, "the daemon is stopping");
        }
        match answer.await {
            Ok(Ok(file)) => Reply::json(200, &json!({ "reloaded": file })),
            Ok(Err(failure)) => Reply::json(400, &failure),
            Err(_) => Reply::error(503, "the daemon is stopping"),
        }
    }
}

/// The `Allow` header of a 405 on one of these routes.
pub fn allow(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix(crate::http::api::PREFIX)?;
    match rest {
        "reservations" => Some("GET, POST"),
        "reload" => Some("POST"),
        r if r.starts_with("reservations/") => Some("DELETE"),
        r if r.starts_with("leases/") && r.ends_with("/reserve") => Some("POST"),
        _ => None,
    }
}

enum Op<'a> {
    Reservations,
    One(&'a str),
    Reserve(&'a str),
    Reload,
}

fn parse_ip(ip: &str) -> Result<Ipv4Addr, Reply> {
    ip.parse()
        .map_err(|_| Reply::error(400, &format!("`{ip}` is not an IPv4 address")))
}

/// The JSON body as a reservation request (empty: `{}`); `ip` from the path wins over none
/// in the body and must agree with one given there. Errors name the field and the value.
fn parse_body(body: &[u8], ip: Option<Ipv4Addr>) -> Result<reserve::Request, Reply> {
    let bad = |m: String| Reply::error(400, &m);
    let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| bad(format!("request body: {e}")))?
    };
    let serde_json::Value::Object(fields) = value else {
        return Err(bad("request body: must be a JSON object".into()));
    };
    let mut req = reserve::Request::default();
    for (key, v) in &fields {
        let text = match v {
            serde_json::Value::Null => continue,
            serde_json::Value::String(t) => t.clone(),
            other => return Err(bad(format!("{key}: `{other}` is not a string"))),
        };
        match key.as_str() {
            "ip" => {
                let given = text
                    .parse()
                    .map_err(|_| bad(format!("ip: `{text}` is not an IPv4 address")))?;
                req.ip = Some(given);
            }
            "mac" => req.mac = Some(text),
            "name" => req.name = Some(text),
            other => {
                return Err(bad(format!(
                    "unknown field `{other}` (expected ip, mac, name)"
                )));
            }
        }
    }
    match (ip, req.ip) {
        (Some(path), Some(given)) if path != given => {
            let m = format!("ip: {given} in the body is not {path} in the path");
            return Err(bad(m));
        }
        (Some(path), _) => req.ip = Some(path),
        (None, None) => return Err(bad("ip: is required".into())),
        (None, Some(_)) => {}
    }
    Ok(req)
}

fn reserve_reply(ok: u16, res: Result<reserve::ReservationView, ReserveError>) -> Reply {
    match res {
        Ok(view) => Reply::json(ok, &view),
        Err(e) => {
            let status = match &e {
                ReserveError::Refused(r) if r.conflict => 409,
                ReserveError::Refused(_) => 400,
                ReserveError::NoLease(_) | ReserveError::NotReserved(_) => 404,
                ReserveError::FromConfig(_) => 409,
                ReserveError::Disk(_) => 500,
                ReserveError::Stopped => 503,
            };
            Reply::error(status, &e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_text(r: Reply) -> (u16, String) {
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        (r.status, v["error"].as_str().expect("error").to_string())
    }

    #[test]
    fn bodies_are_checked_field_by_field() {
        let ip: Ipv4Addr = "10.0.0.7".parse().expect("ip");
        let ok = parse_body(b"", Some(ip)).expect("empty body");
        assert_eq!(ok.ip, Some(ip));
        let named = parse_body(br#"{"name":"nas"}"#, Some(ip)).expect("name only");
        assert_eq!(named.name.as_deref(), Some("nas"));
        let full = parse_body(br#"{"ip":"10.0.0.7","mac":"02:00:00:00:00:01"}"#, None);
        assert_eq!(
            full.expect("full").mac.as_deref(),
            Some("02:00:00:00:00:01")
        );
        let (code, e) =
            error_text(parse_body(br#"{"ip":"10.0.0.7","colour":1}"#, None).expect_err("x"));
        assert!(code == 400 && e.contains("colour"), "{e}");
        let (code, e) = error_text(parse_body(br#"{"ip":"10.0.0.700"}"#, None).expect_err("x"));
        assert!(code == 400 && e.contains("10.0.0.700"), "{e}");
        let (_, e) = error_text(parse_body(br#"{"mac":"x"}"#, None).expect_err("x"));
        assert!(e.starts_with("ip:"), "{e}");
        let (_, e) = error_text(parse_body(br#"{"ip":"10.0.0.8"}"#, Some(ip)).expect_err("x"));
        assert!(e.contains("10.0.0.8") && e.contains("10.0.0.7"), "{e}");
        let (code, _) = error_text(parse_body(b"{", None).expect_err("x"));
        assert_eq!(code, 400);
    }

    #[test]
    fn a_config_error_gives_file_line_and_field() {
        let e = crate::config::Config::parse("domain = 7\n", "x.toml".as_ref()).expect_err("bad");
        let f = ReloadFailure::new(&e, e.to_string());
        assert_eq!(f.file.as_deref(), Some("x.toml"));
        assert_eq!(f.line, Some(1));
        assert!(
            f.field.as_deref().is_some_and(|p| p.contains("domain")),
            "{f:?}"
        );
    }
}
