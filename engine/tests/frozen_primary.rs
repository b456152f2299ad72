//! The DB primary hangs (SIGSTOP: its host still acknowledges TCP, so neither keepalives
//! nor `tcp_user_timeout` fire, and nothing ever answers) and the synchronous standby is
//! promoted, as Patroni does when the primary stops renewing its leader key. Every leader's
//! session is on the frozen server: the leaders notice within seconds (their idle ping or
//! request is not answered within `query_timeout_ms`, and a fresh session to that host gets
//! no answer either), give up, and lead again on the new primary. Checked from outside:
//! orders are accepted and `/health` is 200 again within seconds, and every order
//! acknowledged before the freeze is on the new primary.

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_leave_a_frozen_primary_within_seconds() {
    let mut c = Cluster::start(1, |_| {});
    wait_healthy(&c.gw, Duration::from_secs(60)).await.expect("healthy");
    let gw = c.gw.clone();
    let key = create_user(&gw, 60).await;
    deposit(&gw, "z-usd", 60, "USD", 1_000_000).await;
    let order = |cid: String| json!({"market": "BTC-USD", "client_order_id": cid, "side": "buy", "type": "limit", "price_ticks": 10, "qty_lots": 1});
    let mut acked = Vec::new();
    for i in 0..5 {
        let (s, v) = post(&gw, "/v1/orders", &[("x-api-key", &key)], order(format!("z{i}"))).await;
        assert_eq!(s, 200, "{v}");
        acked.push((format!("z{i}"), v["order_id"].as_i64().unwrap()));
    }

    c.env.pg.freeze_primary();
    c.env.pg.promote_standby();
    let t = Instant::now();
    // The same client id is retried until accepted (the gateway retries too, 8 s budget).
    let mut tries = 0;
    loop {
        tries += 1;
        let (s, v) = post(&gw, "/v1/orders", &[("x-api-key", &key)], order("after".into())).await;
        if s == 200 {
            break;
        }
        if t.elapsed() > Duration::from_secs(15) {
            c.dump_logs();
            panic!("no order accepted {} ms after the primary froze ({tries} tries): {s} {v}", t.elapsed().as_millis());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let trading = t.elapsed();
    let healthy = wait_healthy(&gw, Duration::from_secs(15)).await;
    if healthy.is_err() {
        c.dump_logs();
    }
    healthy.expect("healthy on the new primary");
    let healthy = t.elapsed();
    eprintln!("FROZEN PRIMARY: order accepted after {} ms, /health 200 after {} ms", trading.as_millis(), healthy.as_millis());
    assert!(trading < Duration::from_secs(10), "trading resumed only after {} ms", trading.as_millis());
    assert!(healthy < Duration::from_secs(12), "/health 200 only after {} ms", healthy.as_millis());
    let pg = &c.env.pg;
    let rows = pg.psql(pg.standby_port, "exchange", "SELECT client_order_id || '=' || order_id FROM orders WHERE user_id = 60");
    for (cid, id) in &acked {
        assert!(rows.lines().any(|l| l == format!("{cid}={id}")), "acknowledged order {cid} lost");
    }
    assert_eq!(rows.lines().filter(|l| l.starts_with("after=")).count(), 1, "{rows}");
}
