//! Issue 17 (2): a hung leader does not keep its partition. 3 nodes per module, shipped
//! defaults, orders flowing into BTC-USD; its leader is stopped with SIGSTOP (its kernel
//! still acknowledges TCP and answers keepalives, so its DB session and advisory lock stay).
//! A standby sees the holder's session waiting on its silent client, ends it and takes
//! over: the next acknowledged order sent after the stop comes within 3 s. Once continued,
//! the stopped process commits nothing (no ledger entry of its epoch after the takeover),
//! every acknowledged order is in the DB with its id, balances are conserved, and the
//! elimination was posted to the admin webhook.

mod common;
use common::load::{check_acks, first_ack_after, leader_of, load, traders, Ack};
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTITION: &str = "matching/BTC-USD";

/// The correctness target of the issue: the partition takes orders again within 3 s.
const SERVES_AGAIN_WITHIN: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_leader_loses_its_partition_within_3s_and_commits_nothing_after() {
    let hooks = Webhooks::start().await;
    let c = Cluster::healthy(3, &hooks).await;
    let keys = traders(&c.gw).await;
    let (stop, acks) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::<Ack>::new())));
    let tasks = load(&c.gw, &keys, &stop, &acks);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let hung = leader_of(&c, PARTITION).await.expect("BTC-USD has a leader");
    let pid = c.nodes[hung].pid().expect("running");
    let epoch_sql = format!("SELECT epoch FROM partitions WHERE partition_key = '{PARTITION}'");
    let old_epoch: i64 = c.env.pg.sql(&epoch_sql).parse().unwrap();
    kill(pid, "-STOP");
    let stopped = Instant::now();
    eprintln!("stopped {} (epoch {old_epoch})", c.nodes[hung].name);

    let Some(first_after) = first_ack_after(&acks, stopped, Duration::from_secs(20)).await else {
        kill(pid, "-CONT");
        stop.store(true, Ordering::SeqCst);
        c.dump_logs();
        panic!("{PARTITION} took no order in 20 s after its leader hung (epoch still {})", c.env.pg.sql(&epoch_sql));
    };
    let gap = first_after - stopped;
    eprintln!("HUNG LEADER: next acknowledged {PARTITION} order {} ms after SIGSTOP", gap.as_millis());

    // Let the new leader work, then continue the stopped process under load.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ledger_at_cont: i64 = c.env.pg.sql("SELECT coalesce(max(id), 0) FROM ledger").parse().unwrap();
    kill(pid, "-CONT");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let new_epoch: i64 = c.env.pg.sql(&epoch_sql).parse().unwrap();
    let stale =
        c.env.pg.sql(&format!("SELECT count(*) FROM ledger WHERE id > {ledger_at_cont} AND ref LIKE 'batch:BTC-USD:{old_epoch}:%'"));
    let mut problems = Vec::new();
    if gap > SERVES_AGAIN_WITHIN {
        problems.push(format!("{PARTITION} served again only {} ms after the hang", gap.as_millis()));
    }
    if new_epoch <= old_epoch {
        problems.push(format!("no takeover: epoch {old_epoch} -> {new_epoch}"));
    }
    if stale != "0" {
        problems.push(format!("the continued process (epoch {old_epoch}) committed {stale} batches"));
    }
    problems.extend(check_acks(&c, &acks.lock().unwrap()));
    let events = hooks.events();
    let eliminated = events.iter().any(|e| e["event"] == "leader_eliminated" && e["breaches"].to_string().contains(PARTITION));
    if !eliminated {
        problems.push(format!("no leader_eliminated webhook for {PARTITION}: {events:?}"));
    }
    if !problems.is_empty() || std::env::var("BENCH_LOG_DIR").is_ok() {
        c.dump_logs();
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
