//! `engine-gateway`: the public REST API. Authenticates users (API key) and admins,
//! validates requests, and forwards writes to the current leader of their partition,
//! retrying idempotently across failovers. Reads go to the DB. `/health` says whether the
//! region can take writes; `/metrics` is Prometheus text.

use crate::api::{ApiError, Reply};
use crate::coalesce::Coalescer;
use crate::db;
use crate::metrics::{label, Metrics};
use crate::node::{respond, ADMIN_HEADER, USER_HEADER};
use crate::requests::{self as rq, parse};
use crate::wallet::shard_of;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine_config::{GatewayConfig, PeerConfig};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const API_KEY_HEADER: &str = "x-api-key";

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct NodeStatus {
    pub node_id: String,
    pub module: String,
    pub mode: String,
    pub isolated: bool,
    pub leading: Vec<String>,
    /// Partitions it leads whose DB work (usually a commit) is outstanding: age in ms.
    #[serde(default)]
    pub in_flight_ms: HashMap<String, u64>,
    /// When this status was received.
    #[serde(skip)]
    pub received: Option<Instant>,
}

/// Default `db.connections_max` of the gateway: the DB probe's session, the readers on the
/// primary and on any host, and the admin writer.
pub const DEFAULT_DB_SESSIONS: usize = 4;

pub struct NodeView {
    pub peer: PeerConfig,
    pub alive: AtomicBool,
    pub status: Mutex<NodeStatus>,
}

