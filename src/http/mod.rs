//! The HTTP listener (hyper 1, HTTP/1.1, optionally TLS with rustls): it serves DynDNS2
//! `GET /nic/update` (see `dyndns`), when configured Prometheus `GET /metrics` (rendered by
//! `crate::metrics`; loopback and `http.metrics_from` only) and the JSON control API under
//! `/api/v1/` (`api`, `api_names`, and the event stream `events`) with the status page at
//! `/status` (`status`, when the API is on); `auth` holds credentials and the rate limits, `hasher` the
//! bounded pool that checks passwords. Owns binding and connections (caps per listener and per
//! source, TLS handshake and idle timeouts); must not decide answers itself.

pub mod api;
pub mod api_names;
pub mod auth;
pub mod dyndns;
pub mod events;
pub mod hasher;
pub mod metrics_page;
pub mod ops;
pub mod status;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{debug, info};

use crate::config::HttpConfig;
use crate::http::api::Api;
use crate::http::auth::source_key;
use crate::http::dyndns::{Answer, DynDns};
use crate::http::hasher::HashPool;
pub use crate::http::metrics_page::Metrics;

/// A client must send its request headers within this time (and its first byte too).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS client must finish its handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer than this, however it behaves (keep-alive included).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Open connections one source address (an IPv6 /64) may hold on one listener.
pub const PER_SOURCE_CONNECTIONS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("HTTP listen {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("TLS {path}: {reason}")]
    Tls { path: String, reason: String },
}

pub struct HttpServer {
    listeners: Vec<TcpListener>,
    tls: Option<TlsAcceptor>,
    dyndns: Arc<DynDns>,
    pool: Arc<HashPool>,
    max_connections: usize,
    metrics: Option<Arc<Metrics>>,
    metrics_from: Arc<Vec<(IpAddr, u8)>>,
    api: Option<Arc<Api>>,
}

/// What every connection task of the server shares.
#[derive(Clone)]
struct Shared {
    tls: Option<TlsAcceptor>,
    dyndns: Arc<DynDns>,
    pool: Arc<HashPool>,
    /// `/metrics` is served when set (`http.metrics`).
    metrics: Option<Arc<Metrics>>,
    /// Who besides loopback may read it.
    metrics_from: Arc<Vec<(IpAddr, u8)>>,
    /// `/api/v1/` is served when set (`http.api`).
    api: Option<Arc<Api>>,
}

impl HttpServer {
    /// Load the certificate (if any) and bind every listen address. Logs one line per
    /// listener: "listening for HTTP on tcp 10.0.0.1:8053" (HTTPS when TLS is on).
    pub async fn bind(cfg: &HttpConfig, dyndns: Arc<DynDns>) -> Result<HttpServer, HttpError> {
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        let mut listeners = Vec::new();
        for addr in &cfg.listen {
            // Bound before the privilege drop (`privdrop`) if we started as root.
            let listener = match crate::privdrop::take_tcp(*addr) {
                Some(s) => TcpListener::from_std(s),
                None => TcpListener::bind(addr).await,
            };
            let listener = listener.map_err(|source| HttpError::Bind {
                addr: *addr,
                source,
            })?;
            let real = listener.local_addr().map_err(|source| HttpError::Bind {
                addr: *addr,
                source,
            })?;
            let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
            info!("listening for {scheme} on tcp {real}");
            listeners.push(listener);
        }
        let pool = HashPool::per_core().map_err(|source| HttpError::Bind {
            addr: cfg
                .listen
                .first()
                .copied()
                .unwrap_or(([0, 0, 0, 0], 0).into()),
            source,
        })?;
        Ok(HttpServer {
            listeners,
            tls,
            dyndns,
            pool: Arc::new(pool),
            max_connections: cfg.max_connections,
            metrics: None,
            metrics_from: Arc::new(cfg.metrics_from.clone()),
            api: None,
        })
    }

