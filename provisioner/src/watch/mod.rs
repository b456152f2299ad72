//! `provision watch`: probes both regions every `interval_ms` from this machine (each
//! gateway's `/health` and one Patroni `/cluster` per region, directly over HTTP, in parallel)
//! and the primary region from a second vantage point, prints transitions and posts them to
//! the admin webhooks. With `auto_failover` it runs the unplanned failover ladder (which fences
//! the old region first) once [`decide`] says so, then stops.
//!
//! Second vantage point: Route53's own checkers (the primary region's calculated check,
//! evaluated from its children), read the same way on AWS and in the lab.
//!
//! Bounded: the loop stops after `duration_s`, after a failover, or on Ctrl-C (then with its
//! summary); without `duration_s` it runs until Ctrl-C. Every probe has a timeout below the
//! interval; webhook posts run in spawned tasks and never hold up a tick.

pub mod decide;
mod notify;
mod probe;
mod vantage;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::task::JoinSet;

use self::decide::{Decision, Policy, Tick, Tracker};
use self::probe::{probe_region, region_targets, RegionTargets};
use self::vantage::{second_vantage, vantage, Vantage};
use crate::config::Config;
use crate::failover::{self, FailoverError, FailoverReport};
use crate::situation::Situation;
use crate::template::Template;

