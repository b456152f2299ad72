//! Orders flowing into one spot market from several users while a test breaks its leader,
//! and the checks afterwards: every acknowledged order is in the DB with its id, and the
//! DB is consistent.

use super::*;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Users 70..76 with their API keys, each with dollars and bitcoin to trade.
pub async fn traders(gw: &str) -> HashMap<i64, String> {
    let mut keys = HashMap::new();
    for u in 70..76 {
        keys.insert(u, create_user(gw, u).await);
        deposit(gw, &format!("h-{u}-usd"), u, "USD", 1_000_000_000).await;
        deposit(gw, &format!("h-{u}-btc"), u, "BTC", 1_000_000).await;
    }
    keys
}

/// When the first order sent after `t` was acknowledged; None if none was within `limit`.
pub async fn first_ack_after(acks: &Mutex<Vec<Ack>>, t: Instant, limit: std::time::Duration) -> Option<Instant> {
    while t.elapsed() < limit {
        if let Some(at) = acks.lock().unwrap().iter().filter(|a| a.3 > t).map(|a| a.4).min() {
            return Some(at);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    None
}

/// The node that reports leading `partition` (asked directly, not through the gateway).
pub async fn leader_of(c: &Cluster, partition: &str) -> Option<usize> {
    for (i, n) in c.nodes.iter().enumerate() {
        let (s, v) = get(&format!("http://{}", n.addr), "/internal/status", &[]).await;
        if s == 200 && v["leading"].as_array().is_some_and(|a| a.iter().any(|k| k == partition)) {
            return Some(i);
        }
    }
    None
}

/// An acknowledged order: (user, client id, order id, sent, acknowledged).
pub type Ack = (i64, String, i64, Instant, Instant);

/// Clients placing BTC-USD orders (buys and sells around 100) until `stop`.
pub fn load(
    gw: &str,
    keys: &HashMap<i64, String>,
    stop: &Arc<AtomicBool>,
    acks: &Arc<Mutex<Vec<Ack>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (w, (u, key)) in keys.iter().enumerate() {
        let (gw, key, stop, acks, u) = (gw.to_string(), key.clone(), stop.clone(), acks.clone(), *u);
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let side = if (i + w as u64).is_multiple_of(2) { "buy" } else { "sell" };
                let cid = format!("h{w}-{i}");
                let body = json!({"market": "BTC-USD", "client_order_id": cid, "side": side, "type": "limit",
                                  "price_ticks": 97 + (i % 7) as i64, "qty_lots": 1 + (i % 3) as i64});
                let sent = Instant::now();
                let (s, v) = post(&gw, "/v1/orders", &[("x-api-key", &key)], body).await;
                if s == 200 {
                    acks.lock().unwrap().push((u, cid, v["order_id"].as_i64().unwrap(), sent, Instant::now()));
                } else {
                    assert!(s == 503 || s == 0, "unexpected answer {s}: {v}");
                }
            }
        }));
    }
    tasks
}

/// Every acknowledged order is in the DB with its acknowledged id; money is conserved.
pub fn check_acks(c: &Cluster, acks: &[Ack]) -> Vec<String> {
    let rows = c.env.pg.sql("SELECT user_id || '/' || client_order_id || '=' || order_id FROM orders WHERE user_id BETWEEN 70 AND 75");
    let db: HashMap<&str, &str> = rows.lines().filter_map(|l| l.split_once('=')).collect();
    let mut problems: Vec<String> = acks
        .iter()
        .filter(|a| db.get(format!("{}/{}", a.0, a.1).as_str()) != Some(&a.2.to_string().as_str()))
        .map(|a| format!("acknowledged order {}/{} (id {}) missing or changed", a.0, a.1, a.2))
        .take(5)
        .collect();
    if acks.len() < 50 {
        problems.push(format!("too little load got through: {} acks", acks.len()));
    }
    for v in [conservation_violations(&c.env.pg), order_fill_violations(&c.env.pg)] {
        if !v.is_empty() {
            problems.push(format!("DB inconsistent: {v}"));
        }
    }
    problems
}