    /// Serve `/metrics` from `metrics` (without this, `/metrics` is 404).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> HttpServer {
        self.metrics = Some(metrics);
        self
    }

    /// Serve the control API under `/api/v1/` (without this, it is 404).
    pub fn with_api(mut self, api: Api) -> HttpServer {
        self.api = Some(Arc::new(api));
        self
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Accept until `shutdown` completes; connections in flight are left to finish.
    pub async fn run(self, mut shutdown: crate::Shutdown) {
        let shared = Shared {
            tls: self.tls,
            dyndns: self.dyndns,
            pool: self.pool,
            metrics: self.metrics,
            metrics_from: self.metrics_from,
            api: self.api,
        };
        let mut tasks = tokio::task::JoinSet::new();
        for listener in self.listeners {
            let caps = Caps::new(self.max_connections);
            tasks.spawn(accept_loop(listener, shared.clone(), caps));
        }
        let _ = shutdown.wait_for(|stop| *stop).await;
        tasks.abort_all();
        info!("HTTP server stopped");
    }
}

/// One listener's connection caps: `total` open at once, `PER_SOURCE_CONNECTIONS` per source.
struct Caps {
    total: Arc<Semaphore>,
    /// Open connections per source key. std Mutex: held for one map update, never across
    /// `.await`.
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A connection's place under the caps, given back when the connection ends.
struct Slot {
    _permit: OwnedSemaphorePermit,
    source: IpAddr,
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Caps {
    fn new(total: usize) -> Caps {
        Caps {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_source: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for a connection from `peer`, or None when either cap is reached.
    fn take(&self, peer: IpAddr) -> Option<Slot> {
        let source = source_key(peer);
        let mut open = self
            .per_source
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(source).or_insert(0);
        if *count >= PER_SOURCE_CONNECTIONS {
            return None;
        }
        let permit = self.total.clone().try_acquire_owned().ok()?;
        *count += 1;
        Some(Slot {
            _permit: permit,
            source,
            per_source: self.per_source.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .per_source
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.source);
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Shared, caps: Caps) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = caps.take(peer.ip()) else {
            // Closed at once: a flood from one source holds no more than its share.
            debug!(%peer, "HTTP connection refused: connection cap reached");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if tokio::time::timeout(CONNECTION_LIFETIME, connection(stream, peer, shared))
                .await
                .is_err()
            {
                debug!(%peer, "HTTP connection closed: lifetime over");
            }
        });
    }
}

/// One connection: the TLS handshake (bounded in time) or the first byte (same), then HTTP.
async fn connection(stream: TcpStream, peer: SocketAddr, shared: Shared) {
    match shared.tls.clone() {
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve(stream, peer, shared).await,
                Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        }
        None => match tokio::time::timeout(HEADER_TIMEOUT, stream.readable()).await {
            Ok(Ok(())) => serve(stream, peer, shared).await,
            Ok(Err(e)) => debug!(%peer, error = %e, "HTTP connection failed"),
            Err(_) => debug!(%peer, "HTTP connection closed: nothing sent"),
        },
    }
}

async fn serve<S>(stream: S, peer: SocketAddr, shared: Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(req, peer, shared).await) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// The event stream and the status page (when the API is on), else `respond`.
async fn route(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: Shared,
) -> Response<events::AnyBody> {
    use http_body_util::Either;
    let (path, get) = (req.uri().path(), req.method() == Method::GET);
    if let (Some(api), true) = (&shared.api, get) {
        if path == "/api/v1/events" {
            let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
            let ask = events::Ask {
                query: req.uri().query().unwrap_or(""),
                authorization: header(hyper::header::AUTHORIZATION),
                last_event_id: header(hyper::header::HeaderName::from_static("last-event-id")),
                peer: peer.ip(),
            };
            debug!(%peer, "API event stream");
            return events::open(api, &ask);
        }
        if let Some(page) = status::asset(path) {
            return page.map(Either::Left);
        }
    }
    respond(req, peer, shared).await.map(Either::Left)
}

/// Route one request: `GET /nic/update` (and `/v3/update`) to DynDNS2, `GET /metrics` to the
/// metrics (when on), anything else 404.
async fn respond(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: Shared,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if req.method() == Method::GET && path == "/metrics" {
        return metrics(&shared, peer);
    }
    if path.starts_with(api::PREFIX) || path == "/api/v1" {
        return control_api(req, peer, &shared).await;
    }
    if req.method() != Method::GET || !matches!(path, "/nic/update" | "/v3/update") {
        return text(Answer {
            status: 404,
            body: "not found\n".into(),
            challenge: false,
        });
    }
    let query = req.uri().query().unwrap_or("").to_string();
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let dyndns = shared.dyndns;
    let claim = match dyndns.claim(auth.as_deref(), peer.ip()) {
        Ok(claim) => claim,
        Err(answer) => return text(answer),
    };
    // Argon2 is slow and large on purpose: only the pool's threads run it, a few at a time.
    let checker = dyndns.clone();
    let checked = shared
        .pool
        .run(move || {
            let ok = checker.verify(&claim);
            (claim, ok)
        })
        .await;
    let Some((claim, ok)) = checked else {
        debug!(%peer, "DynDNS2: password checks busy, answered 911");
        return text(Answer {
            status: 503,
            body: "911\n".into(),
            challenge: false,
        });
    };
    if let Err(answer) = dyndns.settle(&claim, ok, peer.ip()) {
        return text(answer);
    }
    text(dyndns.update(&claim, &query, peer.ip()).await)
}

/// `/api/v1/...`: JSON answers; 404 (JSON too) when the API is off.
async fn control_api(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: &Shared,
) -> Response<Full<Bytes>> {
    let (req, body) = req.into_parts();
    let reply = match &shared.api {
        Some(api) => match read_body(&req.method, body).await {
            Ok(body) => {
                let authorization = req
                    .headers
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                let call = api::Call {
                    method: &req.method,
                    path: req.uri.path(),
                    query: req.uri.query().unwrap_or(""),
                    authorization,
                    peer: peer.ip(),
                    body: &body,
                };
                api.respond(&call).await
            }
            Err(reply) => reply,
        },
        None => api::Reply::error(404, "the control API is off (http.api)"),
    };
    let req = Request::from_parts(req, ());
    debug!(%peer, method = %req.method(), path = req.uri().path(), status = reply.status, "API");
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = if let Some(allow) = ops::allow(req.uri().path()) {
            allow
        } else if req.uri().path().starts_with("/api/v1/leases/") {
            "GET, DELETE"
        } else {
            "GET"
        };
        headers.insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    }
    response
}

/// The body of an API request (none read for GET), at most `ops::MAX_BODY` bytes, within
/// `HEADER_TIMEOUT`.
async fn read_body(method: &Method, body: Incoming) -> Result<Bytes, api::Reply> {
    use http_body_util::BodyExt;
    if *method == Method::GET || *method == Method::HEAD {
        return Ok(Bytes::new());
    }
    let limited = http_body_util::Limited::new(body, ops::MAX_BODY);
    match tokio::time::timeout(HEADER_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => {
            let m = format!("request body: {e} (at most {} bytes)", ops::MAX_BODY);
            Err(api::Reply::error(413, &m))
        }
        Err(_) => Err(api::Reply::error(408, "request body: not received in time")),
    }
}

/// `/metrics`: 404 when off, 403 to a source neither loopback nor in `http.metrics_from`.
fn metrics(shared: &Shared, peer: SocketAddr) -> Response<Full<Bytes>> {
    let Some(metrics) = &shared.metrics else {
        return text(Answer {
            status: 404,
            body: "not found\n".into(),
            challenge: false,
        });
    };
    if !may_read_metrics(peer.ip(), &shared.metrics_from) {
        debug!(%peer, "metrics refused: source not in http.metrics_from");
        return text(Answer {
            status: 403,
            body: "forbidden\n".into(),
            challenge: false,
        });
    }
    let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

/// Loopback (IPv4-mapped too) always; others when inside one of `from`.
fn may_read_metrics(ip: IpAddr, from: &[(IpAddr, u8)]) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback()
        || from
            .iter()
            .any(|net| crate::dns::server::in_network(ip, *net))
}

fn text(answer: Answer) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if answer.challenge {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"leasedns\""),
        );
    }
    response
}

