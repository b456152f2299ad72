//! One `engine-node` process: the partitions of its module, its internal HTTP API (called
//! by the gateway with the admin token), status for the gateway's probes, and metrics.

use crate::api::{ApiError, Reply};
use crate::book::{OrderKind, Side};
use crate::matching::{PerpLogic, PlaceReq, SpotCmd, SpotLogic};
use crate::metrics::{label, Metrics};
use crate::otc::{OtcCmd, OtcLogic};
use crate::partition::{self, NodeState, PartitionHandle};
use crate::requests::{self as rq, parse};
use crate::settle::Fees;
use crate::wallet::{shard_of, WalletCmd, WalletLogic};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine_config::{Module, NodeConfig, RegionMode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub const ADMIN_HEADER: &str = "x-admin-token";
pub const USER_HEADER: &str = "x-user-id";

pub struct Node {
    pub cfg: NodeConfig,
    pub state: Arc<NodeState>,
    pub admin_token: String,
    pub metrics: Metrics,
    pub spot: HashMap<String, PartitionHandle<SpotCmd>>,
    pub perp: HashMap<String, PartitionHandle<SpotCmd>>,
    pub wallet: Vec<PartitionHandle<WalletCmd>>,
    pub otc: Vec<PartitionHandle<OtcCmd>>,
}

/// Fee account of spot market `i` (a system account; see migrations).
pub fn fee_account(i: usize) -> i64 {
    -1000 - i as i64
}

/// Fee account of perpetual `i`.
pub fn perp_fee_account(i: usize) -> i64 {
    -1500 - i as i64
}

/// Margin pool of perpetual `i` (may go negative: losses beyond margin).
pub fn perp_pool_account(i: usize) -> i64 {
    -2000 - i as i64
}

/// Default `db.connections_max` of a node: one session per partition of its module
/// (its leader or hot-standby session), plus the monitor's, one liveness check of a host
/// that stopped answering, and one transient session (migrations at start-up, the standby
/// mode's promotion check).
pub fn default_db_sessions(cfg: &NodeConfig) -> usize {
    let ex = &cfg.exchange;
    let partitions = match cfg.module {
        Module::Matching => ex.spot_markets.len(),
        Module::Contract => ex.perp_markets.len(),
        Module::Wallet => ex.wallet_shards as usize,
        Module::Otc => ex.otc_shards as usize,
    };
    partitions + 3
}

/// This node's preference rank for partition `p` among the nodes of its module.
fn rank(cfg: &NodeConfig, p: usize) -> u32 {
    let mut ids: Vec<&str> = cfg.peers.iter().filter(|x| x.module == cfg.module).map(|x| x.node_id.as_str()).collect();
    if !ids.contains(&cfg.node_id.as_str()) {
        ids.push(&cfg.node_id);
    }
    ids.sort();
    ids.dedup();
    let n = ids.len();
    let me = ids.iter().position(|x| *x == cfg.node_id).unwrap_or(0);
    ((me + n - p % n) % n) as u32
}

impl Node {
    pub fn start(cfg: NodeConfig, pg: crate::db::Target, pg_any: crate::db::Target, admin_token: String) -> Arc<Node> {
        let addr = cfg.advertise.clone().unwrap_or_else(|| cfg.listen.clone());
        let state = Arc::new(NodeState {
            node_id: cfg.node_id.clone(),
            addr,
            pg,
            pg_any,
            mode: std::sync::atomic::AtomicU8::new(if cfg.mode == RegionMode::Active { 0 } else { 1 }),
            isolated: Default::default(),
            shutting_down: Default::default(),
            batch_max: cfg.batch_max.max(1),
        });
        let ex = &cfg.exchange;
        let mut spot = HashMap::new();
        let mut perp = HashMap::new();
        let mut wallet = Vec::new();
        let mut otc = Vec::new();
        match cfg.module {
            Module::Matching => {
                for (i, m) in ex.spot_markets.iter().enumerate() {
                    let m = m.clone();
                    let key = format!("matching/{}", m.symbol);
                    let fees = Fees { maker_bps: m.maker_fee_bps, taker_bps: m.taker_fee_bps };
                    let h = partition::spawn(state.clone(), key, rank(&cfg, i), move || {
                        SpotLogic::spot(&m.symbol, &m.base, &m.quote, fees, fee_account(i))
                    });
                    spot.insert(ex.spot_markets[i].symbol.clone(), h);
                }
            }
            Module::Wallet => {
                for s in 0..ex.wallet_shards {
                    let node_id = cfg.node_id.clone();
                    let h = partition::spawn(state.clone(), format!("wallet/{s}"), rank(&cfg, s as usize), move || WalletLogic {
                        shard: s as i32,
                        node_id: node_id.clone(),
                    });
                    wallet.push(h);
                }
            }
            Module::Otc => {
                for s in 0..ex.otc_shards {
                    let ex2 = ex.clone();
                    let h = partition::spawn(state.clone(), format!("otc/{s}"), rank(&cfg, s as usize), move || OtcLogic {
                        markets: ex2.spot_markets.clone(),
                        dealer: ex2.otc_dealer_user_id,
                        ttl_ms: ex2.otc_quote_ttl_ms,
                        spread_bps: ex2.otc_spread_bps,
                    });
                    otc.push(h);
                }
            }
            Module::Contract => {
                for (i, m) in ex.perp_markets.iter().enumerate() {
                    let m = m.clone();
                    let key = format!("contract/{}", m.symbol);
                    let fees = Fees { maker_bps: m.maker_fee_bps, taker_bps: m.taker_fee_bps };
                    let h = partition::spawn(state.clone(), key, rank(&cfg, i), move || {
                        PerpLogic::perp(&m.symbol, &m.quote, fees, m.initial_margin_bps, perp_fee_account(i), perp_pool_account(i))
                    });
                    perp.insert(ex.perp_markets[i].symbol.clone(), h);
                }
            }
        }
        Arc::new(Node { cfg, state, admin_token, metrics: Metrics::default(), spot, perp, wallet, otc })
    }

    /// Partition keys this node currently leads.
    pub fn leading(&self) -> Vec<String> {
        let mut v = Vec::new();
        let states = self
            .spot
            .values()
            .chain(self.perp.values())
            .map(|h| &h.state)
            .chain(self.wallet.iter().map(|h| &h.state))
            .chain(self.otc.iter().map(|h| &h.state));
        for s in states {
            if s.leading.load(Ordering::SeqCst) {
                v.push(s.key.clone());
            }
        }
        v.sort();
        v
    }

    /// Partitions this node leads whose DB work (usually a commit) is outstanding, with
    /// its age in ms.
    pub fn in_flight_ms(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        for s in self.partition_states() {
            if let (true, Some(age)) = (s.leading.load(Ordering::SeqCst), s.in_flight_age()) {
                m.insert(s.key.clone(), json!(age.as_millis() as u64));
            }
        }
        m
    }

    fn partition_states(&self) -> impl Iterator<Item = &Arc<partition::PartitionState>> {
        self.spot
            .values()
            .chain(self.perp.values())
            .map(|h| &h.state)
            .chain(self.wallet.iter().map(|h| &h.state))
            .chain(self.otc.iter().map(|h| &h.state))
    }

    pub fn status_json(&self) -> Value {
        json!({
            "in_flight_ms": self.in_flight_ms(),
            "db_sessions": self.state.pg.sessions_open(),
            "node_id": self.cfg.node_id,
            "module": self.cfg.module.as_str(),
            "region": self.cfg.region,
            "mode": if self.state.is_active() { "active" } else { "standby" },
            "isolated": self.state.isolated.load(Ordering::SeqCst),
            "leading": self.leading(),
        })
    }

    fn refresh_metrics(&self) {
        let n = label(&self.cfg.node_id);
        let all = self
            .spot
            .values()
            .chain(self.perp.values())
            .map(|h| &h.state)
            .chain(self.wallet.iter().map(|h| &h.state))
            .chain(self.otc.iter().map(|h| &h.state));
        for s in all {
            let v = if s.leading.load(Ordering::SeqCst) { 1.0 } else { 0.0 };
            self.metrics.set(format!("engine_partition_leader{{node=\"{n}\",partition=\"{}\"}}", label(&s.key)), v);
        }
        self.metrics.set(format!("engine_node_active{{node=\"{n}\"}}"), if self.state.is_active() { 1.0 } else { 0.0 });
        self.metrics
            .set(format!("engine_node_isolated{{node=\"{n}\"}}"), if self.state.isolated.load(Ordering::SeqCst) { 1.0 } else { 0.0 });
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/internal/status", get(status))
            .route("/internal/ping", get(|| async { "pong" }))
            .route("/metrics", get(metrics))
            .route("/admin/mode", post(set_mode))
            .route("/v1/orders", post(place))
            .route("/v1/orders/batch", post(place_batch))
            .route("/v1/orders/cancel", post(cancel))
            .route("/v1/contract/orders", post(perp_place))
            .route("/v1/contract/orders/cancel", post(perp_cancel))
            .route("/v1/contract/book/{market}", get(perp_book))
            .route("/v1/book/{market}", get(book))
            .route("/v1/deposits", post(deposit))
            .route("/v1/withdrawals", post(withdraw))
            .route("/v1/withdrawals/{id}/action", post(withdrawal_action))
            .route("/v1/otc/quotes", post(otc_quote))
            .route("/v1/otc/accept", post(otc_accept))
            .route("/admin/otc/reference", post(otc_reference))
            .with_state(self.clone())
    }

    fn auth(&self, h: &HeaderMap) -> Result<(), ApiError> {
        let ok = h.get(ADMIN_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|v| crate::ct_eq(v, &self.admin_token));
        if ok {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        }
    }

    fn user(&self, h: &HeaderMap) -> Result<i64, ApiError> {
        self.auth(h)?;
        let u = h
            .get(USER_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| ApiError::bad_request("missing x-user-id"))?;
        rq::check_user(u)?;
        Ok(u)
    }

    fn wallet_shard(&self, user_id: i64) -> Result<&PartitionHandle<WalletCmd>, ApiError> {
        self.wallet
            .get(shard_of(user_id, self.cfg.exchange.wallet_shards) as usize)
            .ok_or_else(|| ApiError::not_leader("wallet (not a wallet node)"))
    }
    fn otc_shard(&self, user_id: i64) -> Result<&PartitionHandle<OtcCmd>, ApiError> {
        self.otc.get(shard_of(user_id, self.cfg.exchange.otc_shards) as usize).ok_or_else(|| ApiError::not_leader("otc (not an otc node)"))
    }
}

pub fn respond(r: Reply) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

type S = State<Arc<Node>>;

async fn status(State(n): S) -> Response {
    Json(n.status_json()).into_response()
}

async fn metrics(State(n): S) -> Response {
    n.refresh_metrics();
    ([("content-type", "text/plain; version=0.0.4")], n.metrics.render()).into_response()
}

async fn set_mode(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        n.auth(&h)?;
        let m: rq::ModeReq = parse(&body)?;
        let v = if m.mode == RegionMode::Active { 0 } else { 1 };
        let old = n.state.mode.swap(v, Ordering::SeqCst);
        if old != v {
            tracing::info!(mode = ?m.mode, "region mode changed by admin call");
            n.metrics.inc(format!("engine_mode_transitions_total{{node=\"{}\"}}", label(&n.cfg.node_id)));
        }
        Ok(n.status_json())
    }
    .await;
    respond(r)
}

