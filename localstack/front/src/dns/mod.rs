//! The DNS data plane: an authoritative server (hickory-server) over UDP and TCP on the loopback
//! address it is given and, on port 53, on every VPC bridge address of the lab (as EC2 instances
//! reach the VPC resolver), added as bridges appear.

pub mod bridges;
pub mod handler;

use handler::Handler;
use hickory_server::ServerFuture;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The port hosts query on the VPC bridge addresses.
pub const BRIDGE_DNS_PORT: u16 = 53;
/// How often the bridges' addresses are scanned.
pub const BRIDGE_SCAN_INTERVAL_MS: u64 = 1000;
/// Idle TCP connections are closed after this.
pub const TCP_IDLE_TIMEOUT_MS: u64 = 10_000;
/// Bound on the bridge addresses served.
pub const BRIDGE_ADDRESSES_MAX: usize = 256;

pub async fn run(listen: SocketAddr, zones: Arc<crate::zones::Zones>, checkers: Arc<crate::checkers::Checkers>) -> anyhow::Result<()> {
    let handler = Handler { zones, checkers };
    let mut main = serve(handler.clone(), listen).await?;
    let scan = tokio::spawn(serve_bridges(handler));
    let result = main.block_until_done().await;
    scan.abort();
    Ok(result?)
}

/// A server answering on `addr` over UDP and TCP.
pub async fn serve(handler: Handler, addr: SocketAddr) -> std::io::Result<ServerFuture<Handler>> {
    let udp = tokio::net::UdpSocket::bind(addr).await?;
    let tcp = tokio::net::TcpListener::bind(addr).await?;
    let mut server = ServerFuture::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_millis(TCP_IDLE_TIMEOUT_MS));
    Ok(server)
}

/// Adds a server on port 53 of each new bridge address; servers stay when an address goes (it
/// may come back).
async fn serve_bridges(handler: Handler) {
    serve_appearing(handler, BRIDGE_DNS_PORT, bridges::addresses).await
}

/// Every `BRIDGE_SCAN_INTERVAL_MS`, asks `scan` for addresses and serves DNS on `port` of each new
/// one (bounded by `BRIDGE_ADDRESSES_MAX`); a failed bind is retried at the next scan.
pub async fn serve_appearing<F, Fut>(handler: Handler, port: u16, scan: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<Ipv4Addr>>,
{
    let mut served: HashMap<Ipv4Addr, ServerFuture<Handler>> = HashMap::new();
    let mut failed: HashSet<Ipv4Addr> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(BRIDGE_SCAN_INTERVAL_MS));
    loop {
        tick.tick().await;
        for ip in scan().await {
            if served.contains_key(&ip) || served.len() >= BRIDGE_ADDRESSES_MAX {
                continue;
            }
            match serve(handler.clone(), SocketAddr::from((ip, port))).await {
                Ok(server) => {
                    tracing::info!(%ip, port, "DNS on a VPC bridge address");
                    served.insert(ip, server);
                    failed.remove(&ip);
                }
                Err(e) if failed.insert(ip) => tracing::warn!(%ip, error = %e, "cannot serve DNS on a VPC bridge address; retrying"),
                Err(_) => {}
            }
        }
    }
}
