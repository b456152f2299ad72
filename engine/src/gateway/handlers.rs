//! The gateway's HTTP handlers. Every forwarded write has one shape (`forward_write`):
//! the caller (user or admin), the body, its validation, and a `Target` (partition, node
//! path, body) to forward to; reads answer from the DB (`reads`) or the leader's book.

use super::{Gateway, NodeView};
use crate::api::{respond, ApiError, Reply};
use crate::metrics::label;
use crate::protocol::{paths, MarketKind, PartitionKey, ADMIN_HEADER};
use crate::requests::{self as rq};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

type S = State<Arc<Gateway>>;
/// The client's TCP peer address (the router is served with connect info).
type Peer = ConnectInfo<std::net::SocketAddr>;

/// The public listener: `/v1/*` and `/health`.
pub(super) fn router(g: Arc<Gateway>) -> Router {
    use MarketKind::{Perp, Spot};
    Router::new()
        .route(paths::HEALTH, get(health))
        .route(paths::ORDERS, post(place))
        .route(paths::ORDERS_CANCEL, post(|s: S, h: HeaderMap, b: Bytes| cancel(s, h, b, Spot)))
        .route(paths::ORDER, get(order))
        .route(paths::ORDER_BY_CLIENT_ID, get(order_by_cid))
        .route(paths::BOOK, get(|s: S, a: Peer, m: Path<String>| book(s, a, m, Spot)))
        .route(paths::CONTRACT_ORDERS, post(perp_place))
        .route(paths::CONTRACT_ORDERS_CANCEL, post(|s: S, h: HeaderMap, b: Bytes| cancel(s, h, b, Perp)))
        .route(paths::CONTRACT_BOOK, get(|s: S, a: Peer, m: Path<String>| book(s, a, m, Perp)))
        .route(paths::POSITIONS, get(positions))
        .route(paths::BALANCES, get(balances))
        .route(paths::WITHDRAWALS, post(withdraw))
        .route(paths::WITHDRAWAL, get(withdrawal))
        .route(paths::OTC_QUOTES, post(otc_quote))
        .route(paths::OTC_ACCEPT, post(otc_accept))
        .with_state(g)
}

/// The admin listener (a private address): `/admin/*` and `/metrics`.
pub(super) fn admin_router(g: Arc<Gateway>) -> Router {
    Router::new()
        .route(paths::METRICS, get(metrics))
        .route(paths::ADMIN_USERS, post(create_user))
        .route(paths::ADMIN_DEPOSITS, post(deposit))
        .route(paths::ADMIN_WITHDRAWAL_ACTION, post(withdrawal_action))
        .route(paths::ADMIN_OTC_REFERENCE, post(otc_reference))
        .route(paths::ADMIN_MODE, post(set_mode))
        .route(paths::ADMIN_RECONCILE, post(reconcile))
        .with_state(g)
}

/// Where a validated write goes: the leader of `key`, at `path`, with `body`.
struct Target {
    key: PartitionKey,
    path: String,
    body: Value,
}

impl Target {
    fn new(key: PartitionKey, path: impl Into<String>, body: &impl Serialize) -> Target {
        Target { key, path: path.into(), body: serde_json::to_value(body).unwrap_or(Value::Null) }
    }
}

/// The shape of every forwarded write: `r` is the authenticated caller (a user, or `None`
/// for an admin) and the target, or why the request is refused.
async fn forward_write(g: &Gateway, r: Result<(Option<i64>, Target), ApiError>) -> Response {
    match r {
        Err(e) => e.into_response(),
        Ok((user, t)) => g.forward(&t.key, &t.path, user, &t.body).await,
    }
}

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
        g.metrics.set(format!("engine_gateway_partition_led{{partition=\"{}\"}}", label(p.as_str())), v);
    }
    g.metrics.set("engine_gateway_healthy".into(), if g.unhealthy_reason().is_none() { 1.0 } else { 0.0 });
    ([("content-type", "text/plain; version=0.0.4")], g.metrics.render()).into_response()
}

/// Spot placements: batched with other placements of the market when batching is on.
async fn place(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let t = Instant::now();
    let r = g.user_body::<rq::PlaceOrder>(&h, &body).await.and_then(|(u, p)| {
        p.validate(&g.cfg.exchange)?;
        Ok((u, p))
    });
    let resp = match r {
        Err(e) => e.into_response(),
        Ok((u, p)) => batch_or_forward(&g, u, p).await,
    };
    let series = match resp.status().as_u16() {
        200 => "engine_gateway_requests_total{op=\"place\",status=\"200\"}".to_string(),
        s => format!("engine_gateway_requests_total{{op=\"place\",status=\"{s}\"}}"),
    };
    g.metrics.inc(series);
    g.metrics.add("engine_gateway_place_seconds_sum".into(), t.elapsed().as_secs_f64());
    resp
}

