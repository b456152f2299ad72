//! Benchmarks on a real cluster (ignored by default; run with --ignored --nocapture):
//! end-to-end acknowledged orders/s through the gateway with a synchronous standby, and
//! leader failover times over repeated kill -9.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn env_or(name: &str, d: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn quiet(c: &mut engine_config::NodeConfig) {
    c.log.level = std::env::var("NODE_LOG").unwrap_or_else(|_| "warn".into());
}

/// The cluster's processes by role; this test process is the load generator.
fn cpu_groups(c: &Cluster) -> Vec<cpu::Group> {
    let (primary, standby) = c.env.pg.postmasters();
    let nodes = |matching: bool| c.nodes.iter().filter(|n| n.name.starts_with("matching") == matching).filter_map(|n| n.pid()).collect();
    let g = |name: &str, pids: Vec<u32>, with_children| cpu::Group { name: name.into(), pids, with_children };
    vec![
        g("gateway", c.gateway.pid().into_iter().collect(), false),
        g("matching nodes", nodes(true), false),
        g("other nodes", nodes(false), false),
        g("pg primary", vec![primary], true),
        g("pg standby", vec![standby], true),
        g("load generator", vec![std::process::id()], false),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_end_to_end_throughput() {
    let c = Cluster::start(3, quiet);
    wait_healthy(&c.gw, Duration::from_secs(60)).await.expect("healthy");
    let cfg = engine::loadgen::LoadConfig {
        gateway: c.gw.clone(),
        admin: admin_url(&c.gw),
        admin_token: ADMIN_TOKEN.into(),
        markets: vec![("BTC-USD".into(), "BTC".into()), ("ETH-USD".into(), "ETH".into()), ("SOL-USD".into(), "SOL".into())],
        users: 24,
        concurrency: env_or("LOAD_CONCURRENCY", 192) as usize,
        duration: Duration::from_secs(env_or("LOAD_SECONDS", 20)),
        first_user_id: 1000,
    };
    let keys = engine::loadgen::setup(&cfg).await.expect("setup");
    let groups = cpu_groups(&c);
    let before = cpu::sample(&groups);
    let r = engine::loadgen::run(&cfg, &keys).await;
    let after = cpu::sample(&groups);
    println!("E2E: concurrency {}: {r}", cfg.concurrency);
    println!("E2E: CPU us per acknowledged order: {}", cpu::per_order(&before, &after, r.acked));
    println!("E2E: acknowledged per second: {:?}", r.per_second);
    println!(
        "E2E: tables (name, live, dead, hot updates, updates, MB):\n{}",
        c.env.pg.sql(
            "SELECT relname, n_live_tup, n_dead_tup, n_tup_hot_upd, n_tup_upd, pg_total_relation_size(relid) / 1048576 \
             FROM pg_stat_user_tables WHERE n_tup_upd + n_tup_ins > 0 ORDER BY 1"
        )
    );
    if std::env::var("NODE_LOG").is_ok() {
        c.dump_logs();
    }
    if std::env::var("PG_EXTRA_CONF").is_ok_and(|v| v.contains("pg_stat_statements")) {
        c.env.pg.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        println!(
            "E2E: statements (ms total, calls, rows, query):\n{}",
            c.env.pg.sql(
                "SELECT round(total_exec_time)::bigint || ' | ' || calls || ' | ' || rows || ' | ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 90) \
                 FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 16"
            )
        );
    }
    assert_eq!(conservation_violations(&c.env.pg), "");
    assert_eq!(order_fill_violations(&c.env.pg), "", "orders whose state disagrees with their fills");
    assert!(r.acked > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_leader_failover() {
    let mut c = Cluster::start(3, quiet);
    wait_healthy(&c.gw, Duration::from_secs(60)).await.expect("healthy");
    let gw = c.gw.clone();
    let key = create_user(&gw, 7).await;
    deposit(&gw, "f-usd", 7, "USD", 1_000_000_000_000).await;
    let kills = env_or("FAILOVER_KILLS", 20);
    let mut gaps = Vec::new();
    let mut seq = 0u64;
    for k in 0..kills {
        // Find the leader of BTC-USD, kill -9 it, and time the next acknowledged order.
        let mut leader = None;
        for (i, n) in c.nodes.iter().enumerate() {
            if n.child.is_none() || !n.name.starts_with("matching") {
                continue;
            }
            let (s, v) = get(&format!("http://{}", n.addr), "/internal/status", &[]).await;
            if s == 200 && v["leading"].as_array().is_some_and(|a| a.iter().any(|x| x == "matching/BTC-USD")) {
                leader = Some(i);
            }
        }
        let i = leader.expect("BTC-USD leader");
        let t = Instant::now();
        c.nodes[i].kill9();
        loop {
            seq += 1;
            let body = serde_json::json!({"market": "BTC-USD", "client_order_id": format!("f{seq}"), "side": "buy", "type": "limit", "price_ticks": 1, "qty_lots": 1});
            let (s, _) = post(&gw, "/v1/orders", &[("x-api-key", &key)], body).await;
            if s == 200 {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "no failover");
        }
        let gap = t.elapsed();
        println!("FAILOVER kill {}: next acknowledged order after {} ms", k + 1, gap.as_millis());
        gaps.push(gap);
        // Restart the killed node so three stay in the race.
        let cfg = c.node_cfgs[i].clone();
        c.nodes[i] = c.env.spawn_node(&cfg);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    gaps.sort();
    println!("FAILOVER: {} kills: p50 {} ms, max {} ms", gaps.len(), gaps[gaps.len() / 2].as_millis(), gaps.last().unwrap().as_millis());
    if std::env::var("NODE_LOG").is_ok() {
        c.dump_logs();
    }
}
