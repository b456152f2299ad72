//! What a conservation check reports: metrics on every run, and a webhook per change of
//! an asset's state (`conservation_broken` once when it breaks, `conservation_restored`
//! once when it holds again), not one per run.

use super::check::AssetTotals;
use crate::metrics::label;
use crate::monitor::{now_ms, post_webhooks};
use crate::node::Node;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Each asset's state at the last run (absent: never seen, taken as conserved).
#[derive(Default)]
pub struct Seen {
    ok: BTreeMap<String, bool>,
}

impl Seen {
    /// Records one run: metrics, and a webhook for each asset whose state changed.
    pub fn observe(&mut self, node: &Arc<Node>, totals: &[AssetTotals], took_ms: f64) {
        let nid = label(&node.cfg.node_id);
        for t in totals {
            let a = label(&t.asset);
            let ok = t.ok();
            node.metrics.set(format!("engine_reconcile_ok{{node=\"{nid}\",asset=\"{a}\"}}"), if ok { 1.0 } else { 0.0 });
            let imbalance = t.imbalance().map_or(f64::MAX, |v| v as f64);
            node.metrics.set(format!("engine_reconcile_imbalance_minor{{node=\"{nid}\",asset=\"{a}\"}}"), imbalance);
            let mismatched = t.ledger_mismatch_accounts as f64;
            node.metrics.set(format!("engine_reconcile_ledger_mismatch_accounts{{node=\"{nid}\",asset=\"{a}\"}}"), mismatched);
            if self.ok.insert(t.asset.clone(), ok).unwrap_or(true) != ok {
                transition(node, t);
            }
        }
        node.metrics.inc(format!("engine_reconcile_runs_total{{node=\"{nid}\"}}"));
        node.metrics.set(format!("engine_reconcile_last_run_timestamp_seconds{{node=\"{nid}\"}}"), now_ms() as f64 / 1000.0);
        node.metrics.set(format!("engine_reconcile_duration_ms{{node=\"{nid}\"}}"), took_ms);
    }
}

/// A run that could not complete (DB error, timeout): counted, never taken as a verdict.
pub fn failed(node: &Node, error: &str) {
    tracing::warn!(error, "conservation check failed to run");
    node.metrics.inc(format!("engine_reconcile_errors_total{{node=\"{}\"}}", label(&node.cfg.node_id)));
}

fn transition(node: &Arc<Node>, t: &AssetTotals) {
    let event = if t.ok() { "conservation_restored" } else { "conservation_broken" };
    node.metrics.inc(format!("engine_monitor_transitions_total{{node=\"{}\",event=\"{event}\"}}", label(&node.cfg.node_id)));
    if t.ok() {
        tracing::warn!(event, asset = %t.asset, "conservation holds again");
    } else {
        tracing::error!(event, totals = %t.to_json(), "conservation broken");
    }
    post_webhooks(node, body(node, event, t));
}

fn body(node: &Node, event: &str, t: &AssetTotals) -> Value {
    let mut v = json!({
        "event": event,
        "node_id": node.cfg.node_id,
        "module": node.cfg.module.as_str(),
        "region": node.cfg.region,
        "at_ms": now_ms(),
    });
    if let (Some(m), Value::Object(totals)) = (v.as_object_mut(), t.to_json()) {
        m.extend(totals);
    }
    v
}
