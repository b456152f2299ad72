//! `provision drill`: proves the DR works. Runs order load against the API name, fails over
//! (planned by default; unplanned blacks out the primary region through the lab's fault
//! injection), checks every acknowledged order against the surviving region's database,
//! fails back, checks again, and reports RTO, RPO, client-visible errors and each step.

pub mod db_leader;
pub mod load;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use self::load::{DrillUser, Load, LoadStats};
use crate::cloud::Cloud;
use crate::config::Config;
use crate::failover::{self, FailbackReport, FailoverError, FailoverReport, StepTime};
use crate::template::Template;

const SAMPLE_MAX: usize = 20;

#[derive(Debug, Clone)]
pub struct DrillOpts {
    pub unplanned: bool,
    /// The lab's control command (e.g. `localstack/labhost.sh`): `<lab> fault blackout <region>`
    /// and `<lab> heal all` are run through `sh -c`. Needed for `--unplanned`.
    pub lab: Option<String>,
    pub orders_per_s: u32,
    pub load_before_s: u64,
    pub load_after_s: u64,
    pub quiet: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("refused: {reason}\n  fix: {fix}")]
    Refused { reason: String, fix: String },
    #[error("drill step `{step}` failed: {detail}")]
    Step { step: String, detail: String },
    #[error(transparent)]
    Failover(#[from] FailoverError),
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub kind: &'static str,
    pub from: String,
    pub to: String,
    /// Every acknowledged order found after the failover (planned), and the failback done.
    pub ok: bool,
    pub problems: Vec<String>,
    /// The ladder's own RTO (first step that affects clients -> records flipped).
    pub rto_ms: u64,
    /// What clients saw: the longest time without an acknowledged order through the API
    /// name (the fault and the failover lie inside it).
    pub client_rto_ms: u64,
    pub rpo: failover::Rpo,
    pub orders_acked: u64,
    /// Acknowledged orders missing from the surviving region's DB (the measured RPO in orders).
    pub orders_missing: u64,
    pub missing_sample: Vec<String>,
    /// Acknowledged orders missing after the failback (from the home region's DB).
    pub orders_missing_after_failback: u64,
    pub load: LoadStats,
    pub steps: Vec<StepTime>,
    pub failover: FailoverReport,
    pub failback: Option<FailbackReport>,
    pub duration_ms: u64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(crate) fn step_err(step: &str, detail: impl ToString) -> DrillError {
    DrillError::Step { step: step.into(), detail: detail.to_string() }
}

/// `failback` is the command that moves the primary role home (it rebuilds a fenced region
/// with `up`, which sits above this module).
pub async fn drill<F, Fut>(cfg: &Config, tpl: &Template, opts: &DrillOpts, failback: F) -> Result<DrillReport, DrillError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<FailbackReport, FailoverError>>,
{
    let t0 = Instant::now();
    let mut steps = Vec::new();
    let mut timed = |name: &str, since: Instant, detail: String| {
        if !opts.quiet {
            eprintln!("drill: {name}: {} ms {detail}", since.elapsed().as_millis());
        }
        steps.push(StepTime { step: name.into(), duration_ms: since.elapsed().as_millis() as u64, detail });
    };
    let (lab, from, to) = preflight(cfg, tpl, opts).await?;

    // Setup: a funded user of its own, created through the primary region's gateway.
    let s = Instant::now();
    let (cloud, user, user_id) = setup_user(cfg, tpl, 900_000_000, cfg.endpoint_url.is_some()).await?;
    timed("setup", s, format!("user {user_id} funded"));

    // Load, then the failover under it.
    let s = Instant::now();
    let ld = Load::start(cloud, cfg.clone(), tpl.ports.gateway_http, &user, format!("drill-{user_id}"), opts.orders_per_s);
    tokio::time::sleep(Duration::from_secs(opts.load_before_s)).await;
    let before = ld.stats();
    if before.acked == 0 {
        let _ = ld.stop().await;
        return Err(step_err("load", format!("no order was acknowledged before the failover: {:?}", before.errors)));
    }
    timed("load before failover", s, format!("{} acked", before.acked));
    if let Some(lab) = &lab {
        let s = Instant::now();
        run_lab(lab, &format!("fault blackout {from}")).map_err(|e| step_err("blackout", e))?;
        ld.mark();
        timed("blackout", s, format!("{from} powered off through the lab"));
    } else {
        ld.mark();
    }
    let s = Instant::now();
    let fo = failover::run(
        cfg,
        tpl,
        &failover::Opts { to: to.clone(), planned: !opts.unplanned, force: false, resume: false, quiet: opts.quiet },
    )
    .await;
    let fo = match fo {
        Ok(r) => r,
        Err(e) => {
            let _ = ld.stop().await;
            return Err(e.into());
        }
    };
    timed("failover", s, format!("RTO {} ms", fo.rto_ms));
    tokio::time::sleep(Duration::from_secs(opts.load_after_s)).await;
    let (acked, stats) = ld.stop().await;

    // Every acknowledged order, looked up in the surviving region.
    let s = Instant::now();
    let found = orders_in(cfg, tpl, &to, user_id).await.map_err(|e| step_err("verify", e))?;
    let missing: Vec<String> = acked.iter().filter(|c| !found.contains(*c)).cloned().collect();
    timed("verify in surviving region", s, format!("{} acked, {} found, {} missing", acked.len(), found.len(), missing.len()));

    if let Some(lab) = &lab {
        run_lab(lab, "heal all").map_err(|e| step_err("heal", e))?;
    }
    let s = Instant::now();
    let fb = failback().await?;
    timed("failback", s, fb.rebuild.clone());
    let s = Instant::now();
    let home = orders_in(cfg, tpl, &from, user_id).await.map_err(|e| step_err("verify after failback", e))?;
    let missing_after = acked.iter().filter(|c| found.contains(*c) && !home.contains(*c)).count() as u64;
    timed("verify after failback", s, format!("{} found in {from}", home.len()));

    let mut problems = Vec::new();
    if !opts.unplanned && !missing.is_empty() {
        problems.push(format!("{} acknowledged order(s) missing after a planned switchover", missing.len()));
    }
    if missing_after > 0 {
        problems.push(format!("{missing_after} order(s) present after the failover are missing after the failback"));
    }
    if stats.first_ack_after_mark_ms.is_none() {
        problems.push("no order was acknowledged through the API name after the failover".into());
    }
    Ok(DrillReport {
        kind: if opts.unplanned { "unplanned" } else { "planned" },
        from,
        to,
        ok: problems.is_empty(),
        problems,
        rto_ms: fo.rto_ms,
        client_rto_ms: stats.longest_ack_gap_ms,
        rpo: fo.rpo.clone(),
        orders_acked: acked.len() as u64,
        orders_missing: missing.len() as u64,
        missing_sample: missing.into_iter().take(SAMPLE_MAX).collect(),
        orders_missing_after_failback: missing_after,
        load: stats,
        steps,
        failover: fo,
        failback: Some(fb),
        duration_ms: t0.elapsed().as_millis() as u64,
    })
}

/// The lab command (needed to black out a region) and the regions (from, to): the drill
/// starts only from the configured layout, with nothing fenced.
async fn preflight(cfg: &Config, tpl: &Template, opts: &DrillOpts) -> Result<(Option<String>, String, String), DrillError> {
    let lab = match (&opts.lab, opts.unplanned) {
        (Some(l), _) => Some(l.clone()),
        (None, true) => {
            return Err(DrillError::Refused {
                reason: "an unplanned drill must black out a region and needs a way to do it".into(),
                fix: "pass --lab localstack/labhost.sh (lab hosts); on AWS run a planned drill".into(),
            })
        }
        (None, false) => None,
    };
    let world = failover::look(cfg, tpl).await?;
    if let Some(f) = &world.observed.marks.fence {
        return Err(DrillError::Refused {
            reason: format!("{} is fenced by an earlier failover", f.region),
            fix: "run `provision failback` first".into(),
        });
    }
    let (from, to) = (world.cfg.active().name.clone(), world.cfg.passive().name.clone());
    if from != cfg.primary().name {
        return Err(DrillError::Refused {
            reason: format!("{from} holds the primary role, not the configured primary {}", cfg.primary().name),
            fix: "run `provision failback` first".into(),
        });
    }
    Ok((lab, from, to))
}

/// A funded user of the drill's own (id `id_base` + a time-derived part), created through
/// the admin listener of a gateway of the region that holds the primary role (over SSH, on
/// that host); `lab_only`: the gateway the API name's PRIMARY record answers must be a lab
/// host of this machine.
pub(crate) async fn setup_user(
    cfg: &Config,
    tpl: &Template,
    id_base: i64,
    lab_only: bool,
) -> Result<(Arc<Cloud>, DrillUser, i64), DrillError> {
    let cloud = Arc::new(Cloud::connect(cfg).await);
    let answer = load::api_answer(&cloud, cfg).await;
    let gw = answer.first().ok_or_else(|| step_err("setup", "the API name has no PRIMARY record; run `provision up`"))?;
    if lab_only {
        crate::deploy::lab_route(gw).map_err(|e| step_err("setup", e))?;
    }
    let user_id = id_base + (now_ms() % 100_000_000) as i64;
    let w = failover::look(cfg, tpl).await.map_err(|e| step_err("setup", e))?;
    let hosts = failover::ladder::region_hosts(&w, tpl, &w.cfg.active().name);
    let user = load::make_user(&hosts, user_id).await.map_err(|e| step_err("setup", e))?;
    Ok((cloud, user, user_id))
}

/// The drill user's client order ids committed in `region`'s database (read on its leader).
async fn orders_in(cfg: &Config, tpl: &Template, region: &str, user_id: i64) -> Result<BTreeSet<String>, String> {
    let w = failover::look(cfg, tpl).await.map_err(|e| e.to_string())?;
    let r = failover::ladder::region_hosts(&w, tpl, region);
    let leader = r.leader().await.map_err(|e| e.to_string())?;
    let out = r
        .sql_on(&leader.name, &format!("SELECT client_order_id FROM orders WHERE user_id = {user_id}"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
}

pub(crate) fn run_lab(lab: &str, args: &str) -> Result<(), String> {
    let cmd = format!("{lab} {args}");
    let out = std::process::Command::new("sh").args(["-c", &cmd]).output().map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd}: exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// Counts per error kind, for the human report.
pub fn errors_line(e: &BTreeMap<String, u64>) -> String {
    if e.is_empty() {
        return "none".into();
    }
    e.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
}
