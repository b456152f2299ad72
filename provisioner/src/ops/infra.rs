//! The infrastructure commands: `plan`, `up`, `down`, `deploy`. Each starts from one look at
//! the world, plans purely, executes, and returns a report.

use std::time::Instant;

use serde::Serialize;

use super::{Error, Opts};
use crate::action::{Change, Plan};
use crate::cloud::Cloud;
use crate::config::Config;
use crate::exec::{self, OnError, StepFailure};
use crate::keys::{self, KeyUse};
use crate::model::Observed;
use crate::plan::plan_up;
use crate::progress::Progress;
use crate::situation::{Look, Situation};
use crate::teardown::plan_down;
use crate::template::Template;

/// `up` re-observes and re-plans after applying, until nothing is left to do.
const UP_ROUNDS_MAX: usize = 4;
/// `down` does the same while its only failures are `DependencyViolation`.
const DOWN_ROUNDS_MAX: usize = 4;
/// Before a round that retries a `DependencyViolation`: long enough for EC2's listings to show
/// what an interrupted run made, and for a terminating instance to let go of its subnet.
const DEPENDENCY_WAIT_MS: u64 = 5_000;

/// Waits before the next round when every failure of this one may clear by then, and says
/// whether to go on; otherwise the failures stand.
async fn retry_next_round(failed: &mut Vec<StepFailure>, round: usize, rounds_max: usize) -> bool {
    if round == rounds_max || !exec::all_retry_later(failed) {
        return false;
    }
    for f in failed.drain(..) {
        tracing::info!(step = f.step, error = f.error, "still depended on; retrying after a fresh look");
    }
    tokio::time::sleep(std::time::Duration::from_millis(DEPENDENCY_WAIT_MS)).await;
    true
}

fn is_record(a: &crate::action::Action) -> bool {
    matches!(a, crate::action::Action::UpsertRecord { .. })
}

#[derive(Debug, Serialize)]
pub struct StepView {
    pub change: Change,
    pub scope: String,
    pub what: String,
}

#[derive(Debug, Serialize)]
pub struct PlanReport {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub steps: Vec<StepView>,
    pub notes: Vec<String>,
}

