//! `provision drill --db-leader`: the in-region DB failover under load. Powers off the primary
//! region's Patroni leader host through the lab, keeps placing orders through the API name,
//! and measures the longest time without an acknowledged order while Patroni promotes the
//! synchronous standby and the engines follow; then checks every acknowledged order in the
//! new leader's database and powers the old leader back on.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::load::{Load, LoadStats};
use super::{run_lab, step_err, DrillError};
use crate::config::Config;
use crate::failover;
use crate::template::Template;

/// How long to wait for orders to be acknowledged again after the power-off.
const RECOVERY_WAIT_MS_MAX: u64 = 120_000;
const SAMPLE_MAX: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct DbLeaderReport {
    pub region: String,
    pub old_leader: String,
    pub new_leader: String,
    pub ok: bool,
    /// Longest time without an acknowledged order (the client-visible outage).
    pub client_rto_ms: u64,
    /// From the power-off to the first order acknowledged after the outage.
    pub power_off_to_next_ack_ms: Option<u64>,
    pub orders_acked: u64,
    pub orders_missing: u64,
    pub missing_sample: Vec<String>,
    pub load: LoadStats,
}

pub async fn drill_db_leader(
    cfg: &Config,
    tpl: &Template,
    lab: &str,
    orders_per_s: u32,
    quiet: bool,
) -> Result<DbLeaderReport, DrillError> {
    let w = failover::look(cfg, tpl).await?;
    let region = w.cfg.active().name.clone();
    let hosts = failover::ladder::region_hosts(&w, tpl, &region);
    let leader = hosts.leader().await.map_err(|e| step_err("find the DB leader", e))?;
    let leader_ip = hosts
        .db
        .iter()
        .find(|h| h.patroni_member() == leader.name)
        .map(|h| h.private_ip.clone())
        .ok_or_else(|| step_err("find the DB leader", "leader is not a known host"))?;

    let (cloud, user, user_id) = super::setup_user(cfg, tpl, 800_000_000, false).await?;
    let ld = Load::start(cloud, cfg.clone(), tpl.ports.gateway_http, &user, format!("dbloss-{user_id}"), orders_per_s);
    tokio::time::sleep(Duration::from_secs(2)).await;
    if !quiet {
        eprintln!("drill: powering off the DB leader {} ({leader_ip}) in {region}", leader.name);
    }
    run_lab(lab, &format!("fault power-off {leader_ip}")).map_err(|e| step_err("power-off", e))?;
    ld.mark();
    let off = Instant::now();
    // Until Patroni shows another member leading, then a few seconds of orders on it.
    while off.elapsed() < Duration::from_millis(RECOVERY_WAIT_MS_MAX) {
        if let Ok(c) = hosts.cluster().await {
            if c.with_role("leader").is_some_and(|m| m.name != leader.name) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (acked, stats) = ld.stop().await;

    let new = hosts.leader().await.map_err(|e| step_err("find the new leader", e))?;
    let out = hosts
        .sql_on(&new.name, &format!("SELECT client_order_id FROM orders WHERE user_id = {user_id}"))
        .await
        .map_err(|e| step_err("verify", e))?;
    let found: std::collections::BTreeSet<&str> = out.lines().map(str::trim).collect();
    let missing: Vec<String> = acked.iter().filter(|c| !found.contains(c.as_str())).cloned().collect();
    run_lab(lab, "heal all").map_err(|e| step_err("heal", e))?;
    // The outage is the longest gap between acks; it ends with the first ack on the new leader.
    let gap_end_ms = stats.longest_ack_gap_from_ms + stats.longest_ack_gap_ms;
    let recovered = stats.mark_ms.filter(|m| gap_end_ms > *m).map(|m| gap_end_ms - m);
    Ok(DbLeaderReport {
        region,
        ok: missing.is_empty() && recovered.is_some() && new.name != leader.name,
        old_leader: leader.name,
        new_leader: new.name,
        client_rto_ms: stats.longest_ack_gap_ms,
        power_off_to_next_ack_ms: recovered,
        orders_acked: acked.len() as u64,
        orders_missing: missing.len() as u64,
        missing_sample: missing.into_iter().take(SAMPLE_MAX).collect(),
        load: stats,
    })
}
