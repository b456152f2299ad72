//! Region mode: nodes on a read-only replica run in standby (warm, answer reads, reject
//! writes with a clear error, /health 503); they become active by themselves when the DB is
//! promoted (each posts `standby_activated` to the admin webhook), and follow admin calls to
//! /admin/mode. Also: garbage requests never get a 5xx.

mod common;
use common::*;
use engine_config::{Module, PeerConfig, RegionMode};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_rejects_writes_then_becomes_active() {
    let env = Env::new();
    let hooks = Webhooks::start().await;
    // Schema and a user, written on the primary (as the other region would have).
    let mut c = engine::db::connect(&engine::db::pg_config(&env.pg.db_config(), true).unwrap()).await.unwrap();
    engine::db::migrate(&mut c).await.unwrap();
    let key = "standby-test-key";
    c.execute("INSERT INTO users (user_id, api_key_sha256) VALUES (20, $1)", &[&engine::sha256_hex(key)]).await.unwrap();
    c.batch_execute("INSERT INTO balances (owner_id, asset, available) VALUES (20, 'USD', 1000000), (0, 'USD', -1000000)").await.unwrap();
    drop(c);

    let peers: Vec<PeerConfig> = [Module::Matching, Module::Wallet, Module::Otc, Module::Contract]
        .iter()
        .map(|m| PeerConfig { node_id: format!("{}-1", m.as_str()), module: *m, addr: format!("127.0.0.1:{}", free_port()) })
        .collect();
    let mut nodes = Vec::new();
    for p in &peers {
        let port: u16 = p.addr.rsplit(':').next().unwrap().parse().unwrap();
        let mut cfg = env.node_config(&p.node_id, p.module, port, &peers);
        cfg.mode = RegionMode::Standby;
        cfg.db = env.pg.standby_only_db_config();
        cfg.monitor.webhook_urls = vec![hooks.url.clone()];
        nodes.push(env.spawn_node(&cfg));
    }
    let mut gcfg = env.gateway_config(free_port(), &peers);
    gcfg.db = env.pg.standby_only_db_config();
    let _gw_proc = env.spawn_gateway(&gcfg);
    let gw = format!("http://{}", gcfg.listen);
    let user = [("x-api-key", key)];
    let order =
        |cid: &str| json!({"market": "BTC-USD", "client_order_id": cid, "side": "buy", "type": "limit", "price_ticks": 100, "qty_lots": 1});

    // Standby: up and warm, reads work, writes are refused with a clear error.
    let t = Instant::now();
    loop {
        let (s, v) = get(&gw, "/v1/balances", &user).await;
        if s == 200 {
            assert_eq!(v["balances"][0]["available_minor"], 1000000);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "reads never worked in standby: {s} {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // gateway has probed the nodes
    let (s, v) = post(&gw, "/v1/orders", &user, order("s1")).await;
    assert_eq!((s, v["error"].as_str()), (503, Some("region_standby")), "{v}");
    let (s, v) =
        post(&format!("http://{}", peers[0].addr), "/v1/orders", &[("x-internal-token", INTERNAL_TOKEN), ("x-user-id", "20")], order("s1"))
            .await;
    assert_eq!((s, v["error"].as_str()), (503, Some("region_standby")), "node itself: {v}");
    let (s, v) = get(&gw, "/health", &[]).await;
    assert_eq!(s, 503, "{v}");
    assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()));

    // The replica is promoted: nodes notice the DB turned writable and become active.
    let standby_dir = env.pg.dir.path().join("standby");
    let out = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", &format!("{PG_BIN}/pg_ctl"), "promote", "-w", "-D", standby_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "promote: {}", String::from_utf8_lossy(&out.stderr));
    // It has no standby of its own: drop the synchronous requirement it inherited.
    env.pg.psql(env.pg.standby_port, "exchange", "ALTER SYSTEM SET synchronous_standby_names = ''");
    env.pg.psql(env.pg.standby_port, "exchange", "SELECT pg_reload_conf()");
    let took = wait_healthy(&gw, Duration::from_secs(30)).await.expect("region became healthy after promotion");
    eprintln!("REGION: active {} ms after promotion", took.as_millis());
    let (s, v) = post(&gw, "/v1/orders", &user, order("a1")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "open");
    let t = Instant::now();
    for p in &peers {
        while !hooks.events().iter().any(|e| e["event"] == "standby_activated" && e["node_id"] == p.node_id.as_str()) {
            assert!(t.elapsed() < Duration::from_secs(10), "no standby_activated webhook from {}: {:?}", p.node_id, hooks.events());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Admin switches the region to standby and back.
    let admin = [("x-admin-token", ADMIN_TOKEN)];
    let admin_gw = admin_url(&gw);
    let (s, v) = post(&admin_gw, "/admin/mode", &admin, json!({"mode": "standby"})).await;
    assert_eq!(s, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (s, v) = post(&gw, "/v1/orders", &user, order("a2")).await;
    assert_eq!((s, v["error"].as_str()), (503, Some("region_standby")), "{v}");
    let (s, _) = get(&gw, "/health", &[]).await;
    assert_eq!(s, 503);
    let (s, v) = post(&admin_gw, "/admin/mode", &[("x-admin-token", "wrong")], json!({"mode": "active"})).await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = post(&admin_gw, "/admin/mode", &admin, json!({"mode": "active"})).await;
    assert_eq!(s, 200, "{v}");
    wait_healthy(&gw, Duration::from_secs(30)).await.expect("healthy after admin activation");
    let (s, v) = post(&gw, "/v1/orders", &user, order("a2")).await;
    assert_eq!(s, 200, "{v}");

    // Garbage never gets a 5xx: bad JSON, wrong types, unknown fields, huge numbers.
    let bodies = [
        "", "{", "null", "[]", "{\"market\":1}", "{\"market\":\"BTC-USD\"}",
        "{\"market\":\"BTC-USD\",\"client_order_id\":\"x\",\"side\":\"buy\",\"type\":\"limit\",\"price_ticks\":-5,\"qty_lots\":1}",
        "{\"market\":\"BTC-USD\",\"client_order_id\":\"x\",\"side\":\"buy\",\"type\":\"limit\",\"price_ticks\":9223372036854775807,\"qty_lots\":9223372036854775807}",
        "{\"market\":\"BTC-USD\",\"client_order_id\":\"x\",\"side\":\"up\",\"type\":\"limit\",\"price_ticks\":1,\"qty_lots\":1}",
        "{\"market\":\"BTC-USD\",\"client_order_id\":\"\",\"side\":\"buy\",\"type\":\"limit\",\"price_ticks\":1,\"qty_lots\":1}",
        "{\"market\":\"BTC-USD\",\"client_order_id\":\"x\",\"side\":\"buy\",\"type\":\"market\",\"qty_lots\":1}",
        "{\"market\":\"BTC-USD\",\"client_order_id\":\"x\",\"side\":\"buy\",\"type\":\"limit\",\"price_ticks\":1,\"qty_lots\":1,\"extra\":1}",
        "\u{0}\u{1}\u{2}", "{\"deposit_id\":\"d\",\"user_id\":-1,\"asset\":\"USD\",\"amount_minor\":1}",
    ];
    let paths = [
        "/v1/orders",
        "/v1/orders/cancel",
        "/v1/withdrawals",
        "/v1/otc/quotes",
        "/admin/deposits",
        "/admin/users",
        "/admin/mode",
        "/admin/otc/reference",
    ];
    let client = http();
    for p in paths {
        for b in bodies {
            for hdr in [("x-api-key", key), ("x-admin-token", ADMIN_TOKEN)] {
                let base = if p.starts_with("/admin/") { &admin_gw } else { &gw };
                let r = client.post(format!("{base}{p}")).header(hdr.0, hdr.1).body(b.to_string()).send().await.unwrap();
                let s = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                assert!((400..500).contains(&s), "{p} {b:?} -> {s} {text}");
            }
        }
    }
    for p in ["/v1/orders/abc", "/v1/orders/99999999999999999999", "/v1/book/NOPE", "/v1/withdrawals/x", "/nope"] {
        let r = client.get(format!("{gw}{p}")).header("x-api-key", key).send().await.unwrap();
        assert!((400..500).contains(&r.status().as_u16()), "{p} -> {}", r.status());
    }
    drop(nodes);
}