/// A validated spot order: through its market's batch, or forwarded on its own when there
/// is no batching or the batch handed it back.
async fn batch_or_forward(g: &Gateway, u: i64, p: rq::PlaceOrder) -> Response {
    let key = MarketKind::Spot.key(&p.market);
    match g.place_batched(&key, u, p.clone()).await {
        Some((status, body)) => (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response(),
        None => forward_write(g, Ok((Some(u), Target::new(key, paths::ORDERS, &p)))).await,
    }
}

async fn perp_place(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r = g.user_body::<rq::PlaceOrder>(&h, &body).await.and_then(|(u, p)| {
        p.validate_perp(&g.cfg.exchange)?;
        Ok((Some(u), Target::new(MarketKind::Perp.key(&p.market), paths::CONTRACT_ORDERS, &p)))
    });
    forward_write(&g, r).await
}

async fn cancel(State(g): S, h: HeaderMap, body: Bytes, kind: MarketKind) -> Response {
    let r = g.user_body::<rq::CancelOrder>(&h, &body).await.and_then(|(u, c)| {
        kind.check_market(&g.cfg.exchange, &c.market)?;
        Ok((Some(u), Target::new(kind.key(&c.market), kind.cancel_path(), &c)))
    });
    forward_write(&g, r).await
}

/// A book (no authentication): limited per client address first (`limit`), then the
/// leader's published depth.
async fn book(State(g): S, ConnectInfo(peer): Peer, Path(market): Path<String>, kind: MarketKind) -> Response {
    if let Err(wait) = g.public_reads.check(peer.ip()) {
        g.metrics.inc("engine_gateway_public_reads_limited_total".into());
        return too_many(wait);
    }
    if let Err(e) = kind.check_market(&g.cfg.exchange, &market) {
        return e.into_response();
    }
    g.book_of(kind.key(&market), kind.book_path(&market)).await
}

/// 429 with `Retry-After` (whole seconds).
fn too_many(wait: std::time::Duration) -> Response {
    let after = super::limit::retry_after_s(wait);
    let e = ApiError::new(
        429,
        crate::protocol::ErrorCode::RateLimited,
        format!("too many unauthenticated reads from this address; retry in {after} s"),
    );
    (StatusCode::TOO_MANY_REQUESTS, [(axum::http::header::RETRY_AFTER, after.to_string())], Json(e.body())).into_response()
}

async fn withdraw(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r = g.user_body::<rq::Withdraw>(&h, &body).await.and_then(|(u, w)| {
        w.validate(&g.cfg.exchange)?;
        Ok((Some(u), Target::new(PartitionKey::wallet_of(u, &g.cfg.exchange), paths::WITHDRAWALS, &w)))
    });
    forward_write(&g, r).await
}

async fn otc_quote(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r = g.user_body::<rq::QuoteReq>(&h, &body).await.and_then(|(u, q)| {
        q.validate(&g.cfg.exchange)?;
        Ok((Some(u), Target::new(PartitionKey::otc_of(u, &g.cfg.exchange), paths::OTC_QUOTES, &q)))
    });
    forward_write(&g, r).await
}

async fn otc_accept(State(g): S, h: HeaderMap, Path(id): Path<i64>) -> Response {
    let r = g.user(&h).await.map(|u| {
        let body = rq::AcceptReq { quote_id: id };
        (Some(u), Target::new(PartitionKey::otc_of(u, &g.cfg.exchange), paths::NODE_OTC_ACCEPT, &body))
    });
    forward_write(&g, r).await
}

async fn deposit(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r = g.admin_body::<rq::Deposit>(&h, &body).and_then(|d| {
        d.validate(&g.cfg.exchange)?;
        Ok((None, Target::new(PartitionKey::wallet_of(d.user_id, &g.cfg.exchange), paths::NODE_DEPOSITS, &d)))
    });
    forward_write(&g, r).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    user_id: i64,
}

async fn withdrawal_action(State(g): S, h: HeaderMap, Path((id, action)): Path<(i64, String)>, body: Bytes) -> Response {
    let r = g.admin_body::<UserBody>(&h, &body).and_then(|b| {
        rq::check_user(b.user_id)?;
        let action = match action.as_str() {
            "approve" | "complete" | "reject" => action,
            _ => return Err(ApiError::bad_request("action must be approve, complete or reject")),
        };
        let key = PartitionKey::wallet_of(b.user_id, &g.cfg.exchange);
        Ok((None, Target::new(key, paths::node_withdrawal_action(id), &json!({"user_id": b.user_id, "action": action}))))
    });
    forward_write(&g, r).await
}

async fn otc_reference(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r = g.admin_body::<rq::ReferencePrice>(&h, &body).and_then(|p| {
        rq::spot_market(&g.cfg.exchange, &p.market)?;
        rq::check_range("price_ticks", p.price_ticks, 1, rq::MAX_PRICE)?;
        Ok((None, Target::new(PartitionKey::otc(0), paths::ADMIN_OTC_REFERENCE, &p)))
    });
    forward_write(&g, r).await
}

async fn order(State(g): S, h: HeaderMap, Path(id): Path<i64>) -> Response {
    respond(async { g.order(g.user(&h).await?, Ok(id)).await }.await)
}

async fn order_by_cid(State(g): S, h: HeaderMap, Path(cid): Path<String>) -> Response {
    let r: Reply = async {
        let u = g.user(&h).await?;
        rq::check_id("client_order_id", &cid)?;
        g.order(u, Err(&cid)).await
    }
    .await;
    respond(r)
}

async fn balances(State(g): S, h: HeaderMap) -> Response {
    respond(async { g.balances(g.user(&h).await?).await }.await)
}

async fn withdrawal(State(g): S, h: HeaderMap, Path(id): Path<i64>) -> Response {
    respond(async { g.withdrawal(g.user(&h).await?, id).await }.await)
}

async fn positions(State(g): S, h: HeaderMap) -> Response {
    respond(async { g.positions(g.user(&h).await?).await }.await)
}

async fn create_user(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        let c: rq::CreateUser = g.admin_body(&h, &body)?;
        rq::check_user(c.user_id)?;
        // The OTC dealer may be created too: it is an ordinary account with an API key.
        g.create_user(c.user_id).await
    }
    .await;
    respond(r)
}

