//! What is running, seen from the hosts: Patroni members with role and lag, gateway health,
//! engine partition leaders. Read-only; used by `provision status`.

use serde::Serialize;

use std::collections::BTreeMap;

use super::inventory::{Host, Inventory};
use super::local_route_guard;
use super::render::Paths;
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
    /// What is wrong with the database cluster (`cluster_alerts`): a second leader, a member
    /// on another timeline than the leader's, one that does not follow it. Empty = healthy.
    pub db_alerts: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayLive {
    pub host: String,
    pub http_status: u16,
    pub body: String,
}

pub async fn probe(cfg: &Config, tpl: &Template, inv: &Inventory) -> Vec<RegionLive> {
    let ssh = SshConfig {
        attempts_max: 1,
        connect_timeout_ms: 3_000,
        command_timeout_ms: 10_000,
        ..SshConfig::new(
            inv.hosts.first().map(|h| h.ssh_user.clone()).unwrap_or_else(|| "root".into()),
            crate::keys::private_key_path(cfg),
            crate::keys::key_dir(cfg).join("known_hosts"),
        )
    };
    let fleet = Fleet::new(ssh, 16);
    // On a local cloud, only hosts that are on this machine (one route check each).
    let reachable: Vec<Host> = inv.hosts.iter().filter(|h| cfg.endpoint_url.is_none() || local_route_guard(h).is_ok()).cloned().collect();
    let lag_s = replay_lags(cfg, tpl, &reachable, &fleet).await;
    let mut out = Vec::new();
    for r in &cfg.regions {
        let replay_lag_s =
            inv.db(&r.name).iter().filter_map(|h| lag_s.get(&h.patroni_member()).map(|l| (h.patroni_member(), *l))).collect();
        let mut live = RegionLive {
            region: r.name.clone(),
            patroni: None,
            gateways: vec![],
            partition_leaders: vec![],
            replay_lag_s,
            unreachable: vec![],
            db_alerts: vec![],
        };
        let hosts: Vec<&Host> = reachable.iter().filter(|h| h.region == r.name).collect();
        let db: Vec<_> = hosts.iter().filter(|h| h.database).collect();
        let patroni_port = tpl.ports.patroni_rest;
        let curl = super::render::GatewayCurl::new(cfg, tpl.ports.gateway_http);
        if let Some(d) = db.first() {
            let ip = d.private_ip.clone();
            let res = fleet
                .run(&[d.ssh_target()], move |s| {
                    s.exec(&format!("curl -s --max-time 3 http://{ip}:{patroni_port}/cluster"), false).map(|o| o.stdout)
                })
                .await;
            match res.into_iter().next().map(|r| r.result) {
                Some(Ok(body)) => {
                    live.patroni = serde_json::from_str(&body).ok();
                    live.db_alerts = live.patroni.as_ref().map(cluster_alerts).unwrap_or_default().into_iter().map(|a| a.text).collect();
                }
                _ => live.unreachable.push(d.name.clone()),
            }
        }
        let apps: Vec<_> = hosts.iter().filter(|h| h.gateway || !h.modules.is_empty()).collect();
        let targets: Vec<Target> = apps.iter().map(|h| h.ssh_target()).collect();
        let ports: Vec<(bool, Vec<u16>)> =
            apps.iter().map(|h| (h.gateway, h.modules.iter().map(|m| tpl.ports.modules[m]).collect())).collect();
        let inputs: Vec<(Target, (bool, Vec<u16>))> = targets.into_iter().zip(ports).collect();
        let res = fleet
            .run_with(inputs, move |s, (gateway, node_ports): (bool, Vec<u16>)| {
                let ip = s.host().to_string();
                let health = if gateway {
                    Some(s.exec(&format!("curl -s --max-time 3 -w '\\n%{{http_code}}' {}", curl.args(&ip, "/health")), false)?.stdout)
                } else {
                    None
                };
                let mut leaders = Vec::new();
                for port in node_ports {
                    let o = s.exec(
                        &format!("curl -s --max-time 3 http://{ip}:{port}/metrics | grep '^engine_partition_leader' | grep ' 1$'"),
                        false,
                    )?;
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
                        live.gateways.push(GatewayLive {
                            host: h.name.clone(),
                            http_status: code.trim().parse().unwrap_or(0),
                            body: body.to_string(),
                        });
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

/// A standby this far behind its leader (bytes) is reported: Patroni's own
/// `maximum_lag_on_failover` (1 MiB) is the point where it would no longer promote it.
pub const MEMBER_LAG_BYTES_MAX: u64 = 1_048_576;

/// What `cluster_alerts` found wrong with a region's Patroni cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    NoLeader,
    /// More than one leader.
    SplitBrain,
    /// A member on another timeline than the leader's.
    Diverged,
    /// A member that is not running or streaming.
    NotFollowing,
    /// A member further behind than `MEMBER_LAG_BYTES_MAX`, or of unknown lag.
    Lagging,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub kind: AlertKind,
    pub text: String,
}

impl Alert {
    /// Two leaders or two timelines: acknowledged writes may sit where the leader does not.
    pub fn is_divergence(&self) -> bool {
        matches!(self.kind, AlertKind::SplitBrain | AlertKind::Diverged)
    }
}

/// Pure: what is wrong with a region's Patroni cluster, from its `/cluster` document. A
/// cluster that diverged (two leaders, or members on a timeline the leader does not descend
/// from, as in issue 13) is reported here, never repaired: rewinding or re-cloning a member
/// can throw away acknowledged writes, so it is the operator's decision.
pub fn cluster_alerts(cluster: &serde_json::Value) -> Vec<Alert> {
    let members = cluster.get("members").and_then(|m| m.as_array()).cloned().unwrap_or_default();
    let s = |m: &serde_json::Value, k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let is_leader = |m: &serde_json::Value| matches!(s(m, "role").as_str(), "leader" | "standby_leader");
    let leaders: Vec<&serde_json::Value> = members.iter().filter(|m| is_leader(m)).collect();
    let mut out = Vec::new();
    let mut push = |kind, text: String| out.push(Alert { kind, text });
    match leaders.as_slice() {
        [] => push(AlertKind::NoLeader, "no leader".to_string()),
        [_] => {}
        many => {
            let names: Vec<String> = many.iter().map(|m| s(m, "name")).collect();
            push(AlertKind::SplitBrain, format!("SPLIT BRAIN: {} leaders ({})", many.len(), names.join(", ")))
        }
    }
    let Some(leader) = leaders.first() else { return out };
    let leader_tl = leader.get("timeline").and_then(|t| t.as_u64());
    for m in members.iter().filter(|m| !is_leader(m)) {
        let (name, state) = (s(m, "name"), s(m, "state"));
        if !matches!(state.as_str(), "running" | "streaming") {
            push(AlertKind::NotFollowing, format!("{name} is {state}, not following the leader {}", s(leader, "name")));
            continue;
        }
        if let (Some(lt), Some(t)) = (leader_tl, m.get("timeline").and_then(|t| t.as_u64())) {
            if t != lt {
                push(AlertKind::Diverged, format!("DIVERGED: {name} is on timeline {t}, the leader {} on {lt}", s(leader, "name")));
                continue;
            }
        }
        match m.get("lag") {
            Some(serde_json::Value::Number(n)) if n.as_u64().is_some_and(|b| b > MEMBER_LAG_BYTES_MAX) => {
                push(AlertKind::Lagging, format!("{name} lags the leader by {n} bytes"))
            }
            Some(serde_json::Value::String(x)) => push(AlertKind::Lagging, format!("{name} lag is {x}")),
            _ => {}
        }
    }
    out
}

/// Every standby's replay lag in seconds, read from the `pg_stat_replication` of every DB host
/// (a standby shows up on its upstream: a local leader, or for the DR standby leader the
/// primary region's leader). Member names are unique across regions, so one map serves both.
async fn replay_lags(cfg: &Config, tpl: &Template, reachable: &[Host], fleet: &Fleet) -> BTreeMap<String, f64> {
    let db: Vec<Target> = reachable.iter().filter(|h| h.database).map(Host::ssh_target).collect();
    let cmd = Paths::new(&cfg.project).psql(
        tpl.ports.postgres,
        "postgres",
        "select application_name, coalesce(extract(epoch from replay_lag), 0) from pg_stat_replication",
    );
    let res = fleet.run(&db, move |s| s.exec(&crate::ssh::sudo_wrap(s.user(), &cmd), false).map(|o| o.stdout)).await;
    res.into_iter()
        .filter_map(|r| r.result.ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.split_once('|').and_then(|(n, v)| Some((n.to_string(), v.trim().parse::<f64>().ok()?))))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{cluster_alerts, AlertKind};

    fn alerts(json: &str) -> Vec<String> {
        cluster_alerts(&serde_json::from_str(json).unwrap()).into_iter().map(|a| a.text).collect()
    }

    fn kinds(json: &str) -> Vec<AlertKind> {
        cluster_alerts(&serde_json::from_str(json).unwrap()).into_iter().map(|a| a.kind).collect()
    }

    #[test]
    fn a_healthy_cluster_has_no_alerts() {
        let ok = r#"{"members":[{"name":"a","role":"leader","state":"running","timeline":3},
            {"name":"b","role":"quorum_standby","state":"streaming","timeline":3,"lag":0},
            {"name":"c","role":"quorum_standby","state":"streaming","timeline":3,"lag":1024}]}"#;
        assert_eq!(alerts(ok), Vec::<String>::new());
    }

    #[test]
    fn the_issue_13_state_is_reported_as_diverged() {
        // db-0 took the lock back on a timeline 3 of its own; db-1 and db-2 hold the other one
        // and cannot stream from it.
        let bad = r#"{"members":[{"name":"db-0","role":"leader","state":"running","timeline":3},
            {"name":"db-1","role":"replica","state":"running","timeline":4,"lag":"unknown"},
            {"name":"db-2","role":"replica","state":"starting"}]}"#;
        let a = alerts(bad);
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a[0].starts_with("DIVERGED: db-1 is on timeline 4"), "{a:?}");
        assert!(a[1].contains("db-2 is starting"), "{a:?}");
        assert_eq!(kinds(bad), vec![AlertKind::Diverged, AlertKind::NotFollowing]);
        let two = r#"{"members":[{"name":"a","role":"leader","state":"running"},{"name":"b","role":"leader","state":"running"}]}"#;
        assert!(alerts(two)[0].starts_with("SPLIT BRAIN: 2 leaders"));
        assert_eq!(alerts(r#"{"members":[]}"#), vec!["no leader".to_string()]);
        let far = r#"{"members":[{"name":"a","role":"leader","state":"running"},{"name":"b","role":"replica","state":"streaming","lag":9000000}]}"#;
        assert_eq!(alerts(far), vec!["b lags the leader by 9000000 bytes".to_string()]);
    }
}
