//! `provision watch`: probes both regions every `interval_ms` from this machine (each
//! gateway's `/health` and one Patroni `/cluster` per region, directly over HTTP, in parallel)
//! and the primary region from a second vantage point, prints transitions and posts them to
//! the admin webhooks. With `auto_failover` it runs the unplanned failover ladder (which fences
//! the old region first) once [`decide`] says so, then stops.
//!
//! Second vantage point: on AWS, Route53's own checkers (the primary region's calculated
//! check, evaluated from its children); on a local cloud, whose checks always say healthy, one
//! DR lab host that curls the primary's gateways over SSH.
//!
//! Bounded: the loop stops after `duration_s`, after a failover, or on Ctrl-C (then with its
//! summary); without `duration_s` it runs until Ctrl-C. Every probe has a timeout below the
//! interval; webhook posts run in spawned tasks and never hold up a tick.

pub mod decide;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use self::decide::{Aspect, Decision, Policy, Probe, Tick, Tracker};
use crate::config::{Config, RegionRole};
use crate::deploy::inventory::Host;
use crate::failover::{self, FailoverError, FailoverReport};
use crate::model::{pick, CheckAttrs, Found};
use crate::ssh::{Fleet, SshConfig};
use crate::template::Template;

pub const INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Two consecutive misses, each confirmed from two vantage points, with the DR region
/// answering: about 1.6 s from the first failed probe (docs/benchmarks.md).
pub const FAILURES_MIN_DEFAULT: u32 = 2;
/// Bound on each direct HTTP probe.
const PROBE_TIMEOUT_MS: u64 = 500;
/// A primary region that answers but cannot serve is left this long to recover inside the
/// region before `--auto-failover` counts it as lost: a Patroni failover takes ttl (20 s) plus
/// the promotion and the engines' re-leading (21.7-24.9 s measured), a commit stall until
/// Patroni replaces a standby about as long. Twice the worst case seen.
pub const IN_REGION_RECOVERY_MS_MAX: u64 = 60_000;
/// Bound on the second vantage point's SSH connect (each step) and its command.
const VANTAGE_CONNECT_TIMEOUT_MS: u64 = 800;
const VANTAGE_COMMAND_TIMEOUT_MS: u64 = 1_500;
/// The curl on the DR host: below the interval, so the tick stays within it.
const VANTAGE_CURL_MAX_S: &str = "0.5";
/// Transitions kept in the report (the oldest are dropped; `transitions_total` counts all).
const TRANSITIONS_KEPT_MAX: usize = 1_000;
/// Webhook posts in flight at once; beyond that a post is dropped and counted.
const WEBHOOKS_IN_FLIGHT_MAX: usize = 64;
/// How long the end of the watch waits for webhook posts still in flight.
const WEBHOOK_DRAIN_MS_MAX: u64 = 5_000;

#[derive(Debug, Clone)]
pub struct WatchOpts {
    pub interval_ms: u64,
    /// Consecutive failed probes (from each vantage point) before the primary counts as dead.
    pub failures_min: u32,
    pub auto_failover: bool,
    /// Stop after this long (None: until Ctrl-C or a failover).
    pub duration_s: Option<u64>,
    /// No text lines on stderr (JSON Lines on stdout are still printed).
    pub quiet: bool,
}

