//! Per-second node health: CPU, memory, reach to peers, DB read/write latency and (wallet)
//! heartbeat age. Each measure names its cause, and only the node's own faults isolate it:
//! its CPU, its memory, its DB latency, or losing reach to a majority of its peers (then it is
//! the one cut off). A threshold crossed for `breach_seconds` consecutive samples isolates
//! the node (it gives up its leaderships and reports `isolated`, so the gateway stops
//! routing to it); as many clean samples in a row bring it back. A fault is the node's own
//! only if a peer of its module does not share it: a node steps aside only while another
//! node of its module is healthy (active, not isolated, and clean for `breach_seconds`
//! samples in a row), so a cause every node sees (a saturated machine, a stalled commit)
//! isolates none of them, and the last healthy node of a module never goes. A dead or slow peer is
//! reported (metric `engine_peer_up`, webhook `peer_unreachable` / `peer_reachable`) and
//! never makes a healthy node step aside: the gateways route around it. Each transition is a log
//! line, a metric and a JSON POST to the admin webhooks (bounded retries, off the
//! trading path). In standby mode the monitor also watches for the DB turning writable.

use crate::metrics::label;
use crate::node::Node;
mod primary;

use crate::partition::{Elimination, Event, Fenced, MarketHalted, Quarantine, Takeover};
use crate::protocol::{paths, NodeStatus, MODE_ACTIVE};
use engine_config::Module;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct CpuSample {
    busy: u64,
    total: u64,
}

fn read_cpu() -> Option<CpuSample> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    let total: u64 = v.iter().sum();
    Some(CpuSample { busy: total - idle, total })
}

fn mem_used_percent() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let get = |k: &str| s.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok());
    let total = get("MemTotal:")?;
    let avail = get("MemAvailable:")?;
    Some(100.0 * (total - avail) / total)
}

