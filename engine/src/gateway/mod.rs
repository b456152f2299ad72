//! `engine-gateway`: the public REST API (`listen`: `/v1/*` and `/health`) and the admin
//! API (`admin_listen`, a private address: `/admin/*` and `/metrics`). Authenticates users
//! (API key) and admins (admin token, on the admin listener only), validates requests, and
//! forwards writes to the current leader of their partition, retrying idempotently across
//! failovers: user calls with the region's internal token, admin calls with the admin
//! token. Reads go to the DB. `/health` says whether the region can take writes;
//! `/metrics` is Prometheus text.
//!
//! One role per file: `nodes` (the node table: liveness, who leads what, health),
//! `probe` (the DB probe), `route` (forwarding to leaders with retries, and the order
//! batching), `auth` (API keys, admin token), `reads` (DB sessions and SQL reads),
//! `limit` (the per-address limit on unauthenticated reads), `handlers` (the HTTP
//! handlers, one shape for every forwarded write). The router needs the peer address:
//! serve it with `into_make_service_with_connect_info::<SocketAddr>()`.

mod auth;
mod handlers;
mod limit;
mod nodes;
mod probe;
mod reads;
mod route;
pub mod tls;

pub use nodes::NodeView;
pub use route::{Coalescer, Outcome};

use crate::db;
use crate::metrics::Metrics;
use engine_config::GatewayConfig;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default `db.connections_max` of the gateway: the DB probe's session, the readers on the
/// primary and on any host, and the admin writer.
pub const DEFAULT_DB_SESSIONS: usize = 4;

pub struct Gateway {
    pub cfg: GatewayConfig,
    tokens: crate::tokens::Tokens,
    pub(crate) http: reqwest::Client,
    pub nodes: Vec<Arc<NodeView>>,
    pg_any: db::Target,
    pg_rw: db::Target,
    reader: tokio::sync::Mutex<Option<db::Session>>,
    reader_any: tokio::sync::Mutex<Option<db::Session>>,
    writer: tokio::sync::Mutex<Option<db::Session>>,
    /// After a failed connection of a reader or the writer: no new attempt before this
    /// instant (jittered exponential backoff), requests meanwhile get 503 at once.
    reconnect: Mutex<(Option<Instant>, db::Backoff)>,
    /// Since when the probe's own synchronous commit has been outstanding.
    probe_in_flight: Mutex<Option<Instant>>,
    db_writable: AtomicBool,
    db_reason: Mutex<String>,
    keys: Mutex<HashMap<String, i64>>,
    batcher: std::sync::OnceLock<Coalescer>,
    /// Unauthenticated reads per client address (`limit`).
    public_reads: limit::PublicReads,
    pub metrics: Metrics,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gateway {
    pub fn new(cfg: GatewayConfig, tokens: crate::tokens::Tokens, pg_rw: db::Target, pg_any: db::Target) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(250))
            .timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        let nodes = cfg.nodes.iter().map(|p| Arc::new(NodeView::new(p.clone()))).collect();
        let backoff = db::Backoff::new(&pg_rw.limits);
        let cfg_reads = (cfg.public_reads_per_s_max, cfg.public_reads_burst_max);
        Arc::new(Gateway {
            cfg,
            tokens,
            http,
            nodes,
            pg_any,
            pg_rw,
            reader: tokio::sync::Mutex::new(None),
            reader_any: tokio::sync::Mutex::new(None),
            writer: tokio::sync::Mutex::new(None),
            reconnect: Mutex::new((None, backoff)),
            probe_in_flight: Mutex::new(None),
            db_writable: AtomicBool::new(false),
            db_reason: Mutex::new("not checked yet".into()),
            keys: Mutex::new(HashMap::new()),
            batcher: std::sync::OnceLock::new(),
            public_reads: limit::PublicReads::new(cfg_reads.0, cfg_reads.1),
            metrics: Metrics::default(),
        })
    }

    /// Background probes: every node's status, and whether the DB takes writes; and the
    /// per-market order batching tasks.
    pub fn spawn_probes(self: &Arc<Self>) {
        let _ = self.batcher.set(Coalescer::start(self));
        let period = Duration::from_millis(self.cfg.probe_interval_ms.max(20));
        for n in &self.nodes {
            let g = self.clone();
            let n = n.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                loop {
                    tick.tick().await;
                    g.probe_node(&n, period).await;
                }
            });
        }
        let g = self.clone();
        tokio::spawn(async move { g.probe_db().await });
        let g = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(limit::FORGET_EVERY);
            while let Some(g) = (tick.tick().await, g.upgrade()).1 {
                let kept = g.public_reads.forget_idle();
                g.metrics.set("engine_gateway_public_read_addresses".into(), kept as f64);
            }
        });
    }

    pub(crate) fn admin_token(&self) -> &str {
        &self.tokens.admin
    }

    pub(crate) fn internal_token(&self) -> &str {
        &self.tokens.internal
    }

    /// The public listener's routes: `/v1/*` and `/health` (anything else is 404).
    pub fn router(self: &Arc<Self>) -> axum::Router {
        handlers::router(self.clone())
    }

    /// The admin listener's routes: `/admin/*` and `/metrics`.
    pub fn admin_router(self: &Arc<Self>) -> axum::Router {
        handlers::admin_router(self.clone())
    }
}
