//! The failover and failback ladders. Each rung is a named, timed step; every step is safe to
//! repeat, so a failed or interrupted run is resumed by running the same command again.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::hosts::{self, lsn_bytes, RegionHosts};
use super::*;
use crate::cloud::{Cloud, RecordTarget};
use crate::config::{Config, HealthTarget};
use crate::deploy::inventory::{inventory_partial, Host};
use crate::desired::desired;
use crate::model::{pick, Fence, Marks, Observed};
use crate::roles;
use crate::template::Template;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn refused(reason: impl Into<String>, fix: impl Into<String>) -> FailoverError {
    FailoverError::Refused { reason: reason.into(), fix: fix.into() }
}

/// What the cloud says before the first step.
pub(crate) struct World {
    pub cfg: Config,
    pub cloud: Cloud,
    pub observed: Observed,
    pub zone_id: String,
    /// Regions whose EC2 API did not answer.
    unreachable: Vec<(String, CloudError)>,
    pub hosts: Vec<Host>,
    /// The operator's public key, as `desired` wants it.
    material: String,
    /// Desired hosts with no running instance (keys `region/instance/role-i`).
    missing: Vec<String>,
}

pub(crate) async fn look(cfg: &Config, tpl: &Template) -> Result<World, FailoverError> {
    let cloud = Cloud::connect(cfg).await;
    let (observed, unreachable) = cloud.observe_partial(cfg).await?;
    let zone_id = observed
        .zone
        .as_ref()
        .map(|z| z.id.clone())
        .ok_or_else(|| refused("the project has no hosted zone, so nothing serves clients yet", "run `provision up` first"))?;
    let eff = roles::effective(cfg, &observed.marks);
    let material = crate::keys::existing_public_key(cfg)?.unwrap_or_default();
    let (inv, missing) = inventory_partial(&eff, &desired(&eff, tpl, &material), &observed);
    let hosts = if cfg.endpoint_url.is_some() {
        // On a local cloud an address without a lab host would route off this machine.
        inv.hosts.into_iter().filter(|h| crate::deploy::local_route_guard(h).is_ok()).collect()
    } else {
        inv.hosts
    };
    let missing = missing.into_iter().map(|m| m.key).collect();
    Ok(World { cfg: eff, cloud, observed, zone_id, unreachable, hosts, material, missing })
}

pub(crate) fn region_hosts(w: &World, tpl: &Template, region: &str) -> RegionHosts {
    let user = w.cfg.region(region).map(|r| r.ssh_user.clone()).unwrap_or_else(|| "root".into());
    RegionHosts::new(&w.cfg, tpl, region, &w.hosts, hosts::fleet(&w.cfg, &user, 2))
}

/// `provision failover --to <region> [--planned] [--force]`.
pub async fn failover(cfg: &Config, tpl: &Template, opts: &Opts) -> Result<FailoverReport, FailoverError> {
    let to = opts.to.clone();
    // Checked before the first API call.
    if cfg.region(&to).is_none() {
        let names: Vec<&str> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
        return Err(refused(
            format!("--to {to:?} is not a region of this project ({})", cfg.file),
            format!("use one of: {}", names.join(", ")),
        ));
    }
    let w = look(cfg, tpl).await?;
    let from = w.cfg.active().name.clone();
    // Fenced: only the same unplanned failover may continue (a resumed run); anything else waits for failback.
    let resuming = match &w.observed.marks.fence {
        Some(f) if f.region == from && !opts.planned && to != from => true,
        Some(f) => {
            return Err(refused(
                format!("region {} is fenced since {} (unix ms) and {} holds the primary role: a second failover would leave no standby to fail over to", f.region, f.at_unix_ms, w.cfg.active().name),
                "run `provision failback` first: it rebuilds the fenced region as a standby and moves the primary role back",
            ))
        }
        None => false,
    };
    if to == from && !resuming {
        return Err(refused(format!("{to} already holds the primary role"), "nothing to do; `provision status` shows the layout"));
    }
    let (old, new) = (region_hosts(&w, tpl, &from), region_hosts(&w, tpl, &to));
    if new.db.is_empty() || new.gateways.is_empty() {
        return Err(refused(
            format!("{to} has no running DB or gateway host to take the primary role"),
            "run `provision status`; `provision up` rebuilds missing hosts",
        ));
    }
    if opts.planned {
        planned(&w, tpl, &old, &new, opts).await
    } else {
        unplanned(&w, tpl, &old, &new, opts, resuming).await
    }
}