async fn place(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        let user_id = n.user(&h)?;
        let p: rq::PlaceOrder = parse(&body)?;
        place_one(&n, user_id, p).await
    }
    .await;
    n.metrics.inc(format!("engine_requests_total{{op=\"place\",ok=\"{}\"}}", r.is_ok()));
    respond(r)
}

async fn place_one(n: &Node, user_id: i64, p: rq::PlaceOrder) -> Reply {
    rq::check_user(user_id)?;
    p.validate(&n.cfg.exchange)?;
    let part = n.spot.get(&p.market).ok_or_else(|| ApiError::not_leader(&format!("matching/{}", p.market)))?;
    let req = PlaceReq {
        user_id,
        client_order_id: p.client_order_id,
        side: p.side,
        kind: p.kind,
        price_ticks: if p.kind == OrderKind::Market { 0 } else { p.price_ticks },
        qty_lots: p.qty_lots,
        quote_budget: if p.kind == OrderKind::Market && p.side == Side::Buy { p.quote_budget_minor } else { 0 },
    };
    part.call(&n.state, SpotCmd::Place(req)).await
}

/// Many placements in one call (the gateway coalesces concurrent requests): they reach
/// the partition queues together, so they share a group commit, and each gets its own
/// answer (`status` + `body`, as the single call would have returned).
async fn place_batch(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Result<rq::PlaceBatch, ApiError> = n.auth(&h).and_then(|_| parse(&body));
    let batch = match r {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let replies = futures::future::join_all(batch.orders.into_iter().map(|i| place_one(&n, i.user_id, i.order))).await;
    let ok = replies.iter().filter(|r| r.is_ok()).count();
    n.metrics.add("engine_requests_total{op=\"place\",ok=\"true\"}".into(), ok as f64);
    n.metrics.add("engine_requests_total{op=\"place\",ok=\"false\"}".into(), (replies.len() - ok) as f64);
    let items: Vec<rq::BatchReply> = replies
        .into_iter()
        .map(|r| match r {
            Ok(v) => rq::BatchReply { status: 200, body: v },
            Err(e) => rq::BatchReply { status: e.status, body: e.body() },
        })
        .collect();
    Json(items).into_response()
}

async fn cancel(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        let user_id = n.user(&h)?;
        let c: rq::CancelOrder = parse(&body)?;
        rq::spot_market(&n.cfg.exchange, &c.market)?;
        let part = n.spot.get(&c.market).ok_or_else(|| ApiError::not_leader(&format!("matching/{}", c.market)))?;
        part.call(&n.state, SpotCmd::Cancel { user_id, order_id: c.order_id }).await
    }
    .await;
    respond(r)
}