pub struct Gateway {
    pub cfg: GatewayConfig,
    admin_token: String,
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
    pub metrics: Metrics,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gateway {
    pub fn new(cfg: GatewayConfig, admin_token: String, pg_rw: db::Target, pg_any: db::Target) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(250))
            .timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        let nodes = cfg
            .nodes
            .iter()
            .map(|p| Arc::new(NodeView { peer: p.clone(), alive: AtomicBool::new(false), status: Mutex::new(NodeStatus::default()) }))
            .collect();
        let backoff = db::Backoff::new(&pg_rw.limits);
        Arc::new(Gateway {
            cfg,
            admin_token,
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
                    g.probe(&n, period).await;
                }
            });
        }
        let g = self.clone();
        tokio::spawn(async move {
            let mut rw: Option<db::Session> = None;
            let mut backoff = db::Backoff::new(&g.pg_rw.limits);
            let heartbeat_id = format!("gateway:{}", g.cfg.gateway_id);
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if rw.as_ref().is_none_or(|c| c.is_closed()) {
                    match db::connect(&g.pg_rw).await {
                        Ok(c) => {
                            backoff.reset();
                            rw = Some(c);
                        }
                        Err(e) => {
                            g.set_db(false, format!("no writable DB host: {e}"));
                            backoff.wait().await;
                            continue;
                        }
                    }
                }
                let Some(c) = &rw else { continue };
                match db::bounded(&g.pg_rw, c.query_one("SELECT pg_is_in_recovery()", &[])).await {
                    Ok(r) if !r.get::<_, bool>(0) => {}
                    Ok(_) => {
                        g.set_db(false, "DB is in recovery (read-only)".into());
                        rw = None;
                        continue;
                    }
                    Err(_) => {
                        g.set_db(false, "DB primary does not answer".into());
                        rw = None;
                        continue;
                    }
                }
                // A synchronous commit of the gateway's own (its heartbeat row): the region
                // takes no writes while it waits, and `/health` says so (`commit_stall_ms`),
                // also when no order is in flight. Bounded like a leader's commit
                // (`db::await_commit`): given up at once if the server stops answering as
                // the primary, else after `commit_timeout_ms`; the session is kept
                // meanwhile (a new one would just wait as well).
                *lock(&g.probe_in_flight) = Some(Instant::now());
                let w = db::await_commit(
                    &g.pg_rw,
                    &c.host,
                    c.execute(
                        "INSERT INTO node_heartbeats (node_id, at) VALUES ($1, now()) ON CONFLICT (node_id) DO UPDATE SET at = now()",
                        &[&heartbeat_id],
                    ),
                )
                .await;
                *lock(&g.probe_in_flight) = None;
                match w {
                    Ok(Ok(_)) => g.set_db(true, String::new()),
                    // Not migrated yet: the nodes create the schema.
                    Ok(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => g.set_db(true, String::new()),
                    Ok(Err(e)) => {
                        g.set_db(false, format!("DB write failed: {}", db::describe(&e)));
                        rw = None;
                    }
                    Err(e) => {
                        g.set_db(false, format!("DB commit: {e}"));
                        rw = None;
                    }
                }
            }
        });
    }

    fn set_db(&self, ok: bool, reason: String) {
        self.db_writable.store(ok, Ordering::SeqCst);
        *lock(&self.db_reason) = reason;
    }

    async fn probe(&self, n: &NodeView, period: Duration) {
        let url = format!("http://{}/internal/status", n.peer.addr);
        let timeout = period.max(Duration::from_millis(250));
        let r = self.http.get(&url).timeout(timeout).send().await;
        let st = match r {
            Ok(r) if r.status().is_success() => r.json::<NodeStatus>().await.ok(),
            _ => None,
        };
        let was = n.alive.load(Ordering::SeqCst);
        match st {
            Some(mut s) => {
                s.received = Some(Instant::now());
                *lock(&n.status) = s;
                n.alive.store(true, Ordering::SeqCst);
            }
            None => n.alive.store(false, Ordering::SeqCst),
        }
        let now = n.alive.load(Ordering::SeqCst);
        if was != now {
            tracing::info!(node = %n.peer.node_id, alive = now, "node liveness changed");
            self.metrics.inc(format!("engine_gateway_node_transitions_total{{node=\"{}\"}}", label(&n.peer.node_id)));
        }
    }

    fn routable(n: &NodeView) -> bool {
        if !n.alive.load(Ordering::SeqCst) {
            return false;
        }
        let s = lock(&n.status);
        !s.isolated && s.mode == "active"
    }

    /// The node currently leading `partition`, if any is alive and routable.
    pub fn leader_of(&self, partition: &str) -> Option<Arc<NodeView>> {
        self.nodes.iter().find(|n| Self::routable(n) && lock(&n.status).leading.iter().any(|k| k == partition)).cloned()
    }

    /// True when every live node reports standby mode (a standby region).
    pub fn region_standby(&self) -> bool {
        let live: Vec<_> = self.nodes.iter().filter(|n| n.alive.load(Ordering::SeqCst)).collect();
        !live.is_empty() && live.iter().all(|n| lock(&n.status).mode == "standby")
    }

    /// All partitions of the region, as configured.
    pub fn partitions(&self) -> Vec<String> {
        let ex = &self.cfg.exchange;
        let mut v: Vec<String> = ex.spot_markets.iter().map(|m| format!("matching/{}", m.symbol)).collect();
        v.extend((0..ex.wallet_shards).map(|s| format!("wallet/{s}")));
        v.extend((0..ex.otc_shards).map(|s| format!("otc/{s}")));
        v.extend(ex.perp_markets.iter().map(|m| format!("contract/{}", m.symbol)));
        v
    }

    /// Why the region cannot take writes, or None if it can.
    pub fn unhealthy_reason(&self) -> Option<String> {
        if !self.db_writable.load(Ordering::SeqCst) {
            return Some(lock(&self.db_reason).clone());
        }
        if self.nodes.iter().any(|n| n.alive.load(Ordering::SeqCst) && lock(&n.status).mode == "standby") {
            return Some("region is in standby mode".into());
        }
        if let Some((ms, what)) = self.worst_stall() {
            return Some(format!("commits stalled for {ms} ms on {what}"));
        }
        let unled: Vec<String> = self.partitions().into_iter().filter(|p| self.leader_of(p).is_none()).collect();
        if !unled.is_empty() {
            return Some(format!("partitions without a live leader: {}", unled.join(", ")));
        }
        None
    }

    /// The oldest DB work outstanding for longer than `db.commit_stall_ms`: a partition
    /// leader's (as of its last status, aged since) or the gateway probe's own commit.
    pub fn worst_stall(&self) -> Option<(u64, String)> {
        let limit = self.pg_rw.limits.stall.as_millis() as u64;
        let mut worst: Option<(u64, String)> = None;
        let mut consider = |ms: u64, what: String| {
            if ms > limit && worst.as_ref().is_none_or(|w| ms > w.0) {
                worst = Some((ms, what));
            }
        };
        if let Some(t) = *lock(&self.probe_in_flight) {
            consider(t.elapsed().as_millis() as u64, "the gateway's DB probe".into());
        }
        for n in self.nodes.iter().filter(|n| Self::routable(n)) {
            let s = lock(&n.status);
            let since = s.received.map(|t| t.elapsed().as_millis() as u64).unwrap_or(0);
            for (p, ms) in &s.in_flight_ms {
                if s.leading.contains(p) {
                    consider(ms + since, p.clone());
                }
            }
        }
        worst
    }

    /// Forwards a write to the leader of `partition`, retrying across failovers. The
    /// request carries a client-supplied id (or is a state transition), so a retry after
    /// a lost answer returns the first result instead of applying twice.
    pub async fn forward(&self, partition: &str, path: &str, user: Option<i64>, body: &Value) -> Response {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.retry_budget_ms);
        let mut last = ApiError::unavailable(format!("no live leader for {partition}"));
        let mut attempts = 0u32;
        while Instant::now() < deadline {
            attempts += 1;
            let Some(node) = self.leader_of(partition) else {
                if self.region_standby() {
                    return ApiError::standby().into_response();
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
                continue;
            };
            let url = format!("http://{}{}", node.peer.addr, path);
            let mut req = self.http.post(&url).header(ADMIN_HEADER, &self.admin_token).json(body);
            if let Some(u) = user {
                req = req.header(USER_HEADER, u.to_string());
            }
            match req.send().await {
                Err(e) => {
                    // Connection refused / reset: the node is gone. Route around it now.
                    tracing::info!(node = %node.peer.node_id, error = %e, "forward failed; marking node dead");
                    node.alive.store(false, Ordering::SeqCst);
                    last = ApiError::unavailable(format!("leader of {partition} unreachable"));
                }
                Ok(r) => {
                    let status = r.status();
                    let bytes = r.bytes().await.unwrap_or_default();
                    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    let code = v.get("error").and_then(|c| c.as_str()).unwrap_or("");
                    if status == StatusCode::SERVICE_UNAVAILABLE && (code == "not_leader" || code == "unavailable") {
                        self.forget_leader(&node, partition);
                        last = ApiError::unavailable(format!("{partition} is changing leader"));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    if attempts > 1 {
                        self.metrics.inc("engine_gateway_retried_requests_total".into());
                    }
                    let status = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        status
                    };
                    return (status, Json(v)).into_response();
                }
            }
        }
        last.into_response()
    }

    /// `node` said it does not lead `partition` (any more): stop routing it there until
    /// its next status probe says otherwise.
    pub(crate) fn forget_leader(&self, node: &NodeView, partition: &str) {
        lock(&node.status).leading.retain(|k| k != partition);
    }

    pub(crate) fn admin_token(&self) -> &str {
        &self.admin_token
    }

    fn admin(&self, h: &HeaderMap) -> Result<(), ApiError> {
        let ok = h.get(ADMIN_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|v| crate::ct_eq(v, &self.admin_token));
        if ok {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        }
    }

    /// A session for reads: on the primary while the DB is writable (read-your-writes:
    /// a synchronous standby has flushed but maybe not yet applied a commit), else any host.
    async fn reader(&self) -> Result<tokio::sync::MutexGuard<'_, Option<db::Session>>, ApiError> {
        let primary = self.db_writable.load(Ordering::SeqCst);
        let (slot, cfg) = if primary { (&self.reader, &self.pg_rw) } else { (&self.reader_any, &self.pg_any) };
        self.session(slot, cfg).await
    }

    /// The session in `slot`, (re)connected if needed. After a failed attempt no new one is
    /// made before the backoff has passed (requests meanwhile get 503 at once), so a burst
    /// of requests cannot turn into a burst of connection attempts.
    async fn session<'a>(
        &self,
        slot: &'a tokio::sync::Mutex<Option<db::Session>>,
        cfg: &db::Target,
    ) -> Result<tokio::sync::MutexGuard<'a, Option<db::Session>>, ApiError> {
        let mut g = slot.lock().await;
        if g.as_ref().is_none_or(|c| c.is_closed()) {
            if lock(&self.reconnect).0.is_some_and(|t| Instant::now() < t) {
                return Err(ApiError::unavailable("database unreachable (reconnecting)"));
            }
            match db::connect(cfg).await {
                Ok(c) => {
                    let mut r = lock(&self.reconnect);
                    r.0 = None;
                    r.1.reset();
                    *g = Some(c);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "DB connection failed");
                    let mut r = lock(&self.reconnect);
                    let delay = r.1.next_delay();
                    r.0 = Some(Instant::now() + delay);
                    return Err(ApiError::unavailable("database unreachable"));
                }
            }
        }
        Ok(g)
    }

    async fn query(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>, ApiError> {
        let mut g = self.reader().await?;
        let c = g.as_ref().expect("reader connected");
        db::bounded(&self.pg_rw, c.query(sql, params)).await.map_err(|e| {
            tracing::warn!(error = %e, "read failed");
            *g = None; // reconnect next time (the host may have changed role)
            ApiError::unavailable("database read failed")
        })
    }

    /// Resolves an API key to its user.
    async fn user(&self, h: &HeaderMap) -> Result<i64, ApiError> {
        let key = h.get(API_KEY_HEADER).and_then(|v| v.to_str().ok()).ok_or_else(ApiError::unauthorized)?;
        let hash = crate::sha256_hex(key);
        if let Some(u) = lock(&self.keys).get(&hash) {
            return Ok(*u);
        }
        let rows = self.query("SELECT user_id FROM users WHERE api_key_sha256 = $1", &[&hash]).await?;
        let u: i64 = rows.first().map(|r| r.get(0)).ok_or_else(ApiError::unauthorized)?;
        lock(&self.keys).insert(hash, u);
        Ok(u)
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .route("/v1/orders", post(place))
            .route("/v1/orders/cancel", post(cancel))
            .route("/v1/orders/{id}", get(order))
            .route("/v1/orders/by-client-id/{cid}", get(order_by_cid))
            .route("/v1/book/{market}", get(book))
            .route("/v1/contract/orders", post(perp_place))
            .route("/v1/contract/orders/cancel", post(perp_cancel))
            .route("/v1/contract/book/{market}", get(perp_book))
            .route("/v1/contract/positions", get(positions))
            .route("/v1/balances", get(balances))
            .route("/v1/withdrawals", post(withdraw))
            .route("/v1/withdrawals/{id}", get(withdrawal))
            .route("/v1/otc/quotes", post(otc_quote))
            .route("/v1/otc/quotes/{id}/accept", post(otc_accept))
            .route("/admin/users", post(create_user))
            .route("/admin/deposits", post(deposit))
            .route("/admin/withdrawals/{id}/{action}", post(withdrawal_action))
            .route("/admin/otc/reference", post(otc_reference))
            .route("/admin/mode", post(set_mode))
            .with_state(self.clone())
    }
}

