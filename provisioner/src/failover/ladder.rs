//! The failover and failback ladders. Each rung is a named, timed step; every step is safe to
//! repeat, so a failed or interrupted run is resumed by running the same command again.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::hosts::{self, lsn_bytes, RegionHosts};
use super::rungs::*;
use super::*;
use crate::config::Config;
use crate::model::Marks;
use crate::situation::Situation;
use crate::template::Template;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The hosts of `region` that this machine may reach, as the ladder's steps use them.
pub(crate) fn region_hosts(s: &Situation, tpl: &Template, region: &str) -> RegionHosts {
    let user = s.cfg.region(region).map(|r| r.ssh_user.clone()).unwrap_or_else(|| "root".into());
    RegionHosts::new(&s.cfg, tpl, region, &s.reachable_hosts(), hosts::fleet(&s.cfg, &user, 2))
}

/// `--to` names a region of this project: checked before the first API call.
pub fn check_target(cfg: &Config, to: &str) -> Result<(), FailoverError> {
    if cfg.region(to).is_some() {
        return Ok(());
    }
    let names: Vec<&str> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
    Err(refused(format!("--to {to:?} is not a region of this project ({})", cfg.file), format!("use one of: {}", names.join(", "))))
}

/// `provision failover --to <region> [--planned] [--force]`.
/// `w` is a fresh [`look`] (a failover must act on the world as it is now).
pub async fn failover(w: &Situation, tpl: &Template, opts: &Opts) -> Result<FailoverReport, FailoverError> {
    let to = opts.to.clone();
    check_target(&w.cfg, &to)?;
    // Fenced: only the same unplanned failover may continue, and only when asked to (`--resume`):
    // without it, a rival run that decided a moment ago and is still promoting would have company.
    let resuming = match &w.observed.marks.fence {
        Some(f) if f.region != to && w.cfg.active().name == to && !opts.planned && opts.resume => true,
        Some(f) if f.region != to && w.cfg.active().name == to && !opts.planned => {
            return Err(refused(
                format!("a failover to {to} was already decided (failover state epoch {}): {} is fenced since {} (unix ms); another run may still be promoting {to}", w.observed.marks.epoch, f.region, f.at_unix_ms),
                format!("see `provision status`; if that run ended without finishing, finish it with `provision failover --to {to} --resume`"),
            ))
        }
        Some(f) => {
            return Err(refused(
                format!("region {} is fenced since {} (unix ms) and {} holds the primary role: a second failover would leave no standby to fail over to", f.region, f.at_unix_ms, w.cfg.active().name),
                "run `provision failback` first: it rebuilds the fenced region as a standby and moves the primary role back",
            ))
        }
        None => false,
    };
    let from = match (&w.observed.marks.fence, resuming) {
        (Some(f), true) => f.region.clone(),
        _ => w.cfg.active().name.clone(),
    };
    if to == from && !resuming {
        return Err(refused(format!("{to} already holds the primary role"), "nothing to do; `provision status` shows the layout"));
    }
    let (old, new) = (region_hosts(w, tpl, &from), region_hosts(w, tpl, &to));
    if new.db.is_empty() || new.gateways.is_empty() {
        return Err(refused(
            format!("{to} has no running DB or gateway host to take the primary role"),
            "run `provision status`; `provision up` rebuilds missing hosts",
        ));
    }
    if opts.planned {
        planned(w, &old, &new, opts).await
    } else {
        unplanned(w, &old, &new, opts, resuming).await
    }
}

async fn unplanned(
    w: &Situation,
    old: &RegionHosts,
    new: &RegionHosts,
    opts: &Opts,
    resuming: bool,
) -> Result<FailoverReport, FailoverError> {
    let t0 = Instant::now();
    let mut tl = Timeline::new("failover", opts.quiet);
    let mut report = report(old, new, false);
    if resuming {
        report.notes.push(format!("resumed: {} was already fenced by an earlier run", old.region));
    }

    // 1. What each region last committed, read before anything changes (the old one may not answer).
    let (old_pos, new_pos) = tl
        .step("read positions", async {
            let (a, b) = tokio::join!(positions(old), positions(new));
            let d = format!("{}: {:?}, {}: {:?}", old.region, a, new.region, b);
            Ok::<_, Msg>(Rung::new((a, b), d))
        })
        .await?;
    report.rpo.old_primary_lsn = old_pos.as_ref().map(|p| p.lsn.clone());
    report.rpo.old_last_order_id = old_pos.as_ref().map(|p| p.last_order_id);

    // 2. Decide (the next epoch of the failover state) and fence the old region through its cloud control plane.
    let fenced = tl.step("fence old region", fence(w, &old.region, &new.region, opts.force)).await?;
    report.fenced_instances = fenced.instances;
    report.notes.push(fenced.note);

    // 3-5. Promote, activate, flip.
    let promoted = tl.step("promote DR database", promote(new)).await?;
    report.rpo.new_primary_lsn = Some(promoted.lsn).filter(|s| !s.is_empty()).or(new_pos.as_ref().map(|p| p.lsn.clone()));
    report.rpo.new_last_order_id = promoted.last_order_id.or(new_pos.map(|p| p.last_order_id));
    tl.step("activate DR engines", activate(new)).await?;
    let flipped = tl.step("flip DNS records", flip(w, &new.region)).await;
    report.notes.extend(tl.steps.last().filter(|s| s.detail.starts_with("SKIPPED")).map(|s| s.detail.clone()));
    flipped?;
    report.rto_ms = t0.elapsed().as_millis() as u64;
    settle_rpo(&mut report.rpo);
    finish(w, tl, report).await
}

