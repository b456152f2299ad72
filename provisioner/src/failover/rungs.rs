//! The rungs of the failover ladders: each does one thing, is safe to repeat, and returns a
//! named outcome with a line for the timeline.

use std::time::{Duration, Instant};

use serde_json::json;

use super::hosts::RegionHosts;
use super::ladder::now_ms;
use super::listing;
use super::*;
use crate::cloud::RecordTarget;
use crate::model::{pick, Fence, Marks};
use crate::situation::Situation;

/// A region leader's last WAL position and highest committed order id.
#[derive(Debug, Clone)]
pub(super) struct Position {
    pub lsn: String,
    pub last_order_id: i64,
}

/// What the fence stopped, and the line the report keeps.
pub(super) struct Fenced {
    pub instances: Vec<String>,
    pub note: String,
}

/// Where the promoted region stood when it was promoted.
pub(super) struct Promoted {
    pub lsn: String,
    pub last_order_id: Option<i64>,
}

/// The demoted primary's final WAL position, as a byte offset and as text.
pub(super) struct FinalWal {
    pub bytes: u64,
    pub text: String,
}

/// The region leader's WAL position and last order id; None if it does not answer in time.
pub(super) async fn positions(r: &RegionHosts) -> Option<Position> {
    let f = async {
        let (m, _, lsn) = r.leader_lsn().await.ok()?;
        let last_order_id = r.sql_on(&m.name, "SELECT coalesce(max(order_id), 0) FROM orders").await.ok()?.parse().ok()?;
        Some(Position { lsn, last_order_id })
    };
    tokio::time::timeout(Duration::from_millis(PROBE_DEAD_MS_MAX), f).await.ok().flatten()
}

/// Decides the failover and fences the old region: a fresh listing that must show every
/// desired host of `region` (without an answering API or a complete listing, only `force`
/// goes on, and then what is not listed is not stopped: the report says so), then the new
/// failover state (`to` active, `region` fenced) as the next epoch (exactly one of two rival
/// runs gets past this; the other is refused), then every listed instance stopped through EC2.
pub(super) async fn fence(w: &Situation, region: &str, to: &str, force: bool) -> Result<Rung<Fenced>, FailoverError> {
    // A resumed run keeps the fence the earlier run decided (same state: nothing is written).
    let at = w.observed.marks.fence.as_ref().filter(|f| f.region == region).map(|f| f.at_unix_ms).unwrap_or_else(now_ms);
    let listing = match w.cloud.ec2_answers(region).await {
        Ok(()) => listing::fresh(w, region).await,
        Err(e) => Err(format!("its EC2 API does not answer: {e}")),
    };
    let gap = listing::incomplete(region, "stopped", &listing);
    if let (Some(gap), false) = (&gap, force) {
        return Err(refused(
            format!("{gap}: promoting the DR region now could leave two primaries taking writes if {region}'s hosts come back"),
            format!("retry when the API answers and lists every host, or pass --force after making sure {region}'s hosts are really down"),
        ));
    }
    let next = Marks {
        epoch: 0,
        active: (to != w.cfg.primary().name).then(|| to.to_string()),
        fence: Some(Fence { region: region.into(), at_unix_ms: at }),
    };
    let decided = decide(w, next).await?;
    let ids = listing.as_ref().map(|l| l.ids_in(&["pending", "running", "stopping"])).unwrap_or_default();
    if !ids.is_empty() {
        w.cloud.fence_instances(region, &ids, at).await.map_err(|e| FailoverError::Step {
            step: "stop instances".into(),
            source: Box::new(e),
            done: decided.clone(),
        })?;
    }
    let mut note = format!("{region}: {} instance(s) stopped through EC2 and tagged {}; {decided}", ids.len(), crate::model::TAG_FENCED);
    if let Some(gap) = gap {
        note = format!(
            "FORCED: {gap}. {note}. If the others come back they must not serve: run `provision failback` as soon as the API lists them"
        );
    }
    Ok(Rung::new(Fenced { instances: ids, note: note.clone() }, note))
}

/// Writes `next` as the failover state after the one this run read. A rival run that wrote
/// first makes this a refusal that changes nothing. Returns one line about where it landed.
pub(super) async fn decide(w: &Situation, next: Marks) -> Result<String, FailoverError> {
    let prev = &w.observed.marks;
    let write = w.cloud.write_marks(&w.configured, zone_id(w), prev, next).await.map_err(|e| match e {
        e @ crate::cloud::CloudError::Raced { .. } => {
            refused(e.to_string(), "run `provision status`: another operator's run is moving the primary role")
        }
        e => FailoverError::Cloud(e),
    })?;
    Ok(describe_write(prev, &write))
}

fn describe_write(prev: &Marks, w: &crate::cloud::MarksWrite) -> String {
    if w.marks.epoch == prev.epoch {
        return format!("failover state already at epoch {}", prev.epoch);
    }
    let copies = if w.copies_failed.is_empty() {
        "copied to every place".to_string()
    } else {
        format!("not copied to: {} (`provision failback` or `up` repairs them)", w.copies_failed.join("; "))
    };
    format!("failover state epoch {} decided in {}'s Parameter Store, {copies}", w.marks.epoch, w.decided_in)
}