/// One sample: name -> (value, limit). A value above its limit is a breach.
type Sample = Vec<(&'static str, f64, f64)>;

pub fn spawn(node: Arc<Node>) {
    let events = node.events.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(rx) = events {
        tokio::spawn(report_events(node.clone(), rx));
    }
    tokio::spawn(async move { run(node).await });
}

/// What this node's partition loops hand over, posted off the trading path like every
/// transition: hung leaders they ended and orders they quarantined.
async fn report_events(node: Arc<Node>, mut rx: tokio::sync::mpsc::Receiver<Event>) {
    while let Some(e) = rx.recv().await {
        match e {
            Event::Eliminated(e) => report_elimination(&node, e),
            Event::Quarantined(q) => report_quarantine(&node, q),
            Event::Takeover(t) => report_takeover(&node, t),
            Event::Fenced(f) => report_fenced(&node, f),
            Event::Halted(h) => report_halt(&node, h),
        }
    }
}

/// A hung leader this node ended (`partition::silent`): a metric
/// (`engine_leader_eliminations_total`, and the transition count) and the webhook event
/// `leader_eliminated`.
fn report_elimination(node: &Arc<Node>, e: Elimination) {
    let limit = node.state.leader_silence.as_millis() as f64;
    let (nid, part) = (label(&node.cfg.node_id), label(&e.partition));
    node.metrics.inc(format!("engine_leader_eliminations_total{{node=\"{nid}\",partition=\"{part}\"}}"));
    let what =
        vec![format!("partition {} leader {} (backend {}) silent for {:.0} ms: session ended", e.partition, e.holder, e.pid, e.silent_ms)];
    transition(node, "leader_eliminated", &what, &vec![("leader_silent_ms", e.silent_ms, limit)]);
}

/// An order a market leader here took out of its batch (`matching::quarantine`): metric
/// `engine_orders_quarantined_total{partition}` and the webhook event `order_quarantined`.
fn report_quarantine(node: &Arc<Node>, q: Quarantine) {
    node.metrics.inc(format!("engine_orders_quarantined_total{{partition=\"{}\"}}", label(&q.partition)));
    let what = vec![format!("partition {} quarantined order {:?} of user {}: {}", q.partition, q.client_order_id, q.user_id, q.message)];
    transition(node, "order_quarantined", &what, &vec![("orders_quarantined", 1.0, 0.0)]);
}

/// A leadership this node took: metric `engine_leader_takeovers_total{node,partition}` and
/// the webhook event `leader_takeover` (with the epoch and the previous leader).
fn report_takeover(node: &Arc<Node>, t: Takeover) {
    let (nid, part) = (label(&node.cfg.node_id), label(&t.partition));
    node.metrics.inc(format!("engine_leader_takeovers_total{{node=\"{nid}\",partition=\"{part}\"}}"));
    let before = t.previous.as_deref().unwrap_or("nobody");
    let what = vec![format!("partition {} taken at epoch {} (led before by {before})", t.partition, t.epoch)];
    transition(node, "leader_takeover", &what, &vec![("epoch", t.epoch as f64, 0.0)]);
}

/// A leadership this node lost to a newer epoch (its write was fenced): metric
/// `engine_leaders_fenced_total{node,partition}` and the webhook event `leader_fenced`.
fn report_fenced(node: &Arc<Node>, f: Fenced) {
    let (nid, part) = (label(&node.cfg.node_id), label(&f.partition));
    node.metrics.inc(format!("engine_leaders_fenced_total{{node=\"{nid}\",partition=\"{part}\"}}"));
    let what = vec![format!("partition {} fenced: epoch {} was superseded; leadership given up", f.partition, f.epoch)];
    transition(node, "leader_fenced", &what, &vec![("epoch", f.epoch as f64, 0.0)]);
}

/// A perpetual that halted: metric `engine_market_halted{partition}` and the webhook event `market_halted`.
fn report_halt(node: &Arc<Node>, h: MarketHalted) {
    node.metrics.set(format!("engine_market_halted{{partition=\"{}\"}}", label(&h.partition)), 1.0);
    let what =
        vec![format!("partition {} halted: owed {} more than its margin pool and insurance fund held", h.partition, h.shortfall_minor)];
    transition(node, "market_halted", &what, &vec![("shortfall_minor", h.shortfall_minor as f64, 0.0)]);
}

async fn timed<F: std::future::Future<Output = Result<T, E>>, T, E>(limit: Duration, f: F) -> f64 {
    let t = Instant::now();
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(_)) => t.elapsed().as_secs_f64() * 1000.0,
        _ => f64::INFINITY,
    }
}

