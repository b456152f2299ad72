//! What is running, seen from the hosts: Patroni members with role and lag, gateway health,
//! engine partition leaders. Read-only; used by `provision status`.

use serde::Serialize;

use std::collections::BTreeMap;

use super::inventory::{Host, Inventory};
use super::render::Paths;
use super::local_route_guard;
use crate::config::Config;
use crate::ssh::{Fleet, SshConfig, Target};
use crate::template::Template;

#[derive(Debug, Clone, Serialize)]
pub struct RegionLive {
    pub region: String,
    /// Patroni's `/cluster` document (members with role, state, lag), as Patroni reports it.
    pub patroni: Option<serde_json::Value>,
    pub gateways: Vec<GatewayLive>,
    /// `engine_partition_leader{node=..,partition=..}` series that are 1 on the nodes' `/metrics`.
    pub partition_leaders: Vec<String>,
    /// Replay lag in seconds of each standby (by Patroni member name), from its upstream's
    /// `pg_stat_replication.replay_lag`; 0 when it has replayed everything sent.
    pub replay_lag_s: BTreeMap<String, f64>,
    pub unreachable: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayLive {
    pub host: String,
    pub http_status: u16,
    pub body: String,
}

pub async fn probe(cfg: &Config, tpl: &Template, inv: &Inventory) -> Vec<RegionLive> {
    let ssh = SshConfig { attempts_max: 1, connect_timeout_ms: 3_000, command_timeout_ms: 10_000, ..SshConfig::new(
        inv.hosts.first().map(|h| h.ssh_user.clone()).unwrap_or_else(|| "root".into()),
        crate::keys::private_key_path(cfg),
        crate::keys::key_dir(cfg).join("known_hosts"),
    ) };
    let fleet = Fleet::new(ssh, 16);
    // On a local cloud, only hosts that are on this machine (one route check each).
    let reachable: Vec<Host> = inv.hosts.iter().filter(|h| cfg.endpoint_url.is_none() || local_route_guard(h).is_ok()).cloned().collect();
    let lag_s = replay_lags(cfg, tpl, &reachable, &fleet).await;
    let mut out = Vec::new();
    for r in &cfg.regions {
        let replay_lag_s = inv.db(&r.name).iter().filter_map(|h| lag_s.get(&h.patroni_member()).map(|l| (h.patroni_member(), *l))).collect();
        let mut live = RegionLive { region: r.name.clone(), patroni: None, gateways: vec![], partition_leaders: vec![], replay_lag_s, unreachable: vec![] };
        let hosts: Vec<&Host> = reachable.iter().filter(|h| h.region == r.name).collect();
        let db: Vec<_> = hosts.iter().filter(|h| h.database).collect();
        let patroni_port = tpl.ports.patroni_rest;
        let gw_port = tpl.ports.gateway_http;
        if let Some(d) = db.first() {
            let ip = d.private_ip.clone();
            let res = fleet
                .run(&[d.ssh_target()], move |s| {
                    s.exec(&format!("curl -s --max-time 3 http://{ip}:{patroni_port}/cluster"), false).map(|o| o.stdout)
                })
                .await;
            match res.into_iter().next().map(|r| r.result) {
                Some(Ok(body)) => live.patroni = serde_json::from_str(&body).ok(),
                _ => live.unreachable.push(d.name.clone()),
            }
        }
        let apps: Vec<_> = hosts.iter().filter(|h| h.gateway || !h.modules.is_empty()).collect();
        let targets: Vec<Target> = apps.iter().map(|h| h.ssh_target()).collect();
        let ports: Vec<(bool, Vec<u16>)> = apps.iter().map(|h| (h.gateway, h.modules.iter().map(|m| tpl.ports.modules[m]).collect())).collect();
        let inputs: Vec<(Target, (bool, Vec<u16>))> = targets.into_iter().zip(ports).collect();
        let res = fleet
            .run_with(inputs, move |s, (gateway, node_ports): (bool, Vec<u16>)| {
                let ip = s.host().to_string();
                let health = if gateway {
                    Some(s.exec(&format!("curl -s --max-time 3 -w '\\n%{{http_code}}' http://{ip}:{gw_port}/health"), false)?.stdout)
                } else {
                    None
                };
                let mut leaders = Vec::new();
                for port in node_ports {
                    let o = s.exec(&format!("curl -s --max-time 3 http://{ip}:{port}/metrics | grep '^engine_partition_leader' | grep ' 1$'"), false)?;
                    leaders.extend(o.stdout.lines().map(str::to_string));
                }
                Ok((health, leaders))
            })
            .await;
        for (h, r) in apps.iter().zip(res) {
            match r.result {
                Ok((health, leaders)) => {
                    if let Some(text) = health {
                        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
                        live.gateways.push(GatewayLive { host: h.name.clone(), http_status: code.trim().parse().unwrap_or(0), body: body.to_string() });
                    }
                    live.partition_leaders.extend(leaders.into_iter().map(|l| l.trim_end_matches(" 1").to_string()));
                }
                Err(_) => live.unreachable.push(h.name.clone()),
            }
        }
        live.partition_leaders.sort();
        out.push(live);
    }
    out
}

/// Every standby's replay lag in seconds, read from the `pg_stat_replication` of every DB host
/// (a standby shows up on its upstream: a local leader, or for the DR standby leader the
/// primary region's leader). Member names are unique across regions, so one map serves both.
async fn replay_lags(cfg: &Config, tpl: &Template, reachable: &[Host], fleet: &Fleet) -> BTreeMap<String, f64> {
    let db: Vec<Target> = reachable.iter().filter(|h| h.database).map(Host::ssh_target).collect();
    let cmd = Paths::new(&cfg.project).psql(tpl.ports.postgres, "postgres", "select application_name, coalesce(extract(epoch from replay_lag), 0) from pg_stat_replication");
    let res = fleet.run(&db, move |s| s.exec(&crate::ssh::sudo_wrap(s.user(), &cmd), false).map(|o| o.stdout)).await;
    res.into_iter()
        .filter_map(|r| r.result.ok())
        .flat_map(|text| text.lines().filter_map(|l| l.split_once('|').and_then(|(n, v)| Some((n.to_string(), v.trim().parse::<f64>().ok()?)))).collect::<Vec<_>>())
        .collect()
}
