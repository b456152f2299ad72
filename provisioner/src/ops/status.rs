//! `status`: what exists, what Route53 answers, and what runs on the hosts.

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
    /// Regions whose EC2 API did not answer within the SDK's bound (`cloud::OPERATION_TIMEOUT_MS`).
    pub unreachable: Vec<UnreachableRegion>,
    /// Which region the API name's records send clients to, and why.
    pub dns: Vec<String>,
    /// What Route53 answers for the API name now, from its checkers' latest observations (all
    /// `GetHealthCheckStatus` shows). Route53 itself flips a checker's verdict only after
    /// `FailureThreshold` observations, so during a change this may lead or trail the real
    /// answer by up to interval x threshold (30 s for the project's checks).
    pub answer: Option<DnsAnswer>,
    /// Whether the records name the region that holds the primary role ("swapped"), or a
    /// failover made without Route53's control plane left them for later ("pending": Route53
    /// still answers the active region, through the failing check of the old PRIMARY).
    pub records: RecordsState,
    /// What runs on the hosts (empty when no host is reachable).
    pub live: Vec<crate::deploy::live::RegionLive>,
}

#[derive(Debug, Serialize)]
pub struct UnreachableRegion {
    pub region: String,
    pub error: String,
}

/// The failover answer as Route53's resolvers give it: the PRIMARY record while its check is
/// healthy, else the SECONDARY while that one is, else the PRIMARY.
#[derive(Debug, Serialize)]
pub struct DnsAnswer {
    pub name: String,
    pub failover: String,
    pub ips: Vec<String>,
    /// None: the check could not be read (then it counts healthy, as a new check does).
    pub primary_healthy: Option<bool>,
    pub secondary_healthy: Option<bool>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RecordsState {
    /// The PRIMARY record names the active region's gateways.
    Swapped,
    /// The PRIMARY record still names the other region: `failback` or `up` swaps it.
    Pending,
    /// No records yet, or Route53's control plane did not answer.
    Unknown,
}

/// Bound on reading one record's health through `GetHealthCheckStatus`.
const HEALTH_READ_MS_MAX: u64 = 5_000;

pub async fn status(cfg: &Config, tpl: &Template) -> Result<StatusReport, Error> {
    let s = Situation::look(cfg, tpl, Look::Partial, KeyUse::Read).await?;
    let unreachable = s.unreachable.iter().map(|(region, e)| UnreachableRegion { region: region.clone(), error: e.to_string() }).collect();
    let cfg = &s.cfg;
    let mut dns = dns_answer(cfg, &s.observed);
    let answer = route53_answer(&s).await;
    if let Some(a) = &answer {
        dns.push(format!("{} answers {} now ({} record)", a.name, a.ips.join(", "), a.failover));
    }
    dns.push(format!(
        "primary role: {} ({})",
        cfg.active().name,
        if cfg.active.is_some() { "moved there by a failover" } else { "as configured" }
    ));
    let places: Vec<String> = s
        .observed
        .mark_places
        .iter()
        .map(|p| format!("{}: {}", p.place, p.epoch.map_or("did not answer".into(), |e| format!("epoch {e}"))))
        .collect();
    dns.push(format!("failover state: epoch {} ({})", s.observed.marks.epoch, places.join(", ")));
    let records = records_state(&s);
    if records == RecordsState::Pending {
        dns.push(format!(
            "records PENDING: the PRIMARY record still names {}'s gateways; Route53 answers {}'s through the health checks until `provision failback` or `provision up` swaps them",
            cfg.passive().name,
            cfg.active().name
        ));
    }
    if let Some(f) = &s.observed.marks.fence {
        dns.push(format!("{} is FENCED since {} (unix ms): run `provision failback` to rebuild it", f.region, f.at_unix_ms));
    }
    let live = match s.all_hosts() {
        Ok(inv) if keys::private_key_path(cfg).exists() => crate::deploy::live::probe(cfg, tpl, inv).await,
        _ => vec![],
    };
    Ok(StatusReport { cloud: s.observed, unreachable, dns, answer, records, live })
}

/// The answer Route53 gives for the API name, from the records and their checks' status.
async fn route53_answer(s: &Situation) -> Option<DnsAnswer> {
    let o = &s.observed;
    let record = |f: &str| o.records.iter().find(|r| r.failover.as_deref() == Some(f));
    let health = |r: Option<&crate::model::RecordFound>| {
        let check = r.and_then(|r| r.health_check_id.as_deref()).and_then(|id| o.checks.iter().find(|c| c.id == id));
        async move {
            match check {
                Some(c) => s.cloud.check_healthy(c, HEALTH_READ_MS_MAX).await.ok().flatten(),
                None => None,
            }
        }
    };
    let (primary, secondary) = (record("PRIMARY")?, record("SECONDARY"));
    let (p_ok, s_ok) = tokio::join!(health(Some(primary)), health(secondary));
    let chosen = match (p_ok.unwrap_or(true), s_ok.unwrap_or(true), secondary) {
        (false, true, Some(sec)) => sec,
        _ => primary,
    };
    Some(DnsAnswer {
        name: primary.name.trim_end_matches('.').to_string(),
        failover: chosen.failover.clone().unwrap_or_default(),
        ips: chosen.ips.clone(),
        primary_healthy: p_ok,
        secondary_healthy: s_ok,
    })
}

/// Whether the PRIMARY record names the active region's gateways.
fn records_state(s: &Situation) -> RecordsState {
    let o = &s.observed;
    let Some(primary) = o.records.iter().find(|r| r.failover.as_deref() == Some("PRIMARY")) else { return RecordsState::Unknown };
    let names = |region: &str| {
        o.region(region).is_some_and(|r| {
            r.instances.iter().any(|i| [&i.attrs.private_ip, &i.attrs.public_ip].into_iter().flatten().any(|ip| primary.ips.contains(ip)))
        })
    };
    match (names(&s.cfg.active().name), names(&s.cfg.passive().name)) {
        (true, _) => RecordsState::Swapped,
        (false, true) => RecordsState::Pending,
        _ if s.observed.marks.fence.is_some() => RecordsState::Pending,
        _ => RecordsState::Unknown,
    }
}

/// The API name's records: what each failover record points at.
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
    if o.records.is_empty() {
        out.push(format!("{} has no failover records yet", cfg.dns.api_record));
    }
    out
}
