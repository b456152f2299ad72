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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A self-signed identity for `name`, written as PEM files in `dir`.
    fn identity(dir: &Path, name: &str) -> (TlsFiles, String) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let (cert_file, key_file) = (dir.join("chain.pem"), dir.join("key.pem"));
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
        (TlsFiles { cert_file, key_file }, cert.cert.pem())
    }

    /// Clients that connect and never start a handshake (hung or hostile) neither block the
    /// accept loop nor hold a connection past `HANDSHAKE_TIMEOUT_MS`, with the shipped bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_clients_are_dropped_after_the_handshake_bound_and_block_no_one() {
        let dir = tempfile::tempdir().unwrap();
        let (files, ca_pem) = identity(dir.path(), "api.test");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
        tokio::spawn(serve(listener, server_config(&files).unwrap(), app));

        const SILENT_CLIENTS: usize = 64;
        let silent: Vec<std::net::TcpStream> = (0..SILENT_CLIENTS).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .resolve("api.test", addr)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let answer = client.get(format!("https://api.test:{}/health", addr.port())).send().await.unwrap();
        assert_eq!(answer.status(), 200, "served while {SILENT_CLIENTS} clients sit in their handshakes");

        let started = std::time::Instant::now();
        let closed_after_ms = tokio::task::spawn_blocking(move || {
            let mut s = &silent[0];
            s.set_read_timeout(Some(Duration::from_millis(HANDSHAKE_TIMEOUT_MS + 5_000))).unwrap();
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf);
            assert!(matches!(n, Ok(0)) || n.is_err(), "the server sent {n:?} to a client that said nothing");
            started.elapsed().as_millis() as u64
        })
        .await
        .unwrap();
        assert!(closed_after_ms < HANDSHAKE_TIMEOUT_MS + 5_000, "a silent client was held {closed_after_ms} ms");
    }
}
