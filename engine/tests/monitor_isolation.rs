//! A node whose DB write latency crosses its threshold (its heartbeat row is locked from
//! outside, so its write probe stalls) is isolated: it gives up its leaderships, reports
//! `isolated`, another node takes over, and the admin webhook receives the event. When the
//! latency is back to normal it recovers, and the webhook hears that too. Its peer, clean
//! all along, is what makes the fault wallet-1's own. Shipped monitor defaults.

mod common;
use common::*;
use engine_config::{Module, PeerConfig};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_latency_breach_isolates_node_and_calls_webhook() {
    let env = Env::new();
    let hooks = Webhooks::start().await;
    let (events, hook) = (hooks.events.clone(), hooks.url.clone());

    let peers: Vec<PeerConfig> = (1..=2)
        .map(|i| PeerConfig { node_id: format!("wallet-{i}"), module: Module::Wallet, addr: format!("127.0.0.1:{}", free_port()) })
        .collect();
    let mut nodes = Vec::new();
    for p in &peers {
        let port: u16 = p.addr.rsplit(':').next().unwrap().parse().unwrap();
        let mut cfg = env.node_config(&p.node_id, p.module, port, &peers);
        // The shipped thresholds; only the webhook is added.
        cfg.monitor.webhook_urls = vec![hook.clone()];
        nodes.push(env.spawn_node(&cfg));
    }
    let status = |i: usize| {
        let addr = format!("http://{}", peers[i].addr);
        async move { get(&addr, "/internal/status", &[]).await.1 }
    };
    // wallet-1 is preferred for shard 0; wait until it leads and its heartbeat row exists.
    let t = Instant::now();
    loop {
        let s = status(0).await;
        let has_row = env.pg.try_sql("SELECT count(*) FROM node_heartbeats WHERE node_id = 'wallet-1'").as_deref() == Some("1");
        if has_row && s["leading"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "wallet-1 never led: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Stall wallet-1's DB write probe from outside.
    let mut locker = engine::db::connect(&engine::db::pg_config(&env.pg.db_config(), true).unwrap()).await.unwrap();
    let tx = locker.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM node_heartbeats WHERE node_id = 'wallet-1' FOR UPDATE", &[]).await.unwrap();
    let t = Instant::now();
    let isolated_event = loop {
        let e = events.lock().unwrap().iter().find(|e| e["event"] == "node_isolated").cloned();
        if let Some(e) = e {
            break e;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no isolation event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("ISOLATION: webhook event after {} ms: {isolated_event}", t.elapsed().as_millis());
    assert_eq!(isolated_event["node_id"], "wallet-1");
    assert!(isolated_event["breaches"].to_string().contains("db_write_ms"), "{isolated_event}");
    let s = status(0).await;
    assert_eq!(s["isolated"], true);
    // It gave up its leaderships and the other node took them.
    let t = Instant::now();
    loop {
        let (a, b) = (status(0).await, status(1).await);
        if a["leading"].as_array().is_some_and(|x| x.is_empty()) && b["leading"].as_array().is_some_and(|x| x.len() == 3) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "leaderships not handed over: {a} {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, _) = (status(0).await, ());
    let metrics = http().get(format!("http://{}/metrics", peers[0].addr)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("engine_monitor_transitions_total{node=\"wallet-1\",event=\"node_isolated\"} 1"), "{metrics}");
    // Latency back to normal: the node recovers.
    tx.rollback().await.unwrap();
    let t = Instant::now();
    while !events.lock().unwrap().iter().any(|e| e["event"] == "node_recovered") {
        assert!(t.elapsed() < Duration::from_secs(30), "no recovery event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(0).await["isolated"], false);
    // Clean shutdown on SIGTERM: exit 0, leaderships released for the other node.
    let st = nodes[1].sigterm();
    assert!(st.is_some_and(|s| s.success()), "node did not exit cleanly on SIGTERM: {st:?}");
    let t = Instant::now();
    while status(0).await["leading"].as_array().is_none_or(|a| a.len() != 3) {
        assert!(t.elapsed() < Duration::from_secs(15), "leaderships not taken after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(nodes);
}
