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
