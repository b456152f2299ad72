//! Runtime reconciliation: after deposits, a trade (with fees), a completed withdrawal and
//! one still held, the region's conservation check reports every asset conserved. A
//! balance changed behind the engine's back (a direct SQL UPDATE) is reported at the next
//! run (metric `engine_reconcile_ok` 0, the imbalance, webhook `conservation_broken` once,
//! not at every run); repaired, the check recovers (webhook `conservation_restored` once).
//! Exactly one node of the region runs the checks; when it dies another takes over. The shipped interval (60 s) is kept:
//! the test runs the check with `POST /admin/reconcile`.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ADMIN: (&str, &str) = ("x-admin-token", ADMIN_TOKEN);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conservation_break_is_reported_once_and_recovers() {
    let hooks = Webhooks::start().await;
    let mut c = Cluster::healthy(1, &hooks).await;
    assert_eq!(c.node_cfgs[0].monitor.reconcile_interval_ms, engine_config::DEFAULT_RECONCILE_INTERVAL_MS);
    trade_and_move_money(&c.gw).await;

    let r = reconcile(&c.gw).await;
    assert_eq!(r["ok"], true, "{r}");
    for asset in ["USD", "BTC"] {
        assert_eq!(asset_of(&r, asset)["imbalance_minor"], "0", "{r}");
    }
    let node = r["node_id"].as_str().unwrap().to_string();
    let m = metrics_of(&c, &node).await;
    assert!(m.contains(&format!("engine_reconcile_ok{{node=\"{node}\",asset=\"USD\"}} 1")), "{m}");
    assert!(m.contains(&format!("engine_reconcile_runs_total{{node=\"{node}\"}}")), "{m}");
    assert!(m.contains("engine_reconcile_last_run_timestamp_seconds"), "{m}");
    // Exactly one node of the region runs the checks (the holder of the lock).
    let mut runners = Vec::new();
    for n in &c.node_cfgs {
        if metrics_of(&c, &n.node_id).await.contains("engine_reconcile_runs_total") {
            runners.push(n.node_id.clone());
        }
    }
    assert_eq!(runners, vec![node.clone()], "nodes that ran a check");

    // Five dollars made up behind the engine's back.
    c.env.pg.sql("UPDATE balances SET available = available + 5 WHERE owner_id = 11 AND asset = 'USD'");
    let r = reconcile(&c.gw).await;
    assert_eq!(r["ok"], false, "{r}");
    let usd = asset_of(&r, "USD");
    assert_eq!((usd["imbalance_minor"].as_str(), usd["ledger_mismatch_accounts"].as_i64()), (Some("5"), Some(1)), "{r}");
    assert_eq!(asset_of(&r, "BTC")["ok"], true, "{r}");
    let m = metrics_of(&c, &node).await;
    assert!(m.contains(&format!("engine_reconcile_ok{{node=\"{node}\",asset=\"USD\"}} 0")), "{m}");
    assert!(m.contains(&format!("engine_reconcile_imbalance_minor{{node=\"{node}\",asset=\"USD\"}} 5")), "{m}");
    assert!(m.contains(&format!("engine_reconcile_ok{{node=\"{node}\",asset=\"BTC\"}} 1")), "{m}");
    let broken = hooks.wait_event("conservation_broken").await;
    assert_eq!((broken["asset"].as_str(), broken["imbalance_minor"].as_str()), (Some("USD"), Some("5")), "{broken}");

    // Still broken at the next run: no second post.
    assert_eq!(reconcile(&c.gw).await["ok"], false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&hooks, "conservation_broken"), 1, "{:?}", hooks.events());

    // Repaired: the next run recovers, and says so once.
    c.env.pg.sql("UPDATE balances SET available = available - 5 WHERE owner_id = 11 AND asset = 'USD'");
    assert_eq!(reconcile(&c.gw).await["ok"], true);
    let restored = hooks.wait_event("conservation_restored").await;
    assert_eq!(restored["asset"], "USD", "{restored}");
    assert_eq!(reconcile(&c.gw).await["ok"], true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!((count(&hooks, "conservation_broken"), count(&hooks, "conservation_restored")), (1, 1), "{:?}", hooks.events());
    let m = metrics_of(&c, &node).await;
    assert!(m.contains(&format!("engine_reconcile_ok{{node=\"{node}\",asset=\"USD\"}} 1")), "{m}");

    // The runner dies: its session and lock go with it, and another node takes over.
    let i = c.node_cfgs.iter().position(|n| n.node_id == node).unwrap();
    c.nodes[i].kill9();
    let t = Instant::now();
    let r = loop {
        let (s, v) = post(&admin_url(&c.gw), "/admin/reconcile", &[ADMIN], json!({})).await;
        if s == 200 {
            break v;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no node took the check over: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(r["node_id"] != node.as_str() && r["ok"] == true, "{r}");
}

/// Deposits, a BTC trade between users 11 and 12 (fees to the market's fee account), a
/// completed withdrawal and one still requested (its funds held).
async fn trade_and_move_money(gw: &str) {
    let (k11, k12) = (create_user(gw, 11).await, create_user(gw, 12).await);
    deposit(gw, "rc-11-usd", 11, "USD", 100_000).await;
    deposit(gw, "rc-12-btc", 12, "BTC", 50).await;
    let order = |cid: &str, side: &str| {
        json!({"market": "BTC-USD", "client_order_id": cid, "side": side, "type": "limit",
                                                "price_ticks": 100, "qty_lots": 10})
    };
    let (s, v) = post(gw, "/v1/orders", &[("x-api-key", &k12)], order("rc-sell", "sell")).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(gw, "/v1/orders", &[("x-api-key", &k11)], order("rc-buy", "buy")).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("filled")), "{v}");
    let id = withdraw(gw, &k11, "rc-w1", 300).await;
    for action in ["approve", "complete"] {
        let (s, v) = post(&admin_url(gw), &format!("/admin/withdrawals/{id}/{action}"), &[ADMIN], json!({"user_id": 11})).await;
        assert_eq!(s, 200, "{v}");
    }
    withdraw(gw, &k11, "rc-w2", 200).await;
}

async fn withdraw(gw: &str, key: &str, cid: &str, amount: i64) -> i64 {
    let (s, v) =
        post(gw, "/v1/withdrawals", &[("x-api-key", key)], json!({"client_id": cid, "asset": "USD", "amount_minor": amount})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("requested")), "{v}");
    v["withdrawal_id"].as_i64().unwrap()
}

async fn reconcile(gw: &str) -> Value {
    let (s, v) = post(&admin_url(gw), "/admin/reconcile", &[ADMIN], json!({})).await;
    assert_eq!(s, 200, "POST /admin/reconcile: {v}");
    v
}

fn asset_of<'a>(report: &'a Value, asset: &str) -> &'a Value {
    report["assets"].as_array().and_then(|a| a.iter().find(|x| x["asset"] == asset)).unwrap_or_else(|| panic!("no {asset}: {report}"))
}

async fn metrics_of(c: &Cluster, node_id: &str) -> String {
    let cfg = c.node_cfgs.iter().find(|n| n.node_id == node_id).expect("node of the report");
    http().get(format!("http://{}/metrics", cfg.listen)).send().await.unwrap().text().await.unwrap()
}

fn count(hooks: &Webhooks, event: &str) -> usize {
    hooks.events().iter().filter(|e| e["event"] == event).count()
}
