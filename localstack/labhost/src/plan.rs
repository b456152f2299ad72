//! Pure planning: desired hosts from EC2 + faults, and the steps that bring current hosts there.

use crate::config::RegionConfig;
use crate::faults::Faults;
use crate::model::{HostSpec, Instance, InstanceState};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// One step on one host. Steps of a host run in order; hosts run concurrently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Namespace, veth, address, per-host files and host keys (powered off).
    Create(HostSpec),
    PowerOn(HostSpec),
    PowerOff,
    SetIsolated(bool),
    WriteKey(Option<String>),
    /// Kill processes, delete the namespace and every file of the host.
    Destroy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    pub id: String,
    pub steps: Vec<Step>,
}

/// Why an instance was not turned into a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

/// The gateway (bridge) address of a VPC: its first host address.
pub fn gateway(cidr: &ipnet::Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 1)
}

/// Hosts that should exist, from the instances of the regions that answered.
/// Only instances whose private IP lies inside their region's VPC CIDR qualify.
pub fn desired_hosts(
    regions: &[RegionConfig],
    instances: &[Instance],
    faults: &Faults,
    keys: &HashMap<(usize, String), Option<String>>,
) -> (Vec<HostSpec>, Vec<Skipped>) {
    let mut sorted: Vec<&Instance> = instances.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut used_ips = BTreeSet::new();
    let mut hosts = Vec::new();
    let mut skipped = Vec::new();
    for inst in sorted {
        let exists =
            matches!(inst.state, InstanceState::Pending | InstanceState::Running | InstanceState::Stopping | InstanceState::Stopped);
        if !exists {
            continue;
        }
        let skip = |reason: &str| Skipped { id: inst.id.clone(), reason: reason.to_string() };
        let Some(region) = regions.get(inst.region_index) else {
            skipped.push(skip("unknown region"));
            continue;
        };
        let Some(ip) = inst.private_ip else {
            skipped.push(skip("no private IP"));
            continue;
        };
        let cidr = region.vpc_cidr;
        if !cidr.contains(&ip) {
            continue; // not ours: another VPC's instance
        }
        if ip == cidr.network() || ip == cidr.broadcast() || ip == gateway(&cidr) {
            skipped.push(skip(&format!("private IP {ip} not usable in {cidr}")));
            continue;
        }
        if !used_ips.insert(ip) {
            skipped.push(skip(&format!("private IP {ip} already used by another instance")));
            continue;
        }
        let powered =
            inst.state == InstanceState::Running && !faults.powered_off.contains(&inst.id) && !faults.blackout.contains(&region.name);
        let authorized_key = inst.key_name.as_ref().and_then(|k| keys.get(&(inst.region_index, k.clone())).cloned().flatten());
        let hostname = inst.private_dns.clone().filter(|d| !d.is_empty() && d.len() <= 64).unwrap_or_else(|| inst.id.clone());
        hosts.push(HostSpec {
            id: inst.id.clone(),
            region_index: inst.region_index,
            ip,
            hostname,
            powered,
            isolated: faults.isolated.contains(&inst.id),
            authorized_key,
        });
    }
    (hosts, skipped)
}