async fn planned(w: &Situation, old: &RegionHosts, new: &RegionHosts, opts: &Opts) -> Result<FailoverReport, FailoverError> {
    if let Some((r, e)) = w.unreachable.first() {
        return Err(refused(
            format!("a planned switchover needs both regions and Route53, and {r} does not answer: {e}"),
            "use `provision failover --to <region>` (unplanned) if that region is lost",
        ));
    }
    if old.db.is_empty() || old.gateways.is_empty() {
        return Err(refused(
            format!("{} has no running DB or gateway host", old.region),
            "use an unplanned failover if that region is lost",
        ));
    }
    let mut tl = Timeline::new("switchover", opts.quiet);
    let mut report = report(old, new, true);
    let last_order_id = tl.step("check both regions", preflight_planned(old, new)).await?;
    report.rpo.old_last_order_id = Some(last_order_id);

    let t0 = Instant::now();
    tl.step("stop writes in old primary", stop_writes(old)).await?;
    let final_wal = tl.step("demote old primary", demote(old, new)).await?;
    report.rpo.old_primary_lsn = Some(final_wal.text.clone());
    report.rpo.old_last_order_id = positions(old).await.map(|p| p.last_order_id).or(report.rpo.old_last_order_id);
    tl.step("wait for DR to replay the last WAL", catch_up(new, final_wal.bytes)).await?;
    let promoted = tl.step("promote DR database", promote(new)).await?;
    report.rpo.new_primary_lsn = Some(promoted.lsn);
    report.rpo.new_last_order_id = promoted.last_order_id;
    tl.step("activate DR engines", activate(new)).await?;
    let next = Marks { epoch: 0, active: (new.region != w.cfg.primary().name).then(|| new.region.clone()), fence: None };
    tl.step("record the primary role", async { decide(w, next).await.map(Rung::done) }).await?;
    tl.step("flip DNS records", flip(w, &new.region)).await?;
    report.rto_ms = t0.elapsed().as_millis() as u64;
    tl.step("old primary streams from the new one", follows(old, new)).await?;
    settle_rpo(&mut report.rpo);
    finish(w, tl, report).await
}

fn report(old: &RegionHosts, new: &RegionHosts, planned: bool) -> FailoverReport {
    FailoverReport {
        from: old.region.clone(),
        to: new.region.clone(),
        planned,
        rto_ms: 0,
        rpo: Rpo::default(),
        steps: vec![],
        fenced_instances: vec![],
        webhooks: vec![],
        notes: vec![],
    }
}

async fn finish(w: &Situation, tl: Timeline, mut report: FailoverReport) -> Result<FailoverReport, FailoverError> {
    report.steps = tl.steps;
    let event = json!({
        "event": if report.planned { "region_switchover" } else { "region_failover" },
        "project": w.cfg.project,
        "from": report.from,
        "to": report.to,
        "rto_ms": report.rto_ms,
        "rpo": report.rpo,
        "steps": report.steps,
        "fenced_instances": report.fenced_instances,
        "at_unix_ms": now_ms(),
    });
    report.webhooks = webhook::post_all(&w.cfg.engine.webhook_urls, &event).await;
    Ok(report)
}

/// Fills the RPO's derived fields (lost WAL bytes, summary) from the positions seen.
fn settle_rpo(r: &mut Rpo) {
    let pos = |l: &Option<String>| l.as_deref().and_then(lsn_bytes);
    r.lost_wal_bytes = pos(&r.old_primary_lsn).zip(pos(&r.new_primary_lsn)).map(|(o, n)| o.saturating_sub(n));
    r.summary = match (&r.old_primary_lsn, &r.new_primary_lsn, r.lost_wal_bytes) {
        (Some(o), Some(n), Some(lost)) => {
            format!("old primary at {o}, new primary promoted at {n}: {lost} WAL bytes not carried over; last order id {:?} -> {:?}", r.old_last_order_id, r.new_last_order_id)
        }
        (None, Some(n), _) => format!(
            "the old primary did not answer, so its last position is unknown; the new primary was promoted at {n} with last order id {:?}: anything committed after that in the old region is lost (async replication)",
            r.new_last_order_id
        ),
        _ => "unknown".into(),
    };
}