pub const INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Two consecutive misses, each confirmed from two vantage points, with the DR region
/// answering: about 1.6 s from the first failed probe (docs/benchmarks.md).
pub const FAILURES_MIN_DEFAULT: u32 = 2;
/// Bound on each direct HTTP probe.
pub(crate) const PROBE_TIMEOUT_MS: u64 = 500;
/// A primary region that answers but cannot serve is left this long to recover inside the
/// region before `--auto-failover` counts it as lost: a Patroni failover takes ttl (20 s) plus
/// the promotion and the engines' re-leading (21.7-24.9 s measured), a commit stall until
/// Patroni replaces a standby about as long. Twice the worst case seen.
pub const IN_REGION_RECOVERY_MS_MAX: u64 = 60_000;
/// Transitions kept in the report (the oldest are dropped; `transitions_total` counts all).
const TRANSITIONS_KEPT_MAX: usize = 1_000;
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
    #[error(transparent)]
    Tls(#[from] crate::tls::ClientError),
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

/// Where the watch's lines go as they happen (the CLI renders them: `render::WatchPrinter`).
pub trait Sink: Sync {
    fn note(&self, at_unix_ms: u64, text: &str);
    fn decision(&self, at_unix_ms: u64, d: &Decision);
    fn failover(&self, at_unix_ms: u64, r: &FailoverReport);
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `provision watch`: decisions go to `sink` as they happen; the summary is returned.
pub async fn run(cfg: &Config, tpl: &Template, opts: &WatchOpts, sink: &dyn Sink) -> Result<WatchReport, WatchError> {
    if opts.interval_ms < PROBE_TIMEOUT_MS + 100 || opts.failures_min == 0 {
        return Err(WatchError::Refused {
            reason: format!("interval {} ms / failures {} cannot work", opts.interval_ms, opts.failures_min),
            fix: format!("use an interval of at least {} ms and at least 1 failure", PROBE_TIMEOUT_MS + 100),
        });
    }
    let w = failover::look(cfg, tpl).await?;
    let mut watch = Watch::new(&w, cfg, tpl, opts)?;
    for n in &watch.report.notes {
        sink.note(now_ms(), n);
    }
    sink.note(
        now_ms(),
        &format!(
            "watching {} (primary) and {} (DR) every {} ms; second vantage point: {}",
            watch.primary, watch.dr, opts.interval_ms, watch.report.second_vantage
        ),
    );
    let t0 = Instant::now();
    let deadline = opts.duration_s.map(|s| t0 + Duration::from_secs(s));
    let mut interval = tokio::time::interval(Duration::from_millis(opts.interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = &mut ctrl_c => { watch.report.stopped_by = "ctrl-c".into(); break; }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let Some(to) = watch.tick(&w, opts.interval_ms, sink).await else { continue };
        watch.report.stopped_by = "failover".into();
        let fo = failover::Opts { to, planned: false, force: false, resume: false, quiet: opts.quiet };
        tokio::select! {
            r = failover::run(cfg, tpl, &fo) => match r {
                Ok(r) => {
                    sink.failover(now_ms(), &r);
                    watch.report.failed_over = Some(r);
                }
                Err(e) => {
                    sink.note(now_ms(), &format!("failover failed: {e}"));
                    watch.report.failover_error = Some(e.to_string());
                }
            },
            _ = &mut ctrl_c => {
                watch.report.stopped_by = "ctrl-c".into();
                watch.report.failover_error = Some(format!("interrupted during the failover; every step is safe to repeat: run `provision failover --to {}` to finish it", watch.dr));
            }
        }
        break;
    }
    Ok(watch.finish(t0).await)
}

/// The loop's state between ticks.
struct Watch {
    primary: String,
    dr: String,
    local: bool,
    policy: Policy,
    targets: Vec<RegionTargets>,
    vantage: Vantage,
    client: reqwest::Client,
    tracker: Tracker,
    /// Whether the current failure streak of the primary has been confirmed down already.
    confirmed: bool,
    urls: Vec<String>,
    posts: JoinSet<()>,
    report: WatchReport,
}

impl Watch {
    fn new(w: &Situation, cfg: &Config, tpl: &Template, opts: &WatchOpts) -> Result<Watch, WatchError> {
        let (primary, dr) = (w.cfg.active().name.clone(), w.cfg.passive().name.clone());
        let local = cfg.endpoint_url.is_some();
        let mut notes = Vec::new();
        let mut policy = Policy {
            failures_min: opts.failures_min,
            auto_failover: opts.auto_failover,
            in_region_recovery_ms_max: IN_REGION_RECOVERY_MS_MAX,
        };
        if let Some(f) = &w.observed.marks.fence {
            policy.auto_failover = false;
            notes.push(format!("{} is fenced (since unix ms {}): auto-failover is off until `provision failback`", f.region, f.at_unix_ms));
        }
        let hosts = probe::hosts_to_probe(w, &primary, local, &mut notes);
        let targets = [&primary, &dr].iter().map(|r| region_targets(&hosts, cfg, tpl, r)).collect::<Result<Vec<RegionTargets>, _>>()?;
        let vantage = vantage(w, &primary);
        if matches!(vantage, Vantage::Nowhere) {
            notes.push(format!("no second vantage point (no health check for {primary}): the primary can never be confirmed down, so no automatic failover"));
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(PROBE_TIMEOUT_MS))
            .connect_timeout(Duration::from_millis(PROBE_TIMEOUT_MS))
            .build()?;
        let report = WatchReport {
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
        let urls = w.cfg.engine.webhook_urls.clone();
        let (tracker, posts) = (Tracker::default(), JoinSet::new());
        Ok(Watch { primary, dr, local, policy, targets, vantage, client, tracker, confirmed: false, urls, posts, report })
    }

    /// One round of probes and decisions; the region to fail over to, when it is time.
    async fn tick(&mut self, w: &Situation, interval_ms: u64, sink: &dyn Sink) -> Option<String> {
        let at = now_ms();
        let ask_second = self.local || self.tracker.failures_here(&self.primary) > 0;
        let (probes, second) = tokio::join!(
            futures::future::join_all(self.targets.iter().map(|t| probe_region(&self.client, t))),
            second_vantage(&self.vantage, &w.cloud, ask_second, interval_ms)
        );
        self.report.ticks += 1;
        let tick = Tick { at_unix_ms: at, primary: self.primary.clone(), dr: self.dr.clone(), probes, second_vantage_ok: second };
        let decisions = decide::decide(&mut self.tracker, &tick, &self.policy);
        self.confirm_down();
        let mut fail_over = None;
        for d in decisions {
            sink.decision(at, &d);
            // The first state of each region is not news; changes and decisions are.
            let first_look = matches!(&d, Decision::Transition { from, .. } if from == "unknown");
            if !matches!(d, Decision::Hold { .. }) && !first_look {
                let event = notify::webhook_event(&w.cfg.project, at, &d);
                notify::post(&mut self.posts, &self.urls, event, &mut self.report.webhooks_dropped);
            }
            match &d {
                Decision::Transition { .. } => self.keep(at, d.clone()),
                Decision::FailOver { to, .. } => fail_over = Some(to.clone()),
                Decision::Hold { .. } => {}
            }
        }
        while self.posts.try_join_next().is_some() {}
        fail_over
    }

    /// Records when the primary's current failure streak is first confirmed from both vantage points.
    fn confirm_down(&mut self) {
        let here = self.tracker.failures_here(&self.primary);
        if !self.confirmed && here >= self.policy.failures_min && self.tracker.failures_second() >= self.policy.failures_min {
            let now = now_ms();
            self.confirmed = true;
            self.report.confirmed_down_unix_ms = Some(now);
            self.report.detected_after_ms = self.tracker.first_failure_unix_ms().get(&self.primary).map(|f| now.saturating_sub(*f));
        }
        self.confirmed &= here > 0;
    }

    fn keep(&mut self, at: u64, decision: Decision) {
        self.report.transitions_total += 1;
        if self.report.transitions.len() == TRANSITIONS_KEPT_MAX {
            self.report.transitions.remove(0);
        }
        self.report.transitions.push(Event { at_unix_ms: at, tick: self.report.ticks, decision });
    }

    async fn finish(mut self, t0: Instant) -> WatchReport {
        let mut report = self.report;
        report.duration_ms = t0.elapsed().as_millis() as u64;
        report.first_failure_unix_ms = self.tracker.first_failure_unix_ms().clone();
        report.last_state = [&self.primary, &self.dr].iter().map(|r| (r.to_string(), self.tracker.state(r).to_string())).collect();
        let drain = async { while self.posts.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_millis(WEBHOOK_DRAIN_MS_MAX), drain).await.is_err() {
            report.notes.push(format!("webhook posts still in flight after {WEBHOOK_DRAIN_MS_MAX} ms were abandoned"));
        }
        report
    }
}
