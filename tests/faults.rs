//! Issue 13: zero acknowledged-order loss under faults that leave processes alive.
//!
//! In the style of Jepsen: one `compact` deployment on LocalStack + lab hosts; each case runs
//! order load through the primary gateways (clients retry with the same client id), injects one
//! fault, heals it, waits for recovery and then checks, in the databases only:
//! - every acknowledged order is in the primary exactly once, and an order acknowledged as
//!   `filled` is `filled` there;
//! - no order exists that no client sent;
//! - balances are conserved;
//! - every member of both regions converges to the same orders and balances.
//!
//! `FAULTS=all` runs every case (the benchmark set, `scripts/bench-faults.sh`); the default is
//! the CI set. `FAULT_FILTER=<text>` runs only the cases whose name contains it. Each case prints a `FAULT-CASE` line with the longest gap between
//! acknowledgements, the time from heal to convergence and the count of lost orders.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::lab::*;
use common::load::*;
use common::*;

const PRIMARY_CIDR: &str = "10.70.0.0/16";
const DR_CIDR: &str = "10.80.0.0/16";
const LAB_PREFIX: &str = "fl";
/// Longer than Patroni's ttl (20 s) several times over: the lock of a cut-off leader expires
/// and another member is promoted while the old one lives on.
/// `FAULT_ISOLATION_S` sets another (the incident report used 90 s and 150 s).
fn isolation_s() -> u64 {
    std::env::var("FAULT_ISOLATION_S").ok().and_then(|v| v.parse().ok()).unwrap_or(60)
}
const HANG_S: u64 = 45;
/// When, into the hang, at most one writable primary may exist: the ttl (20 s) has passed and
/// a new leader was promoted a few seconds after it.
const TWO_PRIMARIES_CHECK_S: u64 = 30;

struct World {
    p: Project,
    lab: Lab,
    su: String,
    key: std::path::PathBuf,
    pdb: Vec<String>,
    ddb: Vec<String>,
    apps: Vec<String>,
    keys: (String, String),
    patroni_port: u16,
}

#[tokio::test(flavor = "multi_thread")]
async fn no_acknowledged_order_is_lost_under_faults_that_leave_processes_alive() {
    let _turn = serial();
    let w = setup().await;
    let all = std::env::var("FAULTS").is_ok_and(|v| v == "all");
    let repeats = if all { 5 } else { 1 };
    for i in 0..repeats {
        case(&w, &format!("leader-isolated-{}s#{i}", isolation_s()), Fault::IsolateLeader).await;
    }
    case(&w, &format!("leader-patroni-sigstop-{HANG_S}s"), Fault::HangLeaderPatroni).await;
    case(&w, "matching-nodes-kill-9", Fault::KillMatchingNodes).await;
    if all {
        case(&w, "standby-isolated", Fault::IsolateStandby).await;
        case(&w, "etcd-on-leader-killed", Fault::KillEtcdOnLeader).await;
        case(&w, "etcd-leader-killed", Fault::KillEtcdLeader).await;
        case(&w, "leader-cut-from-standbys", Fault::CutLeaderFromStandbys).await;
        case(&w, "leader-cut-from-etcd", Fault::CutLeaderFromEtcd).await;
        case(&w, "db-leader-power-off", Fault::PowerOffLeader).await;
    }
    w.p.ok(&["down"]);
    wait_for("lab hosts removed", Duration::from_secs(60), || w.lab.namespaces().is_empty());
}

