//! `GET /api/v1/events`: the lease and name changes of `crate::dhcp::events` as Server-Sent Events
//! (`text/event-stream`). A reader first gets the recent events (those after `Last-Event-ID`
//! when its browser reconnects), then each change once it is durable: `event: lease` or
//! `event: name`, `id:` the event number, `data:` one JSON object. A reader that falls more
//! than the bus's capacity behind gets `event: lagged` with how many it missed (reload the
//! lease list then); a comment line every `KEEPALIVE` finds closed connections. The connection
//! lifetime of the listener still applies: browsers reconnect on their own (`retry:`).
//!
//! Same auth as the API's reads. Browsers' EventSource cannot send an Authorization header, so
//! the token may also come as `?access_token=TOKEN` (RFC 6750, section 2.3) here.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{Either, Full};
use hyper::body::{Body, Bytes, Frame};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use tokio::sync::{broadcast, mpsc};

use crate::dhcp::events::{Event, Events};
use crate::http::api::{self, Reply};

/// A comment line this often keeps proxies from closing the stream and finds dead readers.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How long a browser waits before reconnecting, milliseconds.
const RETRY_MS: u32 = 2000;
/// Chunks written ahead of a slow socket before the forwarding task waits (its broadcast
/// receiver keeps counting, and lags, meanwhile).
const CHUNKS_AHEAD: usize = 64;

/// The body of an event stream: chunks a task formats, until the stream ends.
pub struct SseBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// What the listener answers with: a whole body, or an event stream.
pub type AnyBody = http_body_util::Either<Full<Bytes>, SseBody>;

/// One request for the stream.
pub struct Ask<'a> {
    pub query: &'a str,
    pub authorization: Option<&'a str>,
    pub last_event_id: Option<&'a str>,
    pub peer: std::net::IpAddr,
}

