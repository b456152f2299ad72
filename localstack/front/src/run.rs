//! Starts the three parts of the front and runs until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;

/// Everything `labfront run` is told. Defaults are the lab's (see main.rs).
#[derive(Debug, Clone)]
pub struct Opts {
    /// The API front's address (AWS calls and `/_front/*`).
    pub listen: SocketAddr,
    /// LocalStack, which stays behind the front.
    pub backend_url: String,
    /// The DNS server's loopback address (UDP and TCP); VPC bridge addresses are added on port 53.
    pub dns_listen: SocketAddr,
    /// Simulated Route53 health checkers per check.
    pub checkers: usize,
    /// A throttling fraction applied to every (region, service) without a fault of its own.
    pub throttle_all: f64,
    /// Eventual consistency window after an EC2 create; 0 = off.
    pub consistency_ms: u64,
}

/// Shared by the proxy, the control API, the checkers and the DNS server.
pub struct Front {
    pub opts: Opts,
    pub faults: crate::faults::FaultTable,
    pub consistency: crate::consistency::Consistency,
    pub checkers: Arc<crate::checkers::Checkers>,
    pub zones: Arc<crate::zones::Zones>,
    pub backend: crate::backend::Backend,
    pub calls: crate::calls::CallLog,
    pub quotas: crate::quotas::Quotas,
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let backend = crate::backend::Backend::new(&opts.backend_url).await;
    let checkers = Arc::new(crate::checkers::Checkers::new(opts.checkers));
    let zones = Arc::new(crate::zones::Zones::default());
    let front = Arc::new(Front {
        faults: crate::faults::FaultTable::new(opts.throttle_all),
        consistency: crate::consistency::Consistency::new(opts.consistency_ms),
        checkers: checkers.clone(),
        zones: zones.clone(),
        backend: backend.clone(),
        opts: opts.clone(),
        calls: Default::default(),
        quotas: Default::default(),
    });
    let checkers_task = tokio::spawn(crate::checkers::run(checkers.clone(), backend.clone()));
    let zones_task = tokio::spawn(crate::zones::run(zones.clone(), backend.clone()));
    let dns_task = tokio::spawn(crate::dns::run(opts.dns_listen, zones, checkers));
    let proxy_task = tokio::spawn(crate::proxy::serve(front));
    tracing::info!(listen = %opts.listen, backend = %opts.backend_url, dns = %opts.dns_listen, "labfront running");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        r = proxy_task => r??,
        r = dns_task => r??,
    }
    checkers_task.abort();
    zones_task.abort();
    tracing::info!("labfront stopped; every fault is gone with it");
    Ok(())
}
