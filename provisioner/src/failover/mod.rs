//! Regional failover as a ladder of named steps, each timed. Unplanned (the primary region
//! is dead): fence it through its EC2 API, promote the DR standby cluster, activate the DR
//! engines, flip the Route53 failover records, notify. Planned (both healthy): stop writes,
//! demote the old primary into a standby cluster of the new one, wait until the new one has
//! replayed the old one's last WAL, promote, activate, flip: zero loss, and going back needs
//! no rebuild.

mod failback;
pub mod hosts;
pub mod ladder;
mod listing;
mod rungs;
pub mod webhook;

use std::time::Instant;

use serde::Serialize;

use self::hosts::HostError;
use crate::cloud::CloudError;
use crate::config::Config;
use crate::keys::KeyUse;
use crate::situation::{Look, LookError, Situation};
use crate::template::Template;

pub use failback::{needs_rebuild, unfence, FailbackReport};
pub use ladder::{check_target, failover};

/// Bounds on each wait of the ladder.
pub const PROMOTE_WAIT_MS_MAX: u64 = 90_000;
pub const HEALTH_WAIT_MS_MAX: u64 = 90_000;
pub const CATCH_UP_WAIT_MS_MAX: u64 = 60_000;
pub const DEMOTE_WAIT_MS_MAX: u64 = 90_000;
pub const FOLLOW_WAIT_MS_MAX: u64 = 120_000;
/// How long a dead region may take to answer a best-effort read (its last WAL position).
pub const PROBE_DEAD_MS_MAX: u64 = 2_000;

#[derive(Debug, Clone)]
pub struct Opts {
    pub to: String,
    pub planned: bool,
    /// Go on when the old region's EC2 API does not answer (no fence through the cloud).
    pub force: bool,
    /// Finish an unplanned failover that an earlier run decided but did not complete. Without
    /// it such a state is refused: another run may still be working on it.
    pub resume: bool,
    pub quiet: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error("refused: {reason}\n  fix: {fix}")]
    Refused { reason: String, fix: String },
    #[error(
        "step `{step}` failed (done before it: {done}; every step is safe to repeat: fix the cause below, then re-run the same command)"
    )]
    Step {
        step: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        done: String,
    },
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Vault(Box<crate::vault::VaultError>),
    /// `failback`'s rebuild of the fenced region (`up` + `deploy`) failed.
    #[error(transparent)]
    Rebuild(Box<dyn std::error::Error + Send + Sync>),
}

impl From<LookError> for FailoverError {
    fn from(e: LookError) -> FailoverError {
        match e {
            LookError::Cloud(e) => FailoverError::Cloud(e),
            LookError::Key(e) => FailoverError::Key(e),
            LookError::Vault(e) => FailoverError::Vault(Box::new(e)),
        }
    }
}

pub(crate) fn refused(reason: impl Into<String>, fix: impl Into<String>) -> FailoverError {
    FailoverError::Refused { reason: reason.into(), fix: fix.into() }
}

/// The look every regional command starts from: partial (a dead region's API is expected),
/// and refused when the project has no hosted zone yet.
pub async fn look(cfg: &Config, tpl: &Template) -> Result<Situation, FailoverError> {
    let s = Situation::look(cfg, tpl, Look::Partial, KeyUse::Read).await?;
    if s.observed.zone.is_none() && !route53_dead(&s) {
        return Err(refused("the project has no hosted zone, so nothing serves clients yet", "run `provision up` first"));
    }
    Ok(s)
}

/// A fresh look, then the ladder: what `failover --to` and `watch --auto-failover` run.
pub async fn run(cfg: &Config, tpl: &Template, opts: &Opts) -> Result<FailoverReport, FailoverError> {
    check_target(cfg, &opts.to)?;
    let s = look(cfg, tpl).await?;
    failover(&s, tpl, opts).await
}