async fn unplanned(
    w: &World,
    tpl: &Template,
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
            Ok::<_, Msg>(((a, b), d))
        })
        .await?;
    report.rpo.old_primary_lsn = old_pos.as_ref().map(|p| p.0.clone());
    report.rpo.old_last_order_id = old_pos.as_ref().map(|p| p.1);

    // 2. Fence the old region through its cloud control plane.
    let (ids, note) = tl.step("fence old region", fence(w, &old.region, opts.force)).await?;
    report.fenced_instances = ids;
    report.notes.push(note);

    // 3-5. Promote, activate, flip.
    let (lsn, last) = tl.step("promote DR database", promote(new)).await?;
    report.rpo.new_primary_lsn = Some(lsn).filter(|s| !s.is_empty()).or(new_pos.as_ref().map(|p| p.0.clone()));
    report.rpo.new_last_order_id = last.or(new_pos.map(|p| p.1));
    tl.step("activate DR engines", activate(new)).await?;
    let fence_mark = Some(Fence { region: old.region.clone(), at_unix_ms: now_ms() });
    tl.step("flip DNS records", flip(w, tpl, &new.region, fence_mark)).await?;
    report.rto_ms = t0.elapsed().as_millis() as u64;
    settle_rpo(&mut report.rpo);
    finish(w, tl, report).await
}