async fn run(node: Arc<Node>) {
    let m = node.cfg.monitor.clone();
    let interval = Duration::from_millis(m.interval_ms.max(50));
    let http = reqwest::Client::builder().timeout(Duration::from_millis(m.peer_rtt_max_ms.max(50) * 4)).build().ok();
    let mut db: Option<crate::db::Session> = None;
    let mut last_cpu = read_cpu().unwrap_or_default();
    let mut breach = 0u32;
    let mut clean = 0u32;
    // A node configured standby that starts on a writable DB is in a region that was failed
    // over to while it was down: it activates. An admin's switch to standby on a writable DB
    // (a planned switchover) still sticks, because then this starts false.
    let mut seen_readonly = node.cfg.mode == engine_config::RegionMode::Standby;
    let mut suppressed = false;
    let mut peers = PeerWatch::default();
    let mut unreached = false;
    let mut db_primary = primary::Watch::default();
    let nid = label(&node.cfg.node_id);
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        if node.state.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let mut sample: Sample = Vec::new();
        if let Some(c) = read_cpu() {
            let dt = (c.total - last_cpu.total).max(1) as f64;
            sample.push(("cpu_percent", 100.0 * (c.busy - last_cpu.busy) as f64 / dt, m.cpu_max_percent));
            last_cpu = c;
        }
        if let Some(p) = mem_used_percent() {
            sample.push(("mem_percent", p, m.mem_max_percent));
        }
        if let Some(http) = &http {
            let rtts = peer_rtts(&node, http, &nid).await;
            peers.observe(&node, &rtts);
            if !rtts.is_empty() {
                // More than half of the peers out of reach: this node is the one cut off.
                let unreachable = rtts.iter().filter(|(_, ms)| *ms > m.peer_rtt_max_ms as f64).count();
                sample.push(("peers_unreachable", unreachable as f64, rtts.len() as f64 / 2.0));
            }
        }
        sample_db(&node, &mut db, &mut sample).await;
        db_primary.observe(&node, db.as_ref()).await;
        for (name, v, _) in &sample {
            node.metrics.set(format!("engine_monitor_{name}{{node=\"{nid}\"}}"), if v.is_finite() { *v } else { 1e9 });
        }
        let breaches: Vec<String> = sample.iter().filter(|(_, v, lim)| v > lim).map(|(n, v, lim)| format!("{n}={v:.1}>{lim}")).collect();
        if breaches.is_empty() {
            breach = 0;
            clean += 1;
            suppressed = false;
        } else {
            clean = 0;
            breach += 1;
            tracing::debug!(?breaches, breach, "threshold crossed");
        }
        let n = m.breach_seconds.max(1);
        node.state.breaching.store(clean < n, Ordering::SeqCst);
        watch_gateways(&node, &mut unreached);
        let isolated = node.state.isolated.load(Ordering::SeqCst);
        if !isolated && breach >= n {
            // Only a fault a healthy peer does not share is this node's own: with no healthy
            // peer (a cause they all see, such as a slow DB, or the module's last node) stay,
            // and say so once. Isolating would turn a degradation into an outage.
            if healthy_peers(&node, http.as_ref()).await > 0 {
                node.state.isolated.store(true, Ordering::SeqCst);
                suppressed = false;
                transition(&node, "node_isolated", &breaches, &sample);
            } else if !suppressed {
                suppressed = true;
                node.metrics.inc(format!("engine_monitor_isolation_suppressed_total{{node=\"{nid}\"}}"));
                transition(&node, "node_unhealthy_no_healthy_peer", &breaches, &sample);
            }
        } else if isolated && clean >= n {
            node.state.isolated.store(false, Ordering::SeqCst);
            transition(&node, "node_recovered", &breaches, &sample);
        }
        if !node.state.is_active() {
            check_promotion(&node, &mut seen_readonly).await;
        } else {
            seen_readonly = false;
        }
    }
}

/// Reports when gateways stop reaching this node (`NodeState::unreached`: it gives up its
/// leaderships) and when they reach it again: webhook `gateways_unreachable` /
/// `gateways_reachable`, and the transition metric.
fn watch_gateways(node: &Arc<Node>, was: &mut bool) {
    let now = node.state.unreached();
    if now != *was {
        *was = now;
        let event = if now { "gateways_unreachable" } else { "gateways_reachable" };
        let limit = node.state.leader_silence.as_millis() as f64;
        let what = vec![format!("no gateway probe for more than {limit:.0} ms; leaderships given up")];
        transition(node, event, if now { &what } else { &[] }, &vec![("gateway_silence_limit_ms", limit, limit)]);
    }
}

/// The round trip to each peer's `/internal/ping` (ms; infinite if it did not answer), all
/// peers probed at once so that dead ones cost one timeout, not one each.
async fn peer_rtts(node: &Node, http: &reqwest::Client, nid: &str) -> Vec<(String, f64)> {
    let m = &node.cfg.monitor;
    let limit = Duration::from_millis(m.peer_rtt_max_ms.max(50) * 4);
    let probes = node.cfg.peers.iter().filter(|p| p.node_id != node.cfg.node_id).map(|p| async move {
        let url = format!("http://{}{}", p.addr, paths::NODE_PING);
        (p.node_id.clone(), timed(limit, http.get(&url).send()).await)
    });
    let rtts = futures::future::join_all(probes).await;
    for (peer, ms) in &rtts {
        node.metrics.set(format!("engine_peer_rtt_ms{{node=\"{nid}\",peer=\"{}\"}}", label(peer)), ms.min(1e9));
    }
    rtts
}

/// What this node sees of each peer: a peer out of reach for `breach_seconds` samples in a
/// row is reported down, as many good samples in a row report it back. Reports only.
#[derive(Default)]
struct PeerWatch {
    /// Per peer: consecutive samples out of reach (+) or in reach (-), and whether it is down.
    seen: std::collections::BTreeMap<String, (i64, bool)>,
}