#[derive(serde::Deserialize)]
struct Levels {
    levels: Option<usize>,
}

async fn book(State(n): S, h: HeaderMap, Path(market): Path<String>, Query(q): Query<Levels>) -> Response {
    if let Err(e) = rq::spot_market(&n.cfg.exchange, &market) {
        return e.into_response();
    }
    book_of(&n, &h, n.spot.get(&market), &format!("matching/{market}"), q).await
}

async fn perp_book(State(n): S, h: HeaderMap, Path(market): Path<String>, Query(q): Query<Levels>) -> Response {
    if let Err(e) = rq::perp_market(&n.cfg.exchange, &market) {
        return e.into_response();
    }
    book_of(&n, &h, n.perp.get(&market), &format!("contract/{market}"), q).await
}

async fn book_of(n: &Node, h: &HeaderMap, part: Option<&PartitionHandle<SpotCmd>>, key: &str, q: Levels) -> Response {
    let r: Reply = async {
        n.auth(h)?;
        let part = part.ok_or_else(|| ApiError::not_leader(key))?;
        let levels = q.levels.unwrap_or(20).min(1000);
        if !part.state.leading.load(Ordering::SeqCst) {
            return Err(ApiError::not_leader(&part.state.key));
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        part.tx.send(partition::Job { cmd: SpotCmd::Book { levels }, reply }).await.map_err(|_| ApiError::not_leader(&part.state.key))?;
        rx.await.map_err(|_| ApiError::unavailable("leader changed"))?
    }
    .await;
    respond(r)
}

async fn deposit(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        n.auth(&h)?;
        let d: rq::Deposit = parse(&body)?;
        d.validate(&n.cfg.exchange)?;
        let cmd = WalletCmd::Deposit { deposit_id: d.deposit_id, user_id: d.user_id, asset: d.asset, amount_minor: d.amount_minor };
        n.wallet_shard(d.user_id)?.call(&n.state, cmd).await
    }
    .await;
    respond(r)
}

