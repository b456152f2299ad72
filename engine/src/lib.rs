//! The exchange engine. See ARCHITECTURE.md for the module map.
pub mod api;
pub mod book;
pub mod db;
pub mod gateway;
pub mod ledger;
pub mod loadgen;
pub mod matching;
pub mod metrics;
pub mod monitor;
pub mod node;
pub mod otc;
pub mod partition;
pub mod perp;
pub mod protocol;
pub mod reconcile;
pub mod requests;
pub mod settle;
pub mod spot;
pub mod tokens;
pub mod wallet;

/// Version string printed by `--version`: crate version and the build's git sha.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("ENGINE_GIT_SHA"), ")");

/// Constant-time string comparison for tokens.
pub fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hex SHA-256, used to store API keys.
pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in sha2::Sha256::digest(s.as_bytes()) {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// Installs the tracing subscriber: JSON lines (default) or text.
pub fn init_logging(log: &engine_config::LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if log.format == "text" { b.try_init() } else { b.json().try_init() };
}

/// Binds the HTTP listener; every accepted connection gets `TCP_NODELAY`: answers are
/// small and latency-bound, and Nagle would hold one back behind an unacknowledged one.
/// (A named type, so that axum gives a router served on it the peer's `SocketAddr` as
/// connect info.)
pub async fn listen(addr: &str) -> std::io::Result<Listener> {
    use axum::serve::ListenerExt;
    Ok(tokio::net::TcpListener::bind(addr).await?.tap_io(nodelay as fn(&mut tokio::net::TcpStream)))
}

/// What `listen` binds: a TCP listener that sets `TCP_NODELAY` on each connection.
pub type Listener = axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)>;

fn nodelay(s: &mut tokio::net::TcpStream) {
    if let Err(e) = s.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