impl PeerWatch {
    fn observe(&mut self, node: &Arc<Node>, rtts: &[(String, f64)]) {
        let m = &node.cfg.monitor;
        let n = i64::from(m.breach_seconds.max(1));
        let nid = label(&node.cfg.node_id);
        for (peer, ms) in rtts {
            let bad = *ms > m.peer_rtt_max_ms as f64;
            let (streak, down) = self.seen.entry(peer.clone()).or_insert((0, false));
            *streak = match (bad, *streak > 0) {
                (true, true) => *streak + 1,
                (true, false) => 1,
                (false, false) => *streak - 1,
                (false, true) => -1,
            };
            let flip = (bad && !*down && *streak >= n) || (!bad && *down && -*streak >= n);
            if flip {
                *down = bad;
                let event = if bad { "peer_unreachable" } else { "peer_reachable" };
                let what = vec![format!("peer {peer} rtt_ms={}", if ms.is_finite() { format!("{ms:.1}") } else { "none".into() })];
                transition(node, event, &what, &vec![("peer_rtt_ms", *ms, m.peer_rtt_max_ms as f64)]);
            }
            node.metrics.set(format!("engine_peer_up{{node=\"{nid}\",peer=\"{}\"}}", label(peer)), if *down { 0.0 } else { 1.0 });
        }
    }
}

/// DB probes on a monitoring session of its own (`db`, reconnected when needed): read and
/// write latency, and on a wallet node leading a shard the age of its heartbeat.
async fn sample_db(node: &Node, db: &mut Option<crate::db::Session>, sample: &mut Sample) {
    let m = &node.cfg.monitor;
    let db_limit = Duration::from_millis(m.db_latency_max_ms.max(10) * 4);
    if db.as_ref().is_none_or(|c| c.is_closed()) {
        let cfg = if node.state.is_active() { &node.state.pg } else { &node.state.pg_any };
        *db = match tokio::time::timeout(db_limit, crate::db::connect(cfg)).await {
            Ok(Ok(c)) => Some(c),
            _ => None,
        };
    }
    let (read_ms, write_ms) = match &*db {
        None => (f64::INFINITY, f64::INFINITY),
        Some(c) => {
            let r = timed(db_limit, c.simple_query("SELECT 1")).await;
            let w = if node.state.is_active() {
                timed(
                    db_limit,
                    c.execute(
                        "INSERT INTO node_heartbeats (node_id, at) VALUES ($1, now()) ON CONFLICT (node_id) DO UPDATE SET at = now()",
                        &[&node.cfg.node_id],
                    ),
                )
                .await
            } else {
                0.0
            };
            (r, w)
        }
    };
    if read_ms.is_infinite() || write_ms.is_infinite() {
        *db = None; // reconnect next time; a stuck probe must not pile up
    }
    sample.push(("db_read_ms", read_ms, m.db_latency_max_ms as f64));
    sample.push(("db_write_ms", write_ms, m.db_latency_max_ms as f64));
    if node.cfg.module == Module::Wallet && node.state.is_active() {
        if let Some(c) = &*db {
            let age: Option<f64> = match c
                .query_opt(
                    "SELECT (extract(epoch from now() - max(at)) * 1000)::float8 FROM wallet_heartbeats WHERE node_id = $1",
                    &[&node.cfg.node_id],
                )
                .await
            {
                Ok(Some(r)) => r.get(0),
                _ => None,
            };
            // Only meaningful while this node leads a shard.
            if !node.wallet.iter().all(|h| !h.state.leading.load(Ordering::SeqCst)) {
                sample.push(("wallet_heartbeat_age_ms", age.unwrap_or(f64::INFINITY), m.heartbeat_max_age_ms as f64));
            }
        }
    }
}

