//! Resolution as Route53's authoritative servers do it, over one [`Snapshot`]; no IO.

use super::rdata;
use super::snapshot::{normalize, Failover, RecordSet, Snapshot, Zone};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};

/// Route53's default SOA and name servers, for a zone LocalStack holds none for.
const SYNTH_SOA_TTL_S: u32 = 900;
const SYNTH_NS_TTL_S: u32 = 172_800;
const SYNTH_NS: [&str; 4] = ["ns-2048.awsdns-64.com.", "ns-2049.awsdns-65.net.", "ns-2050.awsdns-66.org.", "ns-2051.awsdns-67.co.uk."];

/// A response's code and sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    /// False only when refused (no zone of ours holds the name).
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
}

impl Answer {
    fn refused() -> Answer {
        Answer { rcode: ResponseCode::Refused, authoritative: false, answers: vec![], authority: vec![] }
    }
}

/// Answers `qname`/`qtype` from `snap`; `healthy` tells a health check's state (None = unknown id).
pub fn answer(snap: &Snapshot, qname: &str, qtype: RecordType, healthy: impl Fn(&str) -> Option<bool>) -> Answer {
    let q = normalize(qname);
    let Some(zone) = snap.zone_of(&q) else { return Answer::refused() };
    let Ok(owner) = Name::from_ascii(&q) else { return Answer::refused() };
    let at = sets_at(zone, &q);
    let below = zone.sets.iter().any(|s| s.name.ends_with(&format!(".{q}")));
    let at = if at.is_empty() && !below { wildcard_sets(zone, &q) } else { at };
    let cnames: Vec<&RecordSet> = at.iter().copied().filter(|s| s.rtype == "CNAME").collect();
    let wanted: Vec<&RecordSet> = if !cnames.is_empty() && qtype != RecordType::CNAME {
        cnames
    } else {
        at.iter().copied().filter(|s| qtype == RecordType::ANY || s.rtype == qtype.to_string()).collect()
    };
    let mut answers = records(&owner, &select(&wanted, &healthy));
    if answers.is_empty() && q == zone.name {
        answers = synthesized(zone, &owner, qtype);
    }
    let exists = !at.is_empty() || below || q == zone.name;
    let rcode = if answers.is_empty() && !exists { ResponseCode::NXDomain } else { ResponseCode::NoError };
    let authority = if answers.is_empty() { soa(zone) } else { vec![] };
    Answer { rcode, authoritative: true, answers, authority }
}

fn sets_at<'a>(zone: &'a Zone, name: &str) -> Vec<&'a RecordSet> {
    zone.sets.iter().filter(|s| s.name == name).collect()
}

/// `*.<ancestor>` sets for a name that has nothing of its own, the closest ancestor first.
fn wildcard_sets<'a>(zone: &'a Zone, name: &str) -> Vec<&'a RecordSet> {
    let mut rest = name;
    while let Some((_, parent)) = rest.split_once('.') {
        if parent.is_empty() || !super::snapshot::in_zone(parent, &zone.name) {
            break;
        }
        let found = sets_at(zone, &format!("*.{parent}"));
        if !found.is_empty() {
            return found;
        }
        rest = parent;
    }
    vec![]
}

/// Routing: failover sets give PRIMARY while healthy, else SECONDARY while healthy, else PRIMARY;
/// other sets give every healthy one (all of them when none is healthy).
fn select<'a>(sets: &[&'a RecordSet], healthy: &impl Fn(&str) -> Option<bool>) -> Vec<&'a RecordSet> {
    let ok = |s: &RecordSet| s.health_check_id.as_deref().and_then(healthy).unwrap_or(true);
    let role = |r: Failover| sets.iter().copied().find(|s| s.failover == Some(r));
    if sets.iter().any(|s| s.failover.is_some()) {
        let (primary, secondary) = (role(Failover::Primary), role(Failover::Secondary));
        let pick = match (primary, secondary) {
            (Some(p), _) if ok(p) => Some(p),
            (_, Some(s)) if ok(s) => Some(s),
            (p, s) => p.or(s),
        };
        return pick.into_iter().collect();
    }
    let up: Vec<&RecordSet> = sets.iter().copied().filter(|s| ok(s)).collect();
    if up.is_empty() {
        sets.to_vec()
    } else {
        up
    }
}

fn records(owner: &Name, sets: &[&RecordSet]) -> Vec<Record> {
    sets.iter()
        .flat_map(|s| s.values.iter().filter_map(move |v| Some(Record::from_rdata(owner.clone(), s.ttl, rdata::parse(&s.rtype, v)?))))
        .collect()
}

/// SOA/NS at the apex when LocalStack holds none.
fn synthesized(zone: &Zone, owner: &Name, qtype: RecordType) -> Vec<Record> {
    match qtype {
        RecordType::SOA if !has(zone, "SOA") => soa(zone),
        RecordType::NS if !has(zone, "NS") => {
            SYNTH_NS.iter().filter_map(|ns| Some(Record::from_rdata(owner.clone(), SYNTH_NS_TTL_S, rdata::parse("NS", ns)?))).collect()
        }
        _ => vec![],
    }
}

fn has(zone: &Zone, rtype: &str) -> bool {
    zone.sets.iter().any(|s| s.name == zone.name && s.rtype == rtype)
}

/// The zone's SOA record (held or synthesized), for the answer or the authority section.
fn soa(zone: &Zone) -> Vec<Record> {
    let Ok(apex) = Name::from_ascii(&zone.name) else { return vec![] };
    let held = zone.sets.iter().find(|s| s.name == zone.name && s.rtype == "SOA");
    let held = held.and_then(|s| Some((s.ttl, rdata::parse("SOA", s.values.first()?)?)));
    let synth =
        || rdata::parse("SOA", &format!("{} hostmaster.{} 1 7200 900 1209600 86400", SYNTH_NS[0], zone.name)).map(|r| (SYNTH_SOA_TTL_S, r));
    held.or_else(synth).map(|(ttl, r)| Record::from_rdata(apex, ttl, r)).into_iter().collect()
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