async fn planned(w: &World, tpl: &Template, old: &RegionHosts, new: &RegionHosts, opts: &Opts) -> Result<FailoverReport, FailoverError> {
    if let Some((r, e)) = w.unreachable.first() {
        return Err(refused(
            format!("a planned switchover needs both regions, and {r}'s EC2 API does not answer: {e}"),
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
    let before = tl.step("check both regions", preflight_planned(old, new)).await?;
    report.rpo.old_last_order_id = Some(before.1);

    let t0 = Instant::now();
    tl.step("stop writes in old primary", stop_writes(old)).await?;
    let final_lsn = tl.step("demote old primary", demote(old, new)).await?;
    report.rpo.old_primary_lsn = Some(final_lsn.1.clone());
    report.rpo.old_last_order_id = positions(old).await.map(|p| p.1).or(report.rpo.old_last_order_id);
    tl.step("wait for DR to replay the last WAL", catch_up(new, final_lsn.0)).await?;
    let (lsn, last) = tl.step("promote DR database", promote(new)).await?;
    report.rpo.new_primary_lsn = Some(lsn);
    report.rpo.new_last_order_id = last;
    tl.step("activate DR engines", activate(new)).await?;
    tl.step("flip DNS records", flip(w, tpl, &new.region, None)).await?;
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

async fn finish(w: &World, tl: Timeline, mut report: FailoverReport) -> Result<FailoverReport, FailoverError> {
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

/// (WAL position text, last order id) of the region's leader; None if it does not answer in time.
async fn positions(r: &RegionHosts) -> Option<(String, i64)> {
    let f = async {
        let (m, _, lsn) = r.leader_lsn().await.ok()?;
        let last = r.sql_on(&m.name, "SELECT coalesce(max(order_id), 0) FROM orders").await.ok()?.parse().ok()?;
        Some((lsn, last))
    };
    tokio::time::timeout(Duration::from_millis(PROBE_DEAD_MS_MAX), f).await.ok().flatten()
}

/// Stops every instance of `region` through its EC2 API and records the fence on the zone
/// first, so that `up` refuses to start them again. Without an answering API, only `force`
/// goes on, and then nothing stops the old hosts: the report says so.
async fn fence(w: &World, region: &str, force: bool) -> Result<((Vec<String>, String), String), Msg> {
    let at = now_ms();
    let mut marks = w.observed.marks.clone();
    marks.active = Some(w.cfg.active().name.clone());
    marks.fence = Some(Fence { region: region.to_string(), at_unix_ms: at });
    if let Err(e) = w.cloud.ec2_answers(region).await {
        if !force {
            return Err(Msg(format!(
                "{region}'s EC2 API does not answer ({e}), so its instances cannot be stopped: promoting the DR region now could leave two primaries taking writes if {region} comes back.\n  fix: retry when the API answers, or pass --force after making sure {region}'s hosts are really down"
            )));
        }
        w.cloud.set_marks(&w.zone_id, &marks).await?;
        let note = format!("FORCED: {region}'s EC2 API did not answer; its instances were NOT stopped. If they come back they must not serve: run `provision failback` as soon as the API answers");
        return Ok(((vec![], note.clone()), note));
    }
    w.cloud.set_marks(&w.zone_id, &marks).await?;
    let ids: Vec<String> = w
        .observed
        .region(region)
        .map(|r| {
            r.instances
                .iter()
                .filter(|i| matches!(i.attrs.state.as_str(), "pending" | "running" | "stopping"))
                .map(|i| i.id.clone())
                .collect()
        })
        .unwrap_or_default();
    w.cloud.fence_instances(region, &ids, at).await?;
    let note = format!("{region}: {} instance(s) stopped through EC2 and tagged {}", ids.len(), crate::model::TAG_FENCED);
    Ok(((ids, note.clone()), note))
}

/// Removes `standby_cluster` from the region's dynamic config and turns on strict quorum
/// commit (`ANY 1` of the local standbys); waits for a leader and a quorum standby.
async fn promote(r: &RegionHosts) -> Result<((String, Option<i64>), String), Msg> {
    let before = positions(r).await;
    let at = before.as_ref().map(|p| p.0.clone()).unwrap_or_default();
    r.patch_config(
        json!({ "standby_cluster": null, "synchronous_mode": "quorum", "synchronous_mode_strict": true, "synchronous_node_count": 1 }),
    )
    .await?;
    let c = r.wait_roles(&["leader", crate::deploy::render::QUORUM_STANDBY_ROLE], PROMOTE_WAIT_MS_MAX).await?;
    Ok(((at, before.map(|p| p.1)), c.summary()))
}

/// Switches the region's engines to active and waits for every gateway's `/health` 200
/// (which needs a writable DB and a leader for every partition).
async fn activate(r: &RegionHosts) -> Result<((), String), Msg> {
    r.set_mode("active").await?;
    r.wait_healthy(HEALTH_WAIT_MS_MAX).await?;
    Ok(((), format!("{} gateway(s) healthy", r.gateways.len())))
}

/// Points the PRIMARY record at `active`'s gateways and the SECONDARY at the other region's
/// (health checks kept on both) in one change, waits until INSYNC, then records the marks.
async fn flip(w: &World, tpl: &Template, active: &str, fence: Option<Fence>) -> Result<((), String), Msg> {
    let after = w.cfg.with_active(active);
    let d = desired(&after, tpl, &w.material);
    let mut targets = Vec::new();
    for rs in &d.records {
        let check = pick(&w.observed.checks, &rs.check_key)
            .ok_or_else(|| Msg(format!("health check {} not found; run `provision up`", rs.check_key)))?;
        let region = d.regions.iter().find(|r| r.name == rs.region).expect("record of a desired region");
        let observed = w.observed.region(&rs.region);
        let mut ips: Vec<String> = region
            .hosts
            .iter()
            .filter(|h| h.gateway)
            .filter_map(|h| observed.and_then(|o| pick(&o.instances, &h.key)))
            .filter_map(
                |f| if w.cfg.health_target == HealthTarget::PublicIp { f.attrs.public_ip.clone() } else { f.attrs.private_ip.clone() },
            )
            .collect();
        if ips.is_empty() {
            // The region's API did not answer: keep the addresses its record already has.
            ips = w
                .observed
                .records
                .iter()
                .find(|r| r.health_check_id.as_deref() == Some(check.id.as_str()))
                .map(|r| r.ips.clone())
                .unwrap_or_default();
        }
        if ips.is_empty() {
            return Err(Msg(format!("no gateway address known for {}", rs.region)));
        }
        targets.push(RecordTarget {
            set_identifier: rs.set_identifier.clone(),
            failover: rs.failover,
            ips,
            health_check_id: check.id.clone(),
        });
    }
    let change = w.cloud.flip_records(&w.zone_id, &d.record_name, d.record_ttl_s, &targets).await?;
    w.cloud.wait_insync(&change).await?;
    let marks = Marks { active: (active != w.cfg.primary().name).then(|| active.to_string()), fence };
    w.cloud.set_marks(&w.zone_id, &marks).await?;
    let primary = targets.iter().find(|t| t.failover == crate::model::Failover::Primary).map(|t| t.ips.join(",")).unwrap_or_default();
    Ok(((), format!("PRIMARY -> {active} ({primary}), change {change} INSYNC")))
}

/// Both regions as a switchover needs them: the old primary healthy with a synchronous
/// standby, the DR standby leader streaming. Returns the old primary's last order id.
async fn preflight_planned(old: &RegionHosts, new: &RegionHosts) -> Result<(((), i64), String), Msg> {
    // A run that stopped half-way has left the old primary demoted (standby_leader) or the new
    // one promoted (leader): both are fine to continue from.
    let c = old.cluster().await?;
    if c.with_role("leader").is_some() {
        let h = old.health().await;
        if !h.iter().any(|(_, code)| *code == 200) && !h.iter().all(|(_, code)| *code == 503) {
            return Err(Msg(format!("{} gateways do not answer ({h:?}); a planned switchover needs a live primary region", old.region)));
        }
    } else if c.with_role("standby_leader").is_none() {
        return Err(Msg(format!("{} has no running Patroni leader: {}", old.region, c.summary())));
    }
    let n = new.cluster().await?;
    if n.with_role("standby_leader").is_none() && n.with_role("leader").is_none() {
        return Err(Msg(format!("{} has no running standby leader: {}", new.region, n.summary())));
    }
    let last = positions(old).await.map(|p| p.1).unwrap_or(0);
    Ok((((), last), format!("{}: {}; {}: {}", old.region, c.summary(), new.region, n.summary())))
}

/// The old primary's engines go to standby: the gateways refuse writes from here on.
async fn stop_writes(r: &RegionHosts) -> Result<((), String), Msg> {
    r.set_mode("standby").await?;
    let t0 = Instant::now();
    loop {
        let h = r.health().await;
        if h.iter().all(|(_, c)| *c != 200) {
            return Ok(((), "gateways answer 503 standby".into()));
        }
        if t0.elapsed() > Duration::from_millis(HEALTH_WAIT_MS_MAX) {
            return Err(Msg(format!("gateways still healthy after the switch to standby: {h:?}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Turns the old primary into a standby cluster of the new primary's DB hosts; returns its
/// final WAL position (after the demotion nothing more is written there). Safe to repeat:
/// an already demoted cluster just reports its position.
async fn demote(old: &RegionHosts, new: &RegionHosts) -> Result<((u64, String), String), Msg> {
    let c = old.cluster().await?;
    let before = match c.with_role("leader") {
        Some(_) => old.leader_lsn().await?.1,
        None => 0,
    };
    let hosts: Vec<String> = new.db.iter().map(|h| h.private_ip.clone()).collect();
    old.patch_config(json!({
        "standby_cluster": { "host": hosts.join(","), "port": new.pg_port(), "create_replica_methods": ["basebackup"] },
        "synchronous_mode": false,
        "synchronous_mode_strict": false,
    }))
    .await?;
    let (after, text) = old.settled_standby_lsn(DEMOTE_WAIT_MS_MAX).await?;
    let (last, text) = if after >= before { (after, text) } else { (before, format!("{:X}/{:X}", before >> 32, before & 0xffff_ffff)) };
    Ok(((last, text.clone()), format!("final WAL position {text}")))
}

async fn catch_up(new: &RegionHosts, target: u64) -> Result<((), String), Msg> {
    let t0 = Instant::now();
    loop {
        let (_, at, text) = new.leader_lsn().await?;
        if at >= target {
            return Ok(((), format!("replayed {text}")));
        }
        if t0.elapsed() > Duration::from_millis(CATCH_UP_WAIT_MS_MAX) {
            return Err(Msg(format!("{} replayed only {text}, {} bytes short of the old primary's last WAL", new.region, target - at)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the old primary's standby leader streams from one of the new primary's hosts.
async fn follows(old: &RegionHosts, new: &RegionHosts) -> Result<((), String), Msg> {
    let ips: Vec<String> = new.db.iter().map(|h| h.private_ip.clone()).collect();
    let t0 = Instant::now();
    loop {
        if let Ok(Some(up)) = old.upstream().await {
            if ips.contains(&up) {
                return Ok(((), format!("{} streams from {up}", old.region)));
            }
        }
        if t0.elapsed() > Duration::from_millis(FOLLOW_WAIT_MS_MAX) {
            return Err(Msg(format!("{} is not streaming from {} after {} s", old.region, new.region, FOLLOW_WAIT_MS_MAX / 1000)));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FailbackReport {
    /// "fresh clone on new instances" when the region was fenced, else "none".
    pub rebuild: String,
    pub rebuild_ms: u64,
    pub switchover: Option<FailoverReport>,
    pub notes: Vec<String>,
}

/// `provision failback`: rebuild a fenced region as a standby (terminate its fenced
/// instances, `up` makes new ones and clones the DB from the primary), then a planned
/// switchover back to the configured primary.
pub async fn failback(cfg: &Config, tpl: &Template, opts: &Opts) -> Result<FailbackReport, FailoverError> {
    let w = look(cfg, tpl).await?;
    let home = cfg.primary().name.clone();
    let mut report = FailbackReport { rebuild: "none".into(), rebuild_ms: 0, switchover: None, notes: vec![] };
    let t0 = Instant::now();
    let passive = w.cfg.passive().name.clone();
    let fenced = w.observed.marks.fence.clone();
    if let Some(f) = &fenced {
        w.cloud.ec2_answers(&f.region).await.map_err(|e| {
            refused(format!("{} is fenced and its EC2 API does not answer: {e}", f.region), "retry when the region's API answers")
        })?;
        let ids: Vec<String> = w.observed.region(&f.region).map(|r| r.instances.iter().map(|i| i.id.clone()).collect()).unwrap_or_default();
        let addrs: Vec<crate::ssh::Target> = w
            .observed
            .region(&f.region)
            .map(|r| {
                r.instances
                    .iter()
                    .flat_map(|i| [i.attrs.private_ip.clone(), i.attrs.public_ip.clone()])
                    .flatten()
                    .map(|ip| crate::ssh::Target::new(ip, 22))
                    .collect()
            })
            .unwrap_or_default();
        if !opts.quiet {
            eprintln!("failback: terminating {} fenced instance(s) in {} (their data may hold writes the survivors never saw: a fresh clone, not pg_rewind)", ids.len(), f.region);
        }
        w.cloud.terminate(&f.region, &ids).await?;
        crate::ssh::KnownHosts::new(crate::keys::key_dir(cfg).join("known_hosts"))
            .forget(&addrs)
            .map_err(|e| refused(format!("cannot update known_hosts: {e}"), "check the file's permissions"))?;
        w.cloud.set_marks(&w.zone_id, &Marks { active: w.observed.marks.active.clone(), fence: None }).await?;
    }
    // Also when an earlier failback stopped between the termination and the rebuild.
    let prefix = format!("{passive}/");
    if fenced.is_some() || w.missing.iter().any(|k| k.starts_with(&prefix)) {
        if !opts.quiet {
            eprintln!("failback: rebuilding {passive} as a standby of {} (up + deploy)", w.cfg.active().name);
        }
        let up = crate::ops::up_all(cfg, tpl, crate::ops::CONCURRENCY_DEFAULT as usize, opts.quiet).await.map_err(Box::new)?;
        if !up.ok() {
            return Err(refused(format!("rebuilding {passive} did not converge: {:?}", up.infra.failures), "re-run `provision failback`"));
        }
        report.rebuild = format!("fresh clone on new instances in {passive} (base backup from the primary)");
        report.rebuild_ms = t0.elapsed().as_millis() as u64;
    }
    let w = look(cfg, tpl).await?;
    if w.cfg.active().name == home {
        report.notes.push(format!("{home} already holds the primary role"));
        return Ok(report);
    }
    let sw = failover(cfg, tpl, &Opts { to: home, planned: true, force: false, quiet: opts.quiet }).await?;
    report.switchover = Some(sw);
    Ok(report)
}