/// The stream, or 401 (JSON, as the API answers) without a valid token from afar.
pub fn open(api: &api::Api, ask: &Ask<'_>) -> Response<AnyBody> {
    let from_query = ask
        .query
        .split('&')
        .find_map(|p| p.strip_prefix("access_token="))
        .map(|t| format!("Bearer {t}"));
    let header = ask.authorization.or(from_query.as_deref());
    if !api::authorized(header, &api.token, ask.peer, false) {
        let mut refused = Response::new(Full::new(Bytes::from(Reply::unauthorized().body)));
        *refused.status_mut() = StatusCode::UNAUTHORIZED;
        let headers = refused.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return refused.map(Either::Left);
    }
    let after = ask
        .last_event_id
        .and_then(|id| id.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    let events = api.events.clone();
    let (control, names) = (api.control.clone(), api.names.clone());
    tokio::spawn(async move {
        // The first reader makes the bus keep track; it starts from the table as it is now.
        if events.track() {
            match control.leases().await {
                Ok(leases) => events.seed(leases, &names),
                Err(_) => events.untrack(),
            }
        }
        forward(events, after, tx).await
    });
    let mut response = Response::new(SseBody { rx });
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.map(Either::Right)
}

/// Copy events from the bus to one reader until it goes away.
async fn forward(events: Events, mut last: u64, tx: mpsc::Sender<Bytes>) {
    let (recent, mut rx) = events.subscribe();
    if tx
        .send(Bytes::from(format!("retry: {RETRY_MS}\n\n")))
        .await
        .is_err()
    {
        return;
    }
    let after = last;
    for event in recent.iter().filter(|e| e.id > after) {
        last = event.id;
        if tx.send(frame(event)).await.is_err() {
            return;
        }
    }
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.tick().await;
    loop {
        let chunk = tokio::select! {
            got = rx.recv() => match got {
                Ok(event) if event.id <= last => continue,
                Ok(event) => {
                    last = event.id;
                    frame(&event)
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Bytes::from(format!("event: lagged\ndata: {{\"missed\":{missed}}}\n\n"))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = keepalive.tick() => Bytes::from_static(b": keepalive\n\n"),
            _ = tx.closed() => return,
        };
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
}

/// One event in the SSE wire form (the JSON holds no newline).
pub fn frame(event: &Event) -> Bytes {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!(
        "event: {}\nid: {}\ndata: {data}\n\n",
        event.kind(),
        event.id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::control::LeaseView;
    use crate::dhcp::events::{Action, What};

    /// A reader that does not read: the publisher goes on, and the reader, once it reads
    /// again, is told how many events it missed, then gets the newest.
    #[tokio::test]
    async fn a_slow_reader_is_told_it_lagged() {
        use crate::lease::{ClientId, HwAddr, Lease, LeaseChange, LeaseState};
        let cfg = crate::config::Config::parse(
            "domain = \"lan\"\nlease_file = \"/nonexistent/l\"\n[[subnet]]\n\
             network = \"10.0.0.0/24\"\npool_start = \"10.0.0.100\"\npool_end = \"10.0.0.199\"\n",
            std::path::Path::new("t.toml"),
        )
        .expect("config");
        let names = crate::dns::names::NameIndex::new(crate::dns::names::Names::new("lan", &[]));
        let events = Events::default();
        events.track();
        let (tx, mut rx) = mpsc::channel(CHUNKS_AHEAD);
        tokio::spawn(forward(events.clone(), 0, tx));
        let first = rx.recv().await.expect("retry line");
        assert!(first.starts_with(b"retry: "));
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, 1]);
        let total = 3000u64;
        for i in 0..total {
            let lease = Lease {
                ip: [10, 0, 0, 100].into(),
                client: ClientId::from_hw(&hw),
                hwaddr: hw.clone(),
                hostname: None,
                expires: crate::clock::UnixTime(i),
                state: LeaseState::Bound,
            };
            events.publish(&[LeaseChange::Upsert(lease)], &cfg, &names);
        }
        let mut text = String::new();
        while !text.contains(&format!("id: {total}\n")) {
            let chunk = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("chunks in time")
                .expect("stream open");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        let lagged = text
            .split("\n\n")
            .find(|f| f.starts_with("event: lagged\n"))
            .expect("told it lagged");
        let missed: u64 = lagged
            .trim_start_matches("event: lagged\ndata: {\"missed\":")
            .trim_end_matches('}')
            .parse()
            .expect("a count");
        let delivered = text.matches("event: lease\n").count() as u64;
        assert_eq!(
            delivered + missed,
            total,
            "every event delivered or counted"
        );
    }

    #[test]
    fn an_event_is_one_sse_frame() {
        let event = Event {
            id: 7,
            what: What::Name {
                action: Action::Add,
                name: "pc.lan".into(),
                ip: [10, 0, 0, 7].into(),
            },
        };
        assert_eq!(
            frame(&event),
            "event: name\nid: 7\ndata: {\"id\":7,\"kind\":\"name\",\"action\":\"add\",\"name\":\"pc.lan\",\"ip\":\"10.0.0.7\"}\n\n"
        );
        let lease = Event {
            id: 8,
            what: What::Lease {
                action: Action::Renew,
                reason: None,
                lease: LeaseView {
                    ip: [10, 0, 0, 7].into(),
                    mac: "02:00:00:00:00:01".into(),
                    client_id: "01020000000001".into(),
                    hostname: None,
                    expires: 99,
                    state: "bound".into(),
                    subnet: Some("10.0.0.0/24".into()),
                },
            },
        };
        let text = String::from_utf8(frame(&lease).to_vec()).expect("utf8");
        assert!(text.starts_with("event: lease\nid: 8\ndata: {\"id\":8,\"kind\":\"lease\",\"action\":\"renew\",\"ip\":\"10.0.0.7\""), "{text}");
        assert_eq!(text.matches('\n').count(), 4);
    }
}
