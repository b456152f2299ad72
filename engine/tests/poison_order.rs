//! Issue 17 (8): a poison order does not crash every leader in turn. 3 nodes per module,
//! shipped defaults, orders flowing into BTC-USD. Built with the `poison-test` feature
//! (test builds only), an order whose client id starts with `poison-test-` fails an
//! assertion while it is matched, like a bug only that order triggers; without quarantine
//! its leader exits (70), the gateway retries it at the next leader, and so on. Here:
//! each poison order is answered `rejected` with reason `quarantined` (also on a retry),
//! at most one matching node exits, normal orders keep being acknowledged, every
//! acknowledged order is in the DB, the poison orders are stored as rejected/quarantined,
//! and the leader reports them (metric and webhook).

mod common;
use common::load::{check_acks, first_ack_after, leader_of, load, traders, Ack};
use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTITION: &str = "matching/BTC-USD";
const POISON: [&str; 3] = ["poison-test-1", "poison-test-2", "poison-test-3"];

async fn place_poison(gw: &str, key: &str, cid: &str) -> (u16, serde_json::Value) {
    let body = json!({"market": "BTC-USD", "client_order_id": cid, "side": "buy", "type": "limit", "price_ticks": 100, "qty_lots": 1});
    post(gw, "/v1/orders", &[("x-api-key", key)], body).await
}

/// The matching nodes that have exited, with their exit status.
fn exited_matching_nodes(c: &mut Cluster) -> Vec<String> {
    let mut out = Vec::new();
    for n in c.nodes.iter_mut().filter(|n| n.name.starts_with("matching-")) {
        if let Some(Ok(Some(st))) = n.child.as_mut().map(|ch| ch.try_wait()) {
            out.push(format!("{} exited: {st}", n.name));
        }
    }
    out
}

/// Each poison order's answer, and its retry's: rejected, reason quarantined.
async fn poison_answers(gw: &str, key: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for cid in POISON.iter().chain(POISON[..1].iter()) {
        let (s, v) = place_poison(gw, key, cid).await;
        eprintln!("POISON {cid}: {s} {v}");
        if s != 200 || v["status"] != "rejected" || v["reason"] != "quarantined" {
            problems.push(format!("poison order {cid} answered {s} {v}, not rejected/quarantined"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    problems
}

/// The poison orders in the DB, the leader's metric and the webhooks.
async fn reported(c: &Cluster, hooks: &Webhooks) -> Vec<String> {
    let mut problems = Vec::new();
    let rows = c
        .env
        .pg
        .sql("SELECT count(*) FROM orders WHERE client_order_id LIKE 'poison-test-%' AND status = 'rejected' AND reason = 'quarantined'");
    if rows != POISON.len().to_string() {
        problems.push(format!("{rows} poison orders stored as rejected/quarantined, not {}", POISON.len()));
    }
    let series = format!("engine_orders_quarantined_total{{partition=\"{PARTITION}\"}}");
    let mut total = 0.0;
    for n in &c.nodes {
        let m = http().get(format!("http://{}/metrics", n.addr)).send().await;
        let text = match m {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => continue,
        };
        total += text.lines().filter_map(|l| l.strip_prefix(&series)).filter_map(|v| v.trim().parse::<f64>().ok()).sum::<f64>();
    }
    if total != POISON.len() as f64 {
        problems.push(format!("{series} totals {total} over the nodes, not {}", POISON.len()));
    }
    let t = Instant::now();
    let hooked = loop {
        let n = hooks
            .events()
            .iter()
            .filter(|e| e["event"] == "order_quarantined" && e["breaches"].to_string().contains("poison-test-"))
            .count();
        if n >= POISON.len() || t.elapsed() > Duration::from_secs(5) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if hooked != POISON.len() {
        problems.push(format!("{hooked} order_quarantined webhooks, not {}", POISON.len()));
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_order_is_quarantined_and_the_market_keeps_serving() {
    let hooks = Webhooks::start().await;
    let mut c = Cluster::healthy(3, &hooks).await;
    let keys = traders(&c.gw).await;
    let (stop, acks) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::<Ack>::new())));
    let tasks = load(&c.gw, &keys, &stop, &acks);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = leader_of(&c, PARTITION).await.expect("BTC-USD has a leader");
    eprintln!("{PARTITION} led by {}", c.nodes[leader].name);

    let poisoned = Instant::now();
    let mut problems = poison_answers(&c.gw, &keys[&70]).await;
    if first_ack_after(&acks, poisoned, Duration::from_secs(10)).await.is_none() {
        problems.push(format!("no {PARTITION} order acknowledged in 10 s after the poison orders"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let acked_after = acks.lock().unwrap().iter().filter(|a| a.3 > poisoned).count();
    eprintln!("POISON: {acked_after} orders acknowledged after the first poison order");
    let exited = exited_matching_nodes(&mut c);
    if exited.len() > 1 {
        problems.push(format!("more than one leader crashed: {exited:?}"));
    }
    eprintln!("POISON: matching nodes exited: {exited:?}");
    problems.extend(check_acks(&c, &acks.lock().unwrap()));
    problems.extend(reported(&c, &hooks).await);
    if !problems.is_empty() {
        c.dump_logs();
        panic!("{problems:#?}");
    }
}
