//! One `engine-node` process: the partitions of its module, its internal HTTP API (called
//! by the gateway: user calls with the internal token, admin calls with the admin token;
//! see `tokens`), status for the gateway's probes, and metrics.

use crate::api::{respond, ApiError, Reply};
use crate::matching::{DepthView, PerpLogic, SpotCmd, SpotLogic};
use crate::metrics::{label, Metrics};
use crate::otc::{OtcCmd, OtcLogic};
use crate::partition::{self, NodeState, PartitionHandle, PartitionState};
use crate::perp::{Accounts, Margins};
use crate::protocol::{
    paths, shard_of, BatchReply, MarketKind, NodeStatus, PartitionKey, PlaceBatch, UserOrder, GATEWAY_HEADER, MODE_ACTIVE, MODE_STANDBY,
    USER_HEADER,
};
use crate::requests::{self as rq, parse};
use crate::settle::Fees;
use crate::wallet::{WalletCmd, WalletLogic};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine_config::{ExchangeConfig, Module, NodeConfig, RegionMode};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

type Markets = HashMap<String, PartitionHandle<SpotCmd>>;

pub struct Node {
    pub cfg: NodeConfig,
    pub state: Arc<NodeState>,
    pub tokens: crate::tokens::Tokens,
    pub metrics: Metrics,
    pub spot: Markets,
    pub perp: Markets,
    /// Each market's depth as its leader here last published it (book reads).
    pub depths: HashMap<PartitionKey, Arc<DepthView>>,
    pub wallet: Vec<PartitionHandle<WalletCmd>>,
    pub otc: Vec<PartitionHandle<OtcCmd>>,
    /// Leaders ended and orders quarantined by this node's partition loops; the monitor
    /// takes it and reports them.
    pub events: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<partition::Event>>>,
    /// `POST /admin/reconcile` asks the reconciliation task through this.
    pub reconcile: crate::reconcile::Trigger,
    /// The reconciliation task's end of `reconcile` (taken when it starts).
    pub reconcile_requests: std::sync::Mutex<Option<crate::reconcile::Requests>>,
}

/// Fee account of spot market `i` (a system account; see migrations).
pub fn fee_account(i: usize) -> i64 {
    -1000 - i as i64
}

/// Fee account of perpetual `i`.
pub fn perp_fee_account(i: usize) -> i64 {
    -1500 - i as i64
}

/// Margin pool of perpetual `i` (never negative, migration 004).
pub fn perp_pool_account(i: usize) -> i64 {
    -2000 - i as i64
}

/// Insurance fund of perpetual `i` (never negative).
pub fn perp_insurance_account(i: usize) -> i64 {
    -3000 - i as i64
}

/// The system accounts of perpetual `i`.
pub fn perp_accounts(i: usize) -> Accounts {
    Accounts { fee: perp_fee_account(i), pool: perp_pool_account(i), insurance: perp_insurance_account(i) }
}