/// Whether Route53's control plane did not answer this look.
pub(crate) fn route53_dead(s: &Situation) -> bool {
    s.unreachable.iter().any(|(what, _)| what == "route53")
}

/// The project's hosted zone (None when Route53's control plane did not answer).
pub(crate) fn zone_id(s: &Situation) -> Option<&str> {
    s.observed.zone.as_ref().map(|z| z.id.as_str())
}

#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    pub step: String,
    pub duration_ms: u64,
    pub detail: String,
}

/// The measured data loss of a failover.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rpo {
    /// The old primary's last WAL position seen (None when it did not answer).
    pub old_primary_lsn: Option<String>,
    /// What the new primary had replayed when it was promoted.
    pub new_primary_lsn: Option<String>,
    /// WAL bytes the new primary lacks, when both are known.
    pub lost_wal_bytes: Option<u64>,
    /// Highest committed order id seen in each region (None when it did not answer).
    pub old_last_order_id: Option<i64>,
    pub new_last_order_id: Option<i64>,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub from: String,
    pub to: String,
    pub planned: bool,
    /// From the first step that affects clients to the flipped records being INSYNC.
    pub rto_ms: u64,
    pub rpo: Rpo,
    pub steps: Vec<StepTime>,
    pub fenced_instances: Vec<String>,
    pub webhooks: Vec<webhook::Delivery>,
    pub notes: Vec<String>,
}

/// The steps done so far, printed as they finish.
pub(crate) struct Timeline {
    pub steps: Vec<StepTime>,
    quiet: bool,
    verb: &'static str,
}

impl Timeline {
    pub fn new(verb: &'static str, quiet: bool) -> Timeline {
        Timeline { steps: vec![], quiet, verb }
    }

    /// Runs one named step, records its duration and what it did.
    pub async fn step<T, E>(&mut self, name: &str, f: impl std::future::Future<Output = Result<Rung<T>, E>>) -> Result<T, FailoverError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        if !self.quiet {
            eprintln!("{}: {name} ...", self.verb);
        }
        let t0 = Instant::now();
        match f.await {
            Ok(Rung { value: v, detail }) => {
                let ms = t0.elapsed().as_millis() as u64;
                if !self.quiet {
                    eprintln!(
                        "{}: {name}: done in {} ms{}",
                        self.verb,
                        ms,
                        if detail.is_empty() { String::new() } else { format!(" ({detail})") }
                    );
                }
                self.steps.push(StepTime { step: name.to_string(), duration_ms: ms, detail });
                Ok(v)
            }
            Err(e) => {
                // A refusal (e.g. another run decided first) is the answer itself, not a failed step to repeat.
                let source: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
                match source.downcast::<FailoverError>() {
                    Ok(fe) if matches!(*fe, FailoverError::Refused { .. }) => Err(*fe),
                    Ok(fe) => Err(FailoverError::Step { step: name.to_string(), source: fe, done: self.done() }),
                    Err(source) => Err(FailoverError::Step { step: name.to_string(), source, done: self.done() }),
                }
            }
        }
    }

    fn done(&self) -> String {
        if self.steps.is_empty() {
            return "nothing".into();
        }
        self.steps.iter().map(|s| s.step.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// What a step made, and one line for the timeline about what it did.
pub(crate) struct Rung<T> {
    pub value: T,
    pub detail: String,
}

impl<T> Rung<T> {
    pub fn new(value: T, detail: impl Into<String>) -> Rung<T> {
        Rung { value, detail: detail.into() }
    }
}

impl Rung<()> {
    pub fn done(detail: impl Into<String>) -> Rung<()> {
        Rung { value: (), detail: detail.into() }
    }
}

/// An error type for steps whose failure is a plain message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Msg(pub String);

impl From<HostError> for Msg {
    fn from(e: HostError) -> Msg {
        Msg(e.to_string())
    }
}
impl From<CloudError> for Msg {
    fn from(e: CloudError) -> Msg {
        Msg(e.to_string())
    }
}
