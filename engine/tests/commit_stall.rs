//! Commits stall (the primary's synchronous standby is cut off silently: here its
//! `synchronous_standby_names` names a standby that does not exist, so every synchronous
//! commit waits, as until Patroni notices): the gateway's `/health` answers 503 "commits
//! stalled ..." within `commit_stall_ms` (default, 3 s) plus a probe, and 200 again once
//! commits complete. The order placed during the stall is acknowledged only after its
//! commit, once, and is in the DB once. Meanwhile no process holds more DB sessions than
//! its `db.connections_max` (counted in `pg_stat_activity` by application name).

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// Sessions per application name, as the server sees them.
fn sessions(pg: &Pg) -> Vec<(String, u32)> {
    pg.psql(
        pg.primary_port,
        "postgres",
        "SELECT application_name, count(*) FROM pg_stat_activity WHERE application_name <> '' AND application_name <> 'psql' GROUP BY 1",
    )
    .lines()
    .filter_map(|l| l.split_once('|').map(|(a, n)| (a.to_string(), n.parse().unwrap_or(0))))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_503_while_commits_stall_and_200_after() {
    let c = Cluster::start(1, |_| {});
    wait_healthy(&c.gw, Duration::from_secs(60)).await.expect("healthy");
    let gw = c.gw.clone();
    let key = create_user(&gw, 50).await;
    deposit(&gw, "s-usd", 50, "USD", 1_000_000).await;
    let body =
        |cid: &str| json!({"market": "BTC-USD", "client_order_id": cid, "side": "buy", "type": "limit", "price_ticks": 10, "qty_lots": 1});
    let (s, v) = post(&gw, "/v1/orders", &[("x-api-key", &key)], body("before")).await;
    assert_eq!(s, 200, "{v}");

    // Defaults: a node of 3 partitions may hold 3 + 3 sessions, the gateway 4.
    let limit = |app: &str| if app.starts_with("gw") { 4 } else { 6 };
    let mut worst: Vec<(String, u32)> = Vec::new();
    let mut sample = |pg: &Pg| {
        for (app, n) in sessions(pg) {
            assert!(n <= limit(&app), "{app} holds {n} DB sessions, more than its limit {}", limit(&app));
            match worst.iter_mut().find(|w| w.0 == app) {
                Some(w) => w.1 = w.1.max(n),
                None => worst.push((app, n)),
            }
        }
    };
    sample(&c.env.pg);

    c.env.pg.sql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
    c.env.pg.sql("SELECT pg_reload_conf()");
    let stalled_at = Instant::now();
    let (gw2, key2) = (gw.clone(), key.clone());
    let during = tokio::spawn(async move { post(&gw2, "/v1/orders", &[("x-api-key", &key2)], body("during")).await });

    // 503 within commit_stall_ms (3 s) + the gateway's probe (100 ms here) + slack.
    let reason = loop {
        let (s, v) = get(&gw, "/health", &[]).await;
        if s == 503 && v["reason"].as_str().is_some_and(|r| r.contains("commits stalled")) {
            break v["reason"].as_str().unwrap().to_string();
        }
        assert!(
            stalled_at.elapsed() < Duration::from_millis(5000),
            "/health still {s} {v} {} ms into the stall",
            stalled_at.elapsed().as_millis()
        );
        sample(&c.env.pg);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let detected = stalled_at.elapsed();
    eprintln!("STALL: /health 503 after {} ms: {reason}", detected.as_millis());
    assert!(detected >= Duration::from_millis(2500), "503 before the threshold: {} ms", detected.as_millis());
    assert!(!during.is_finished(), "the order was answered while its commit could not complete");
    // It stays 503 while the stall lasts; the DB sessions stay bounded.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        let (s, v) = get(&gw, "/health", &[]).await;
        assert_eq!(s, 503, "/health during the stall: {v}");
        sample(&c.env.pg);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    c.env.pg.sql("ALTER SYSTEM SET synchronous_standby_names = '*'");
    c.env.pg.sql("SELECT pg_reload_conf()");
    let back = wait_healthy(&gw, Duration::from_secs(5)).await;
    if back.is_err() {
        c.dump_logs();
    }
    eprintln!("STALL: /health 200 {} ms after commits could complete again", back.clone().expect("healthy after the stall").as_millis());
    let (s, v) = during.await.unwrap();
    assert_eq!(s, 200, "order placed during the stall: {v}");
    assert_eq!(c.env.pg.sql("SELECT count(*) FROM orders WHERE user_id = 50 AND client_order_id = 'during'"), "1");
    assert_eq!(v["order_id"].to_string(), c.env.pg.sql("SELECT order_id FROM orders WHERE user_id = 50 AND client_order_id = 'during'"));
    sample(&c.env.pg);
    eprintln!("STALL: most DB sessions seen per process: {worst:?}");
    for app in ["matching-1", "wallet-1", "otc-1", "contract-1", "gw1"] {
        assert!(worst.iter().any(|w| w.0 == app && w.1 >= 1), "no DB session of {app} seen: {worst:?}");
    }
}
