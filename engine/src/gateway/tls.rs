//! HTTPS on the gateway's public listener: rustls with the ring provider (TLS 1.2 and 1.3,
//! rustls' safe defaults), HTTP/1.1, each handshake bounded and done off the accept loop
//! (axum-server), every connection with `TCP_NODELAY` as on the plain listener.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum_server::accept::{TcpConfigAcceptor, TcpSocketConfig};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use engine_config::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Open connections may finish their requests for this long after SIGTERM.
pub const SHUTDOWN_GRACE_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {what}: {message}")]
    File { path: String, what: &'static str, message: String },
    #[error("{path}: holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("the certificate and the key do not make a server identity: {0}")]
    Identity(String),
}

/// The server identity from `files`: the chain (leaf first) and its key.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = read_chain(&files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|e| file_error(&files.key_file, "private key", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Identity(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Identity(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(path, "certificate chain", e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.display().to_string() });
    }
    Ok(certs)
}

fn file_error(path: &Path, what: &'static str, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::File { path: path.display().to_string(), what, message: e.to_string() }
}

/// Serves `app` over HTTPS on `listener` until SIGTERM or Ctrl-C; the peer's address is the
/// connect info, as on the plain listener.
pub async fn serve(listener: std::net::TcpListener, cfg: Arc<rustls::ServerConfig>, app: axum::Router) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let on_signal = handle.clone();
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        on_signal.graceful_shutdown(Some(Duration::from_millis(SHUTDOWN_GRACE_MS)));
    });
    let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(cfg))
        .handshake_timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS))
        .acceptor(TcpConfigAcceptor::new(TcpSocketConfig::new().nodelay(true)));
    let server = axum_server::from_tcp(listener)?.acceptor(acceptor).handle(handle).http1_only();
    server.serve(app.into_make_service_with_connect_info::<SocketAddr>()).await
}
