//! Routing writes to partition leaders: `forward` (one request, retried across failovers
//! within `retry_budget_ms`), `Coalescer` (concurrent placements for one spot market
//! travel to its leader in one call), and reads of a leader's book. Both write paths
//! judge a node's refusal by the one rule in `refused`.
//!
//! Batching: one task per market takes a call slot (at most `batch_in_flight_max`), then
//! everything queued (up to `batch_orders_max`) and sends it. While all slots are busy,
//! requests wait in the queue and join the next call, so batches grow with the load. An
//! order whose answer is "not the leader" / "outcome unknown", or whose call failed, is
//! handed back to its request, which then goes through `forward` and its idempotent
//! retries.
//!
//! A call waits on its node only while that node answers its probes or still leads the
//! partition for the gateway: once the node stopped answering and another node leads the
//! partition (the first one hung or was cut off and a standby took over), the call is
//! given up and the request goes to the new leader (`moved`).

use super::{Gateway, NodeView};
use crate::api::ApiError;
use crate::protocol::{paths, BatchReply, ErrorCode, PartitionKey, PlaceBatch, UserOrder, ADMIN_HEADER, INTERNAL_HEADER, USER_HEADER};
use crate::requests::PlaceOrder;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// The status a client gets for a node's answer: server errors are all 503.
fn client_status(s: StatusCode) -> StatusCode {
    if s.is_server_error() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        s
    }
}

impl Gateway {
    /// The one rule for a node's answer: a 503 whose code says the node is not leading
    /// (`not_leader`, or `unavailable`: it lost the leadership or cannot commit) makes the
    /// gateway forget `node` as the leader of `partition`; true when the request must be
    /// sent again (to the next leader).
    fn refused(&self, node: &NodeView, partition: &PartitionKey, status: StatusCode, code: Option<ErrorCode>) -> bool {
        if status == StatusCode::SERVICE_UNAVAILABLE && code.is_some_and(ErrorCode::means_not_leading) {
            self.forget_leader(node, partition);
            return true;
        }
        false
    }

    /// Resolves once `node` stopped answering its probes and `partition` has a live leader
    /// other than it: a call still waiting on `node` then waits on a former leader (hung,
    /// or cut off) whose locked session is gone (the new leader holds the lock), so it can
    /// commit nothing more. The
    /// caller sends the request again (every write is idempotent: the new leader returns
    /// the first result if one was committed). A call to a node that answers its probes is
    /// left alone, also while a continued former leader still claims the partition.
    /// Costs nothing while the node answers: it waits to be woken by `mark_dead`.
    pub(super) async fn moved(&self, node: &NodeView, partition: &PartitionKey) {
        loop {
            node.dead().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !node.alive.load(Ordering::SeqCst) && self.leader_of(partition).is_some_and(|n| n.peer.node_id != node.peer.node_id) {
                return;
            }
        }
    }

    /// Forwards a write to the leader of `partition`, retrying across failovers. The
    /// request carries a client-supplied id (or is a state transition), so a retry after
    /// a lost answer returns the first result instead of applying twice. A user's call
    /// (`user`) carries the internal token and the user; an admin's, the admin token.
    pub async fn forward(&self, partition: &PartitionKey, path: &str, user: Option<i64>, body: &Value) -> Response {
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
            let req = match user {
                Some(u) => self.http.post(&url).header(INTERNAL_HEADER, self.internal_token()).header(USER_HEADER, u.to_string()),
                None => self.http.post(&url).header(ADMIN_HEADER, self.admin_token()),
            }
            .json(body);
            let answer = async {
                let r = req.send().await?;
                Ok::<_, reqwest::Error>((r.status(), r.bytes().await.unwrap_or_default()))
            };
            let (status, bytes) = tokio::select! {
                r = answer => match r {
                    Ok(r) => r,
                    Err(e) => {
                        // Connection refused / reset: the node is gone. Route around it now.
                        tracing::info!(node = %node.peer.node_id, error = %e, "forward failed; marking node dead");
                        node.mark_dead();
                        last = ApiError::unavailable(format!("leader of {partition} unreachable"));
                        continue;
                    }
                },
                _ = self.moved(&node, partition) => {
                    tracing::info!(node = %node.peer.node_id, %partition, "leader moved during a forward; sending it again");
                    last = ApiError::unavailable(format!("{partition} is changing leader"));
                    continue;
                }
            };
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let code = v.get("error").and_then(|c| c.as_str()).and_then(|c| c.parse().ok());
            if self.refused(&node, partition, status, code) {
                last = ApiError::unavailable(format!("{partition} is changing leader"));
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            if attempts > 1 {
                self.metrics.inc("engine_gateway_retried_requests_total".into());
            }
            return (client_status(status), Json(v)).into_response();
        }
        last.into_response()
    }

    /// Places through a batch when batching is on; `None` when the caller must forward the
    /// order itself.
    pub(super) async fn place_batched(&self, partition: &PartitionKey, user_id: i64, order: PlaceOrder) -> Outcome {
        self.batcher.get()?.place(partition, user_id, order).await
    }