/// Default `db.connections_max` of a node: one session per partition of its module
/// (its leader or hot-standby session), plus the monitor's, the reconciliation session
/// (held by one node of the region, opened briefly by the others to try its lock), one
/// liveness check of a host that stopped answering, and one transient session
/// (migrations at start-up, the standby mode's promotion check).
pub fn default_db_sessions(cfg: &NodeConfig) -> usize {
    let ex = &cfg.exchange;
    let partitions = match cfg.module {
        Module::Matching => ex.spot_markets.len(),
        Module::Contract => ex.perp_markets.len(),
        Module::Wallet => ex.wallet_shards as usize,
        Module::Otc => ex.otc_shards as usize,
    };
    partitions + 4
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
    pub fn start(cfg: NodeConfig, pg: crate::db::Target, pg_any: crate::db::Target, tokens: crate::tokens::Tokens) -> Arc<Node> {
        let addr = cfg.advertise.clone().unwrap_or_else(|| cfg.listen.clone());
        let (events, event_rx) = tokio::sync::mpsc::channel(64);
        let (reconcile, reconcile_requests) = crate::reconcile::channel();
        let state = Arc::new(NodeState {
            node_id: cfg.node_id.clone(),
            addr,
            pg,
            pg_any,
            mode: std::sync::atomic::AtomicU8::new(if cfg.mode == RegionMode::Active { 0 } else { 1 }),
            isolated: Default::default(),
            breaching: Default::default(),
            shutting_down: Default::default(),
            batch_max: cfg.batch_max.max(1),
            leader_silence: std::time::Duration::from_millis(cfg.db.leader_silence_ms.max(1)),
            events,
            gateway_heard: Default::default(),
        });
        let mut node = Node {
            cfg,
            state,
            tokens,
            metrics: Metrics::default(),
            spot: HashMap::new(),
            perp: HashMap::new(),
            depths: HashMap::new(),
            wallet: Vec::new(),
            otc: Vec::new(),
            events: std::sync::Mutex::new(Some(event_rx)),
            reconcile,
            reconcile_requests: std::sync::Mutex::new(Some(reconcile_requests)),
        };
        match node.cfg.module {
            Module::Matching => (node.spot, node.depths) = node.spawn_markets(MarketKind::Spot),
            Module::Contract => (node.perp, node.depths) = node.spawn_markets(MarketKind::Perp),
            Module::Wallet => node.wallet = node.spawn_wallets(),
            Module::Otc => node.otc = node.spawn_otc(),
        }
        Arc::new(node)
    }

    /// The partition loops of the spot markets or the perpetuals, by symbol, and where
    /// each publishes its depth.
    fn spawn_markets(&self, kind: MarketKind) -> (Markets, HashMap<PartitionKey, Arc<DepthView>>) {
        let ex = &self.cfg.exchange;
        let list = if kind == MarketKind::Spot { &ex.spot_markets } else { &ex.perp_markets };
        let (mut out, mut depths) = (HashMap::new(), HashMap::new());
        for (i, m) in list.iter().enumerate() {
            let m = m.clone();
            let fees = Fees { maker_bps: m.maker_fee_bps, taker_bps: m.taker_fee_bps };
            let (key, rank, depth) = (kind.key(&m.symbol), rank(&self.cfg, i), Arc::new(DepthView::default()));
            depths.insert(key.clone(), depth.clone());
            let h = match kind {
                MarketKind::Spot => partition::spawn(self.state.clone(), key, rank, move || {
                    SpotLogic::spot(&m.symbol, &m.base, &m.quote, fees, m.price_band_bps, fee_account(i)).with_depth(depth.clone())
                }),
                MarketKind::Perp => partition::spawn(self.state.clone(), key, rank, move || {
                    let margins = Margins { im_bps: m.initial_margin_bps, mm_bps: m.maintenance_margin_bps };
                    let logic = PerpLogic::perp(&m.symbol, &m.quote, fees, margins, m.price_band_bps, perp_accounts(i));
                    logic.with_depth(depth.clone())
                }),
            };
            out.insert(list[i].symbol.clone(), h);
        }
        (out, depths)
    }

    fn spawn_wallets(&self) -> Vec<PartitionHandle<WalletCmd>> {
        let node_id = self.cfg.node_id.clone();
        self.spawn_shards(self.cfg.exchange.wallet_shards, PartitionKey::wallet, move |s| WalletLogic {
            shard: s as i32,
            node_id: node_id.clone(),
        })
    }

    fn spawn_otc(&self) -> Vec<PartitionHandle<OtcCmd>> {
        let ex = self.cfg.exchange.clone();
        self.spawn_shards(ex.otc_shards, PartitionKey::otc, move |_| OtcLogic {
            markets: ex.spot_markets.clone(),
            dealer: ex.otc_dealer_user_id,
            ttl_ms: ex.otc_quote_ttl_ms,
            spread_bps: ex.otc_spread_bps,
        })
    }

    /// The partition loops of a module sharded by user (`key(shard)`, shard 0..shards).
    fn spawn_shards<L: partition::Logic>(
        &self,
        shards: u32,
        key: fn(u32) -> PartitionKey,
        make: impl Fn(u32) -> L + Clone + Send + 'static,
    ) -> Vec<PartitionHandle<L::Cmd>> {
        (0..shards)
            .map(|s| {
                let make = make.clone();
                partition::spawn(self.state.clone(), key(s), rank(&self.cfg, s as usize), move || make(s))
            })
            .collect()
    }

    fn partition_states(&self) -> impl Iterator<Item = &Arc<PartitionState>> {
        self.spot
            .values()
            .chain(self.perp.values())
            .map(|h| &h.state)
            .chain(self.wallet.iter().map(|h| &h.state))
            .chain(self.otc.iter().map(|h| &h.state))
    }

    /// Partition keys this node currently leads.
    pub fn leading(&self) -> Vec<PartitionKey> {
        let mut v: Vec<PartitionKey> =
            self.partition_states().filter(|s| s.leading.load(Ordering::SeqCst)).map(|s| s.key.clone()).collect();
        v.sort();
        v
    }

    /// Partitions this node leads whose DB work (usually a commit) is outstanding, with
    /// its age in ms.
    pub fn in_flight_ms(&self) -> std::collections::BTreeMap<PartitionKey, u64> {
        let mut m = std::collections::BTreeMap::new();
        for s in self.partition_states() {
            if let (true, Some(age)) = (s.leading.load(Ordering::SeqCst), s.in_flight_age()) {
                m.insert(s.key.clone(), age.as_millis() as u64);
            }
        }
        m
    }

    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            in_flight_ms: self.in_flight_ms(),
            db_sessions: self.state.pg.sessions_open(),
            node_id: self.cfg.node_id.clone(),
            module: self.cfg.module.as_str().to_string(),
            region: self.cfg.region.clone(),
            mode: if self.state.is_active() { MODE_ACTIVE } else { MODE_STANDBY }.to_string(),
            isolated: self.state.isolated.load(Ordering::SeqCst),
            breaching: self.state.breaching.load(Ordering::SeqCst),
            leading: self.leading(),
            received: None,
        }
    }

    fn refresh_metrics(&self) {
        let n = label(&self.cfg.node_id);
        for s in self.partition_states() {
            let v = if s.leading.load(Ordering::SeqCst) { 1.0 } else { 0.0 };
            self.metrics.set(format!("engine_partition_leader{{node=\"{n}\",partition=\"{}\"}}", label(s.key.as_str())), v);
            let batches = s.batches.load(Ordering::Relaxed) as f64;
            self.metrics
                .set_counter(format!("engine_partition_batches_total{{node=\"{n}\",partition=\"{}\"}}", label(s.key.as_str())), batches);
        }
        self.metrics.set(format!("engine_node_active{{node=\"{n}\"}}"), if self.state.is_active() { 1.0 } else { 0.0 });
        self.metrics
            .set(format!("engine_node_isolated{{node=\"{n}\"}}"), if self.state.isolated.load(Ordering::SeqCst) { 1.0 } else { 0.0 });
    }

    pub fn router(self: &Arc<Self>) -> Router {
        use MarketKind::{Perp, Spot};
        Router::new()
            .route(paths::NODE_STATUS, get(status))
            .route(paths::NODE_PING, get(|| async { "pong" }))
            .route(paths::METRICS, get(metrics))
            .route(paths::ADMIN_MODE, post(set_mode))
            .route(paths::ADMIN_RECONCILE, post(reconcile_now))
            .route(paths::ORDERS, post(|s: S, h: HeaderMap, b: Bytes| place(s, h, b, Spot)))
            .route(paths::NODE_ORDERS_BATCH, post(place_batch))
            .route(paths::ORDERS_CANCEL, post(|s: S, h: HeaderMap, b: Bytes| cancel(s, h, b, Spot)))
            .route(paths::CONTRACT_ORDERS, post(|s: S, h: HeaderMap, b: Bytes| place(s, h, b, Perp)))
            .route(paths::CONTRACT_ORDERS_CANCEL, post(|s: S, h: HeaderMap, b: Bytes| cancel(s, h, b, Perp)))
            .route(paths::CONTRACT_BOOK, get(|s: S, h: HeaderMap, m: Path<String>, q: Query<Levels>| book(s, h, m, q, Perp)))
            .route(paths::BOOK, get(|s: S, h: HeaderMap, m: Path<String>, q: Query<Levels>| book(s, h, m, q, Spot)))
            .route(paths::NODE_DEPOSITS, post(deposit))
            .route(paths::WITHDRAWALS, post(withdraw))
            .route(paths::NODE_WITHDRAWAL_ACTION, post(withdrawal_action))
            .route(paths::OTC_QUOTES, post(otc_quote))
            .route(paths::NODE_OTC_ACCEPT, post(otc_accept))
            .route(paths::ADMIN_OTC_REFERENCE, post(otc_reference))
            .with_state(self.clone())
    }

    /// An admin call: the admin token (401).
    fn auth(&self, h: &HeaderMap) -> Result<(), ApiError> {
        self.tokens.is_admin(h).then_some(()).ok_or_else(ApiError::unauthorized)
    }

    /// A call the gateway makes for a user (or a public read): the internal token (401).
    /// The admin token is not enough: it must not act as a user.
    fn internal(&self, h: &HeaderMap) -> Result<(), ApiError> {
        self.tokens.is_internal(h).then_some(()).ok_or_else(ApiError::unauthorized)
    }

    fn user(&self, h: &HeaderMap) -> Result<i64, ApiError> {
        self.internal(h)?;
        let u = h
            .get(USER_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| ApiError::bad_request("missing x-user-id"))?;
        rq::check_user(u)?;
        Ok(u)
    }

    /// A user's request (forwarded by the gateway): the token and user (401/400), then the body.
    fn user_body<T: DeserializeOwned>(&self, h: &HeaderMap, body: &[u8]) -> Result<(i64, T), ApiError> {
        let u = self.user(h)?;
        Ok((u, parse(body)?))
    }

    /// An admin's request: the token (401), then the body (400).
    fn admin_body<T: DeserializeOwned>(&self, h: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
        self.auth(h)?;
        parse(body)
    }

    fn ex(&self) -> &ExchangeConfig {
        &self.cfg.exchange
    }

    /// The partition of market `symbol` of this kind, if this node runs it.
    fn market(&self, kind: MarketKind, symbol: &str) -> Result<&PartitionHandle<SpotCmd>, ApiError> {
        let markets = if kind == MarketKind::Spot { &self.spot } else { &self.perp };
        markets.get(symbol).ok_or_else(|| ApiError::not_leader(kind.key(symbol)))
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

type S = State<Arc<Node>>;

/// The shape of every node write: `r` is the partition and the command for it (the caller
/// authenticated, the body parsed and validated), or why the request is refused.
async fn dispatch<C: Send + 'static>(n: &Node, r: Result<(&PartitionHandle<C>, C), ApiError>) -> Response {
    respond(match r {
        Ok((part, cmd)) => part.call(&n.state, cmd).await,
        Err(e) => Err(e),
    })
}

