//! `status`: what exists, what Route53 would answer, and what runs on the hosts.

use serde::Serialize;

use super::Error;
use crate::config::Config;
use crate::keys::{self, KeyUse};
use crate::model::Observed;
use crate::situation::{Look, Situation};
use crate::template::Template;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub cloud: Observed,
    /// Which region the API name's records send clients to, and why.
    pub dns: Vec<String>,
    /// What runs on the hosts (empty when no host is reachable).
    pub live: Vec<crate::deploy::live::RegionLive>,
}

pub async fn status(cfg: &Config, tpl: &Template) -> Result<StatusReport, Error> {
    let s = Situation::look(cfg, tpl, Look::Strict, KeyUse::Read).await?;
    let cfg = &s.cfg;
    let mut dns = dns_answer(cfg, &s.observed);
    dns.push(format!(
        "primary role: {} ({})",
        cfg.active().name,
        if cfg.active.is_some() { "moved there by a failover" } else { "as configured" }
    ));
    if let Some(f) = &s.observed.marks.fence {
        dns.push(format!("{} is FENCED since {} (unix ms): run `provision failback` to rebuild it", f.region, f.at_unix_ms));
    }
    let live = match s.all_hosts() {
        Ok(inv) if keys::private_key_path(cfg).exists() => crate::deploy::live::probe(cfg, tpl, inv).await,
        _ => vec![],
    };
    Ok(StatusReport { cloud: s.observed, dns, live })
}

/// What Route53 would answer for the API name: the PRIMARY record while its health check is
/// healthy, else the SECONDARY. LocalStack reports every check healthy, so this is the
/// records' view; `provision watch` judges health itself.
fn dns_answer(cfg: &Config, o: &Observed) -> Vec<String> {
    let region_of = |ips: &[String]| -> String {
        for r in &o.regions {
            if ips.iter().any(|ip| {
                r.instances
                    .iter()
                    .any(|i| i.attrs.private_ip.as_deref() == Some(ip.as_str()) || i.attrs.public_ip.as_deref() == Some(ip.as_str()))
            }) {
                return r.name.clone();
            }
        }
        "an unknown region".into()
    };
    let mut out = Vec::new();
    for failover in ["PRIMARY", "SECONDARY"] {
        if let Some(r) = o.records.iter().find(|r| r.failover.as_deref() == Some(failover)) {
            out.push(format!(
                "{failover} {} -> {} ({}), health check {}",
                r.name,
                r.ips.join(", "),
                region_of(&r.ips),
                r.health_check_id.as_deref().unwrap_or("-")
            ));
        }
    }
    match o.records.iter().find(|r| r.failover.as_deref() == Some("PRIMARY")) {
        Some(p) => out.push(format!(
            "{} answers {} ({}) while that region's health check is healthy, else the SECONDARY",
            cfg.dns.api_record,
            p.ips.join(", "),
            region_of(&p.ips)
        )),
        None => out.push(format!("{} has no failover records yet", cfg.dns.api_record)),
    }
    out
}