/// Steps turning `current` into `desired`. Hosts of regions not in `listed_regions`
/// (their listing failed this round) are left alone.
pub fn reconcile(desired: &[HostSpec], current: &BTreeMap<String, HostSpec>, listed_regions: &BTreeSet<usize>) -> Vec<HostPlan> {
    let mut plans = Vec::new();
    let desired_ids: BTreeSet<&str> = desired.iter().map(|h| h.id.as_str()).collect();
    for (id, cur) in current {
        if !desired_ids.contains(id.as_str()) && listed_regions.contains(&cur.region_index) {
            plans.push(HostPlan { id: id.clone(), steps: vec![Step::Destroy] });
        }
    }
    for want in desired {
        let mut steps = Vec::new();
        let cur = current.get(&want.id);
        let cur = match cur {
            Some(c) if c.ip == want.ip && c.region_index == want.region_index => c.clone(),
            other => {
                if other.is_some() {
                    steps.push(Step::Destroy);
                }
                let fresh = HostSpec { powered: false, isolated: false, authorized_key: None, ..want.clone() };
                steps.push(Step::Create(fresh.clone()));
                fresh
            }
        };
        if cur.authorized_key != want.authorized_key {
            steps.push(Step::WriteKey(want.authorized_key.clone()));
        }
        if cur.isolated != want.isolated {
            steps.push(Step::SetIsolated(want.isolated));
        }
        match (cur.powered, want.powered) {
            (false, true) => steps.push(Step::PowerOn(want.clone())),
            (true, false) => steps.push(Step::PowerOff),
            _ => {}
        }
        if !steps.is_empty() {
            plans.push(HostPlan { id: want.id.clone(), steps });
        }
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<RegionConfig> {
        vec![
            RegionConfig { name: "us-east-1".into(), vpc_cidr: "10.110.0.0/16".parse().unwrap() },
            RegionConfig { name: "us-west-2".into(), vpc_cidr: "10.120.0.0/16".parse().unwrap() },
        ]
    }

    fn inst(id: &str, region: usize, state: InstanceState, ip: &str) -> Instance {
        Instance {
            id: id.into(),
            region_index: region,
            state,
            private_ip: Some(ip.parse().unwrap()),
            private_dns: None,
            key_name: Some("k".into()),
        }
    }

    fn keys() -> HashMap<(usize, String), Option<String>> {
        let mut m = HashMap::new();
        m.insert((0, "k".to_string()), Some("ssh-ed25519 AAAA".to_string()));
        m
    }

    #[test]
    fn only_instances_inside_their_vpc_cidr() {
        let insts = vec![
            inst("i-00000001", 0, InstanceState::Running, "10.110.1.4"),
            inst("i-00000002", 0, InstanceState::Running, "10.10.1.4"),
            inst("i-00000003", 1, InstanceState::Running, "10.110.1.5"),
            inst("i-00000004", 0, InstanceState::Terminated, "10.110.1.6"),
            inst("i-00000005", 0, InstanceState::Running, "10.110.0.1"),
        ];
        let (hosts, skipped) = desired_hosts(&regions(), &insts, &Faults::default(), &keys());
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].id, "i-00000001");
        assert!(hosts[0].powered);
        assert_eq!(hosts[0].authorized_key.as_deref(), Some("ssh-ed25519 AAAA"));
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn duplicate_ip_keeps_one() {
        let insts =
            vec![inst("i-00000002", 0, InstanceState::Running, "10.110.1.4"), inst("i-00000001", 0, InstanceState::Running, "10.110.1.4")];
        let (hosts, skipped) = desired_hosts(&regions(), &insts, &Faults::default(), &keys());
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].id, "i-00000001");
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn faults_power_off_and_isolate() {
        let insts = vec![
            inst("i-00000001", 0, InstanceState::Running, "10.110.1.4"),
            inst("i-00000002", 1, InstanceState::Running, "10.120.1.4"),
            inst("i-00000003", 1, InstanceState::Stopped, "10.120.1.5"),
        ];
        let mut f = Faults::default();
        f.powered_off.insert("i-00000001".into());
        f.isolated.insert("i-00000002".into());
        let (hosts, _) = desired_hosts(&regions(), &insts, &f, &keys());
        assert!(!hosts[0].powered);
        assert!(hosts[1].powered && hosts[1].isolated);
        assert!(!hosts[2].powered);
        let mut f = Faults::default();
        f.blackout.insert("us-west-2".into());
        let (hosts, _) = desired_hosts(&regions(), &insts, &f, &keys());
        assert!(hosts[0].powered && !hosts[1].powered);
    }

    #[test]
    fn reconcile_creates_powers_and_destroys() {
        let (desired, _) =
            desired_hosts(&regions(), &[inst("i-00000001", 0, InstanceState::Running, "10.110.1.4")], &Faults::default(), &keys());
        let listed: BTreeSet<usize> = [0, 1].into();
        let plans = reconcile(&desired, &BTreeMap::new(), &listed);
        assert_eq!(plans.len(), 1);
        assert!(matches!(plans[0].steps[0], Step::Create(_)));
        assert!(matches!(plans[0].steps[1], Step::WriteKey(Some(_))));
        assert!(matches!(plans[0].steps[2], Step::PowerOn(_)));

        let mut current = BTreeMap::new();
        current.insert("i-00000001".to_string(), desired[0].clone());
        assert!(reconcile(&desired, &current, &listed).is_empty());

        let mut off = desired.clone();
        off[0].powered = false;
        assert_eq!(reconcile(&off, &current, &listed)[0].steps, vec![Step::PowerOff]);

        let plans = reconcile(&[], &current, &listed);
        assert_eq!(plans[0].steps, vec![Step::Destroy]);
        // A region whose listing failed keeps its hosts.
        assert!(reconcile(&[], &current, &[1].into()).is_empty());
    }
}