async fn withdraw(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        let user_id = n.user(&h)?;
        let w: rq::Withdraw = parse(&body)?;
        w.validate(&n.cfg.exchange)?;
        let cmd = WalletCmd::Withdraw { user_id, client_id: w.client_id, asset: w.asset, amount_minor: w.amount_minor };
        n.wallet_shard(user_id)?.call(&n.state, cmd).await
    }
    .await;
    respond(r)
}

async fn withdrawal_action(State(n): S, h: HeaderMap, Path(id): Path<i64>, body: Bytes) -> Response {
    let r: Reply = async {
        n.auth(&h)?;
        let a: rq::WithdrawalActionReq = parse(&body)?;
        rq::check_user(a.user_id)?;
        n.wallet_shard(a.user_id)?.call(&n.state, WalletCmd::Action { withdrawal_id: id, action: a.action }).await
    }
    .await;
    respond(r)
}

async fn otc_quote(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        let user_id = n.user(&h)?;
        let q: rq::QuoteReq = parse(&body)?;
        q.validate(&n.cfg.exchange)?;
        let cmd = OtcCmd::Quote { user_id, client_id: q.client_id, market: q.market, side: q.side, qty_lots: q.qty_lots };
        n.otc_shard(user_id)?.call(&n.state, cmd).await
    }
    .await;
    respond(r)
}

