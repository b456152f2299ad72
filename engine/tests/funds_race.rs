//! Two markets' leaders read a user's funds without a lock and decide in memory; when both
//! spend the same dollars at once, one commit breaks `balances_non_negative`, and that
//! leader must reload and decide again. Outcome checked in the DB: the user's dollars are
//! all there, none negative, exactly what the open orders hold is held, and some orders
//! were rejected (the demand was far above the funds).

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_markets_never_overspend_a_balance() {
    let c = Cluster::start(3, |_| {});
    wait_healthy(&c.gw, Duration::from_secs(60)).await.expect("healthy");
    let gw = c.gw.clone();
    let key = create_user(&gw, 40).await;
    // Eight buys' worth (1,000 notional + 2 fee each): both markets' first batches can each
    // afford all eight on their own read, but not together.
    let funds = 8 * 1_002i64;
    deposit(&gw, "race-usd", 40, "USD", funds).await;
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (gw, key) = (gw.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..4 {
                let market = if w % 2 == 0 { "BTC-USD" } else { "ETH-USD" };
                let body = json!({"market": market, "client_order_id": format!("race-{w}-{i}"), "side": "buy",
                                  "type": "limit", "price_ticks": 100, "qty_lots": 10});
                let (s, v) = post(&gw, "/v1/orders", &[("x-api-key", &key)], body).await;
                assert_eq!(s, 200, "{v}");
                statuses.push(v["status"].as_str().unwrap_or_default().to_string());
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.extend(t.await.unwrap());
    }
    let rejected = statuses.iter().filter(|s| *s == "rejected").count();
    let open = statuses.iter().filter(|s| *s == "open").count();
    assert!(rejected > 0 && open > 0, "demand above the funds must be partly rejected: {open} open, {rejected} rejected");
    let row = c.env.pg.sql("SELECT available || ' ' || held FROM balances WHERE owner_id = 40 AND asset = 'USD'");
    let (available, held) = row.trim().split_once(' ').map(|(a, h)| (a.parse::<i64>().unwrap(), h.parse::<i64>().unwrap())).unwrap();
    assert!(available >= 0, "negative balance: {row}");
    assert_eq!(available + held, funds, "dollars appeared or vanished: {row}");
    let held_by_orders: i64 =
        c.env.pg.sql("SELECT coalesce(sum(held_minor), 0) FROM orders WHERE user_id = 40 AND status = 'open'").trim().parse().unwrap();
    assert_eq!(held, held_by_orders, "held funds differ from what open orders hold");
    let db_open: usize = c.env.pg.sql("SELECT count(*) FROM orders WHERE user_id = 40 AND status = 'open'").trim().parse().unwrap();
    assert_eq!(db_open, open, "acknowledged open orders differ from the DB");
    assert_eq!(conservation_violations(&c.env.pg), "");
}
