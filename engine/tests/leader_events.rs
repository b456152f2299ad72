//! Issue 17 (3): a takeover and a fenced leader are each a metric and a webhook post. A
//! node that takes a partition posts `leader_takeover` (epoch, previous leader) and counts
//! `engine_leader_takeovers_total`; a leader whose epoch is superseded behind its back is
//! fenced at its next write, posts `leader_fenced` and counts `engine_leaders_fenced_total`,
//! and the next leadership posts a takeover naming it.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PARTITION: &str = "matching/BTC-USD";

/// Waits until a webhook post matches `pred`.
async fn wait_event(hooks: &Webhooks, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        if let Some(e) = hooks.events().into_iter().find(|e| pred(e)) {
            return e;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no {what} webhook: {:?}", hooks.events());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn about(e: &Value, event: &str, text: &str) -> bool {
    e["event"] == event && e["breaches"][0].as_str().is_some_and(|b| b.contains(text))
}

async fn metrics(addr: &str) -> String {
    http().get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_and_a_fenced_leader_are_each_a_metric_and_a_webhook() {
    let hooks = Webhooks::start().await;
    let c = Cluster::healthy(1, &hooks).await;
    let node = c.node_cfgs.iter().find(|n| n.node_id == "matching-1").expect("matching-1");
    let epoch: i64 = c.env.pg.sql(&format!("SELECT epoch FROM partitions WHERE partition_key = '{PARTITION}'")).parse().unwrap();
    let first = wait_event(&hooks, "first leader_takeover", |e| about(e, "leader_takeover", &format!("partition {PARTITION} taken"))).await;
    assert_eq!(first["node_id"], "matching-1", "{first}");
    assert_eq!(first["measurements"]["epoch"], json!(epoch as f64), "{first}");
    let takeovers = format!("engine_leader_takeovers_total{{node=\"matching-1\",partition=\"{PARTITION}\"}} 1");
    assert!(metrics(&node.listen).await.contains(&takeovers), "no metric {takeovers}");

    // Supersede the leadership in the DB only: the leader is fenced at its next write.
    c.env.pg.sql(&format!("UPDATE partitions SET epoch = epoch + 1 WHERE partition_key = '{PARTITION}'"));
    let key = create_user(&c.gw, 70).await;
    deposit(&c.gw, "ev-usd", 70, "USD", 1_000_000).await;
    let order = json!({"market": "BTC-USD", "client_order_id": "ev-1", "side": "buy", "type": "limit", "price_ticks": 100, "qty_lots": 1});
    let (s, v) = post(&c.gw, "/v1/orders", &[("x-api-key", &key)], order).await;
    assert_eq!(s, 200, "a new leadership takes the order: {v}");

    let fenced = wait_event(&hooks, "leader_fenced", |e| about(e, "leader_fenced", &format!("partition {PARTITION} fenced"))).await;
    assert!(fenced["breaches"][0].as_str().unwrap().contains(&format!("epoch {epoch} ")), "{fenced}");
    let again = format!("partition {PARTITION} taken at epoch {} (led before by matching-1)", epoch + 2);
    wait_event(&hooks, "second leader_takeover", |e| about(e, "leader_takeover", &again)).await;
    let m = metrics(&node.listen).await;
    for series in [
        format!("engine_leaders_fenced_total{{node=\"matching-1\",partition=\"{PARTITION}\"}} 1"),
        format!("engine_leader_takeovers_total{{node=\"matching-1\",partition=\"{PARTITION}\"}} 2"),
    ] {
        assert!(m.contains(&series), "no metric {series}");
    }
}
