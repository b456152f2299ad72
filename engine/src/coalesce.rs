//! Gateway side of order batching: concurrent placements for one spot market travel to
//! its leader in one HTTP call (`/v1/orders/batch`) instead of one call each, which cuts
//! the HTTP, JSON and loopback-TCP work of the gateway->node hop by the batch size.
//!
//! One task per market takes a call slot (at most `batch_in_flight_max`), then everything
//! queued (up to `batch_orders_max`) and sends it. While all slots are busy, requests wait
//! in the queue and join the next call, so batches grow with the load. An order whose
//! answer is "not the leader" / "outcome unknown", or whose call failed, is handed back to
//! its request, which then goes through `Gateway::forward` and its idempotent retries.

use crate::gateway::Gateway;
use crate::node::ADMIN_HEADER;
use crate::requests::{BatchItem, PlaceBatch, PlaceOrder};
use axum::http::StatusCode;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// The node's answer for one order (status and JSON body, passed through unparsed), or
/// `None`: "send it on your own".
pub type Outcome = Option<(StatusCode, String)>;

/// `requests::BatchReply` as the gateway reads it: the body stays raw JSON text, passed
/// to the client as it is.
#[derive(serde::Deserialize)]
struct Answer {
    status: u16,
    body: Box<RawValue>,
}

struct Item {
    order: BatchItem,
    reply: oneshot::Sender<Outcome>,
    queued: std::time::Instant,
}

/// Queues of the per-market batching tasks, by partition key (`matching/<symbol>`).
pub struct Coalescer {
    queues: HashMap<String, mpsc::Sender<Item>>,
}

impl Coalescer {
    pub fn start(g: &Arc<Gateway>) -> Coalescer {
        let (orders_max, slots) = (g.cfg.batch_orders_max, g.cfg.batch_in_flight_max.max(1));
        let mut queues = HashMap::new();
        if orders_max == 0 {
            return Coalescer { queues };
        }
        for m in &g.cfg.exchange.spot_markets {
            let key = format!("matching/{}", m.symbol);
            let (tx, rx) = mpsc::channel(orders_max * slots * 4);
            tokio::spawn(run(g.clone(), key.clone(), rx, orders_max, slots));
            queues.insert(key, tx);
        }
        Coalescer { queues }
    }

    /// Places through a batch; `None` when the caller must forward the order itself.
    pub async fn place(&self, partition: &str, user_id: i64, order: PlaceOrder) -> Outcome {
        let q = self.queues.get(partition)?;
        let (reply, rx) = oneshot::channel();
        q.send(Item { order: BatchItem { user_id, order }, reply, queued: std::time::Instant::now() }).await.ok()?;
        rx.await.ok().flatten()
    }
}

async fn run(g: Arc<Gateway>, partition: String, mut rx: mpsc::Receiver<Item>, orders_max: usize, slots: usize) {
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

async fn send(g: &Gateway, partition: &str, items: Vec<Item>) {
    let Some(node) = g.leader_of(partition) else {
        return; // dropping the items answers `None` to each
    };
    let (t, waited_us) = (std::time::Instant::now(), items.first().map(|i| i.queued.elapsed().as_micros() as u64).unwrap_or(0));
    let (orders, replies): (Vec<BatchItem>, Vec<oneshot::Sender<Outcome>>) = items.into_iter().map(|i| (i.order, i.reply)).unzip();
    let n = orders.len();
    let url = format!("http://{}/v1/orders/batch", node.peer.addr);
    let answers: Option<Vec<Answer>> =
        match g.http.post(&url).header(ADMIN_HEADER, g.admin_token()).json(&PlaceBatch { orders }).send().await {
            Err(e) => {
                tracing::info!(node = %node.peer.node_id, error = %e, "batch call failed; marking node dead");
                node.alive.store(false, Ordering::SeqCst);
                None
            }
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            Ok(r) => {
                tracing::warn!(node = %node.peer.node_id, status = %r.status(), "batch call refused");
                None
            }
        };
    let Some(answers) = answers.filter(|a| a.len() == n) else {
        return;
    };
    tracing::debug!(partition, n, waited_us, call_us = t.elapsed().as_micros() as u64, "batch call");
    g.metrics.add("engine_gateway_batched_orders_total".into(), n as f64);
    g.metrics.inc("engine_gateway_batches_total".into());
    for (a, reply) in answers.into_iter().zip(replies) {
        let code = if a.status == 503 { error_code(&a.body) } else { String::new() };
        if code == "not_leader" || code == "unavailable" {
            if code == "not_leader" {
                g.forget_leader(&node, partition);
            }
            let _ = reply.send(None);
            continue;
        }
        let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let status = if status.is_server_error() { StatusCode::SERVICE_UNAVAILABLE } else { status };
        let _ = reply.send(Some((status, a.body.get().to_string())));
    }
}

fn error_code(body: &RawValue) -> String {
    #[derive(serde::Deserialize)]
    struct E {
        error: String,
    }
    serde_json::from_str::<E>(body.get()).map(|e| e.error).unwrap_or_default()
}
