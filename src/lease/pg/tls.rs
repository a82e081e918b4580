//! TLS to the database (rustls with the ring provider, as the HTTPS listener; through the
//! `tokio-postgres-rustls` adapter). Two modes, as libpq's:
//! - with `tls_ca_file`: the server's certificate must chain to a CA in that file and name the
//!   URL's host (a DNS name, or an IP address in its subjectAltName): libpq's `verify-full`;
//! - without it: the connection is encrypted when the URL's `sslmode` asks for it (`require`)
//!   or the server offers it (`prefer`, the default), but the server is not authenticated:
//!   libpq's `require`. The daemon says so once at start.
//!
//! The CA file is read once, when the settings are made (at start, before the privilege drop,
//! as the password file), so it need not be readable by the user the daemon runs as.

use std::path::Path;
use std::sync::Arc;

use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};

use super::PgError;

/// The connector for one connection attempt: the server verified against `roots`, or (none)
/// not authenticated.
pub fn connector(roots: Option<&Arc<RootCertStore>>) -> Result<MakeRustlsConnect, PgError> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Config(format!("TLS: {e}")))?;
    let config = match roots {
        Some(roots) => builder
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unauthenticated(provider)))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The CA certificates of a PEM file (at least one).
pub fn roots(path: &Path) -> Result<RootCertStore, PgError> {
    let bad = |e: &dyn std::fmt::Display| {
        PgError::Config(format!(
            "lease_database.tls_ca_file {}: {e}",
            path.display()
        ))
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(bad(&"holds no PEM certificate"));
    }
    Ok(roots)
}

/// Accepts any certificate (no CA given: encryption without authentication, as libpq's
/// `sslmode=require`), but still checks that the server holds the certificate's key (the
/// handshake signatures), so the session keys are the server's.
#[derive(Debug)]
struct Unauthenticated(Arc<CryptoProvider>);

impl ServerCertVerifier for Unauthenticated {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        let algs = &self.0.signature_verification_algorithms;
        tokio_rustls::rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        let algs = &self.0.signature_verification_algorithms;
        tokio_rustls::rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