    /// A book as its leader has it (a read of memory, not of the DB), retried within the
    /// budget while there is no leader.
    pub(super) async fn book_of(&self, partition: PartitionKey, path: String) -> Response {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.retry_budget_ms);
        while Instant::now() < deadline {
            if let Some(n) = self.leader_of(&partition) {
                let url = format!("http://{}{}", n.peer.addr, path);
                if let Ok(r) = self.http.get(&url).header(INTERNAL_HEADER, self.internal_token()).send().await {
                    if r.status().is_success() {
                        if let Ok(v) = r.json::<Value>().await {
                            return Json(v).into_response();
                        }
                    }
                } else {
                    n.mark_dead();
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        ApiError::unavailable(format!("no live leader for {partition}")).into_response()
    }
}

/// The node's answer for one order (status and JSON body, passed through unparsed), or
/// `None`: "send it on your own".
pub type Outcome = Option<(StatusCode, String)>;

/// A batch answer as the gateway reads it: the body stays raw JSON text, passed to the
/// client as it is.
type Answer = BatchReply<Box<RawValue>>;

struct Item {
    order: UserOrder,
    reply: oneshot::Sender<Outcome>,
    queued: Instant,
}

/// Queues of the per-market batching tasks, by partition.
pub struct Coalescer {
    queues: HashMap<PartitionKey, mpsc::Sender<Item>>,
}

impl Coalescer {
    pub fn start(g: &Arc<Gateway>) -> Coalescer {
        let (orders_max, slots) = (g.cfg.batch_orders_max, g.cfg.batch_in_flight_max.max(1));
        let mut queues = HashMap::new();
        if orders_max == 0 {
            return Coalescer { queues };
        }
        for m in &g.cfg.exchange.spot_markets {
            let key = PartitionKey::matching(&m.symbol);
            let (tx, rx) = mpsc::channel(orders_max * slots * 4);
            tokio::spawn(run(g.clone(), key.clone(), rx, orders_max, slots));
            queues.insert(key, tx);
        }
        Coalescer { queues }
    }

    /// Places through a batch; `None` when the caller must forward the order itself.
    pub async fn place(&self, partition: &PartitionKey, user_id: i64, order: PlaceOrder) -> Outcome {
        let q = self.queues.get(partition)?;
        let (reply, rx) = oneshot::channel();
        q.send(Item { order: UserOrder { user_id, order }, reply, queued: Instant::now() }).await.ok()?;
        rx.await.ok().flatten()
    }
}

async fn run(g: Arc<Gateway>, partition: PartitionKey, mut rx: mpsc::Receiver<Item>, orders_max: usize, slots: usize) {
    let slots = Arc::new(Semaphore::new(slots));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let mut items = vec![first];
        while items.len() < orders_max {
            match rx.try_recv() {
                Ok(i) => items.push(i),
                Err(_) => break,
            }
        }
        let (g, partition) = (g.clone(), partition.clone());
        tokio::spawn(async move {
            send(&g, &partition, items).await;
            drop(slot);
        });
    }
}

async fn send(g: &Gateway, partition: &PartitionKey, items: Vec<Item>) {
    let Some(node) = g.leader_of(partition) else {
        return; // dropping the items answers `None` to each
    };
    let (t, waited_us) = (Instant::now(), items.first().map(|i| i.queued.elapsed().as_micros() as u64).unwrap_or(0));
    let (orders, replies): (Vec<UserOrder>, Vec<oneshot::Sender<Outcome>>) = items.into_iter().map(|i| (i.order, i.reply)).unzip();
    let n = orders.len();
    let answers = tokio::select! {
        a = call(g, &node, PlaceBatch { orders }) => a,
        _ = g.moved(&node, partition) => {
            tracing::info!(node = %node.peer.node_id, %partition, "leader moved during a batch call; its orders go on their own");
            None
        }
    };
    let Some(answers) = answers.filter(|a| a.len() == n) else {
        return;
    };
    tracing::debug!(partition = %partition, n, waited_us, call_us = t.elapsed().as_micros() as u64, "batch call");
    g.metrics.add("engine_gateway_batched_orders_total".into(), n as f64);
    g.metrics.inc("engine_gateway_batches_total".into());
    for (a, reply) in answers.into_iter().zip(replies) {
        let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let code = if a.status == 503 { ErrorCode::of_body(a.body.get()) } else { None };
        if g.refused(&node, partition, status, code) {
            let _ = reply.send(None);
            continue;
        }
        let _ = reply.send(Some((client_status(status), a.body.get().to_string())));
    }
}

/// One batch call; `None` when it failed (the node is then marked dead) or was refused.
async fn call(g: &Gateway, node: &NodeView, batch: PlaceBatch) -> Option<Vec<Answer>> {
    let url = format!("http://{}{}", node.peer.addr, paths::NODE_ORDERS_BATCH);
    match g.http.post(&url).header(INTERNAL_HEADER, g.internal_token()).json(&batch).send().await {
        Err(e) => {
            tracing::info!(node = %node.peer.node_id, error = %e, "batch call failed; marking node dead");
            node.mark_dead();
            None
        }
        Ok(r) if r.status().is_success() => r.json().await.ok(),
        Ok(r) => {
            tracing::warn!(node = %node.peer.node_id, status = %r.status(), "batch call refused");
            None
        }
    }
}
