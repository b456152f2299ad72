//! A leader whose epoch was superseded behind its back can never commit for the partition
//! again: its next write is refused inside the transaction itself (`fence_or_raise`), it
//! gives the partition up, and a new leadership (a newer epoch) takes the request. Checked
//! in the DB, for a market (no ledger entry of the old epoch after the bump, the order there
//! once) and for a wallet shard (a newer epoch took over, the deposit there once).

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_leader_cannot_commit() {
    let c = Cluster::start(3, |_| {});
    wait_healthy(&c.gw, Duration::from_secs(60)).await.expect("healthy");
    let gw = c.gw.clone();
    let key = create_user(&gw, 50).await;
    deposit(&gw, "fence-usd", 50, "USD", 1_000_000).await;
    let order =
        |cid: &str| json!({"market": "BTC-USD", "client_order_id": cid, "side": "buy", "type": "limit", "price_ticks": 100, "qty_lots": 1});
    let (s, v) = post(&gw, "/v1/orders", &[("x-api-key", &key)], order("fence-1")).await;
    assert_eq!(s, 200, "{v}");

    // Supersede the current leadership in the DB only: its node still believes it leads.
    let epoch: i64 = c.env.pg.sql("SELECT epoch FROM partitions WHERE partition_key = 'matching/BTC-USD'").trim().parse().unwrap();
    let ledger_before: i64 = c.env.pg.sql("SELECT coalesce(max(id), 0) FROM ledger").trim().parse().unwrap();
    c.env.pg.sql("UPDATE partitions SET epoch = epoch + 1 WHERE partition_key = 'matching/BTC-USD'");

    let t = Instant::now();
    let (s, v) = loop {
        let (s, v) = post(&gw, "/v1/orders", &[("x-api-key", &key)], order("fence-2")).await;
        if s == 200 || t.elapsed() > Duration::from_secs(20) {
            break (s, v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(s, 200, "the order must be taken by a new leadership: {v}");
    assert_eq!(v["status"], "open", "{v}");

    let stale = c.env.pg.sql(&format!("SELECT count(*) FROM ledger WHERE id > {ledger_before} AND ref LIKE 'batch:BTC-USD:{epoch}:%'"));
    assert_eq!(stale.trim(), "0", "the superseded leader (epoch {epoch}) committed a batch");
    let newer = c.env.pg.sql(&format!("SELECT count(*) FROM ledger WHERE id > {ledger_before} AND ref LIKE 'batch:BTC-USD:%'"));
    assert!(newer.trim().parse::<i64>().unwrap() > 0, "the order's reservation must be in the ledger");
    let now: i64 = c.env.pg.sql("SELECT epoch FROM partitions WHERE partition_key = 'matching/BTC-USD'").trim().parse().unwrap();
    assert!(now >= epoch + 2, "a new leadership must have taken the partition (epoch {now})");
    let copies = c.env.pg.sql("SELECT count(*) FROM orders WHERE user_id = 50 AND client_order_id = 'fence-2'");
    assert_eq!(copies.trim(), "1");

    // The same for the wallet shard of user 50: a leader whose fence did not raise would
    // commit the deposit itself, and nobody would take the shard over.
    let shard = engine::protocol::PartitionKey::wallet_of(50, &c.node_cfgs[0].exchange);
    let epoch_sql = format!("SELECT epoch FROM partitions WHERE partition_key = '{shard}'");
    let epoch: i64 = c.env.pg.sql(&epoch_sql).trim().parse().unwrap();
    c.env.pg.sql(&format!("UPDATE partitions SET epoch = epoch + 1 WHERE partition_key = '{shard}'"));
    let body = json!({"deposit_id": "fence-usd-2", "user_id": 50, "asset": "USD", "amount_minor": 1000});
    let t = Instant::now();
    let (s, v) = loop {
        let (s, v) = post(&admin_url(&gw), "/admin/deposits", &[("x-admin-token", ADMIN_TOKEN)], body.clone()).await;
        if s == 200 || t.elapsed() > Duration::from_secs(20) {
            break (s, v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(s, 200, "the deposit must be taken by a new leadership: {v}");
    let now: i64 = c.env.pg.sql(&epoch_sql).trim().parse().unwrap();
    assert!(now >= epoch + 2, "a new leadership must have taken {shard} (epoch {epoch} -> {now})");
    assert_eq!(c.env.pg.sql("SELECT count(*) FROM deposits WHERE deposit_id = 'fence-usd-2'").trim(), "1");
    assert_eq!(conservation_violations(&c.env.pg), "");
}
