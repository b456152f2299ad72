//! A node's DB sessions are bounded, and it reconnects with backoff, not in a loop:
//! 1. the DB refuses connections (`ALLOW_CONNECTIONS false`) and the node's sessions are
//!    terminated: in 5 s its connection attempts that reach the primary stay far below a
//!    tight loop (counted in the primary's log);
//! 2. connections are allowed again: the node holds its 3 partitions' advisory locks
//!    again within a few seconds (the reconnect backoff is capped at 2 s);
//! 3. throughout, `pg_stat_activity` never shows more sessions of the node than its limit,
//!    also with a limit (2) below what it would like to hold (3 partitions + monitor).

mod common;
use common::*;
use engine_config::{Module, PeerConfig};
use std::time::{Duration, Instant};

fn sessions_of(pg: &Pg, app: &str) -> u32 {
    pg.psql(pg.primary_port, "postgres", &format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"))
        .trim()
        .parse()
        .unwrap()
}

fn locks_of(pg: &Pg, app: &str) -> u32 {
    pg.psql(
        pg.primary_port,
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = '{app}'"
        ),
    )
    .trim()
    .parse()
    .unwrap()
}

const REFUSED: &str = "database \"exchange\" is not currently accepting connections";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_db_sessions_are_bounded_and_reconnects_back_off() {
    let env = Env::new();
    let peers = vec![PeerConfig { node_id: "wallet-1".into(), module: Module::Wallet, addr: format!("127.0.0.1:{}", free_port()) }];
    let port: u16 = peers[0].addr.rsplit(':').next().unwrap().parse().unwrap();
    let cfg = env.node_config("wallet-1", Module::Wallet, port, &peers);
    let limit = 3 + 3; // default: its 3 shards + monitor, liveness check, transient
    let _node = env.spawn_node(&cfg);
    let pg = &env.pg;
    let t = Instant::now();
    while locks_of(pg, "wallet-1") < 3 {
        assert!(t.elapsed() < Duration::from_secs(30), "wallet-1 never led its 3 shards");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 1. Refuse and cut every session of the node.
    pg.psql(pg.primary_port, "postgres", "ALTER DATABASE exchange ALLOW_CONNECTIONS false");
    let before = pg.log("primary").matches(REFUSED).count();
    pg.psql(
        pg.primary_port,
        "postgres",
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'wallet-1'",
    );
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        let n = sessions_of(pg, "wallet-1");
        assert!(n <= limit, "wallet-1 holds {n} sessions (limit {limit})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attempts = pg.log("primary").matches(REFUSED).count() - before;
    // A reconnect loop of 3 partitions every 200 ms plus the monitor's every second
    // makes about 80 attempts in 5 s; backoff from 100 ms doubling to 2 s (with jitter)
    // makes at most about 9 per partition, plus the monitor's 5-6.
    eprintln!("DB CONNECTIONS: {attempts} refused connection attempts in 5 s");
    assert!(attempts >= 3, "the node did not try to reconnect at all ({attempts})");
    assert!(attempts <= 40, "{attempts} connection attempts in 5 s: reconnecting in a tight loop");

    // 2. Allowed again: the node leads its shards again within a few seconds.
    pg.psql(pg.primary_port, "postgres", "ALTER DATABASE exchange ALLOW_CONNECTIONS true");
    let t = Instant::now();
    while locks_of(pg, "wallet-1") < 3 {
        assert!(
            t.elapsed() < Duration::from_millis(4000),
            "wallet-1 leads {} of 3 shards {} ms after the DB took connections again",
            locks_of(pg, "wallet-1"),
            t.elapsed().as_millis()
        );
        assert!(sessions_of(pg, "wallet-1") <= limit);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("DB CONNECTIONS: all 3 shards led again {} ms after the DB took connections", t.elapsed().as_millis());
    drop(_node);

    // 3. A limit below what the node wants: never more sessions than that.
    let peers = vec![PeerConfig { node_id: "wallet-2".into(), module: Module::Wallet, addr: format!("127.0.0.1:{}", free_port()) }];
    let port: u16 = peers[0].addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut cfg = env.node_config("wallet-2", Module::Wallet, port, &peers);
    cfg.db.connections_max = Some(2);
    let _node = env.spawn_node(&cfg);
    let (t, mut most) = (Instant::now(), 0);
    while t.elapsed() < Duration::from_secs(4) {
        let n = sessions_of(pg, "wallet-2");
        assert!(n <= 2, "wallet-2 holds {n} sessions with db.connections_max = 2");
        most = most.max(n);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(most, 2, "wallet-2 never used its 2 sessions");
}