async fn status(State(n): S, h: HeaderMap) -> Response {
    if h.contains_key(GATEWAY_HEADER) {
        n.state.heard_gateway();
    }
    Json(n.status()).into_response()
}

async fn metrics(State(n): S) -> Response {
    n.refresh_metrics();
    ([("content-type", "text/plain; version=0.0.4")], n.metrics.render()).into_response()
}

async fn set_mode(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r = n.admin_body::<rq::ModeReq>(&h, &body).map(|m| {
        let v = if m.mode == RegionMode::Active { 0 } else { 1 };
        let old = n.state.mode.swap(v, Ordering::SeqCst);
        if old != v {
            tracing::info!(mode = ?m.mode, "region mode changed by admin call");
            n.metrics.inc(format!("engine_mode_transitions_total{{node=\"{}\"}}", label(&n.cfg.node_id)));
        }
        serde_json::to_value(n.status()).unwrap_or_default()
    });
    respond(r)
}

/// Runs the conservation check now if this node holds the reconciliation lock (or takes
/// it): the run's report; `not_leader` if another node holds it.
async fn reconcile_now(State(n): S, h: HeaderMap) -> Response {
    let r: Reply = async {
        n.auth(&h)?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        n.reconcile.send(reply).await.map_err(|_| ApiError::unavailable("reconciliation is not running"))?;
        rx.await.map_err(|_| ApiError::unavailable("reconciliation stopped"))?
    }
    .await;
    respond(r)
}

