//! Removal in reverse dependency order, shared by `down` (everything of the project) and
//! `up` (what the config no longer wants). Pure.

use std::collections::BTreeMap;

use crate::action::{Action, Plan};
use crate::model::*;

#[derive(Debug, Default)]
pub struct RegionTeardown {
    pub instances: Vec<Found<InstanceAttrs>>,
    pub sgs: Vec<Found<SgAttrs>>,
    pub subnets: Vec<Found<SubnetAttrs>>,
    pub route_tables: Vec<Found<RouteTableAttrs>>,
    pub nat_gateways: Vec<Found<NatAttrs>>,
    pub addresses: Vec<Found<AddressAttrs>>,
    pub igws: Vec<Found<IgwAttrs>>,
    pub vpcs: Vec<Found<VpcAttrs>>,
    pub key_pairs: Vec<Found<KeyPairAttrs>>,
}

#[derive(Debug, Default)]
pub struct Teardown {
    pub records: Vec<RecordFound>,
    /// The zone the records live in (needed to delete them).
    pub zone_id: Option<String>,
    /// Set only when the zone itself goes (down, and `up` created it).
    pub delete_zone: Option<ZoneFound>,
    pub checks: Vec<Found<CheckAttrs>>,
    pub peerings: Vec<Found<PeeringAttrs>>,
    pub regions: BTreeMap<String, RegionTeardown>,
}

impl Teardown {
    pub fn region(&mut self, name: &str) -> &mut RegionTeardown {
        self.regions.entry(name.to_string()).or_default()
    }
}

/// `down`: everything tagged with the project, and the zone only if `up` created it.
pub fn plan_down(o: &Observed) -> Plan {
    let mut t = Teardown {
        records: o.records.clone(),
        zone_id: o.zone.as_ref().map(|z| z.id.clone()),
        delete_zone: o.zone.clone().filter(|z| z.ours),
        checks: o.checks.clone(),
        peerings: o.peerings.iter().filter(|p| p.attrs.status != "deleted").cloned().collect(),
        regions: BTreeMap::new(),
    };
    for r in &o.regions {
        let rt = t.region(&r.name);
        rt.instances = r.instances.iter().chain(&r.leaving).cloned().collect();
        rt.sgs = r.sgs.clone();
        rt.subnets = r.subnets.clone();
        rt.route_tables = r.route_tables.clone();
        rt.nat_gateways = r.nat_gateways.clone();
        rt.addresses = r.addresses.clone();
        rt.igws = r.igws.clone();
        rt.vpcs = r.vpcs.clone();
        rt.key_pairs = r.key_pairs.clone();
    }
    let mut p = Plan::default();
    teardown_steps(&t, &mut p, &[]);
    p
}

/// Appends the steps that remove `t`, each after `barrier` and after what depends on it.
pub fn teardown_steps(t: &Teardown, p: &mut Plan, barrier: &[usize]) {
    let base = barrier.to_vec();
    // Route53: records, then region checks (they name the gateway checks), then the rest.
    let mut records = Vec::new();
    if let Some(zone_id) = &t.zone_id {
        for r in &t.records {
            records.push(p.push(Action::DeleteRecord { zone_id: zone_id.clone(), record: r.clone() }, base.clone()));
        }
    }
    let mut after_records = base.clone();
    after_records.extend(&records);
    let (calc, http): (Vec<_>, Vec<_>) = t.checks.iter().partition(|c| matches!(c.attrs, CheckAttrs::Calculated { .. }));
    let calc_steps: Vec<usize> =
        calc.iter().map(|c| p.push(Action::DeleteCheck { key: c.key.clone(), id: c.id.clone() }, after_records.clone())).collect();
    let mut after_calc = after_records.clone();
    after_calc.extend(&calc_steps);
    for c in http {
        p.push(Action::DeleteCheck { key: c.key.clone(), id: c.id.clone() }, after_calc.clone());
    }
    if let Some(z) = &t.delete_zone {
        p.push(Action::DeleteZone { id: z.id.clone(), name: z.name.clone() }, after_records.clone());
    }

    // Peering goes first on the network side: routes through it are removed with the tables.
    let mut peering_steps = Vec::new();
    for pc in &t.peerings {
        let region = pc.key.split('/').next().unwrap_or_default().to_string();
        peering_steps.push(p.push(Action::DeletePeering { region, id: pc.id.clone() }, base.clone()));
    }

    for (region, r) in &t.regions {
        let mut inst = Vec::new();
        if !r.instances.is_empty() {
            let a = Action::TerminateInstances {
                region: region.clone(),
                ids: r.instances.iter().map(|i| i.id.clone()).collect(),
                keys: r.instances.iter().map(|i| i.key.clone()).collect(),
            };
            inst.push(p.push(a, base.clone()));
        }
        let mut after_inst = base.clone();
        after_inst.extend(&inst);
        let mut before_vpc = after_inst.clone();
        for sg in &r.sgs {
            before_vpc.push(
                p.push(Action::DeleteSecurityGroup { region: region.clone(), id: sg.id.clone(), key: sg.key.clone() }, after_inst.clone()),
            );
        }
        let mut rt_steps = Vec::new();
        for rt in &r.route_tables {
            let assoc = rt.attrs.associations.iter().map(|(a, _)| a.clone()).collect();
            let mut deps = after_inst.clone();
            deps.extend(&peering_steps);
            let s = p.push(Action::DeleteRouteTable { region: region.clone(), id: rt.id.clone(), associations: assoc }, deps);
            rt_steps.push(s);
            before_vpc.push(s);
        }
        // A NAT gateway holds its subnet and its Elastic IP (whose public address keeps the
        // internet gateway attached) until it is deleted; the step waits for that.
        let nat_steps: Vec<usize> = r
            .nat_gateways
            .iter()
            .map(|n| p.push(Action::DeleteNatGateway { region: region.clone(), id: n.id.clone(), key: n.key.clone() }, base.clone()))
            .collect();
        let mut after_nat = base.clone();
        after_nat.extend(&nat_steps);
        for a in &r.addresses {
            p.push(Action::ReleaseAddress { region: region.clone(), id: a.id.clone(), key: a.key.clone() }, after_nat.clone());
        }
        let mut after_rt = after_inst.clone();
        after_rt.extend(&rt_steps);
        after_rt.extend(&nat_steps);
        for sn in &r.subnets {
            before_vpc
                .push(p.push(Action::DeleteSubnet { region: region.clone(), id: sn.id.clone(), key: sn.key.clone() }, after_rt.clone()));
        }
        for igw in &r.igws {
            let a =
                Action::DeleteInternetGateway { region: region.clone(), id: igw.id.clone(), attached_vpc: igw.attrs.attached_vpc.clone() };
            before_vpc.push(p.push(a, after_rt.clone()));
        }
        before_vpc.extend(&peering_steps);
        before_vpc.sort_unstable();
        before_vpc.dedup();
        for v in &r.vpcs {
            p.push(Action::DeleteVpc { region: region.clone(), id: v.id.clone(), key: v.key.clone() }, before_vpc.clone());
        }
        for k in &r.key_pairs {
            p.push(Action::DeleteKeyPair { region: region.clone(), id: k.id.clone(), name: k.attrs.name.clone() }, after_inst.clone());
        }
    }
}
