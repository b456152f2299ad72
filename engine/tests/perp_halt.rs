//! Issue 17 item 5 end to end, through the gateway and the DB: with the perpetual's price band
//! off, A buys 1000 lots from B at 100 (10x) and they trade them back at 500. B's loss
//! (400,000) is far beyond its margin (10,000) and the insurance fund is empty, so the market
//! halts: A gets both margins back and no more, the margin pool and the insurance fund stay
//! at or above zero in the DB, A cannot withdraw more than that, the next order is rejected
//! `market_halted`, the halt is stored and reported (metric, webhook), it survives a
//! takeover (the leader is killed, the standby loads and reports the halt), and the region's
//! conservation check holds (insurance fund included).

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ADMIN: (&str, &str) = ("x-admin-token", ADMIN_TOKEN);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_beyond_margin_and_insurance_halts_the_contract() {
    let hooks = Webhooks::start().await;
    let url = hooks.url.clone();
    let mut c = Cluster::start(2, |n| {
        n.monitor.webhook_urls = vec![url.clone()];
        n.exchange.perp_markets[0].price_band_bps = 0;
    });
    wait_healthy(&c.gw, Duration::from_secs(60)).await.expect("healthy");
    let gw = c.gw.clone();
    let gw = gw.as_str();
    let (ka, kb) = (create_user(gw, 41).await, create_user(gw, 42).await);
    deposit(gw, "ph-a", 41, "USD", 100_000).await;
    deposit(gw, "ph-b", 42, "USD", 100_000).await;
    let order = |cid: &str, side: &str, price: i64| json!({"market": "BTC-PERP", "client_order_id": cid, "side": side, "type": "limit", "price_ticks": price, "qty_lots": 1000});
    let place = |key: &str, body: Value| {
        let key = key.to_string();
        async move { post(gw, "/v1/contract/orders", &[("x-api-key", &key)], body).await }
    };
    assert_eq!(place(&ka, order("a-open", "buy", 100)).await.1["status"], "open");
    assert_eq!(place(&kb, order("b-open", "sell", 100)).await.1["status"], "filled");
    assert_eq!(place(&ka, order("a-close", "sell", 500)).await.1["status"], "open");
    let (s, v) = place(&kb, order("b-close", "buy", 500)).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("filled")), "{v}");

    // The pool and the insurance fund never went below zero; the halt is stored.
    let system = c.env.pg.sql("SELECT coalesce(min(available), 0) FROM balances WHERE owner_id <= -2000");
    assert!(system.parse::<i64>().unwrap() >= 0, "a pool or insurance fund is negative: {system}");
    assert!(c.env.pg.sql("SELECT shortfall_minor FROM perp_halts WHERE market = 'BTC-PERP'").parse::<i64>().unwrap() >= 390_000);
    // A got its margin and B's back (fees: maker 100 at 100, 500 at 500), not 400,000.
    let a_usd = 100_000 - 100 - 500 + 10_000;
    let (_, v) = get(gw, "/v1/balances", &[("x-api-key", &ka)]).await;
    assert_eq!(v["balances"][0]["available_minor"], a_usd, "{v}");
    let (s, v) =
        post(gw, "/v1/withdrawals", &[("x-api-key", &ka)], json!({"client_id": "too-much", "asset": "USD", "amount_minor": a_usd + 1}))
            .await;
    assert!(s != 200 || v["status"] != "requested", "A may withdraw more than it has: {v}");

    // A halted market refuses new orders with a clear reason.
    let (s, v) = place(&ka, order("after", "buy", 500)).await;
    assert_eq!((s, v["status"].as_str(), v["reason"].as_str()), (200, Some("rejected"), Some("market_halted")), "{v}");
    let hook = hooks.wait_event("market_halted").await;
    assert!(hook.to_string().contains("contract/BTC-PERP"), "{hook}");
    let mut metrics = String::new();
    for n in c.node_cfgs.iter().filter(|n| n.node_id.starts_with("contract")) {
        metrics += &http().get(format!("http://{}/metrics", n.listen)).send().await.unwrap().text().await.unwrap();
    }
    assert!(metrics.contains("engine_market_halted{partition=\"contract/BTC-PERP\"} 1"), "{metrics}");

    // The leader dies: the next one loads the halt and refuses orders too.
    let leader = common::load::leader_of(&c, "contract/BTC-PERP").await.expect("a contract leader");
    c.nodes[leader].kill9();
    let t = Instant::now();
    let v = loop {
        let (s, v) = place(&kb, order("after-takeover", "sell", 500)).await;
        if s == 200 {
            break v;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no contract leader after the kill: {s} {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((v["status"].as_str(), v["reason"].as_str()), (Some("rejected"), Some("market_halted")), "{v}");
    let new = common::load::leader_of(&c, "contract/BTC-PERP").await.expect("a new contract leader");
    let m = http().get(format!("http://{}/metrics", c.node_cfgs[new].listen)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("engine_market_halted{partition=\"contract/BTC-PERP\"} 1"), "the new leader reports the halt: {m}");

    let (s, r) = post(&admin_url(gw), "/admin/reconcile", &[ADMIN], json!({})).await;
    assert_eq!((s, r["ok"].as_bool()), (200, Some(true)), "{r}");
    let usd = r["assets"].as_array().unwrap().iter().find(|a| a["asset"] == "USD").unwrap().clone();
    assert_eq!((usd["pools_minor"].as_str(), usd["insurance_minor"].as_str()), (Some("0"), Some("0")), "{usd}");
}