async fn place(State(n): S, h: HeaderMap, body: Bytes, kind: MarketKind) -> Response {
    let r = match n.user_body(&h, &body) {
        Ok((user_id, order)) => place_one(&n, kind, UserOrder { user_id, order }).await,
        Err(e) => Err(e),
    };
    if kind == MarketKind::Spot {
        n.metrics.inc(format!("engine_requests_total{{op=\"place\",ok=\"{}\"}}", r.is_ok()));
    }
    respond(r)
}

/// One placement in a spot or perpetual market: validated, then normalized for its leader.
async fn place_one(n: &Node, kind: MarketKind, o: UserOrder) -> Reply {
    rq::check_user(o.user_id)?;
    kind.validate(&o.order, n.ex())?;
    let part = n.market(kind, &o.order.market)?;
    let order = kind.normalize(o.order);
    part.call(&n.state, SpotCmd::Place(UserOrder { user_id: o.user_id, order })).await
}

/// Many placements in one call (the gateway coalesces concurrent requests): they reach
/// the partition queues together, so they share a group commit, and each gets its own
/// answer (`status` + `body`, as the single call would have returned).
async fn place_batch(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let batch: PlaceBatch = match n.internal(&h).and_then(|()| parse(&body)) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let replies = futures::future::join_all(batch.orders.into_iter().map(|o| place_one(&n, MarketKind::Spot, o))).await;
    let ok = replies.iter().filter(|r| r.is_ok()).count();
    n.metrics.add("engine_requests_total{op=\"place\",ok=\"true\"}".into(), ok as f64);
    n.metrics.add("engine_requests_total{op=\"place\",ok=\"false\"}".into(), (replies.len() - ok) as f64);
    let items: Vec<BatchReply> = replies
        .into_iter()
        .map(|r| match r {
            Ok(v) => BatchReply { status: 200, body: v },
            Err(e) => BatchReply { status: e.status, body: e.body() },
        })
        .collect();
    Json(items).into_response()
}

