//! Runtime reconciliation: the conservation check (`check`) runs every
//! `monitor.reconcile_interval_ms` on exactly one node of the region, the one whose session
//! holds the advisory lock `(7153, 0)` (partition locks are class 7152). Every active node
//! tries the lock at each interval on a short-lived session; the holder keeps its session
//! (and so the lock) until it dies, fails a check or the node leaves active mode, and then
//! another node takes over at its next try. The check runs on that separate session, in a
//! read-only snapshot bounded by `statement_timeout`, so it never blocks or slows a
//! leader's session. `POST /admin/reconcile` runs it at once (`Trigger`). Results: `report`.

pub mod check;
mod report;

use crate::api::{ApiError, Reply};
use crate::db;
use crate::node::Node;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The lock whose holder runs the region's checks.
const SQL_LOCK: &str = "SELECT pg_try_advisory_lock(7153, 0)";

/// Requests to run the check now, each answered with the run's report.
pub type Requests = mpsc::Receiver<oneshot::Sender<Reply>>;
pub type Trigger = mpsc::Sender<oneshot::Sender<Reply>>;

pub fn channel() -> (Trigger, Requests) {
    mpsc::channel(4)
}

/// Starts the node's reconciliation task (once; it takes the node's request queue).
pub fn spawn(node: Arc<Node>) {
    let rx = node.reconcile_requests.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(rx) = rx {
        tokio::spawn(run(node, rx));
    }
}

async fn run(node: Arc<Node>, mut rx: Requests) {
    let every = Duration::from_millis(node.cfg.monitor.reconcile_interval_ms.max(1000));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut r = Reconciler::default();
    loop {
        let reply = tokio::select! {
            _ = tick.tick() => None,
            asked = rx.recv() => match asked {
                Some(tx) => Some(tx),
                None => return,
            },
        };
        if node.state.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let out = r.once(&node).await;
        if let Some(tx) = reply {
            let _ = tx.send(out);
        }
    }
}

#[derive(Default)]
struct Reconciler {
    /// This node's session holding the lock (None: it does not hold it).
    session: Option<db::Session>,
    seen: report::Seen,
}

impl Reconciler {
    /// One run if this node holds (or can take) the lock: its report, or why not.
    async fn once(&mut self, node: &Arc<Node>) -> Reply {
        if !node.state.is_active() {
            self.session = None;
            return Err(ApiError::standby());
        }
        if !self.hold_lock(node).await {
            return Err(ApiError::not_leader("reconciliation (another node holds its lock)"));
        }
        let Some(s) = self.session.as_mut() else { return Err(ApiError::unavailable("no session")) };
        let m = &node.cfg.monitor;
        let limit = Duration::from_millis(m.reconcile_timeout_ms) + node.state.pg.limits.query;
        let t = Instant::now();
        let error = match tokio::time::timeout(limit, check::totals(s)).await {
            Ok(Ok(totals)) => {
                self.seen.observe(node, &totals, t.elapsed().as_secs_f64() * 1000.0);
                let ok = totals.iter().all(check::AssetTotals::ok);
                let assets: Vec<_> = totals.iter().map(check::AssetTotals::to_json).collect();
                return Ok(json!({"node_id": node.cfg.node_id, "ok": ok, "assets": assets}));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", limit.as_millis()),
        };
        // Dropping the session cancels a statement still running and frees the lock.
        self.session = None;
        report::failed(node, &error);
        Err(ApiError::unavailable(format!("conservation check failed: {error}")))
    }

    /// True if this node's session holds the lock, taking it if it is free. A node that
    /// does not get it closes its session: only the holder keeps one.
    async fn hold_lock(&mut self, node: &Node) -> bool {
        if self.session.as_ref().is_some_and(|s| !s.is_closed()) {
            return true;
        }
        self.session = None;
        let pg = &node.state.pg;
        let s = match db::connect(pg).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "reconciliation: no DB session");
                return false;
            }
        };
        let m = &node.cfg.monitor;
        let settings = format!(
            "SET statement_timeout = {t}; SET idle_in_transaction_session_timeout = {t}; SET lock_timeout = {q}",
            t = m.reconcile_timeout_ms.max(1),
            q = pg.limits.query.as_millis().max(1)
        );
        let set = db::bounded(pg, s.batch_execute(&settings)).await.is_ok();
        let got = set && matches!(db::bounded(pg, s.query_one(SQL_LOCK, &[])).await, Ok(r) if r.get::<_, bool>(0));
        if got {
            tracing::info!(node = %node.cfg.node_id, "holds the reconciliation lock: runs the region's conservation checks");
            self.session = Some(s);
        }
        got
    }
}