impl Default for WatchOpts {
    fn default() -> Self {
        WatchOpts {
            interval_ms: INTERVAL_MS_DEFAULT,
            failures_min: FAILURES_MIN_DEFAULT,
            auto_failover: false,
            duration_s: None,
            quiet: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("refused: {reason}\n  fix: {fix}")]
    Refused { reason: String, fix: String },
    #[error(transparent)]
    Failover(#[from] FailoverError),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// One transition, when it was seen.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at_unix_ms: u64,
    pub tick: u64,
    #[serde(flatten)]
    pub decision: Decision,
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchReport {
    pub primary: String,
    pub dr: String,
    pub interval_ms: u64,
    pub failures_min: u32,
    pub auto_failover: bool,
    /// How the primary is confirmed from elsewhere.
    pub second_vantage: String,
    pub started_unix_ms: u64,
    pub duration_ms: u64,
    pub ticks: u64,
    /// "duration", "ctrl-c" or "failover".
    pub stopped_by: String,
    /// The latest transitions (at most 1000) and how many there were in all.
    pub transitions: Vec<Event>,
    pub transitions_total: u64,
    /// Each region's state at the end.
    pub last_state: BTreeMap<String, String>,
    /// Unix ms of the first failed probe of each region's latest failure streak.
    pub first_failure_unix_ms: BTreeMap<String, u64>,
    /// Unix ms when the primary was last confirmed down (failures_min from both vantage points).
    pub confirmed_down_unix_ms: Option<u64>,
    /// From the first failed probe of that streak to the confirmation (with auto-failover:
    /// the failover decision).
    pub detected_after_ms: Option<u64>,
    pub failed_over: Option<FailoverReport>,
    /// The failover ladder's error, when it was started and failed.
    pub failover_error: Option<String>,
    pub webhooks_dropped: u64,
    pub notes: Vec<String>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `HH:MM:SS.mmm` UTC.
fn clock(unix_ms: u64) -> String {
    let s = (unix_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}Z", s / 3600, (s / 60) % 60, s % 60, unix_ms % 1000)
}

/// What one region is probed at.
struct RegionTargets {
    region: String,
    /// (name, `/health` URL) per gateway.
    gateways: Vec<(String, String)>,
    /// Patroni `/cluster` URL per DB host (the first to answer is used).
    patroni: Vec<String>,
}

enum Vantage {
    /// A DR lab host curls the primary's gateways; the next host is tried after a failure.
    LabHost {
        fleet: Fleet,
        hosts: Vec<Host>,
        next: usize,
        primary_ips: Vec<String>,
        port: u16,
    },
    Route53 {
        check: Found<CheckAttrs>,
    },
    Nowhere,
}

impl Vantage {
    fn describe(&self) -> String {
        match self {
            Vantage::LabHost { hosts, .. } => {
                format!(
                    "SSH to a DR lab host ({}) curling the primary's gateways' /health",
                    hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
                )
            }
            Vantage::Route53 { check, .. } => format!("Route53 checkers of the primary region's health check {}", check.id),
            Vantage::Nowhere => "none".into(),
        }
    }
}

/// `provision watch`. `json`: print each decision as one JSON object per line on stdout.
pub async fn run(cfg: &Config, tpl: &Template, opts: &WatchOpts, json: bool) -> Result<WatchReport, WatchError> {
    if opts.interval_ms < PROBE_TIMEOUT_MS + 100 || opts.failures_min == 0 {
        return Err(WatchError::Refused {
            reason: format!("interval {} ms / failures {} cannot work", opts.interval_ms, opts.failures_min),
            fix: format!("use an interval of at least {} ms and at least 1 failure", PROBE_TIMEOUT_MS + 100),
        });
    }
    let w = failover::ladder::look(cfg, tpl).await?;
    let (primary, dr) = (w.cfg.active().name.clone(), w.cfg.passive().name.clone());
    let local = cfg.endpoint_url.is_some();
    let mut notes = Vec::new();
    let mut policy =
        Policy { failures_min: opts.failures_min, auto_failover: opts.auto_failover, in_region_recovery_ms_max: IN_REGION_RECOVERY_MS_MAX };
    if let Some(f) = &w.observed.marks.fence {
        policy.auto_failover = false;
        notes.push(format!("{} is fenced (since unix ms {}): auto-failover is off until `provision failback`", f.region, f.at_unix_ms));
    }

    let mut hosts = w.hosts.clone();
    if !hosts.iter().any(|h| h.region == primary && h.gateway) {
        // No running gateway known (the region's EC2 API did not answer): probe what clients reach.
        let ips: Vec<String> =
            w.observed.records.iter().find(|r| r.failover.as_deref() == Some("PRIMARY")).map(|r| r.ips.clone()).unwrap_or_default();
        let extra: Vec<Host> = ips
            .into_iter()
            .enumerate()
            .map(|(i, ip)| record_host(&primary, i, ip))
            .filter(|h| !local || crate::deploy::local_route_guard(h).is_ok())
            .collect();
        notes.push(format!(
            "no running gateway of {primary} is known to EC2; probing the PRIMARY record's {} address(es) instead",
            extra.len()
        ));
        hosts.extend(extra);
    }
    if local {
        // Patroni is probed at the private address: it too must stay on this machine.
        hosts.retain(|h| !h.database || h.private_ip == h.ssh_ip || crate::deploy::lab_route(&h.private_ip).is_ok());
    }
    let targets: Vec<RegionTargets> = [&primary, &dr].iter().map(|r| region_targets(&hosts, tpl, r)).collect();
    let mut vantage = vantage(cfg, tpl, &w, &hosts, &primary, &dr, local);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(PROBE_TIMEOUT_MS))
        .connect_timeout(Duration::from_millis(PROBE_TIMEOUT_MS))
        .build()?;

    let mut report = WatchReport {
        primary: primary.clone(),
        dr: dr.clone(),
        interval_ms: opts.interval_ms,
        failures_min: opts.failures_min,
        auto_failover: policy.auto_failover,
        second_vantage: vantage.describe(),
        started_unix_ms: now_ms(),
        duration_ms: 0,
        ticks: 0,
        stopped_by: "duration".into(),
        transitions: vec![],
        transitions_total: 0,
        last_state: BTreeMap::new(),
        first_failure_unix_ms: BTreeMap::new(),
        confirmed_down_unix_ms: None,
        detected_after_ms: None,
        failed_over: None,
        failover_error: None,
        webhooks_dropped: 0,
        notes,
    };
    if matches!(vantage, Vantage::Nowhere) {
        report.notes.push(format!("no second vantage point (no health check or no reachable {dr} host): the primary can never be confirmed down, so no automatic failover"));
    }
    let out = Out { json, quiet: opts.quiet };
    for n in &report.notes {
        out.note(n);
    }
    out.note(&format!(
        "watching {primary} (primary) and {dr} (DR) every {} ms; second vantage point: {}",
        opts.interval_ms, report.second_vantage
    ));

    let urls = w.cfg.engine.webhook_urls.clone();
    let mut posts: JoinSet<()> = JoinSet::new();
    let mut tracker = Tracker::default();
    // Whether the current failure streak of the primary has been confirmed down already.
    let mut confirmed = false;
    let t0 = Instant::now();
    let deadline = opts.duration_s.map(|s| t0 + Duration::from_secs(s));
    let mut interval = tokio::time::interval(Duration::from_millis(opts.interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    'watch: loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = &mut ctrl_c => { report.stopped_by = "ctrl-c".into(); break 'watch; }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let at = now_ms();
        let ask_second = local || tracker.failures_here(&primary) > 0;
        let (probes, second) = tokio::join!(
            futures::future::join_all(targets.iter().map(|t| probe_region(&client, t))),
            second_vantage(&mut vantage, &w.cloud, ask_second, opts.interval_ms)
        );
        report.ticks += 1;
        let tick = Tick { at_unix_ms: at, primary: primary.clone(), dr: dr.clone(), probes, second_vantage_ok: second };
        let decisions = decide::decide(&mut tracker, &tick, &policy);
        let here = tracker.failures_here(&primary);
        if !confirmed && here >= policy.failures_min && tracker.failures_second() >= policy.failures_min {
            let now = now_ms();
            confirmed = true;
            report.confirmed_down_unix_ms = Some(now);
            report.detected_after_ms = tracker.first_failure_unix_ms().get(&primary).map(|f| now.saturating_sub(*f));
        }
        confirmed &= here > 0;
        let mut fail_over = None;
        for d in decisions {
            out.decision(at, &d);
            // The first state of each region is not news; changes and decisions are.
            let first_look = matches!(&d, Decision::Transition { from, .. } if from == "unknown");
            if !matches!(d, Decision::Hold { .. }) && !first_look {
                post(&mut posts, &urls, webhook_event(&w.cfg.project, at, &d), &mut report.webhooks_dropped);
            }
            match &d {
                Decision::Transition { .. } => {
                    report.transitions_total += 1;
                    if report.transitions.len() == TRANSITIONS_KEPT_MAX {
                        report.transitions.remove(0);
                    }
                    report.transitions.push(Event { at_unix_ms: at, tick: report.ticks, decision: d.clone() });
                }
                Decision::FailOver { to, .. } => fail_over = Some(to.clone()),
                Decision::Hold { .. } => {}
            }
        }
        if let Some(to) = fail_over {
            report.stopped_by = "failover".into();
            let fo = failover::Opts { to, planned: false, force: false, quiet: opts.quiet };
            tokio::select! {
                r = failover::failover(cfg, tpl, &fo) => match r {
                    Ok(r) => {
                        out.failover(&r);
                        report.failed_over = Some(r);
                    }
                    Err(e) => {
                        out.note(&format!("failover failed: {e}"));
                        report.failover_error = Some(e.to_string());
                    }
                },
                _ = &mut ctrl_c => {
                    report.stopped_by = "ctrl-c".into();
                    report.failover_error = Some(format!("interrupted during the failover; every step is safe to repeat: run `provision failover --to {dr}` to finish it"));
                }
            }
            break;
        }
        while posts.try_join_next().is_some() {}
    }

    report.duration_ms = t0.elapsed().as_millis() as u64;
    report.first_failure_unix_ms = tracker.first_failure_unix_ms().clone();
    report.last_state = [&primary, &dr].iter().map(|r| (r.to_string(), tracker.state(r).to_string())).collect();
    let drain = async { while posts.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_millis(WEBHOOK_DRAIN_MS_MAX), drain).await.is_err() {
        report.notes.push(format!("webhook posts still in flight after {WEBHOOK_DRAIN_MS_MAX} ms were abandoned"));
    }
    Ok(report)
}

/// A stand-in host for an address of the PRIMARY record (its gateway, as clients reach it).
fn record_host(region: &str, i: usize, ip: String) -> Host {
    Host {
        key: format!("{region}/record/{i}"),
        name: format!("record-ip-{i}"),
        instance_id: String::new(),
        region: region.to_string(),
        region_role: RegionRole::Primary,
        private_ip: ip.clone(),
        ssh_ip: ip,
        ssh_user: String::new(),
        bastion: None,
        modules: vec![],
        gateway: true,
        database: false,
    }
}

fn region_targets(hosts: &[Host], tpl: &Template, region: &str) -> RegionTargets {
    let in_region = || hosts.iter().filter(move |h| h.region == region);
    RegionTargets {
        region: region.to_string(),
        gateways: in_region()
            .filter(|h| h.gateway)
            .map(|h| (h.name.clone(), format!("http://{}:{}/health", h.ssh_ip, tpl.ports.gateway_http)))
            .collect(),
        patroni: in_region()
            .filter(|h| h.database)
            .map(|h| format!("http://{}:{}/cluster", h.private_ip, tpl.ports.patroni_rest))
            .collect(),
    }
}

fn vantage(cfg: &Config, tpl: &Template, w: &failover::ladder::World, hosts: &[Host], primary: &str, dr: &str, local: bool) -> Vantage {
    if !local {
        return match pick(&w.observed.checks, &format!("{primary}/check/region")) {
            Some(c) => Vantage::Route53 { check: c.clone() },
            None => Vantage::Nowhere,
        };
    }
    // The hosts passed the local route check in `look` (nothing leaves the machine).
    let mut candidates: Vec<Host> = hosts.iter().filter(|h| h.region == dr && (h.gateway || !h.modules.is_empty())).cloned().collect();
    candidates.extend(hosts.iter().filter(|h| h.region == dr && h.database && !h.gateway && h.modules.is_empty()).cloned());
    let primary_ips: Vec<String> = hosts.iter().filter(|h| h.region == primary && h.gateway).map(|h| h.private_ip.clone()).collect();
    if candidates.is_empty() || primary_ips.is_empty() {
        return Vantage::Nowhere;
    }
    let user = w.cfg.region(dr).map(|r| r.ssh_user.clone()).unwrap_or_else(|| "root".into());
    let ssh = SshConfig {
        attempts_max: 1,
        connect_timeout_ms: VANTAGE_CONNECT_TIMEOUT_MS,
        command_timeout_ms: VANTAGE_COMMAND_TIMEOUT_MS,
        output_bytes_max: 4096,
        ..SshConfig::new(user, crate::keys::private_key_path(cfg), crate::keys::key_dir(cfg).join("known_hosts"))
    };
    Vantage::LabHost { fleet: Fleet::new(ssh, 1), hosts: candidates, next: 0, primary_ips, port: tpl.ports.gateway_http }
}

/// The primary seen from the second vantage point: Some(healthy), or None (no answer / not asked).
async fn second_vantage(v: &mut Vantage, cloud: &crate::cloud::Cloud, ask: bool, interval_ms: u64) -> Option<bool> {
    if !ask {
        return None;
    }
    let budget_ms = interval_ms.saturating_sub(100).max(PROBE_TIMEOUT_MS);
    match v {
        Vantage::Nowhere => None,
        Vantage::Route53 { check } => cloud.check_healthy(check, budget_ms).await.ok().flatten(),
        Vantage::LabHost { fleet, hosts, next, primary_ips, port } => {
            let host = hosts[*next % hosts.len()].clone();
            let cmd = vantage_command(primary_ips, *port);
            let target = [host.ssh_target()];
            let run = fleet.run(&target, move |s| s.exec(&cmd, false).map(|o| o.stdout));
            let answer = match tokio::time::timeout(Duration::from_millis(budget_ms), run).await {
                Ok(mut r) => r.pop().and_then(|r| r.result.ok()).and_then(|out| vantage_verdict(&out)),
                Err(_) => None,
            };
            if answer.is_none() {
                *next = (*next + 1) % hosts.len();
            }
            answer
        }
    }
}

/// One line `<http code> <ip>` per primary gateway, all curled in parallel.
fn vantage_command(ips: &[String], port: u16) -> String {
    format!(
        "for ip in {}; do (c=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time {VANTAGE_CURL_MAX_S} http://$ip:{port}/health); echo \"$c $ip\") & done; wait",
        ips.join(" ")
    )
}

/// Healthy when any gateway answered 200; None when the output is not the command's.
fn vantage_verdict(out: &str) -> Option<bool> {
    let codes: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().next()).collect();
    if codes.is_empty() {
        return None;
    }
    Some(codes.contains(&"200"))
}

async fn probe_region(client: &reqwest::Client, t: &RegionTargets) -> Probe {
    let gateways = futures::future::join_all(
        t.gateways.iter().map(|(_, url)| async move { client.get(url).send().await.map(|r| r.status().as_u16()).ok() }),
    );
    let patroni = futures::future::join_all(t.patroni.iter().map(|url| async move {
        let r = client.get(url).send().await.ok()?;
        r.json::<Value>().await.ok()
    }));
    let (codes, clusters) = tokio::join!(gateways, patroni);
    let cluster = clusters.into_iter().flatten().next();
    let (db_writable, db_leader, db_lag_bytes_max) = match &cluster {
        Some(c) => db_summary(c),
        None => (None, "no answer".to_string(), None),
    };
    Probe {
        region: t.region.clone(),
        gateways_ok: codes.iter().filter(|c| **c == Some(200)).count(),
        gateways_answered: codes.iter().filter(|c| c.is_some()).count(),
        gateways_total: t.gateways.len(),
        db_answered: cluster.is_some(),
        db_writable,
        db_leader,
        db_lag_bytes_max,
    }
}

/// (writable, leader text, largest lag in bytes) from Patroni's `/cluster` document.
fn db_summary(c: &Value) -> (Option<bool>, String, Option<u64>) {
    let members = c.get("members").and_then(Value::as_array).cloned().unwrap_or_default();
    let running = |m: &Value| matches!(m["state"].as_str(), Some("running" | "streaming"));
    let lag = members.iter().filter_map(|m| m["lag"].as_u64()).max();
    // Two leaders is said at once (a transition, posted to the webhooks); a member briefly on
    // an older timeline after a failover is normal, so that is left to `status`.
    if let Some(split) = crate::deploy::live::cluster_alerts(c).into_iter().find(|a| a.kind == crate::deploy::live::AlertKind::SplitBrain) {
        return (None, split.text, lag);
    }
    if let Some(m) = members.iter().find(|m| m["role"] == "leader" && running(m)) {
        return (Some(true), format!("leader {}", m["name"].as_str().unwrap_or("?")), lag);
    }
    if let Some(m) = members.iter().find(|m| m["role"] == "standby_leader" && running(m)) {
        return (Some(false), format!("standby_leader {}", m["name"].as_str().unwrap_or("?")), lag);
    }
    (None, format!("no running leader ({} member(s))", members.len()), lag)
}

fn webhook_event(project: &str, at: u64, d: &Decision) -> Value {
    let mut v = json!({ "project": project, "at_unix_ms": at, "source": "provision watch" });
    if let (Some(o), Value::Object(extra)) = (v.as_object_mut(), serde_json::to_value(d).unwrap_or(Value::Null)) {
        o.extend(extra);
    }
    v
}

fn post(posts: &mut JoinSet<()>, urls: &[String], event: Value, dropped: &mut u64) {
    if urls.is_empty() {
        return;
    }
    if posts.len() >= WEBHOOKS_IN_FLIGHT_MAX {
        *dropped += 1;
        return;
    }
    let urls = urls.to_vec();
    posts.spawn(async move {
        for d in failover::webhook::post_all(&urls, &event).await.into_iter().filter(|d| !d.ok) {
            tracing::warn!("watch: webhook {}: {} after {} tries", d.url, d.detail, d.tries);
        }
    });
}

/// Where the watch's lines go: JSON Lines on stdout, or text on stderr.
struct Out {
    json: bool,
    quiet: bool,
}

impl Out {
    fn note(&self, text: &str) {
        if self.json {
            println!("{}", json!({ "event": "note", "at_unix_ms": now_ms(), "note": text }));
        } else if !self.quiet {
            eprintln!("watch: {} {text}", clock(now_ms()));
        }
    }

    fn decision(&self, at: u64, d: &Decision) {
        if self.json {
            let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
            v["at_unix_ms"] = json!(at);
            println!("{v}");
            return;
        }
        if self.quiet {
            return;
        }
        match d {
            Decision::Transition { region, aspect, from, to, reason } => {
                let what = if *aspect == Aspect::Db { format!("{region} db") } else { region.clone() };
                eprintln!("watch: {} {what}: {from} -> {to} ({reason})", clock(at));
            }
            Decision::FailOver { from, to, reason } => eprintln!("watch: {} FAILOVER {from} -> {to} ({reason})", clock(at)),
            Decision::Hold { reason } => eprintln!("watch: {} hold: {reason}", clock(at)),
        }
    }

    fn failover(&self, r: &FailoverReport) {
        if self.json {
            println!("{}", json!({ "event": "failover_report", "at_unix_ms": now_ms(), "report": r }));
        } else if !self.quiet {
            eprint!("{}", crate::render::failover(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patroni_cluster_gives_role_leader_and_lag() {
        let c: Value = serde_json::from_str(r#"{"members":[{"name":"db-0","role":"leader","state":"running"},{"name":"db-1","role":"sync_standby","state":"streaming","lag":16}]}"#).unwrap();
        assert_eq!(db_summary(&c), (Some(true), "leader db-0".into(), Some(16)));
        let s: Value = serde_json::from_str(r#"{"members":[{"name":"db-3","role":"standby_leader","state":"streaming"},{"name":"db-4","role":"replica","state":"stopped","lag":"unknown"}]}"#).unwrap();
        assert_eq!(db_summary(&s), (Some(false), "standby_leader db-3".into(), None));
        let none: Value = serde_json::from_str(r#"{"members":[{"name":"db-0","role":"leader","state":"stopped"}]}"#).unwrap();
        assert_eq!(db_summary(&none).0, None);
        let two: Value = serde_json::from_str(
            r#"{"members":[{"name":"db-0","role":"leader","state":"running"},{"name":"db-1","role":"leader","state":"running"}]}"#,
        )
        .unwrap();
        assert_eq!(db_summary(&two).1, "SPLIT BRAIN: 2 leaders (db-0, db-1)");
    }

    #[test]
    fn the_lab_vantage_is_healthy_when_any_gateway_answers_200() {
        assert_eq!(vantage_verdict("000 10.1.0.5\n200 10.1.0.6\n"), Some(true));
        assert_eq!(vantage_verdict("000 10.1.0.5\n503 10.1.0.6\n"), Some(false));
        assert_eq!(vantage_verdict(""), None);
        let cmd = vantage_command(&["10.1.0.5".into(), "10.1.0.6".into()], 8080);
        assert!(cmd.contains("for ip in 10.1.0.5 10.1.0.6;") && cmd.contains("'%{http_code}'") && cmd.contains("--max-time 0.5"), "{cmd}");
    }

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(86_400_000 + 3_723_045), "01:02:03.045Z");
    }
}
