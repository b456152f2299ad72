//! Checks made before anything is created (by `plan`, and by `up` before its first step): the
//! type of every instance the plan would launch is offered in its AZ, EC2 would let
//! RunInstances run for each (region, image, type), asked with a DryRun, and the region's
//! quota of running On-Demand standard vCPUs holds what runs now plus what the plan launches
//! (where Service Quotas answers; else a note says it was not checked). A new account that
//! lacks a type in an AZ, the permission, or the vCPU quota then fails before it holds half a
//! deployment. The rules are pure; [`check`] gathers what EC2 says through `cloud`.

use std::collections::{BTreeMap, BTreeSet};

use crate::action::{Action, Plan};
use crate::cloud::{Cloud, CloudError};
use crate::config::Config;

/// One instance the plan would launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub region: String,
    pub az: String,
    pub host: String,
    pub role: String,
    pub instance_type: String,
    pub ami: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("{file}: nothing was created, because EC2 would refuse part of the plan:\n  - {}", problems.join("\n  - "))]
    Refused { file: String, problems: Vec<String> },
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// The instances `p` would launch.
pub fn launches(p: &Plan) -> Vec<Launch> {
    p.steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::RunInstance { region, host, ami, .. } => Some(Launch {
                region: region.clone(),
                az: host.az.clone(),
                host: host.key.clone(),
                role: host.role.clone(),
                instance_type: host.instance_type.clone(),
                ami: ami.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Each (region, type, AZ) a launch needs that `offered` (per region: type and AZ pairs) lacks,
/// as a message naming the field to change and where the type is offered.
pub fn offering_problems(launches: &[Launch], offered: &BTreeMap<String, BTreeSet<(String, String)>>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for l in launches {
        let pairs = offered.get(&l.region).cloned().unwrap_or_default();
        if pairs.contains(&(l.instance_type.clone(), l.az.clone())) || !seen.insert((&l.region, &l.instance_type, &l.az)) {
            continue;
        }
        let azs: Vec<&str> = pairs.iter().filter(|(t, _)| *t == l.instance_type).map(|(_, az)| az.as_str()).collect();
        let where_offered = if azs.is_empty() { format!("no AZ of {}", l.region) } else { azs.join(", ") };
        out.push(format!(
            "region {}: instance_types.{} = \"{}\" is not offered in {} (host {}); it is offered in {where_offered}. fix: choose a type every AZ in `azs` offers, or list only AZs that offer it",
            l.region, l.role, l.instance_type, l.az, l.host
        ));
    }
    out
}

/// The unique (region, image, type) triples to ask a DryRun for.
pub fn dry_runs(launches: &[Launch]) -> BTreeSet<(String, String, String)> {
    launches.iter().map(|l| (l.region.clone(), l.ami.clone(), l.instance_type.clone())).collect()
}

/// A DryRun refusal as a message with the fix its code calls for.
pub fn dry_run_problem(region: &str, ami: &str, instance_type: &str, code: &str, message: &str) -> String {
    let fix = match code {
        "UnauthorizedOperation" => "grant these credentials ec2:RunInstances (the policy in docs/iam.md)",
        "VcpuLimitExceeded" | "InstanceLimitExceeded" => {
            "request a higher vCPU quota (Service Quotas: 'Running On-Demand Standard instances') or choose smaller instance_types"
        }
        c if c.starts_with("InvalidAMIID") => "choose an image that exists in this region (`ami`)",
        _ => "choose another instance type or image for this region",
    };
    format!("region {region}: RunInstances of {instance_type} from {ami} would be refused: {code}: {message}. fix: {fix}")
}

/// Service Quotas' code of "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z)
/// instances", in vCPUs.
pub const STANDARD_VCPU_QUOTA: &str = "L-1216C47A";

/// Whether instances of type `t` count against [`STANDARD_VCPU_QUOTA`] (families A, C, D, H,
/// I, M, R, T and Z; the others have quotas of their own).
pub fn is_standard(t: &str) -> bool {
    matches!(t.chars().next(), Some('a' | 'c' | 'd' | 'h' | 'i' | 'm' | 'r' | 't' | 'z'))
}

/// Whether `region` can run its `launches` beside the `running` instances (types) under a quota
/// of `quota_vcpus` standard vCPUs; when not, a message with the numbers and the fix.
pub fn quota_problem(
    region: &str,
    launches: &[Launch],
    running: &[String],
    vcpus: &BTreeMap<String, i32>,
    quota_vcpus: f64,
) -> Option<String> {
    let of = |t: &str| if is_standard(t) { i64::from(vcpus.get(t).copied().unwrap_or(0)) } else { 0 };
    let here: Vec<&Launch> = launches.iter().filter(|l| l.region == region).collect();
    let need: i64 = here.iter().map(|l| of(&l.instance_type)).sum();
    let used: i64 = running.iter().map(|t| of(t)).sum();
    if need == 0 || (used + need) as f64 <= quota_vcpus {
        return None;
    }
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for l in here.iter().filter(|l| is_standard(&l.instance_type)) {
        *by_type.entry(l.instance_type.as_str()).or_default() += 1;
    }
    let launched: Vec<String> = by_type.iter().map(|(t, n)| format!("{n} x {t} ({} vCPUs each)", of(t))).collect();
    Some(format!(
        "region {region}: the plan launches {need} vCPUs of On-Demand standard instances ({}) and {used} run there now, more than the quota of {quota_vcpus} vCPUs (Service Quotas {STANDARD_VCPU_QUOTA}). fix: request at least {} vCPUs of 'Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances' in {region}, or choose smaller instance_types",
        launched.join(", "),
        used + need
    ))
}

/// Asks EC2 (and Service Quotas) about every launch in `p`; an error lists every problem found.
/// Returns notes: what could not be checked, and why.
pub async fn check(cloud: &Cloud, cfg: &Config, p: &Plan) -> Result<Vec<String>, PreflightError> {
    let launches = launches(p);
    if launches.is_empty() {
        return Ok(vec![]);
    }
    let mut types: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in &launches {
        types.entry(l.region.clone()).or_default().insert(l.instance_type.clone());
    }
    let answers = futures::future::join_all(types.iter().map(|(region, t)| async move {
        let t: Vec<String> = t.iter().cloned().collect();
        (region.clone(), cloud.type_offerings(region, &t).await)
    }))
    .await;
    let mut offered = BTreeMap::new();
    for (region, a) in answers {
        offered.insert(region, a?);
    }
    let mut problems = offering_problems(&launches, &offered);
    let runs = dry_runs(&launches);
    let answers = futures::future::join_all(runs.iter().map(|(r, ami, t)| cloud.dry_run_instance(r, ami, t))).await;
    for ((region, ami, t), a) in runs.iter().zip(answers) {
        if let Some((code, message)) = a? {
            problems.push(dry_run_problem(region, ami, t, &code, &message));
        }
    }
    let mut notes = Vec::new();
    let regions: BTreeSet<&str> = launches.iter().map(|l| l.region.as_str()).collect();
    for region in regions {
        match quota(cloud, region, &launches).await {
            Ok(problem) => problems.extend(problem),
            Err(e) => notes.push(format!("region {region}: the vCPU quota was not checked: {e}")),
        }
    }
    match problems.is_empty() {
        true => Ok(notes),
        false => Err(PreflightError::Refused { file: cfg.file.clone(), problems }),
    }
}

/// The quota problem of one region, if any; an error when Service Quotas or EC2 did not answer.
async fn quota(cloud: &Cloud, region: &str, launches: &[Launch]) -> Result<Option<String>, CloudError> {
    if !launches.iter().any(|l| l.region == region && is_standard(&l.instance_type)) {
        return Ok(None);
    }
    let quota_vcpus = cloud.vcpu_quota(region, STANDARD_VCPU_QUOTA).await?;
    let running: Vec<String> = cloud.running_types(region).await?.into_iter().filter(|t| is_standard(t)).collect();
    let types: BTreeSet<String> =
        launches.iter().filter(|l| l.region == region).map(|l| l.instance_type.clone()).chain(running.iter().cloned()).collect();
    let vcpus = cloud.type_vcpus(region, &types.into_iter().collect::<Vec<_>>()).await?;
    Ok(quota_problem(region, launches, &running, &vcpus, quota_vcpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(az: &str, t: &str, host: &str) -> Launch {
        Launch {
            region: "us-east-1".into(),
            az: az.into(),
            host: host.into(),
            role: "app".into(),
            instance_type: t.into(),
            ami: "ami-1".into(),
        }
    }

    #[test]
    fn a_type_missing_in_an_az_is_named_once_with_where_it_is_offered() {
        let offered = BTreeMap::from([(
            "us-east-1".to_string(),
            BTreeSet::from([("t3.medium".to_string(), "us-east-1a".to_string()), ("t3.medium".to_string(), "us-east-1b".to_string())]),
        )]);
        let l = [
            launch("us-east-1a", "t3.medium", "app-0"),
            launch("us-east-1e", "t3.medium", "app-1"),
            launch("us-east-1e", "t3.medium", "app-2"),
        ];
        let p = offering_problems(&l, &offered);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("not offered in us-east-1e (host app-1)") && p[0].contains("offered in us-east-1a, us-east-1b"), "{}", p[0]);
        let none = offering_problems(&[launch("us-east-1a", "x9.large", "app-0")], &offered);
        assert!(none[0].contains("offered in no AZ of us-east-1"), "{}", none[0]);
        assert!(offering_problems(&l[..1], &offered).is_empty());
    }

    #[test]
    fn the_quota_holds_what_runs_plus_what_the_plan_launches() {
        let vcpus = BTreeMap::from([("t3.medium".to_string(), 2), ("r6i.large".to_string(), 2), ("p4d.24xlarge".to_string(), 96)]);
        let l = [launch("us-east-1a", "t3.medium", "a"), launch("us-east-1b", "r6i.large", "b"), launch("us-east-1b", "p4d.24xlarge", "p")];
        assert_eq!(
            quota_problem("us-east-1", &l, &["t3.medium".into()], &vcpus, 6.0),
            None,
            "2 running + 4 planned = 6; p4d has its own quota"
        );
        let p = quota_problem("us-east-1", &l, &["t3.medium".into(), "t3.medium".into()], &vcpus, 6.0).unwrap();
        assert!(
            p.contains("launches 4 vCPUs") && p.contains("4 run there now") && p.contains("at least 8 vCPUs") && p.contains("L-1216C47A"),
            "{p}"
        );
        assert_eq!(quota_problem("eu-west-1", &l, &[], &vcpus, 0.0), None, "no launch in that region");
        assert!(is_standard("c7i.large") && is_standard("t3.small") && !is_standard("g5.xlarge") && !is_standard("x2idn.large"));
    }

    #[test]
    fn dry_runs_are_asked_once_per_region_image_and_type() {
        let l = [launch("us-east-1a", "t3.medium", "a"), launch("us-east-1b", "t3.medium", "b"), launch("us-east-1b", "r6i.large", "c")];
        assert_eq!(dry_runs(&l).len(), 2);
        assert!(dry_run_problem("r", "ami-1", "t", "VcpuLimitExceeded", "m").contains("vCPU quota"));
        assert!(dry_run_problem("r", "ami-1", "t", "UnauthorizedOperation", "m").contains("ec2:RunInstances"));
    }
}