/// A rustls acceptor for a PEM certificate chain and private key (ring provider).
fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, HttpError> {
    let tls_err = |path: &Path, reason: String| HttpError::Tls {
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect())
        .map_err(|e| tls_err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(cert, "no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, e.to_string()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls_err(cert, e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TestClock;
    use crate::config::{Durability, DynDnsUser};
    use crate::dns::dynamic::DynamicStore;
    use crate::dns::journal::UpdateJournal;
    use crate::dns::names::{NameIndex, Names};
    use std::path::PathBuf;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Running {
        addr: SocketAddr,
        stop: tokio::sync::watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    async fn start(tls: Option<(PathBuf, PathBuf)>, dir: tempfile::TempDir) -> Running {
        let names = NameIndex::new(Names::new("lan", &[]));
        let (journal, _) =
            UpdateJournal::open(&dir.path().join("dns"), Durability::None).expect("journal");
        let store = DynamicStore::new(journal, names);
        let users = vec![DynDnsUser {
            name: "router".into(),
            password_hash: crate::http::auth::hash_password("pw").expect("hash"),
            hosts: vec!["home.lan".into()],
            may_override: false,
        }];
        let dyndns = DynDns::new(users, store, 60, 6, Arc::new(TestClock::at(1000)));
        let (tls_cert, tls_key) = tls.unzip();
        let cfg = HttpConfig {
            listen: vec!["127.0.0.1:0".parse().expect("addr")],
            tls_cert,
            tls_key,
            max_connections: 20,
            ..HttpConfig::default()
        };
        let server = HttpServer::bind(&cfg, Arc::new(dyndns))
            .await
            .expect("bind");
        let addr = server.local_addrs()[0];
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(server.run(shutdown));
        Running {
            addr,
            stop,
            task,
            _dir: dir,
        }
    }

    /// One raw HTTP/1.1 request as ddclient writes it; returns the whole reply text.
    async fn get(addr: SocketAddr, target: &str, auth: Option<(&str, &str)>) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some((u, p)) = auth {
            let token = data_encoding::BASE64.encode(format!("{u}:{p}").as_bytes());
            req.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.expect("send");
        let mut reply = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply))
            .await
            .expect("reply in time")
            .expect("read");
        reply
    }

    fn body(reply: &str) -> &str {
        reply.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    #[tokio::test]
    async fn every_answer_code_over_plain_http() {
        let s = start(None, tempfile::tempdir().expect("tempdir")).await;
        let ok = Some(("router", "pw"));
        let reply = get(s.addr, "/nic/update?hostname=home.lan&myip=192.0.2.1", ok).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(
            reply
                .to_ascii_lowercase()
                .contains("content-type: text/plain")
        );
        assert!(
            reply.to_ascii_lowercase().contains("content-length: 15"),
            "not chunked: {reply}"
        );
        assert_eq!(body(&reply), "good 192.0.2.1\n");
        let same = get(s.addr, "/nic/update?hostname=home.lan&myip=192.0.2.1", ok).await;
        assert_eq!(body(&same), "nochg 192.0.2.1\n");
        // No myip: the caller's address (loopback here).
        let own = get(s.addr, "/nic/update?hostname=home.lan", ok).await;
        assert_eq!(body(&own), "good 127.0.0.1\n");
        let wrong = get(
            s.addr,
            "/nic/update?hostname=home.lan",
            Some(("router", "x")),
        )
        .await;
        assert_eq!(body(&wrong), "badauth\n");
        let none = get(s.addr, "/nic/update?hostname=home.lan", None).await;
        assert!(none.starts_with("HTTP/1.1 401"), "{none}");
        assert!(none.contains("Basic realm=\"leasedns\""));
        assert_eq!(
            body(&get(s.addr, "/nic/update?hostname=nas.lan", ok).await),
            "nohost\n"
        );
        // Wrong passwords count too: this is the sixth request within the minute, then the
        // seventh is over the limit of six.
        assert_eq!(
            body(&get(s.addr, "/nic/update?hostname=home", ok).await),
            "notfqdn\n"
        );
        assert_eq!(
            body(&get(s.addr, "/nic/update?hostname=home.lan", ok).await),
            "abuse\n"
        );
        let other = get(s.addr, "/other", ok).await;
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        let api = get(s.addr, "/api/v1/leases", None).await;
        assert!(api.starts_with("HTTP/1.1 404"), "the API is off: {api}");
        assert!(body(&api).contains("http.api"), "{api}");
        let _ = s.stop.send(true);
        s.task.await.expect("stops");
    }

    #[tokio::test]
    async fn tls_with_a_certificate_from_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl runs");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let s = start(Some((cert.clone(), key.clone())), dir).await;
        let url = format!(
            "https://localhost:{}/nic/update?hostname=home.lan&myip=192.0.2.5",
            s.addr.port()
        );
        let resolve = format!("localhost:{}:127.0.0.1", s.addr.port());
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&cert)
            .args(["--resolve", &resolve, "-u", "router:pw", &url])
            .output()
            .await
            .expect("curl runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "good 192.0.2.5\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A client that never sends a ClientHello is closed by the handshake timeout.
        let mut silent = silent_from([127, 0, 0, 6], s.addr).await;
        assert!(closed_within(&mut silent, HANDSHAKE_TIMEOUT * 3).await);
        // Plain HTTP to the TLS port gets nothing useful.
        let plain = tokio::time::timeout(
            Duration::from_secs(5),
            get(
                s.addr,
                "/nic/update?hostname=home.lan",
                Some(("router", "pw")),
            ),
        )
        .await
        .unwrap_or_default();
        assert!(!plain.contains("good"), "{plain}");
        // A key file that is not a key: bind fails naming it.
        let bad = HttpConfig {
            listen: vec![],
            tls_cert: Some(cert.clone()),
            tls_key: Some(cert),
            ..HttpConfig::default()
        };
        let store_dir = tempfile::tempdir().expect("tempdir");
        let (journal, _) =
            UpdateJournal::open(&store_dir.path().join("dns"), Durability::None).expect("journal");
        let store = DynamicStore::new(journal, NameIndex::new(Names::new("lan", &[])));
        let dyndns = DynDns::new(vec![], store, 60, 5, Arc::new(TestClock::at(0)));
        let err = HttpServer::bind(&bad, Arc::new(dyndns))
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("cert.pem"), "{err}");
        let _ = s.stop.send(true);
    }

    /// A connection to `to` from loopback address `from` that sends nothing.
    async fn silent_from(from: [u8; 4], to: SocketAddr) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind((from, 0).into()).expect("bind");
        socket.connect(to).await.expect("connect")
    }

    /// Whether the server closed `stream` within `wait` (EOF or reset).
    async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(wait, stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[test]
    fn metrics_readers_are_loopback_and_the_listed_networks() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        let none: Vec<(IpAddr, u8)> = Vec::new();
        for local in ["127.0.0.1", "127.3.0.9", "::1", "::ffff:127.0.0.1"] {
            assert!(may_read_metrics(ip(local), &none), "{local}");
        }
        assert!(!may_read_metrics(ip("10.0.0.5"), &none));
        let from = vec![(ip("10.0.0.0"), 24), (ip("fd00::"), 8)];
        assert!(may_read_metrics(ip("10.0.0.5"), &from));
        assert!(may_read_metrics(ip("::ffff:10.0.0.5"), &from));
        assert!(may_read_metrics(ip("fd12::1"), &from));
        assert!(!may_read_metrics(ip("10.0.1.5"), &from));
        assert!(!may_read_metrics(ip("fe80::1"), &from));
    }

    #[tokio::test]
    async fn metrics_only_when_configured_in_the_text_format() {
        let s = start(None, tempfile::tempdir().expect("tempdir")).await;
        let off = get(s.addr, "/metrics", None).await;
        assert!(off.starts_with("HTTP/1.1 404"), "{off}");
        let _ = s.stop.send(true);
        let cfg = HttpConfig {
            listen: vec!["127.0.0.1:0".parse().expect("addr")],
            metrics: true,
            ..HttpConfig::default()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, _) =
            UpdateJournal::open(&dir.path().join("dns"), Durability::None).expect("journal");
        let store = DynamicStore::new(journal, NameIndex::new(Names::new("lan", &[])));
        let dyndns = DynDns::new(vec![], store, 60, 5, Arc::new(TestClock::at(0)));
        let counters = Arc::new(crate::dns::listen::Counters::default());
        counters
            .answered
            .store(42, std::sync::atomic::Ordering::Relaxed);
        let metrics = Metrics {
            dns: Some(counters),
            ..Metrics::default()
        };
        let server = HttpServer::bind(&cfg, Arc::new(dyndns))
            .await
            .expect("bind")
            .with_metrics(Arc::new(metrics));
        let addr = server.local_addrs()[0];
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(server.run(shutdown));
        let on = get(addr, "/metrics", None).await;
        assert!(on.starts_with("HTTP/1.1 200"), "{on}");
        assert!(
            on.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{on}"
        );
        assert!(
            body(&on).contains("\nleasedns_dns_responses_total 42\n"),
            "{on}"
        );
        // No DynDNS2 users: updates are refused, metrics still served.
        let update = get(
            addr,
            "/nic/update?hostname=home.lan",
            Some(("router", "pw")),
        )
        .await;
        assert_eq!(body(&update), "badauth\n");
        let _ = stop.send(true);
        task.await.expect("stops");
    }

    /// The API over real HTTP: its commands answered by a task standing in for the DHCP
    /// thread (one lease on 10.0.0.7; ending it once works, then 404).
    #[tokio::test]
    async fn api_answers_json_with_the_right_codes_and_headers() {
        use crate::dhcp::control::{Command, Control, LeaseCounts, LeaseView};
        let (control, mut rx) = Control::new(Arc::new(crate::net::Wake::new().expect("eventfd")));
        let lease = LeaseView {
            ip: [10, 0, 0, 7].into(),
            mac: "02:00:00:00:00:07".into(),
            client_id: "0102".into(),
            hostname: Some("pc".into()),
            expires: 2000,
            state: "bound".into(),
            subnet: Some("10.0.0.0/24".into()),
        };
        let held = lease.clone();
        tokio::spawn(async move {
            let mut live = Some(held);
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    Command::Leases(r) => drop(r.send(live.iter().cloned().collect())),
                    Command::Counts(r) => drop(r.send(LeaseCounts {
                        bound: live.iter().count() as u64,
                        declined: 0,
                    })),
                    Command::End { ip, reply } => {
                        let ended = live.take_if(|l| l.ip == ip);
                        drop(reply.send(Ok(ended)));
                    }
                    _ => {}
                }
            }
        });
        let cfg = HttpConfig {
            listen: vec!["127.0.0.1:0".parse().expect("addr")],
            ..HttpConfig::default()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, _) =
            UpdateJournal::open(&dir.path().join("dns"), Durability::None).expect("journal");
        let store = DynamicStore::new(journal, NameIndex::new(Names::new("lan", &[])));
        let dyndns = DynDns::new(vec![], store, 60, 5, Arc::new(TestClock::at(0)));
        let names: crate::dns::names::SharedNames =
            crate::dns::names::NameIndex::new(Names::new("lan", &[]));
        let events = crate::dhcp::events::Events::default();
        let api = Api {
            control,
            token: "0123456789abcdef".into(),
            metrics: Arc::new(Metrics::default()),
            started: std::time::Instant::now(),
            names: names.clone(),
            events: events.clone(),
            reload: None,
        };
        let server = HttpServer::bind(&cfg, Arc::new(dyndns))
            .await
            .expect("bind")
            .with_api(api);
        let addr = server.local_addrs()[0];
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(server.run(shutdown));
        let send = |method: &str, target: &str, token: Option<&str>| {
            let mut req = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
            if let Some(t) = token {
                req.push_str(&format!("Authorization: Bearer {t}\r\n"));
            }
            req.push_str("\r\n");
            async move {
                let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                stream.write_all(req.as_bytes()).await.expect("send");
                let mut reply = String::new();
                stream.read_to_string(&mut reply).await.expect("read");
                reply
            }
        };
        let list = send("GET", "/api/v1/leases", None).await;
        assert!(list.starts_with("HTTP/1.1 200"), "{list}");
        assert!(
            list.to_ascii_lowercase()
                .contains("content-type: application/json")
        );
        let parsed: Vec<LeaseView> = serde_json::from_str(body(&list)).expect("JSON");
        assert_eq!(parsed, vec![lease.clone()]);
        let one = send("GET", "/api/v1/leases/10.0.0.7", None).await;
        assert!(body(&one).contains("\"hostname\":\"pc\""), "{one}");
        let status = send("GET", "/api/v1/status", None).await;
        assert!(body(&status).contains("\"bound\":1"), "{status}");
        let bad = send("GET", "/api/v1/leases/10.0.0.300", None).await;
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
        assert!(body(&bad).contains("10.0.0.300") && body(&bad).starts_with("{\"error\":"));
        let denied = send("DELETE", "/api/v1/leases/10.0.0.7", None).await;
        assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
        assert!(denied.contains("www-authenticate: Bearer"), "{denied}");
        let wrong = send(
            "DELETE",
            "/api/v1/leases/10.0.0.7",
            Some("0123456789abcdeF"),
        )
        .await;
        assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
        let ended = send(
            "DELETE",
            "/api/v1/leases/10.0.0.7",
            Some("0123456789abcdef"),
        )
        .await;
        assert!(ended.starts_with("HTTP/1.1 200"), "{ended}");
        assert_eq!(
            serde_json::from_str::<LeaseView>(body(&ended)).expect("JSON"),
            lease
        );
        let again = send(
            "DELETE",
            "/api/v1/leases/10.0.0.7",
            Some("0123456789abcdef"),
        )
        .await;
        assert!(again.starts_with("HTTP/1.1 404"), "{again}");
        let post = send("POST", "/api/v1/events", Some("0123456789abcdef")).await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let method = send("PUT", "/api/v1/status", Some("0123456789abcdef")).await;
        assert!(method.starts_with("HTTP/1.1 405"), "{method}");
        assert!(method.contains("allow: GET"), "{method}");
        let unknown = send("GET", "/api/v1/nothing", None).await;
        assert!(unknown.starts_with("HTTP/1.1 404") && body(&unknown).contains("error"));
        let listed = send("GET", "/api/v1/names", None).await;
        assert!(
            listed.starts_with("HTTP/1.1 200") && body(&listed) == "[]",
            "{listed}"
        );
        let conflicts = send("GET", "/api/v1/conflicts", None).await;
        assert!(conflicts.starts_with("HTTP/1.1 200"), "{conflicts}");
        let pools = send("GET", "/api/v1/pools", None).await;
        assert!(
            pools.starts_with("HTTP/1.1 503"),
            "no DHCP service here: {pools}"
        );
        let page = send("GET", "/status", None).await;
        assert!(page.starts_with("HTTP/1.1 200") && page.contains("<title>leasedns"));
        let home = send("GET", "/", None).await;
        assert!(home.starts_with("HTTP/1.1 303") && home.contains("location: /status"));
        events_stream(addr, &events, &names).await;
        let _ = stop.send(true);
        task.await.expect("stops");
    }

    /// `/api/v1/events` over real HTTP: events once a reader is there, as SSE.
    async fn events_stream(
        addr: SocketAddr,
        events: &crate::dhcp::events::Events,
        names: &crate::dns::names::SharedNames,
    ) {
        use crate::lease::{ClientId, HwAddr, Lease, LeaseChange, LeaseState};
        let cfg = crate::config::Config::parse(
            "domain = \"lan\"\nlease_file = \"/nonexistent/l\"\n[[subnet]]\n\
             network = \"10.0.0.0/24\"\npool_start = \"10.0.0.100\"\npool_end = \"10.0.0.199\"\n",
            Path::new("t.toml"),
        )
        .expect("config");
        let change = |mac: u8| {
            let hw = HwAddr::ethernet([2, 0, 0, 0, 0, mac]);
            vec![LeaseChange::Upsert(Lease {
                ip: [10, 0, 0, 100 + mac].into(),
                client: ClientId::from_hw(&hw),
                hwaddr: hw,
                hostname: None,
                expires: crate::clock::UnixTime(5000),
                state: LeaseState::Bound,
            })]
        };
        // Not kept: nobody reads yet.
        events.publish(&change(9), &cfg, names);
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = "GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n";
        stream.write_all(req.as_bytes()).await.expect("send");
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        let mut published = 0;
        while !seen.contains("10.0.0.102") {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("events in time")
                .expect("read");
            assert!(n > 0, "stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            // The stream starts with `retry:` once the reader is subscribed.
            if published == 0 && seen.contains("retry: ") {
                events.publish(&change(1), &cfg, names);
                published = 1;
            }
            if published == 1 && seen.contains("10.0.0.101") {
                events.publish(&change(2), &cfg, names);
                published = 2;
            }
        }
        assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
        assert!(seen.contains("content-type: text/event-stream"), "{seen}");
        assert!(seen.contains("event: lease\nid: 1\n"), "{seen}");
        assert!(!seen.contains("10.0.0.109"), "{seen}");
        assert!(
            seen.contains("\"action\":\"add\",\"ip\":\"10.0.0.102\""),
            "{seen}"
        );
    }

    #[tokio::test]
    async fn connection_caps_per_source_and_per_listener() {
        let s = start(None, tempfile::tempdir().expect("tempdir")).await;
        let mut held = Vec::new();
        // One source keeps at most PER_SOURCE_CONNECTIONS: the next one is closed at once.
        for _ in 0..PER_SOURCE_CONNECTIONS {
            held.push(silent_from([127, 0, 0, 2], s.addr).await);
        }
        let mut extra = silent_from([127, 0, 0, 2], s.addr).await;
        assert!(closed_within(&mut extra, Duration::from_secs(5)).await);
        let ok = Some(("router", "pw"));
        let reply = get(s.addr, "/nic/update?hostname=home.lan&myip=192.0.2.1", ok).await;
        assert_eq!(body(&reply), "good 192.0.2.1\n", "another source is served");
        // This listener holds 20 (start() sets max_connections = 20): fill it from more sources.
        for source in 3..=4 {
            for _ in 0..PER_SOURCE_CONNECTIONS {
                held.push(silent_from([127, 0, 0, source], s.addr).await);
            }
        }
        let mut over = silent_from([127, 0, 0, 5], s.addr).await;
        assert!(
            closed_within(&mut over, Duration::from_secs(5)).await,
            "listener full"
        );
        // Silent connections are closed by the first-byte timeout; then all is well again.
        for stream in &mut held {
            assert!(
                closed_within(stream, HEADER_TIMEOUT * 3).await,
                "closed by the timeout"
            );
        }
        let reply = get(s.addr, "/nic/update?hostname=home.lan&myip=192.0.2.2", ok).await;
        assert_eq!(body(&reply), "good 192.0.2.2\n");
        let _ = s.stop.send(true);
    }
}
