//! Issue 17 (7): a book read costs no commit. `GET /v1/book` needs no authentication, so it
//! must not be a lever on the leader's DB: a flood of reads leaves the partition's fence
//! (`partitions.last_commit_at`, written by every batch's commit) and its batch count
//! untouched, and every answer is the book. And one client address over its limit of
//! unauthenticated reads gets 429 with `Retry-After` while another address is served.

mod common;
use common::*;
use engine::protocol::{paths, INTERNAL_HEADER};
use engine_config::{Module, DEFAULT_PUBLIC_READS_BURST_MAX};
use serde_json::{json, Value};
use std::time::Duration;

const MARKET: &str = "BTC-USD";
const READS: usize = 500;

/// Resting orders of user 60 (price, qty): two bids share a level.
const BIDS: [(i64, i64); 4] = [(100, 1), (101, 2), (101, 3), (102, 4)];
const ASKS: [(i64, i64); 2] = [(200, 1), (201, 5)];

async fn rest_orders(gw: &str) {
    let key = create_user(gw, 60).await;
    deposit(gw, "book-usd", 60, "USD", 1_000_000_000).await;
    deposit(gw, "book-btc", 60, "BTC", 1_000_000).await;
    let sides = BIDS.iter().map(|o| ("buy", o)).chain(ASKS.iter().map(|o| ("sell", o)));
    for (i, (side, (price, qty))) in sides.enumerate() {
        let body = json!({"market": MARKET, "client_order_id": format!("book-{i}"), "side": side, "type": "limit", "price_ticks": price, "qty_lots": qty});
        let (s, v) = post(gw, "/v1/orders", &[("x-api-key", &key)], body).await;
        assert_eq!((s, v["status"].as_str()), (200, Some("open")), "{v}");
    }
}

/// The book as the DB has it: open orders' remaining lots per price, best first.
fn book_in_db(pg: &Pg) -> Value {
    let side = |s: i16, order: &str| {
        let sql = format!(
            "SELECT coalesce(json_agg(json_build_array(price_ticks, q) ORDER BY price_ticks {order}), '[]') FROM \
             (SELECT price_ticks, sum(qty_lots - filled_qty) AS q FROM orders \
              WHERE market = '{MARKET}' AND status = 'open' AND side = {s} GROUP BY price_ticks) t"
        );
        serde_json::from_str::<Value>(&pg.sql(&sql)).unwrap()
    };
    json!({"market": MARKET, "bids": side(0, "DESC"), "asks": side(1, "ASC")})
}

/// The value of metric `series` in Prometheus text `text`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_book_reads_commits_nothing_and_answers_the_book() {
    let c = Cluster::start(1, |_| {});
    if let Err(e) = wait_healthy(&c.gw, Duration::from_secs(60)).await {
        c.dump_logs();
        panic!("cluster never healthy: {e}");
    }
    rest_orders(&c.gw).await;
    let expected = book_in_db(&c.env.pg);
    assert_eq!(expected["bids"], json!([[102, 4], [101, 5], [100, 1]]), "{expected}");
    let node = c.node_cfgs.iter().find(|n| n.module == Module::Matching).expect("a matching node");
    let batches = format!("engine_partition_batches_total{{node=\"{}\",partition=\"matching/{MARKET}\"}}", node.node_id);
    let fence_sql = format!("SELECT last_commit_at FROM partitions WHERE partition_key = 'matching/{MARKET}'");
    let (fence_before, metrics) = (c.env.pg.sql(&fence_sql), text(&format!("http://{}/metrics", node.listen)).await);
    let batches_before = metric(&metrics, &batches).expect("batch metric");
    assert!(batches_before >= 6.0, "the placements ran as batches: {batches_before}");

    // Straight to the leader (the gateway's per-address limit would stop a flood from one
    // address), one after another: read through the leader loop, each would be a batch.
    let url = format!("http://{}{}?levels=50", node.listen, paths::book(MARKET));
    let h = http();
    for i in 0..READS {
        let r = h.get(&url).header(INTERNAL_HEADER, INTERNAL_TOKEN).send().await.expect("book read");
        assert_eq!(r.status(), 200, "read {i}");
        assert_eq!(r.json::<Value>().await.unwrap(), expected, "read {i}");
    }
    let (s, via_gateway) = get(&c.gw, &paths::book(MARKET), &[]).await;
    assert_eq!((s, &via_gateway), (200, &expected));

    let batches_after = metric(&text(&format!("http://{}/metrics", node.listen)).await, &batches).expect("batch metric");
    assert_eq!(batches_after, batches_before, "{READS} book reads ran as leader batches");
    assert_eq!(c.env.pg.sql(&fence_sql), fence_before, "{READS} book reads committed (the fence moved)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_over_its_read_limit_gets_429_while_another_is_served() {
    let c = Cluster::start(1, |_| {});
    if let Err(e) = wait_healthy(&c.gw, Duration::from_secs(60)).await {
        c.dump_logs();
        panic!("cluster never healthy: {e}");
    }
    let url = format!("{}{}", c.gw, paths::book(MARKET));
    let (noisy, quiet) = (from("127.0.0.2"), from("127.0.0.3"));
    let mut limited = None;
    let mut served = 0;
    for _ in 0..DEFAULT_PUBLIC_READS_BURST_MAX + 40 {
        let r = noisy.get(&url).send().await.expect("read");
        match r.status().as_u16() {
            200 => served += 1,
            429 => {
                let after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
                limited = Some((after, r.json::<Value>().await.unwrap()));
                break;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    let (after, body) = limited.unwrap_or_else(|| panic!("127.0.0.2 was never limited ({served} reads served)"));
    assert!(served >= DEFAULT_PUBLIC_READS_BURST_MAX as usize, "limited before its burst: {served}");
    assert!(after.is_some_and(|s| s >= 1), "Retry-After in whole seconds: {after:?}");
    assert_eq!(body["error"], "rate_limited", "{body}");
    let r = quiet.get(&url).send().await.expect("read");
    assert_eq!(r.status(), 200, "another address is served");
    let m = text(&format!("{}/metrics", admin_url(&c.gw))).await;
    assert!(metric(&m, "engine_gateway_public_reads_limited_total").is_some_and(|v| v >= 1.0), "{m}");
}

/// A client whose connections come from loopback address `ip`.
fn from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<std::net::IpAddr>().unwrap()).timeout(Duration::from_secs(20)).build().unwrap()
}

async fn text(url: &str) -> String {
    http().get(url).send().await.unwrap().text().await.unwrap()
}
