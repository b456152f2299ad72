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
const UP_ROUNDS_MAX: usize = 3;

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
    Ok(PlanReport::of(&plan_up(&s.desired, &s.observed)?))
}

pub async fn up(cfg: &Config, tpl: &Template, opts: &Opts) -> Result<ApplyReport, Error> {
    let s = Situation::look(cfg, tpl, Look::Strict, KeyUse::Ensure).await?;
    s.refuse_if_fenced()?;
    Ok(converge(&s, opts).await?.0)
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
        report.failures.extend(out.failed);
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
    let observed = cloud.observe(cfg).await?;
    let p = plan_down(&observed);
    let progress = Progress::new("down", opts.quiet);
    let out = exec::run(&p, &cloud, opts.concurrency, OnError::Continue, &progress).await;
    let after = cloud.observe(cfg).await?;
    // A zone that is not ours stays: take the project's failover marks off it.
    if let Some(z) = &after.zone {
        if after.marks != crate::model::Marks::default() {
            cloud.set_marks(&z.id, &crate::model::Marks::default()).await?;
        }
    }
    let remaining = PlanReport::of(&plan_down(&after)).steps;
    if remaining.is_empty() {
        // The hosts are gone: their pinned host keys would only refuse the next ones that
        // get the same addresses.
        let _ = std::fs::remove_file(keys::key_dir(cfg).join("known_hosts"));
    }
    Ok(ApplyReport {
        command: "down",
        rounds: 1,
        steps_done: out.done,
        steps_skipped: out.skipped,
        failures: out.failed,
        remaining,
        notes: vec![],
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
    let (infra, changed) = converge(&s, &Opts { concurrency, quiet, defer_records: true }).await?;
    if !infra.ok() {
        return Ok(FullUpReport { infra, deploy: None, records: None });
    }
    // When the infrastructure needed nothing, the first look is still current for the deploy
    // and the records (deploy works over SSH only): one look instead of three.
    let s = if changed { s.refresh(tpl, KeyUse::Ensure).await? } else { s };
    let d = deploy_in(&s, tpl, quiet).await?;
    let (records, _) = converge(&s, &Opts { concurrency, quiet, defer_records: false }).await?;
    Ok(FullUpReport { infra, deploy: Some(d), records: Some(records) })
}

/// Puts the software on the running hosts (over SSH) and waits for the primary region to be
/// healthy. Only what changed is uploaded and restarted.
pub async fn deploy(cfg: &Config, tpl: &Template, quiet: bool) -> Result<crate::deploy::DeployReport, Error> {
    let s = Situation::look(cfg, tpl, Look::Strict, KeyUse::Ensure).await?;
    s.refuse_if_fenced()?;
    deploy_in(&s, tpl, quiet).await
}

async fn deploy_in(s: &Situation, tpl: &Template, quiet: bool) -> Result<crate::deploy::DeployReport, Error> {
    let inv = s.all_hosts().map_err(crate::deploy::DeployError::from)?.clone();
    let d = crate::deploy::Deployer::new(&s.cfg, tpl, inv, quiet)?;
    Ok(d.run(&s.cfg).await?)
}
