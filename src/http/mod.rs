//! The HTTP listener (hyper 1, HTTP/1.1, optionally TLS with rustls): today it serves DynDNS2
//! `GET /nic/update` (see `dyndns`); `auth` holds credentials and the rate limit. Owns binding
//! and connections; must not decide answers itself.

pub mod auth;
pub mod dyndns;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{debug, info};

use crate::config::HttpConfig;
use crate::http::dyndns::{Answer, DynDns};

/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

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
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| HttpError::Bind {
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
        Ok(HttpServer {
            listeners,
            tls,
            dyndns,
        })
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Accept until `shutdown` completes; connections in flight are left to finish.
    pub async fn run(self, mut shutdown: crate::Shutdown) {
        let mut tasks = tokio::task::JoinSet::new();
        for listener in self.listeners {
            tasks.spawn(accept_loop(listener, self.tls.clone(), self.dyndns.clone()));
        }
        let _ = shutdown.wait_for(|stop| *stop).await;
        tasks.abort_all();
        info!("HTTP server stopped");
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, dyndns: Arc<DynDns>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (tls, dyndns) = (tls.clone(), dyndns.clone());
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => serve(stream, peer, dyndns).await,
                    Err(e) => debug!(%peer, error = %e, "TLS handshake failed"),
                },
                None => serve(stream, peer, dyndns).await,
            }
        });
    }
}

async fn serve<S>(stream: S, peer: SocketAddr, dyndns: Arc<DynDns>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let dyndns = dyndns.clone();
        async move { Ok::<_, Infallible>(respond(req, peer, dyndns).await) }
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

/// Route one request: `GET /nic/update` (and `/v3/update`) to DynDNS2, anything else 404.
async fn respond(
    req: Request<Incoming>,
    peer: SocketAddr,
    dyndns: Arc<DynDns>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
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
    let claim = match dyndns.claim(auth.as_deref()) {
        Ok(claim) => claim,
        Err(answer) => return text(answer),
    };
    // Argon2 is slow on purpose: keep it off the async worker threads.
    let checker = dyndns.clone();
    let (claim, ok) = match tokio::task::spawn_blocking(move || {
        let ok = checker.verify(&claim);
        (claim, ok)
    })
    .await
    {
        Ok(result) => result,
        Err(_) => {
            return text(Answer {
                status: 500,
                body: "911\n".into(),
                challenge: false,
            });
        }
    };
    if !ok {
        info!(%peer, "DynDNS2: bad password");
        return text(Answer {
            status: 200,
            body: "badauth\n".into(),
            challenge: false,
        });
    }
    text(dyndns.update(&claim, &query, peer.ip()))
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
    use crate::dns::names::Names;
    use std::path::PathBuf;
    use std::sync::RwLock;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Running {
        addr: SocketAddr,
        stop: tokio::sync::watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    async fn start(tls: Option<(PathBuf, PathBuf)>, dir: tempfile::TempDir) -> Running {
        let names = Arc::new(RwLock::new(Names::new("lan", &[])));
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
        let store = DynamicStore::new(journal, Arc::new(RwLock::new(Names::new("lan", &[]))));
        let dyndns = DynDns::new(vec![], store, 60, 5, Arc::new(TestClock::at(0)));
        let err = HttpServer::bind(&bad, Arc::new(dyndns))
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("cert.pem"), "{err}");
        let _ = s.stop.send(true);
    }
}