impl PlanReport {
    pub fn of(p: &Plan) -> PlanReport {
        PlanReport {
            create: p.count(Change::Create),
            update: p.count(Change::Update),
            delete: p.count(Change::Delete),
            steps: p
                .steps
                .iter()
                .map(|s| StepView { change: s.action.change(), scope: s.action.scope().to_string(), what: s.action.describe() })
                .collect(),
            notes: p.notes.clone(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

#[derive(Debug, Serialize)]
pub struct ApplyReport {
    pub command: &'static str,
    pub rounds: usize,
    pub steps_done: usize,
    pub steps_skipped: usize,
    pub failures: Vec<StepFailure>,
    /// What is still left after the last round (empty when converged).
    pub remaining: Vec<StepView>,
    pub notes: Vec<String>,
    pub duration_ms: u128,
}

impl ApplyReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.remaining.is_empty()
    }
}

pub async fn plan(cfg: &Config, tpl: &Template) -> Result<PlanReport, Error> {
    let s = Situation::look(cfg, tpl, Look::Strict, KeyUse::Read).await?;
    s.refuse_if_fenced()?;
    let p = plan_up(&s.desired, &s.observed)?;
    let notes = crate::preflight::check(&s.cloud, &s.cfg, &p).await?;
    let mut report = PlanReport::of(&p);
    report.notes.extend(notes);
    Ok(report)
}

pub async fn up(cfg: &Config, tpl: &Template, opts: &Opts) -> Result<ApplyReport, Error> {
    let s = Situation::look(cfg, tpl, Look::Strict, KeyUse::Ensure).await?;
    s.refuse_if_fenced()?;
    let repaired = s.repair_marks().await?;
    let mut report = converge(&s, opts).await?.0;
    report.notes.extend(keep_in_vault(&s).await?);
    report.notes.extend(repaired.into_iter().map(|p| format!("failover state copied to {p}")));
    Ok(report)
}

/// Puts the key, secrets and pinned host keys this run made into the project's vault in AWS;
/// a region it could not write becomes a note (the next run retries).
async fn keep_in_vault(s: &Situation) -> Result<Vec<String>, Error> {
    let failed = crate::vault::push(&s.configured, &s.cloud).await?;
    Ok(failed.into_iter().map(|f| format!("vault not updated in {f}")).collect())
}

/// Plans and applies until the plan is empty (at most [`UP_ROUNDS_MAX`] rounds), starting
/// from `s`'s observation. The second value says whether anything was applied: then `s` no
/// longer shows the cloud as it is.
async fn converge(s: &Situation, opts: &Opts) -> Result<(ApplyReport, bool), Error> {
    let t0 = Instant::now();
    let (cloud, cfg) = (&s.cloud, &s.cfg);
    let mut report = ApplyReport {
        command: "up",
        rounds: 0,
        steps_done: 0,
        steps_skipped: 0,
        failures: vec![],
        remaining: vec![],
        notes: vec![],
        duration_ms: 0,
    };
    let shape = |p: Plan| if opts.defer_records { p.without(is_record) } else { p };
    let mut preflight_notes = Vec::new();
    for round in 1..=UP_ROUNDS_MAX {
        let fresh;
        let observed = if round == 1 {
            &s.observed
        } else {
            fresh = cloud.observe(cfg).await?;
            &fresh
        };
        let p = shape(plan_up(&s.desired, observed)?);
        report.notes = p.notes.clone();
        if round == 1 {
            preflight_notes = crate::preflight::check(cloud, cfg, &p).await?;
        }
        report.notes.extend(preflight_notes.iter().cloned());
        if p.is_empty() {
            wait_running(cloud, cfg, observed).await?;
            report.remaining.clear();
            break;
        }
        report.rounds = round;
        let progress = Progress::new("up", opts.quiet);
        let out = exec::run(&p, cloud, opts.concurrency, OnError::Stop, &progress).await;
        report.steps_done += out.done;
        report.steps_skipped += out.skipped;
        let mut failed = out.failed;
        if retry_next_round(&mut failed, round, UP_ROUNDS_MAX).await {
            continue;
        }
        report.failures.extend(failed);
        if !report.failures.is_empty() {
            break;
        }
        let observed = cloud.observe_listing(cfg, &out.created).await?;
        wait_running(cloud, cfg, &observed).await?;
        report.remaining = PlanReport::of(&shape(plan_up(&s.desired, &observed)?)).steps;
    }
    report.duration_ms = t0.elapsed().as_millis();
    let changed = report.rounds > 0;
    Ok((report, changed))
}

/// Waits until every instance `o` saw is running; no API call when all already were.
async fn wait_running(cloud: &Cloud, cfg: &Config, o: &Observed) -> Result<(), Error> {
    for r in &cfg.regions {
        let instances = o.region(&r.name).map(|x| x.instances.as_slice()).unwrap_or_default();
        if instances.iter().all(|i| i.attrs.state == "running") {
            continue;
        }
        let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
        if !ids.is_empty() {
            cloud.wait_instances(&r.name, &ids, &["running"]).await?;
        }
    }
    Ok(())
}

pub async fn down(cfg: &Config, opts: &Opts) -> Result<ApplyReport, Error> {
    let t0 = Instant::now();
    let cloud = Cloud::connect(cfg).await;
    let (mut done, mut skipped, mut rounds) = (0, 0, 0);
    let mut observed = cloud.observe(cfg).await?;
    // Rounds go on while what failed may clear later, or while a fresh look still finds
    // something (made by an interrupted run, and listed only now).
    let failures = loop {
        rounds += 1;
        let progress = Progress::new("down", opts.quiet);
        let mut out = exec::run(&plan_down(&observed), &cloud, opts.concurrency, OnError::Continue, &progress).await;
        (done, skipped) = (done + out.done, skipped + out.skipped);
        let again = out.failed.is_empty() || retry_next_round(&mut out.failed, rounds, DOWN_ROUNDS_MAX).await;
        observed = cloud.observe(cfg).await?;
        if !again || rounds == DOWN_ROUNDS_MAX || plan_down(&observed).is_empty() {
            break out.failed;
        }
    };
    // A zone that is not ours stays: take the project's failover marks off it.
    if let Some(z) = &observed.zone {
        if observed.marks != crate::model::Marks::default() {
            cloud.set_marks(&z.id, &crate::model::Marks::default()).await?;
        }
    }
    // The failover state and the vault go too (the local `.provision/` keeps key and secrets).
    let mut notes = vec![];
    for r in &cfg.regions {
        let n = cloud.forget_project_parameters(&r.name).await?;
        if n > 0 {
            notes.push(format!("{}: {n} parameter(s) removed from the Parameter Store", r.name));
        }
    }
    let remaining = PlanReport::of(&plan_down(&observed)).steps;
    if remaining.is_empty() {
        // The hosts are gone: their pinned host keys would only refuse the next ones that
        // get the same addresses.
        let _ = std::fs::remove_file(keys::key_dir(cfg).join("known_hosts"));
    }
    Ok(ApplyReport {
        command: "down",
        rounds,
        steps_done: done,
        steps_skipped: skipped,
        failures,
        remaining,
        notes,
        duration_ms: t0.elapsed().as_millis(),
    })
}

#[derive(Debug, Serialize)]
pub struct FullUpReport {
    pub infra: ApplyReport,
    pub deploy: Option<crate::deploy::DeployReport>,
    /// The failover records, written last: only once the primary region's `/health` is 200.
    pub records: Option<ApplyReport>,
}

impl FullUpReport {
    pub fn ok(&self) -> bool {
        self.infra.ok() && self.deploy.is_some() && self.records.as_ref().is_some_and(ApplyReport::ok)
    }
}

/// `up` in the order: infrastructure -> hosts -> databases -> engines -> gateways ->
/// `/health` green -> Route53 records. Stops at the first part that fails.
pub async fn up_all(cfg: &Config, tpl: &Template, concurrency: usize, quiet: bool) -> Result<FullUpReport, Error> {
    let s = Situation::look(cfg, tpl, Look::Strict, KeyUse::Ensure).await?;
    s.refuse_if_fenced()?;
    let repaired = s.repair_marks().await?;
    let (mut infra, changed) = converge(&s, &Opts { concurrency, quiet, defer_records: true }).await?;
    infra.notes.extend(repaired.into_iter().map(|p| format!("failover state copied to {p}")));
    if !infra.ok() {
        infra.notes.extend(keep_in_vault(&s).await?);
        return Ok(FullUpReport { infra, deploy: None, records: None });
    }
    // When the infrastructure needed nothing, the first look is still current for the deploy
    // and the records (deploy works over SSH only): one look instead of three.
    let s = if changed { s.refresh(tpl, KeyUse::Ensure).await? } else { s };
    let d = deploy_in(&s, tpl, quiet).await;
    infra.notes.extend(keep_in_vault(&s).await?);
    let (records, _) = converge(&s, &Opts { concurrency, quiet, defer_records: false }).await?;
    Ok(FullUpReport { infra, deploy: Some(d?), records: Some(records) })
}

/// Puts the software on the running hosts (over SSH) and waits for the primary region to be
/// healthy. Only what changed is uploaded and restarted.
pub async fn deploy(cfg: &Config, tpl: &Template, quiet: bool) -> Result<crate::deploy::DeployReport, Error> {
    let s = Situation::look(cfg, tpl, Look::Strict, KeyUse::Ensure).await?;
    s.refuse_if_fenced()?;
    let d = deploy_in(&s, tpl, quiet).await;
    let mut d = d?;
    d.notes.extend(keep_in_vault(&s).await?);
    Ok(d)
}

async fn deploy_in(s: &Situation, tpl: &Template, quiet: bool) -> Result<crate::deploy::DeployReport, Error> {
    let inv = s.all_hosts().map_err(crate::deploy::DeployError::from)?.clone();
    let d = crate::deploy::Deployer::new(&s.cfg, tpl, inv, quiet)?;
    Ok(d.run(&s.cfg).await?)
}