/// Removes `standby_cluster` from the region's dynamic config and turns on strict quorum
/// commit (`ANY 1` of the local standbys); waits for a leader and a quorum standby.
pub(super) async fn promote(r: &RegionHosts) -> Result<Rung<Promoted>, Msg> {
    let before = positions(r).await;
    let lsn = before.as_ref().map(|p| p.lsn.clone()).unwrap_or_default();
    r.patch_config(
        json!({ "standby_cluster": null, "synchronous_mode": "quorum", "synchronous_mode_strict": true, "synchronous_node_count": 1 }),
    )
    .await?;
    let c = r.wait_roles(&["leader", crate::deploy::render::QUORUM_STANDBY_ROLE], PROMOTE_WAIT_MS_MAX).await?;
    Ok(Rung::new(Promoted { lsn, last_order_id: before.map(|p| p.last_order_id) }, c.summary()))
}

/// Switches the region's engines to active and waits for every gateway's `/health` 200
/// (which needs a writable DB and a leader for every partition).
pub(super) async fn activate(r: &RegionHosts) -> Result<Rung<()>, Msg> {
    r.set_mode("active").await?;
    r.wait_healthy(HEALTH_WAIT_MS_MAX).await?;
    Ok(Rung::done(format!("{} gateway(s) healthy", r.gateways.len())))
}

/// Points the PRIMARY record at `active`'s gateways and the SECONDARY at the other region's
/// (health checks kept on both) in one change and waits until INSYNC. Only the record swap
/// needs Route53's control plane: the health checks already send clients to the region that
/// takes writes. So when the control plane did not answer, the swap is skipped and reported;
/// `failback` (or `up`) makes it later.
pub(super) async fn flip(w: &Situation, active: &str) -> Result<Rung<()>, Msg> {
    let Some(zone_id) = zone_id(w) else {
        return Ok(Rung::done(format!(
            "SKIPPED: Route53's control plane did not answer, so the records still name the old PRIMARY; its failing health check makes Route53 answer {active}'s gateways (the SECONDARY) meanwhile. `provision failback` or `provision up` swaps them once it answers"
        )));
    };
    let d = &w.desired;
    let mut targets = Vec::new();
    for rs in &crate::desired::records(&w.cfg.with_active(active)) {
        let check = pick(&w.observed.checks, &rs.check_key)
            .ok_or_else(|| Msg(format!("health check {} not found; run `provision up`", rs.check_key)))?;
        let region = d.regions.iter().find(|r| r.name == rs.region).expect("record of a desired region");
        let observed = w.observed.region(&rs.region);
        let mut ips: Vec<String> = region
            .hosts
            .iter()
            .filter(|h| h.gateway)
            .filter_map(|h| observed.and_then(|o| pick(&o.instances, &h.key)))
            .filter_map(|f| d.address.of(&f.attrs))
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
    let change = w.cloud.flip_records(zone_id, &d.record_name, d.record_ttl_s, &targets).await?;
    w.cloud.wait_insync(&change).await?;
    let primary = targets.iter().find(|t| t.failover == crate::model::Failover::Primary).map(|t| t.ips.join(",")).unwrap_or_default();
    Ok(Rung::done(format!("PRIMARY -> {active} ({primary}), change {change} INSYNC")))
}

/// Both regions as a switchover needs them: the old primary healthy with a synchronous
/// standby, the DR standby leader streaming. Returns the old primary's last order id.
pub(super) async fn preflight_planned(old: &RegionHosts, new: &RegionHosts) -> Result<Rung<i64>, Msg> {
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
    let last = positions(old).await.map(|p| p.last_order_id).unwrap_or(0);
    Ok(Rung::new(last, format!("{}: {}; {}: {}", old.region, c.summary(), new.region, n.summary())))
}

/// The old primary's engines go to standby: the gateways refuse writes from here on.
pub(super) async fn stop_writes(r: &RegionHosts) -> Result<Rung<()>, Msg> {
    r.set_mode("standby").await?;
    let t0 = Instant::now();
    loop {
        let h = r.health().await;
        if h.iter().all(|(_, c)| *c != 200) {
            return Ok(Rung::done("gateways answer 503 standby"));
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
pub(super) async fn demote(old: &RegionHosts, new: &RegionHosts) -> Result<Rung<FinalWal>, Msg> {
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
    Ok(Rung::new(FinalWal { bytes: last, text: text.clone() }, format!("final WAL position {text}")))
}

pub(super) async fn catch_up(new: &RegionHosts, target: u64) -> Result<Rung<()>, Msg> {
    let t0 = Instant::now();
    loop {
        let (_, at, text) = new.leader_lsn().await?;
        if at >= target {
            return Ok(Rung::done(format!("replayed {text}")));
        }
        if t0.elapsed() > Duration::from_millis(CATCH_UP_WAIT_MS_MAX) {
            return Err(Msg(format!("{} replayed only {text}, {} bytes short of the old primary's last WAL", new.region, target - at)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the old primary's standby leader streams from one of the new primary's hosts.
pub(super) async fn follows(old: &RegionHosts, new: &RegionHosts) -> Result<Rung<()>, Msg> {
    let ips: Vec<String> = new.db.iter().map(|h| h.private_ip.clone()).collect();
    let t0 = Instant::now();
    loop {
        if let Ok(Some(up)) = old.upstream().await {
            if ips.contains(&up) {
                return Ok(Rung::done(format!("{} streams from {up}", old.region)));
            }
        }
        if t0.elapsed() > Duration::from_millis(FOLLOW_WAIT_MS_MAX) {
            return Err(Msg(format!("{} is not streaming from {} after {} s", old.region, new.region, FOLLOW_WAIT_MS_MAX / 1000)));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
