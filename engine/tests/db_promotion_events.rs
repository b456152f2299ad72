//! Issue 17 (3): a DB promotion seen by the engines is a metric and a webhook post. The
//! primary is killed and the synchronous standby promoted (a new host, a new timeline):
//! every active node's monitor reaches the new primary, posts `db_primary_changed` (old and
//! new primary) and counts `engine_db_primary_changes_total`.

mod common;
use common::*;
use std::time::{Duration, Instant};

async fn metrics(addr: &str) -> String {
    http().get(format!("http://{addr}/metrics")).send().await.map(|r| r.text()).unwrap().await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_reports_the_db_promotion_it_sees() {
    let hooks = Webhooks::start().await;
    let mut c = Cluster::healthy(1, &hooks).await;
    // Every node has seen the first primary (timeline 1) before it goes.
    let t = Instant::now();
    for n in &c.node_cfgs {
        let seen = format!("engine_db_timeline{{node=\"{}\"}} 1", n.node_id);
        while !metrics(&n.listen).await.contains(&seen) {
            assert!(t.elapsed() < Duration::from_secs(30), "{} never saw the primary", n.node_id);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (old, new) = (format!("127.0.0.1:{} (timeline 1)", c.env.pg.primary_port), format!("127.0.0.1:{}", c.env.pg.standby_port));
    c.env.pg.kill_primary();
    c.env.pg.promote_standby();

    let t = Instant::now();
    let mut missing: Vec<String> = c.node_cfgs.iter().map(|n| n.node_id.clone()).collect();
    while !missing.is_empty() && t.elapsed() < Duration::from_secs(60) {
        let events = hooks.events();
        missing.retain(|id| {
            !events.iter().any(|e| {
                let what = e["breaches"][0].as_str().unwrap_or("");
                e["event"] == "db_primary_changed" && e["node_id"] == id.as_str() && what.contains(&old) && what.contains(&new)
            })
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !missing.is_empty() {
        c.dump_logs();
    }
    assert!(missing.is_empty(), "no db_primary_changed from {missing:?}: {:?}", hooks.events());
    for n in &c.node_cfgs {
        let series = format!("engine_db_primary_changes_total{{node=\"{}\"}} 1", n.node_id);
        assert!(metrics(&n.listen).await.contains(&series), "no metric {series}");
    }
}
