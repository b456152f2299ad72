//! Issue 17 (2), the other side: a leader that is busy waiting for the server is not taken
//! for a hung one. 3 nodes per module, shipped defaults; synchronous commits stall (the
//! standby named in `synchronous_standby_names` does not exist, as until Patroni replaces a
//! lost one) for four times `db.leader_silence_ms` while an order's commit is in flight.
//! Every leader waits on the server (its backend is `active`, waiting for replication),
//! not the server on it, so no standby ends a leader's session: no `leader_eliminated`
//! webhook, no epoch moves, and the order is acknowledged once after the stall.

mod common;
use common::*;
use engine_config::DEFAULT_LEADER_SILENCE_MS;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_waiting_on_a_stalled_commit_is_not_eliminated() {
    let hooks = Webhooks::start().await;
    let c = Cluster::healthy(3, &hooks).await;
    let gw = c.gw.clone();
    let key = create_user(&gw, 80).await;
    deposit(&gw, "b-usd", 80, "USD", 1_000_000).await;
    let epochs = |pg: &Pg| pg.sql("SELECT string_agg(partition_key || '=' || epoch, ',' ORDER BY partition_key) FROM partitions");
    let before = epochs(&c.env.pg);

    c.env.pg.sql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
    c.env.pg.sql("SELECT pg_reload_conf()");
    let body = json!({"market": "BTC-USD", "client_order_id": "during", "side": "buy", "type": "limit", "price_ticks": 10, "qty_lots": 1});
    let gw2 = gw.clone();
    let during = tokio::spawn(async move { post(&gw2, "/v1/orders", &[("x-api-key", &key)], body).await });
    tokio::time::sleep(Duration::from_millis(DEFAULT_LEADER_SILENCE_MS * 4)).await;
    let finished_early = during.is_finished();
    c.env.pg.sql("ALTER SYSTEM SET synchronous_standby_names = '*'");
    c.env.pg.sql("SELECT pg_reload_conf()");
    let (s, v) = during.await.unwrap();

    let mut problems = Vec::new();
    if finished_early {
        problems.push("the order was answered while its commit could not complete".to_string());
    }
    if s != 200 {
        problems.push(format!("order placed during the stall: {s} {v}"));
    }
    let copies = c.env.pg.sql("SELECT count(*) FROM orders WHERE user_id = 80 AND client_order_id = 'during'");
    if copies != "1" {
        problems.push(format!("{copies} copies of the order"));
    }
    let after = epochs(&c.env.pg);
    if after != before {
        problems.push(format!("leaderships moved during the stall: {before} -> {after}"));
    }
    let eliminated: Vec<_> = hooks.events().into_iter().filter(|e| e["event"] == "leader_eliminated").collect();
    if !eliminated.is_empty() {
        problems.push(format!("busy leaders were eliminated: {eliminated:?}"));
    }
    if !problems.is_empty() {
        c.dump_logs();
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