/// Peers of this node's module that answer, are active, not isolated and not breaching
/// (clean for `breach_seconds` samples in a row), all asked at once.
async fn healthy_peers(node: &Node, http: Option<&reqwest::Client>) -> usize {
    let Some(http) = http else { return 0 };
    let asks = node.cfg.peers.iter().filter(|p| p.module == node.cfg.module && p.node_id != node.cfg.node_id).map(|p| async move {
        let url = format!("http://{}{}", p.addr, paths::NODE_STATUS);
        let s: NodeStatus = http.get(&url).send().await.ok()?.json().await.ok()?;
        Some(!s.isolated && !s.breaching && s.mode == MODE_ACTIVE)
    });
    futures::future::join_all(asks).await.into_iter().filter(|h| *h == Some(true)).count()
}

fn transition(node: &Arc<Node>, event: &str, breaches: &[String], sample: &Sample) {
    let nid = label(&node.cfg.node_id);
    node.metrics.inc(format!("engine_monitor_transitions_total{{node=\"{nid}\",event=\"{event}\"}}"));
    tracing::warn!(event, node = %node.cfg.node_id, ?breaches, "health transition");
    let measurements: serde_json::Map<String, serde_json::Value> =
        sample.iter().map(|(n, v, _)| (n.to_string(), json!(if v.is_finite() { *v } else { -1.0 }))).collect();
    let body = json!({
        "event": event,
        "node_id": node.cfg.node_id,
        "module": node.cfg.module.as_str(),
        "region": node.cfg.region,
        "breaches": breaches,
        "measurements": measurements,
        "at_ms": now_ms(),
    });
    post_webhooks(node, body);
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// POSTs `body` to every `monitor.webhook_urls` entry from a task of its own (never waits
/// on the caller's path), each with `webhook_retries` attempts, exponential backoff and
/// `webhook_timeout_ms` per attempt; counted in `engine_webhook_{sent,failed}_total`.
pub(crate) fn post_webhooks(node: &Arc<Node>, body: serde_json::Value) {
    let m = node.cfg.monitor.clone();
    for url in m.webhook_urls.clone() {
        let body = body.clone();
        let node = node.clone();
        tokio::spawn(async move {
            let Ok(http) = reqwest::Client::builder().timeout(Duration::from_millis(m.webhook_timeout_ms)).build() else { return };
            let mut delay = Duration::from_millis(200);
            for attempt in 1..=m.webhook_retries.max(1) {
                match http.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        node.metrics.inc(format!("engine_webhook_sent_total{{node=\"{}\"}}", label(&node.cfg.node_id)));
                        return;
                    }
                    r => tracing::warn!(url, attempt, ok = r.is_ok(), "webhook delivery failed"),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            node.metrics.inc(format!("engine_webhook_failed_total{{node=\"{}\"}}", label(&node.cfg.node_id)));
        });
    }
}

/// Standby mode: become active by itself once the DB turns writable (it was seen
/// read-only or unreachable before, so an admin's switch to standby on a writable DB sticks).
async fn check_promotion(node: &Arc<Node>, seen_readonly: &mut bool) {
    let cfg = node.state.pg.clone();
    let ok = matches!(
        tokio::time::timeout(Duration::from_secs(2), crate::db::connect(&cfg)).await,
        Ok(Ok(c)) if matches!(crate::db::bounded(&cfg, c.query_one("SELECT pg_is_in_recovery()", &[])).await, Ok(r) if !r.get::<_, bool>(0))
    );
    if !ok {
        *seen_readonly = true;
        return;
    }
    if *seen_readonly {
        // Schema first (a standby started without running migrations).
        if let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(2), crate::db::connect(&cfg)).await {
            if let Err(e) = tokio::time::timeout(node.state.pg.limits.commit, crate::db::migrate(&mut c))
                .await
                .unwrap_or(Err(crate::db::DbError::Timeout(0)))
            {
                tracing::warn!(error = %e, "migrations failed; staying in standby");
                return;
            }
        }
    }
    if *seen_readonly && node.state.mode.swap(0, Ordering::SeqCst) != 0 {
        *seen_readonly = false;
        tracing::warn!(node = %node.cfg.node_id, "DB is writable: switching from standby to active");
        transition(node, "standby_activated", &["the DB turned writable: switched from standby to active".into()], &Vec::new());
        node.metrics.inc(format!("engine_mode_transitions_total{{node=\"{}\"}}", label(&node.cfg.node_id)));
    }
}
