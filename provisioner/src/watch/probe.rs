//! What the watch probes directly: each gateway's `/health` and one Patroni `/cluster` per
//! region, in parallel, each bounded by the probe timeout. A gateway is asked over HTTPS as a
//! client asks it: for the API name, at the gateway's address, its certificate verified.

use serde_json::Value;

use super::decide::Probe;
use crate::config::{Config, RegionRole};
use crate::deploy::inventory::Host;
use crate::situation::Situation;
use crate::template::Template;
use crate::tls;

/// The hosts to probe: the running ones this machine may reach; when no gateway of the
/// primary is known (its EC2 API did not answer), the PRIMARY record's addresses instead.
pub(super) fn hosts_to_probe(w: &Situation, primary: &str, local: bool, notes: &mut Vec<String>) -> Vec<Host> {
    let mut hosts = w.reachable_hosts();
    if !hosts.iter().any(|h| h.region == primary && h.gateway) {
        let ips: Vec<String> =
            w.observed.records.iter().find(|r| r.failover.as_deref() == Some("PRIMARY")).map(|r| r.ips.clone()).unwrap_or_default();
        let extra: Vec<Host> = ips
            .into_iter()
            .enumerate()
            .map(|(i, ip)| record_host(primary, i, ip))
            .filter(|h| !local || crate::deploy::local_route_guard(h).is_ok())
            .collect();
        notes.push(format!(
            "no running gateway of {primary} is known to EC2; probing the PRIMARY record's {} address(es) instead",
            extra.len()
        ));
        hosts.extend(extra);
    }
    if local {
        // Patroni is probed at the private address: it too must stay on this machine.
        hosts.retain(|h| !h.database || h.private_ip == h.ssh_ip || crate::deploy::lab_route(&h.private_ip).is_ok());
    }
    hosts
}

/// What one region is probed at.
pub(super) struct RegionTargets {
    region: String,
    /// (name, a client that reaches only this gateway, `/health` URL) per gateway.
    gateways: Vec<(String, reqwest::Client, String)>,
    /// Patroni `/cluster` URL per DB host (the first to answer is used).
    patroni: Vec<String>,
}

/// A stand-in host for an address of the PRIMARY record (its gateway, as clients reach it).
fn record_host(region: &str, i: usize, ip: String) -> Host {
    Host {
        key: format!("{region}/record/{i}"),
        name: format!("record-ip-{i}"),
        instance_id: String::new(),
        region: region.to_string(),
        region_role: RegionRole::Primary,
        private_ip: ip.clone(),
        ssh_ip: ip,
        ssh_user: String::new(),
        bastion: None,
        modules: vec![],
        gateway: true,
        database: false,
    }
}

pub(super) fn region_targets(hosts: &[Host], cfg: &Config, tpl: &Template, region: &str) -> Result<RegionTargets, tls::ClientError> {
    let in_region = || hosts.iter().filter(move |h| h.region == region);
    let name = cfg.dns.api_record.trim_end_matches('.');
    let (port, ca) = (tpl.ports.gateway_http, crate::deploy::secrets::api_ca(cfg));
    let timeout = std::time::Duration::from_millis(super::PROBE_TIMEOUT_MS);
    let mut gateways = Vec::new();
    for h in in_region().filter(|h| h.gateway) {
        let Ok(ip) = h.ssh_ip.parse() else { continue };
        gateways.push((h.name.clone(), tls::api_client(name, ip, port, ca.as_deref(), timeout)?, tls::api_url(name, port, "/health")));
    }
    Ok(RegionTargets {
        region: region.to_string(),
        gateways,
        patroni: in_region()
            .filter(|h| h.database)
            .map(|h| format!("http://{}:{}/cluster", h.private_ip, tpl.ports.patroni_rest))
            .collect(),
    })
}

pub(super) async fn probe_region(client: &reqwest::Client, t: &RegionTargets) -> Probe {
    let gateways = futures::future::join_all(
        t.gateways.iter().map(|(_, gateway, url)| async move { gateway.get(url).send().await.map(|r| r.status().as_u16()).ok() }),
    );
    let patroni = futures::future::join_all(t.patroni.iter().map(|url| async move {
        let r = client.get(url).send().await.ok()?;
        r.json::<Value>().await.ok()
    }));
    let (codes, clusters) = tokio::join!(gateways, patroni);
    let cluster = clusters.into_iter().flatten().next();
    let (db_writable, db_leader, db_lag_bytes_max) = match &cluster {
        Some(c) => db_summary(c),
        None => (None, "no answer".to_string(), None),
    };
    Probe {
        region: t.region.clone(),
        gateways_ok: codes.iter().filter(|c| **c == Some(200)).count(),
        gateways_answered: codes.iter().filter(|c| c.is_some()).count(),
        gateways_total: t.gateways.len(),
        db_answered: cluster.is_some(),
        db_writable,
        db_leader,
        db_lag_bytes_max,
    }
}

/// (writable, leader text, largest lag in bytes) from Patroni's `/cluster` document.
pub(super) fn db_summary(c: &Value) -> (Option<bool>, String, Option<u64>) {
    let members = c.get("members").and_then(Value::as_array).cloned().unwrap_or_default();
    let running = |m: &Value| matches!(m["state"].as_str(), Some("running" | "streaming"));
    let lag = members.iter().filter_map(|m| m["lag"].as_u64()).max();
    // Two leaders is said at once (a transition, posted to the webhooks); a member briefly on
    // an older timeline after a failover is normal, so that is left to `status`.
    if let Some(split) = crate::deploy::live::cluster_alerts(c).into_iter().find(|a| a.kind == crate::deploy::live::AlertKind::SplitBrain) {
        return (None, split.text, lag);
    }
    if let Some(m) = members.iter().find(|m| m["role"] == "leader" && running(m)) {
        return (Some(true), format!("leader {}", m["name"].as_str().unwrap_or("?")), lag);
    }
    if let Some(m) = members.iter().find(|m| m["role"] == "standby_leader" && running(m)) {
        return (Some(false), format!("standby_leader {}", m["name"].as_str().unwrap_or("?")), lag);
    }
    (None, format!("no running leader ({} member(s))", members.len()), lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patroni_cluster_gives_role_leader_and_lag() {
        let c: Value = serde_json::from_str(r#"{"members":[{"name":"db-0","role":"leader","state":"running"},{"name":"db-1","role":"sync_standby","state":"streaming","lag":16}]}"#).unwrap();
        assert_eq!(db_summary(&c), (Some(true), "leader db-0".into(), Some(16)));
        let s: Value = serde_json::from_str(r#"{"members":[{"name":"db-3","role":"standby_leader","state":"streaming"},{"name":"db-4","role":"replica","state":"stopped","lag":"unknown"}]}"#).unwrap();
        assert_eq!(db_summary(&s), (Some(false), "standby_leader db-3".into(), None));
        let none: Value = serde_json::from_str(r#"{"members":[{"name":"db-0","role":"leader","state":"stopped"}]}"#).unwrap();
        assert_eq!(db_summary(&none).0, None);
        let two: Value = serde_json::from_str(
            r#"{"members":[{"name":"db-0","role":"leader","state":"running"},{"name":"db-1","role":"leader","state":"running"}]}"#,
        )
        .unwrap();
        assert_eq!(db_summary(&two).1, "SPLIT BRAIN: 2 leaders (db-0, db-1)");
    }
}
