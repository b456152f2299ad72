//! The DB primary dies and the synchronous standby is promoted (what Patroni does): nodes
//! and gateway follow by themselves (`target_session_attrs=read-write` over all hosts),
//! every order acknowledged before the failover is on the new primary, and trading resumes.

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_db_failover_without_losing_acknowledged_orders() {
    let mut c = Cluster::start(1, |_| {});
    wait_healthy(&c.gw, Duration::from_secs(60)).await.expect("healthy");
    let gw = c.gw.clone();
    let key = create_user(&gw, 40).await;
    deposit(&gw, "f-usd", 40, "USD", 1_000_000).await;
    let mut acked = Vec::new();
    for i in 0..30 {
        let body = json!({"market": "BTC-USD", "client_order_id": format!("b{i}"), "side": "buy", "type": "limit", "price_ticks": 10 + i, "qty_lots": 1});
        let (s, v) = post(&gw, "/v1/orders", &[("x-api-key", &key)], body).await;
        assert_eq!(s, 200, "{v}");
        acked.push((format!("b{i}"), v["order_id"].as_i64().unwrap()));
    }
    c.env.pg.kill_primary();
    c.env.pg.promote_standby();
    let t = Instant::now();
    let back = wait_healthy(&gw, Duration::from_secs(60)).await;
    if back.is_err() {
        c.dump_logs();
    }
    back.expect("region healthy on the new primary");
    // Trading resumes on the new primary (retrying until the nodes have re-taken leadership).
    loop {
        let body =
            json!({"market": "BTC-USD", "client_order_id": "after", "side": "buy", "type": "limit", "price_ticks": 1, "qty_lots": 1});
        let (s, v) = post(&gw, "/v1/orders", &[("x-api-key", &key)], body).await;
        if s == 200 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no order accepted after DB failover: {s} {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("DB FAILOVER: trading again {} ms after the promotion", t.elapsed().as_millis());
    let rows = c.env.pg.psql(c.env.pg.standby_port, "exchange", "SELECT client_order_id || '=' || order_id FROM orders WHERE user_id = 40");
    for (cid, id) in &acked {
        assert!(rows.lines().any(|l| l == format!("{cid}={id}")), "acknowledged order {cid} lost in the DB failover");
    }
    let sums = c.env.pg.psql(
        c.env.pg.standby_port,
        "exchange",
        "SELECT count(*) FROM (SELECT asset FROM balances GROUP BY asset HAVING sum(available + held) <> 0) t",
    );
    assert_eq!(sums.trim(), "0", "conservation broken after failover");
}