async fn cancel(State(n): S, h: HeaderMap, body: Bytes, kind: MarketKind) -> Response {
    let r = n.user_body::<rq::CancelOrder>(&h, &body).and_then(|(user_id, c)| {
        kind.check_market(n.ex(), &c.market)?;
        Ok((n.market(kind, &c.market)?, SpotCmd::Cancel { user_id, order_id: c.order_id }))
    });
    dispatch(&n, r).await
}

#[derive(serde::Deserialize)]
struct Levels {
    levels: Option<usize>,
}

/// A book as this leader last published it (`matching::depth`): answered from memory,
/// with no job for the leader loop and no DB round trip.
async fn book(State(n): S, h: HeaderMap, Path(market): Path<String>, Query(q): Query<Levels>, kind: MarketKind) -> Response {
    if let Err(e) = kind.check_market(n.ex(), &market) {
        return e.into_response();
    }
    let r: Reply = (|| {
        n.internal(&h)?;
        let part = n.market(kind, &market)?;
        let levels = q.levels.unwrap_or(crate::matching::LEVELS_DEFAULT);
        let not_leader = || ApiError::not_leader(&part.state.key);
        if !part.state.leading.load(Ordering::SeqCst) {
            return Err(not_leader());
        }
        let depth = n.depths.get(&part.state.key).ok_or_else(not_leader)?;
        depth.json(&market, levels).ok_or_else(not_leader)
    })();
    respond(r)
}

async fn deposit(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r = n.admin_body::<rq::Deposit>(&h, &body).and_then(|d| {
        d.validate(n.ex())?;
        let cmd = WalletCmd::Deposit { deposit_id: d.deposit_id, user_id: d.user_id, asset: d.asset, amount_minor: d.amount_minor };
        Ok((n.wallet_shard(d.user_id)?, cmd))
    });
    dispatch(&n, r).await
}

async fn withdraw(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r = n.user_body::<rq::Withdraw>(&h, &body).and_then(|(user_id, w)| {
        w.validate(n.ex())?;
        let cmd = WalletCmd::Withdraw { user_id, client_id: w.client_id, asset: w.asset, amount_minor: w.amount_minor };
        Ok((n.wallet_shard(user_id)?, cmd))
    });
    dispatch(&n, r).await
}

async fn withdrawal_action(State(n): S, h: HeaderMap, Path(id): Path<i64>, body: Bytes) -> Response {
    let r = n.admin_body::<rq::WithdrawalActionReq>(&h, &body).and_then(|a| {
        rq::check_user(a.user_id)?;
        Ok((n.wallet_shard(a.user_id)?, WalletCmd::Action { withdrawal_id: id, user_id: a.user_id, action: a.action }))
    });
    dispatch(&n, r).await
}

async fn otc_quote(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r = n.user_body::<rq::QuoteReq>(&h, &body).and_then(|(user_id, q)| {
        q.validate(n.ex())?;
        let cmd = OtcCmd::Quote { user_id, client_id: q.client_id, market: q.market, side: q.side, qty_lots: q.qty_lots };
        Ok((n.otc_shard(user_id)?, cmd))
    });
    dispatch(&n, r).await
}

async fn otc_accept(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r = n
        .user_body::<rq::AcceptReq>(&h, &body)
        .and_then(|(user_id, a)| Ok((n.otc_shard(user_id)?, OtcCmd::Accept { user_id, quote_id: a.quote_id })));
    dispatch(&n, r).await
}

async fn otc_reference(State(n): S, h: HeaderMap, body: Bytes) -> Response {
    let r = n.admin_body::<rq::ReferencePrice>(&h, &body).and_then(|p| {
        rq::spot_market(n.ex(), &p.market)?;
        rq::check_range("price_ticks", p.price_ticks, 1, rq::MAX_PRICE)?;
        let part = n.otc.first().ok_or_else(|| ApiError::not_leader(PartitionKey::otc(0)))?;
        Ok((part, OtcCmd::SetReference { market: p.market, price_ticks: p.price_ticks }))
    });
    dispatch(&n, r).await
}