async fn otc_accept(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        let user_id = n.user(&h)?;
        let a: rq::AcceptReq = parse(&body)?;
        n.otc_shard(user_id)?.call(&n.state, OtcCmd::Accept { user_id, quote_id: a.quote_id }).await
    }
    .await;
    respond(r)
}

async fn otc_reference(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        n.auth(&h)?;
        let p: rq::ReferencePrice = parse(&body)?;
        rq::spot_market(&n.cfg.exchange, &p.market)?;
        rq::check_range("price_ticks", p.price_ticks, 1, rq::MAX_PRICE)?;
        let part = n.otc.first().ok_or_else(|| ApiError::not_leader("otc/0"))?;
        part.call(&n.state, OtcCmd::SetReference { market: p.market, price_ticks: p.price_ticks }).await
    }
    .await;
    respond(r)
}

async fn perp_place(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        let user_id = n.user(&h)?;
        let p: rq::PlaceOrder = parse(&body)?;
        p.validate_perp(&n.cfg.exchange)?;
        let part = n.perp.get(&p.market).ok_or_else(|| ApiError::not_leader(&format!("contract/{}", p.market)))?;
        let req = PlaceReq {
            user_id,
            client_order_id: p.client_order_id,
            side: p.side,
            kind: p.kind,
            price_ticks: p.price_ticks,
            qty_lots: p.qty_lots,
            quote_budget: 0,
        };
        part.call(&n.state, SpotCmd::Place(req)).await
    }
    .await;
    respond(r)
}

async fn perp_cancel(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        let user_id = n.user(&h)?;
        let c: rq::CancelOrder = parse(&body)?;
        rq::perp_market(&n.cfg.exchange, &c.market)?;
        let part = n.perp.get(&c.market).ok_or_else(|| ApiError::not_leader(&format!("contract/{}", c.market)))?;
        part.call(&n.state, SpotCmd::Cancel { user_id, order_id: c.order_id }).await
    }
    .await;
    respond(r)
}