/// Switches every node of the region (best effort; reports each node's answer).
async fn set_mode(State(g): S, h: HeaderMap, body: Bytes) -> Response {
    let r: Reply = async {
        let m: rq::ModeReq = g.admin_body(&h, &body)?;
        let mut results = Vec::new();
        for n in &g.nodes {
            results.push(json!({"node_id": n.peer.node_id, "ok": set_node_mode(&g, n, &m).await}));
        }
        tracing::info!(mode = ?m.mode, "region mode change requested");
        Ok(json!({"mode": m.mode, "nodes": results}))
    }
    .await;
    respond(r)
}

async fn set_node_mode(g: &Gateway, n: &NodeView, m: &rq::ModeReq) -> bool {
    let url = format!("http://{}{}", n.peer.addr, paths::ADMIN_MODE);
    g.http.post(&url).header(ADMIN_HEADER, g.admin_token()).json(m).send().await.is_ok_and(|r| r.status().is_success())
}

/// Runs the conservation check now on the node that holds the reconciliation lock (asked
/// in turn; a node that does not hold it answers `not_leader`, and one may take a free
/// lock): that node's report, or 503 if none ran it.
async fn reconcile(State(g): S, h: HeaderMap) -> Response {
    let r: Reply = async {
        g.admin(&h)?;
        let mut refused = Vec::new();
        for n in &g.nodes {
            match reconcile_on(&g, n).await {
                Ok(v) => return Ok(v),
                Err(e) => refused.push(format!("{}: {e}", n.peer.node_id)),
            }
        }
        Err(ApiError::unavailable(format!("no node ran the conservation check ({})", refused.join("; "))))
    }
    .await;
    respond(r)
}

async fn reconcile_on(g: &Gateway, n: &NodeView) -> Result<Value, String> {
    let url = format!("http://{}{}", n.peer.addr, paths::ADMIN_RECONCILE);
    // A check may scan for up to `monitor.reconcile_timeout_ms`, longer than a forward.
    let limit = std::time::Duration::from_millis(engine_config::DEFAULT_RECONCILE_TIMEOUT_MS) * 2;
    let r = g.http.post(&url).header(ADMIN_HEADER, g.admin_token()).timeout(limit).send().await.map_err(|e| e.to_string())?;
    let ok = r.status().is_success();
    let v: Value = r.json().await.map_err(|e| e.to_string())?;
    if ok {
        Ok(v)
    } else {
        Err(v["error"].as_str().unwrap_or("error").to_string())
    }
}