async fn setup() -> World {
    let p = Project::with_cidrs("flt", "compact", PRIMARY_CIDR, DR_CIDR);
    let lab = Lab::start(&p.config(), LAB_PREFIX);
    p.ok(&["up"]);
    let dir = p.dir.path().join(".provision").join(&p.name);
    let su = std::fs::read_to_string(dir.join("secrets").join("db_superuser_password")).unwrap().trim().to_string();
    let admin = std::fs::read_to_string(dir.join("secrets").join("admin_token")).unwrap().trim().to_string();
    let (pdb, ddb, apps) = (ips(PRIMARY, &p.name, "db").await, ips(DR, &p.name, "db").await, ips(PRIMARY, &p.name, "app").await);
    let base = admin_base(&apps[0]);
    let mut keys = Vec::new();
    for (user, asset) in [(7001, "USD"), (7002, "BTC")] {
        let (code, body) =
            http("POST", &format!("{base}/admin/users"), &[("X-Admin-Token", &admin)], Some(&format!(r#"{{"user_id":{user}}}"#)));
        assert_eq!(code, 200, "{body}");
        keys.push(serde_json::from_str::<serde_json::Value>(&body).unwrap()["api_key"].as_str().unwrap().to_string());
        let dep = format!(r#"{{"deposit_id":"f-{user}","user_id":{user},"asset":"{asset}","amount_minor":1000000000000000}}"#);
        let (code, body) = http("POST", &format!("{base}/admin/deposits"), &[("X-Admin-Token", &admin)], Some(&dep));
        assert_eq!(code, 200, "{body}");
    }
    let key = dir.join("id_ed25519");
    World { p, lab, su, key, pdb, ddb, apps, keys: (keys[0].clone(), keys[1].clone()), patroni_port: 8008 }
}

enum Fault {
    IsolateLeader,
    HangLeaderPatroni,
    KillMatchingNodes,
    IsolateStandby,
    KillEtcdOnLeader,
    KillEtcdLeader,
    CutLeaderFromStandbys,
    CutLeaderFromEtcd,
    PowerOffLeader,
}

/// Injects the fault, holds it and heals it.
async fn inject(w: &World, f: Fault) {
    match f {
        Fault::IsolateLeader => isolate_leader(w).await,
        Fault::HangLeaderPatroni => hang_leader_patroni(w).await,
        Fault::KillMatchingNodes => kill_matching_nodes(w).await,
        Fault::IsolateStandby => isolate_standby(w).await,
        Fault::KillEtcdOnLeader => kill_etcd_on_leader(w).await,
        Fault::KillEtcdLeader => kill_etcd_leader(w).await,
        Fault::CutLeaderFromStandbys => asymmetric(w, true).await,
        Fault::CutLeaderFromEtcd => asymmetric(w, false).await,
        Fault::PowerOffLeader => power_off_leader(w).await,
    }
}

/// Runs one case: load, the fault (injected, held, healed), recovery, the checks.
async fn case(w: &World, name: &str, fault: Fault) {
    if std::env::var("FAULT_FILTER").is_ok_and(|f| !name.contains(&f)) {
        return;
    }
    eprintln!("fault case {name}: start");
    let load = RetryLoad::start(&common::api::Api::of(&w.p), w.apps.clone(), w.keys.clone(), &name.replace('#', "-"), 6);
    wait_for("orders acknowledged before the fault", Duration::from_secs(60), || {
        load.acked_after(Instant::now() - Duration::from_secs(2)) > 0
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    inject(w, fault).await;
    let healed = Instant::now();
    let t0 = Instant::now();
    while load.acked_after(healed + Duration::from_secs(1)) == 0 && t0.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let recovered = load.acked_after(healed + Duration::from_secs(1)) > 0;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = load.stop().await;
    let leader = wait_leader(w, Duration::from_secs(120));
    if !recovered {
        let lost = check_primary(w, &leader, &sent, name);
        panic!(
            "{name}: no order acknowledged within 180 s of the heal; the writable leader {leader} lacks {lost} acknowledged orders\n{}",
            cluster_views(w)
        );
    }
    let lost = check_primary(w, &leader, &sent, name);
    let converged = converge(w, &leader, name);
    let acked = sent.iter().filter(|s| s.ack.is_some()).count();
    eprintln!(
        "FAULT-CASE case={name} acked={acked} lost={lost} longest_ack_gap_ms={} converged_after_heal_ms={}",
        longest_ack_gap(&sent).as_millis(),
        (converged - healed).as_millis()
    );
    assert_eq!(lost, 0);
}

fn wait_leader(w: &World, timeout: Duration) -> String {
    let mut leader = None;
    wait_for("a writable primary leader", timeout, || {
        leader = writable_leader(&w.pdb, &w.su);
        leader.is_some()
    });
    leader.unwrap()
}

/// Every acknowledged order exactly once, nothing nobody sent, fills kept, balances conserved.
/// Returns how many acknowledged orders are missing (after asserting on everything else).
fn check_primary(w: &World, leader: &str, sent: &[Sent], name: &str) -> usize {
    let rows = psql(leader, &w.su, "exchange", "select client_order_id || '|' || status from orders where user_id in (7001, 7002)");
    let mut in_db: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in rows.lines() {
        let (cid, status) = l.split_once('|').unwrap();
        in_db.entry(cid.to_string()).or_default().push(status.to_string());
    }
    let requested: std::collections::BTreeSet<&str> = sent.iter().map(|s| s.cid.as_str()).collect();
    let prefix = format!("{}-", name.replace('#', "-"));
    let unrequested: Vec<&String> = in_db.keys().filter(|c| c.starts_with(&prefix) && !requested.contains(c.as_str())).collect();
    assert!(unrequested.is_empty(), "{name}: orders nobody sent: {unrequested:?}");
    let twice: Vec<(&String, &Vec<String>)> = in_db.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "{name}: orders stored more than once: {twice:?}");
    let mut lost = Vec::new();
    for s in sent {
        let Some((_, acked_status)) = &s.ack else { continue };
        match in_db.get(&s.cid) {
            None => lost.push(s.cid.clone()),
            Some(v) => {
                assert!(acked_status != "filled" || v[0] == "filled", "{name}: {} acknowledged filled, {} in the primary", s.cid, v[0])
            }
        }
    }
    if !lost.is_empty() {
        eprintln!("{name}: {} acknowledged orders missing from the primary {leader}, e.g. {:?}", lost.len(), &lost[..lost.len().min(10)]);
    }
    let unbalanced = psql(
        leader,
        &w.su,
        "exchange",
        "select count(*) from (select asset from balances group by asset having sum(available + held) <> 0) t",
    );
    assert_eq!(unbalanced, "0", "{name}: balances not conserved on {leader}");
    lost.len()
}

/// Waits until every DB member of both regions holds the primary's orders and balances (the
/// load has stopped). Returns when that was first seen.
fn converge(w: &World, leader: &str, name: &str) -> Instant {
    let digest = "select (select count(*) || ':' || md5(coalesce(string_agg(order_id || status || filled_qty, ',' order by order_id), '')) from orders) \
                  || '/' || (select md5(coalesce(string_agg(owner_id || asset || available || ':' || held, ',' order by owner_id, asset), '')) from balances)";
    let want = psql(leader, &w.su, "exchange", digest);
    assert!(!want.is_empty(), "{name}: no digest from the primary");
    let members: Vec<String> = w.pdb.iter().chain(w.ddb.iter()).cloned().collect();
    let mut last = BTreeMap::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(240) {
        last = members.iter().map(|m| (m.clone(), psql(m, &w.su, "exchange", digest))).collect();
        if last.values().all(|d| *d == want) {
            return Instant::now();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{name}: members did not converge on the primary {leader}'s {want}: {last:?}\n{}", cluster_views(w));
}

fn cluster_views(w: &World) -> String {
    w.pdb
        .iter()
        .chain(w.ddb.iter())
        .map(|ip| format!("{ip}: {}", http("GET", &format!("http://{ip}:{}/cluster", w.patroni_port), &[], None).1))
        .collect::<Vec<_>>()
        .join("\n")
}

fn patroni_role(w: &World, ip: &str) -> String {
    let (_, body) = http("GET", &format!("http://{ip}:{}/patroni", w.patroni_port), &[], None);
    serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["role"].as_str().map(str::to_string)).unwrap_or_default()
}

fn sh(w: &World, ip: &str, cmd: &str) -> String {
    ssh(&w.key, ip, cmd)
}

async fn hold(s: u64) {
    tokio::time::sleep(Duration::from_secs(s)).await;
}

async fn isolate_leader(w: &World) {
    let leader = wait_leader(w, Duration::from_secs(60));
    w.lab.ctl(&["fault", "isolate", &leader]);
    hold(isolation_s()).await;
    w.lab.ctl(&["heal", "isolate", &leader]);
}

async fn isolate_standby(w: &World) {
    let leader = wait_leader(w, Duration::from_secs(60));
    let standby = w.pdb.iter().find(|ip| **ip != leader && patroni_role(w, ip).contains("replica")).expect("a standby").clone();
    w.lab.ctl(&["fault", "isolate", &standby]);
    hold(isolation_s()).await;
    w.lab.ctl(&["heal", "isolate", &standby]);
}

/// The leader's Patroni frozen (SIGSTOP) past its ttl: PostgreSQL keeps running as a primary
/// that no longer holds the lock.
async fn hang_leader_patroni(w: &World) {
    let leader = wait_leader(w, Duration::from_secs(60));
    if std::env::var("FAULT_WITHOUT_FENCE").is_ok() {
        // Only to see this case fail: the DB hosts without their pg-fence.
        for ip in &w.pdb {
            sh(w, ip, &format!("/opt/{}/bin/svc stop pg-fence", w.p.name));
        }
    }
    let pids = sh(w, &leader, "pgrep -f 'bin/patroni ' | tr '\\n' ' '");
    assert!(!pids.trim().is_empty(), "no Patroni process on {leader}");
    sh(w, &leader, &format!("kill -STOP {pids}"));
    let stopped = Instant::now();
    // Past the ttl (20 s) another member holds the lock: the old primary must take no writes.
    hold(TWO_PRIMARIES_CHECK_S).await;
    let writable: Vec<&String> = w.pdb.iter().filter(|ip| psql(ip, &w.su, "postgres", "select pg_is_in_recovery()") == "f").collect();
    hold(HANG_S.saturating_sub(stopped.elapsed().as_secs())).await;
    sh(w, &leader, &format!("kill -CONT {pids}"));
    assert!(
        writable.len() <= 1,
        "{TWO_PRIMARIES_CHECK_S} s after the leader's Patroni froze, writable primaries: {writable:?} (the frozen one is {leader})"
    );
}

/// Every matching node of the region killed at once: nothing but the hosts' supervisor brings
/// them back (no `provision deploy`).
async fn kill_matching_nodes(w: &World) {
    const MATCHING_PIDS: &str =
        "for p in $(pgrep -x engine-node); do tr '\\0' ' ' < /proc/$p/cmdline | grep -q node-matching.toml && echo $p; done";
    let mut killed = Vec::new();
    for ip in &w.apps {
        let pids = sh(w, ip, MATCHING_PIDS);
        assert!(!pids.trim().is_empty(), "no matching node on {ip}");
        sh(w, ip, &format!("kill -9 {}", pids.split_whitespace().collect::<Vec<_>>().join(" ")));
        killed.push((ip.clone(), pids));
    }
    // Nothing but each host's supervisor starts them again.
    for (ip, old) in &killed {
        wait_for(&format!("a new matching node on {ip}"), Duration::from_secs(30), || {
            let now = sh(w, ip, MATCHING_PIDS);
            !now.trim().is_empty() && now != *old
        });
    }
}

async fn kill_etcd_on_leader(w: &World) {
    let leader = wait_leader(w, Duration::from_secs(60));
    sh(w, &leader, "pkill -9 -x etcd");
    hold(30).await;
}

async fn kill_etcd_leader(w: &World) {
    let out = sh(w, &w.pdb[0], &format!("ETCDCTL_API=3 etcdctl --endpoints=http://{}:2379 endpoint status --cluster -w json", w.pdb[0]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let leader_id = v.as_array().and_then(|a| a.first()).map(|m| m["Status"]["leader"].clone()).unwrap_or_default();
    let host = v
        .as_array()
        .and_then(|a| a.iter().find(|m| m["Status"]["header"]["member_id"] == leader_id))
        .and_then(|m| m["Endpoint"].as_str())
        .and_then(|e| e.trim_start_matches("http://").split(':').next())
        .map(str::to_string)
        .expect("the etcd leader");
    sh(w, &host, "pkill -9 -x etcd");
    hold(30).await;
}

/// `leader_side`: the leader's host drops PostgreSQL traffic to and from its standbys but
/// still reaches etcd; otherwise the reverse: it still streams to its standbys but reaches no
/// other etcd member (its own is cut off into a minority).
async fn asymmetric(w: &World, leader_side: bool) {
    let leader = wait_leader(w, Duration::from_secs(60));
    let others: Vec<&String> = w.pdb.iter().filter(|ip| **ip != leader).collect();
    let (host, rules): (&str, Vec<String>) = if leader_side {
        (
            &leader,
            others
                .iter()
                .flat_map(|o| [format!("OUTPUT -d {o} -p tcp --dport 5432 -j DROP"), format!("INPUT -s {o} -p tcp --dport 5432 -j DROP")])
                .collect(),
        )
    } else {
        let ports = ["2379", "2380"];
        (
            &leader,
            others
                .iter()
                .flat_map(|o| {
                    ports.iter().flat_map(move |p| {
                        [format!("INPUT -s {o} -p tcp --dport {p} -j DROP"), format!("OUTPUT -d {o} -p tcp --dport {p} -j DROP")]
                    })
                })
                .collect(),
        )
    };
    for r in &rules {
        sh(w, host, &format!("iptables -I {r}"));
    }
    hold(isolation_s()).await;
    for r in &rules {
        sh(w, host, &format!("iptables -D {r}"));
    }
}

async fn power_off_leader(w: &World) {
    let leader = wait_leader(w, Duration::from_secs(60));
    w.lab.ctl(&["fault", "power-off", &leader]);
    hold(40).await;
    w.lab.ctl(&["heal", "power-off", &leader]);
}