type S = State<Arc<Gateway>>;

async fn health(State(g): S) -> Response {
    match g.unhealthy_reason() {
        None => (StatusCode::OK, Json(json!({"status": "ok", "region": g.cfg.region}))).into_response(),
        Some(r) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "region": g.cfg.region, "reason": r}))).into_response()
        }
    }
}

async fn metrics(State(g): S) -> Response {
    for n in &g.nodes {
        let v = if n.alive.load(Ordering::SeqCst) { 1.0 } else { 0.0 };
        g.metrics.set(format!("engine_gateway_node_alive{{node=\"{}\"}}", label(&n.peer.node_id)), v);
    }
    for p in g.partitions() {
        let v = if g.leader_of(&p).is_some() { 1.0 } else { 0.0 };
        g.metrics.set(format!("engine_gateway_partition_led{{partition=\"{}\"}}", label(&p)), v);
    }
    g.metrics.set("engine_gateway_healthy".into(), if g.unhealthy_reason().is_none() { 1.0 } else { 0.0 });
    ([("content-type", "text/plain; version=0.0.4")], g.metrics.render()).into_response()
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

async fn place(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let t = Instant::now();
    let r: Result<(i64, rq::PlaceOrder), ApiError> = async {
        let u = g.user(&h).await?;
        let p: rq::PlaceOrder = parse(&body)?;
        p.validate(&g.cfg.exchange)?;
        Ok((u, p))
    }
    .await;
    let resp = match r {
        Err(e) => e.into_response(),
        Ok((u, p)) => {
            let partition = format!("matching/{}", p.market);
            let batched = match g.batcher.get() {
                Some(b) => b.place(&partition, u, p.clone()).await,
                None => None,
            };
            match batched {
                Some((status, body)) => (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response(),
                None => g.forward(&partition, "/v1/orders", Some(u), &to_value(&p)).await,
            }
        }
    };
    let series = match resp.status().as_u16() {
        200 => "engine_gateway_requests_total{op=\"place\",status=\"200\"}".to_string(),
        s => format!("engine_gateway_requests_total{{op=\"place\",status=\"{s}\"}}"),
    };
    g.metrics.inc(series);
    g.metrics.add("engine_gateway_place_seconds_sum".into(), t.elapsed().as_secs_f64());
    resp
}

async fn cancel(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Result<(i64, rq::CancelOrder), ApiError> = async {
        let u = g.user(&h).await?;
        let c: rq::CancelOrder = parse(&body)?;
        rq::spot_market(&g.cfg.exchange, &c.market)?;
        Ok((u, c))
    }
    .await;
    match r {
        Err(e) => e.into_response(),
        Ok((u, c)) => g.forward(&format!("matching/{}", c.market), "/v1/orders/cancel", Some(u), &to_value(&c)).await,
    }
}

async fn order(State(g): S, h: HeaderMap, Path(id): Path<i64>) -> Response {
    let r: Reply = async {
        let u = g.user(&h).await?;
        let g2 = g.reader().await?;
        let c = g2.as_ref().expect("reader");
        db::bounded(&g.pg_rw, crate::matching::order_by_id(c, u, id))
            .await
            .map_err(|_| ApiError::unavailable("database read failed"))?
            .ok_or_else(|| ApiError::not_found(format!("no order {id}")))
    }
    .await;
    respond(r)
}

async fn order_by_cid(State(g): S, h: HeaderMap, Path(cid): Path<String>) -> Response {
    let r: Reply = async {
        let u = g.user(&h).await?;
        rq::check_id("client_order_id", &cid)?;
        let g2 = g.reader().await?;
        let c = g2.as_ref().expect("reader");
        db::bounded(&g.pg_rw, crate::matching::order_by_client_id(c, u, &cid))
            .await
            .map_err(|_| ApiError::unavailable("database read failed"))?
            .ok_or_else(|| ApiError::not_found(format!("no order {cid:?}")))
    }
    .await;
    respond(r)
}

async fn book(State(g): S, Path(market): Path<String>) -> Response {
    if let Err(e) = rq::spot_market(&g.cfg.exchange, &market) {
        return e.into_response();
    }
    book_of(&g, format!("matching/{market}"), format!("/v1/book/{market}")).await
}

async fn perp_book(State(g): S, Path(market): Path<String>) -> Response {
    if let Err(e) = rq::perp_market(&g.cfg.exchange, &market) {
        return e.into_response();
    }
    book_of(&g, format!("contract/{market}"), format!("/v1/contract/book/{market}")).await
}

async fn book_of(g: &Gateway, partition: String, path: String) -> Response {
    let deadline = Instant::now() + Duration::from_millis(g.cfg.retry_budget_ms);
    while Instant::now() < deadline {
        if let Some(n) = g.leader_of(&partition) {
            let url = format!("http://{}{}", n.peer.addr, path);
            if let Ok(r) = g.http.get(&url).header(ADMIN_HEADER, &g.admin_token).send().await {
                if r.status().is_success() {
                    if let Ok(v) = r.json::<Value>().await {
                        return Json(v).into_response();
                    }
                }
            } else {
                n.alive.store(false, Ordering::SeqCst);
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    ApiError::unavailable(format!("no live leader for {partition}")).into_response()
}

async fn balances(State(g): S, h: HeaderMap) -> Response {
    let r: Reply = async {
        let u = g.user(&h).await?;
        let rows = g.query("SELECT asset, available, held FROM balances WHERE owner_id = $1 ORDER BY asset", &[&u]).await?;
        let b: Vec<Value> = rows
            .iter()
            .map(|r| json!({"asset": r.get::<_, &str>(0), "available_minor": r.get::<_, i64>(1), "held_minor": r.get::<_, i64>(2)}))
            .collect();
        Ok(json!({"user_id": u, "balances": b}))
    }
    .await;
    respond(r)
}

async fn withdraw(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Result<(i64, rq::Withdraw), ApiError> = async {
        let u = g.user(&h).await?;
        let w: rq::Withdraw = parse(&body)?;
        w.validate(&g.cfg.exchange)?;
        Ok((u, w))
    }
    .await;
    match r {
        Err(e) => e.into_response(),
        Ok((u, w)) => {
            let p = format!("wallet/{}", shard_of(u, g.cfg.exchange.wallet_shards));
            g.forward(&p, "/v1/withdrawals", Some(u), &to_value(&w)).await
        }
    }
}

async fn withdrawal(State(g): S, h: HeaderMap, Path(id): Path<i64>) -> Response {
    let r: Reply = async {
        let u = g.user(&h).await?;
        let rows = g
            .query(
                "SELECT withdrawal_id, client_id, asset, amount_minor, status, reason FROM withdrawals WHERE withdrawal_id = $1 AND user_id = $2",
                &[&id, &u],
            )
            .await?;
        let r = rows.first().ok_or_else(|| ApiError::not_found(format!("no withdrawal {id}")))?;
        Ok(json!({"withdrawal_id": r.get::<_, i64>(0), "user_id": u, "client_id": r.get::<_, &str>(1), "asset": r.get::<_, &str>(2),
                  "amount_minor": r.get::<_, i64>(3), "status": r.get::<_, &str>(4), "reason": r.get::<_, Option<&str>>(5)}))
    }
    .await;
    respond(r)
}

async fn otc_quote(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Result<(i64, rq::QuoteReq), ApiError> = async {
        let u = g.user(&h).await?;
        let q: rq::QuoteReq = parse(&body)?;
        q.validate(&g.cfg.exchange)?;
        Ok((u, q))
    }
    .await;
    match r {
        Err(e) => e.into_response(),
        Ok((u, q)) => {
            let p = format!("otc/{}", shard_of(u, g.cfg.exchange.otc_shards));
            g.forward(&p, "/v1/otc/quotes", Some(u), &to_value(&q)).await
        }
    }
}

async fn otc_accept(State(g): S, h: HeaderMap, Path(id): Path<i64>) -> Response {
    match g.user(&h).await {
        Err(e) => e.into_response(),
        Ok(u) => {
            let p = format!("otc/{}", shard_of(u, g.cfg.exchange.otc_shards));
            g.forward(&p, "/v1/otc/accept", Some(u), &json!({"quote_id": id})).await
        }
    }
}

async fn create_user(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        g.admin(&h)?;
        let c: rq::CreateUser = parse(&body)?;
        rq::check_user(c.user_id)?;
        if c.user_id == g.cfg.exchange.otc_dealer_user_id {
            // allowed: the dealer is an ordinary account with an API key
        }
        let key: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let hash = crate::sha256_hex(&key);
        let mut w = g.session(&g.writer, &g.pg_rw).await?;
        let client = w.as_ref().expect("writer connected");
        let sql = "INSERT INTO users (user_id, api_key_sha256) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING";
        let n = match db::await_commit(&g.pg_rw, &client.host, client.execute(sql, &[&c.user_id, &hash])).await {
            Ok(Ok(n)) => n,
            _ => {
                *w = None;
                return Err(ApiError::unavailable("database write failed; retry"));
            }
        };
        if n == 0 {
            return Err(ApiError::conflict("user_exists", format!("user {} already exists", c.user_id)));
        }
        Ok(json!({"user_id": c.user_id, "api_key": key}))
    }
    .await;
    respond(r)
}

async fn deposit(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Result<rq::Deposit, ApiError> = async {
        g.admin(&h)?;
        let d: rq::Deposit = parse(&body)?;
        d.validate(&g.cfg.exchange)?;
        Ok(d)
    }
    .await;
    match r {
        Err(e) => e.into_response(),
        Ok(d) => {
            let p = format!("wallet/{}", shard_of(d.user_id, g.cfg.exchange.wallet_shards));
            g.forward(&p, "/v1/deposits", None, &to_value(&d)).await
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    user_id: i64,
}

async fn withdrawal_action(State(g): S, h: HeaderMap, Path((id, action)): Path<(i64, String)>, body: Bytes) -> Response {
    let r: Result<(i64, Value), ApiError> = async {
        g.admin(&h)?;
        let b: UserBody = parse(&body)?;
        rq::check_user(b.user_id)?;
        let action = match action.as_str() {
            "approve" | "complete" | "reject" => action,
            _ => return Err(ApiError::bad_request("action must be approve, complete or reject")),
        };
        Ok((b.user_id, json!({"user_id": b.user_id, "action": action})))
    }
    .await;
    match r {
        Err(e) => e.into_response(),
        Ok((u, v)) => {
            let p = format!("wallet/{}", shard_of(u, g.cfg.exchange.wallet_shards));
            g.forward(&p, &format!("/v1/withdrawals/{id}/action"), None, &v).await
        }
    }
}

async fn otc_reference(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Result<rq::ReferencePrice, ApiError> = async {
        g.admin(&h)?;
        let p: rq::ReferencePrice = parse(&body)?;
        rq::spot_market(&g.cfg.exchange, &p.market)?;
        rq::check_range("price_ticks", p.price_ticks, 1, rq::MAX_PRICE)?;
        Ok(p)
    }
    .await;
    match r {
        Err(e) => e.into_response(),
        Ok(p) => g.forward("otc/0", "/admin/otc/reference", None, &to_value(&p)).await,
    }
}

/// Switches every node of the region (best effort; reports each node's answer).
async fn set_mode(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        g.admin(&h)?;
        let m: rq::ModeReq = parse(&body)?;
        let mut results = Vec::new();
        for n in &g.nodes {
            let url = format!("http://{}/admin/mode", n.peer.addr);
            let ok = g.http.post(&url).header(ADMIN_HEADER, &g.admin_token).json(&m).send().await.is_ok_and(|r| r.status().is_success());
            results.push(json!({"node_id": n.peer.node_id, "ok": ok}));
        }
        tracing::info!(mode = ?m.mode, "region mode change requested");
        Ok(json!({"mode": m.mode, "nodes": results}))
    }
    .await;
    respond(r)
}

async fn perp_place(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Result<(i64, rq::PlaceOrder), ApiError> = async {
        let u = g.user(&h).await?;
        let p: rq::PlaceOrder = parse(&body)?;
        p.validate_perp(&g.cfg.exchange)?;
        Ok((u, p))
    }
    .await;
    match r {
        Err(e) => e.into_response(),
        Ok((u, p)) => g.forward(&format!("contract/{}", p.market), "/v1/contract/orders", Some(u), &to_value(&p)).await,
    }
}

async fn perp_cancel(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Result<(i64, rq::CancelOrder), ApiError> = async {
        let u = g.user(&h).await?;
        let c: rq::CancelOrder = parse(&body)?;
        rq::perp_market(&g.cfg.exchange, &c.market)?;
        Ok((u, c))
    }
    .await;
    match r {
        Err(e) => e.into_response(),
        Ok((u, c)) => g.forward(&format!("contract/{}", c.market), "/v1/contract/orders/cancel", Some(u), &to_value(&c)).await,
    }
}

async fn positions(State(g): S, h: HeaderMap) -> Response {
    let r: Reply = async {
        let u = g.user(&h).await?;
        let rows = g
            .query(
                "SELECT market, size_lots, entry_cost_minor, margin_minor, realized_pnl_minor FROM positions WHERE user_id = $1 ORDER BY market",
                &[&u],
            )
            .await?;
        let p: Vec<Value> = rows
            .iter()
            .map(|r| {
                let size: i64 = r.get(1);
                let cost: i64 = r.get(2);
                json!({"market": r.get::<_, &str>(0), "size_lots": size,
                       "entry_price_ticks": if size == 0 { 0 } else { cost / size.abs() },
                       "entry_cost_minor": cost, "margin_minor": r.get::<_, i64>(3),
                       "realized_pnl_minor": r.get::<_, i64>(4)})
            })
            .collect();
        Ok(json!({"user_id": u, "positions": p}))
    }
    .await;
    respond(r)
}
