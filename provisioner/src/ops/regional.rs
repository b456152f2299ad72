//! The regional commands: `failover`, `failback`, `drill`, `watch`. The ladders, the drill
//! and the watch loop live in their modules; what composes them with `up` lives here.

use std::time::Instant;

use crate::config::Config;
use crate::drill::{self, db_leader::DbLeaderReport, DrillError, DrillOpts, DrillReport};
use crate::failover::{self, FailbackReport, FailoverError, FailoverReport};
use crate::template::Template;
use crate::watch::{self, Sink, WatchError, WatchOpts, WatchReport};

/// `provision failover --to <region> [--planned] [--force]`.
pub async fn failover(cfg: &Config, tpl: &Template, opts: &failover::Opts) -> Result<FailoverReport, FailoverError> {
    failover::run(cfg, tpl, opts).await
}

/// `provision failback`: rebuild a fenced region as a standby (terminate its fenced
/// instances; `up` makes new ones and clones the DB from the primary), then a planned
/// switchover back to the configured primary.
pub async fn failback(cfg: &Config, tpl: &Template, quiet: bool, force: bool) -> Result<FailbackReport, FailoverError> {
    let s = failover::look(cfg, tpl).await?;
    let home = cfg.primary().name.clone();
    let mut report = FailbackReport { rebuild: "none".into(), rebuild_ms: 0, switchover: None, notes: vec![] };
    let t0 = Instant::now();
    failover::unfence(&s, quiet, force).await?;
    if failover::needs_rebuild(&s) {
        let passive = s.cfg.passive().name.clone();
        if !quiet {
            eprintln!("failback: rebuilding {passive} as a standby of {} (up + deploy)", s.cfg.active().name);
        }
        let up =
            super::up_all(cfg, tpl, super::CONCURRENCY_DEFAULT as usize, quiet).await.map_err(|e| FailoverError::Rebuild(Box::new(e)))?;
        if !up.ok() {
            return Err(failover::refused(
                format!("rebuilding {passive} did not converge: {:?}", up.infra.failures),
                "re-run `provision failback`",
            ));
        }
        report.rebuild = format!("fresh clone on new instances in {passive} (base backup from the primary)");
        report.rebuild_ms = t0.elapsed().as_millis() as u64;
    }
    let s = failover::look(cfg, tpl).await?;
    if s.cfg.active().name == home {
        report.notes.push(format!("{home} already holds the primary role"));
        return Ok(report);
    }
    let opts = failover::Opts { to: home, planned: true, force: false, resume: false, quiet };
    report.switchover = Some(failover::failover(&s, tpl, &opts).await?);
    Ok(report)
}

/// `provision drill`: load, failover, verify, failback (this module's), verify.
pub async fn drill(cfg: &Config, tpl: &Template, opts: &DrillOpts) -> Result<DrillReport, DrillError> {
    drill::drill(cfg, tpl, opts, || failback(cfg, tpl, opts.quiet, false)).await
}

/// `provision drill --db-leader`.
pub async fn drill_db_leader(cfg: &Config, tpl: &Template, lab: &str, orders_per_s: u32) -> Result<DbLeaderReport, DrillError> {
    drill::db_leader::drill_db_leader(cfg, tpl, lab, orders_per_s, false).await
}

/// `provision watch`: decisions go to `sink` as they happen.
pub async fn watch(cfg: &Config, tpl: &Template, opts: &WatchOpts, sink: &dyn Sink) -> Result<WatchReport, WatchError> {
    watch::run(cfg, tpl, opts, sink).await
}
