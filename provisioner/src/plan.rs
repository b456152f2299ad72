//! `plan_up(desired, observed) -> Plan`: the whole difference as ordered steps. Pure and
//! deterministic: no IO, no SDK, the same inputs give the same plan.

use std::collections::{BTreeMap, BTreeSet};

use crate::action::{Action, IpRef, Plan, Ref, ZONE_KEY};
use crate::model::*;
use crate::teardown::{teardown_steps, Teardown};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{} in {} has {} {}, but the config asks for {}; {}", .0.resource, .0.region, .0.field, .0.have, .0.want, .0.fix)]
    Immutable(Box<ImmutableChange>),
    #[error(
        "no AMI matches the config in {region}; fix `ami` for that region in the config (name filter + owner, or an id that exists there)"
    )]
    NoAmi { region: String },
    #[error("region {region}: the image {why}; fix `ami` for that region in the config: Debian 12, e.g. ami = {{ name = \"{}\", owner = \"{}\" }}", crate::image::DEBIAN_12_NAME, crate::image::DEBIAN_OWNER)]
    UnsupportedImage { region: String, why: String },
}

/// A change the config asks for that the resource cannot take in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutableChange {
    pub region: String,
    pub resource: String,
    pub field: &'static str,
    pub have: String,
    pub want: String,
    pub fix: String,
}

/// A resource reference plus the step (if any) that creates it in this plan.
#[derive(Clone)]
struct Have {
    r: Ref,
    step: Option<usize>,
}

impl Have {
    fn found(id: &str) -> Have {
        Have { r: Ref::Id(id.to_string()), step: None }
    }
    fn made(key: &str, step: usize) -> Have {
        Have { r: Ref::Key(key.to_string()), step: Some(step) }
    }
}

fn after(deps: &[&Have]) -> Vec<usize> {
    let mut v: Vec<usize> = deps.iter().filter_map(|h| h.step).collect();
    v.sort_unstable();
    v.dedup();
    v
}

pub fn plan_up(d: &Desired, o: &Observed) -> Result<Plan, PlanError> {
    let mut pl = Planner {
        d,
        o,
        p: Plan::default(),
        unwanted: Teardown::default(),
        vpcs: BTreeMap::new(),
        ips: BTreeMap::new(),
        route_tables: vec![],
    };
    for dr in &d.regions {
        pl.region(dr)?;
    }
    pl.peering();
    let zone = pl.zone();
    let checks = pl.checks();
    pl.records(&zone, &checks);
    Ok(pl.finish(&checks))
}

/// A region's route table, and the peer route it still needs once the peering is known.
struct RouteTable {
    region: String,
    rt: Have,
    found: Option<Found<RouteTableAttrs>>,
    peer_cidr: String,
}

/// The plan as it is built: steps so far, what they make, and what is not wanted.
struct Planner<'a> {
    d: &'a Desired,
    o: &'a Observed,
    p: Plan,
    unwanted: Teardown,
    vpcs: BTreeMap<String, Have>,
    /// Each host's address as records and checks use it, and the step that makes it known.
    ips: BTreeMap<String, (IpRef, Option<usize>)>,
    route_tables: Vec<RouteTable>,
}

impl Planner<'_> {
    fn region(&mut self, dr: &DesiredRegion) -> Result<(), PlanError> {
        let empty = ObservedRegion::default();
        let (or, extra) = crate::dedupe::dedupe(self.o.region(&dr.name).unwrap_or(&empty));
        let or = &or;
        let vpc = self.vpc(dr, or)?;
        let igw = self.internet_gateway(dr, or, &vpc);
        let subnets = self.subnets(dr, or, &vpc)?;
        let nat = self.nat_gateway(dr, or, &igw, &subnets);
        let (public, private): (Vec<&SubnetSpec>, Vec<&SubnetSpec>) = dr.subnets.iter().partition(|s| s.public);
        let pick_subnets = |want: Vec<&SubnetSpec>| want.iter().map(|s| subnets[&s.key].clone()).collect::<Vec<Have>>();
        let public_routed = self.route_table(dr, or, &vpc, &dr.route_table_key, Some(&igw), &pick_subnets(public));
        let private_routed = self.route_table(dr, or, &vpc, &dr.private_route_table_key, nat.as_ref(), &pick_subnets(private));
        // A host boots into cloud-init, which installs packages: it launches once its
        // subnet's way out (route and association) is in place.
        let routed: BTreeMap<String, Vec<usize>> =
            dr.subnets.iter().map(|s| (s.key.clone(), if s.public { public_routed.clone() } else { private_routed.clone() })).collect();
        let sgs = self.security_groups(dr, or, &vpc);
        let kp = self.key_pair(dr, or);
        self.instances(dr, or, &subnets, &routed, &sgs, &kp)?;
        self.unwanted_in(dr, or, extra);
        Ok(())
    }

    fn vpc(&mut self, dr: &DesiredRegion, or: &ObservedRegion) -> Result<Have, PlanError> {
        let vpc = match pick(&or.vpcs, &dr.vpc_key) {
            Some(f) => {
                immutable(&dr.name, &f.key, "cidr", &f.attrs.cidr, &dr.vpc_cidr)?;
                Have::found(&f.id)
            }
            None => {
                let a = Action::CreateVpc { region: dr.name.clone(), key: dr.vpc_key.clone(), cidr: dr.vpc_cidr.clone() };
                Have::made(&dr.vpc_key, self.p.push(a, vec![]))
            }
        };
        self.vpcs.insert(dr.name.clone(), vpc.clone());
        Ok(vpc)
    }

    /// The internet gateway, attached to the VPC; the returned step is the attachment.
    fn internet_gateway(&mut self, dr: &DesiredRegion, or: &ObservedRegion, vpc: &Have) -> Have {
        let region = &dr.name;
        let found = pick(&or.igws, &dr.igw_key);
        let igw = match found {
            Some(f) => Have::found(&f.id),
            None => Have::made(
                &dr.igw_key,
                self.p.push(Action::CreateInternetGateway { region: region.clone(), key: dr.igw_key.clone() }, vec![]),
            ),
        };
        let attached = matches!((found, &vpc.r), (Some(f), Ref::Id(v)) if f.attrs.attached_vpc.as_deref() == Some(v.as_str()));
        if attached {
            return igw;
        }
        let a = Action::AttachInternetGateway { region: region.clone(), igw: igw.r.clone(), vpc: vpc.r.clone() };
        Have { r: igw.r.clone(), step: Some(self.p.push(a, after(&[&igw, vpc]))) }
    }

    fn subnets(&mut self, dr: &DesiredRegion, or: &ObservedRegion, vpc: &Have) -> Result<BTreeMap<String, Have>, PlanError> {
        let mut subnets = BTreeMap::new();
        for sn in &dr.subnets {
            let h = match pick(&or.subnets, &sn.key) {
                Some(f) => {
                    immutable(&dr.name, &f.key, "cidr", &f.attrs.cidr, &sn.cidr)?;
                    immutable(&dr.name, &f.key, "availability zone", &f.attrs.az, &sn.az)?;
                    Have::found(&f.id)
                }
                None => {
                    let a = Action::CreateSubnet {
                        region: dr.name.clone(),
                        key: sn.key.clone(),
                        vpc: vpc.r.clone(),
                        cidr: sn.cidr.clone(),
                        az: sn.az.clone(),
                    };
                    Have::made(&sn.key, self.p.push(a, after(&[vpc])))
                }
            };
            subnets.insert(sn.key.clone(), h);
        }
        Ok(subnets)
    }

    /// The NAT gateway (unless egress is "none") and its Elastic IP, in the first public
    /// subnet once the internet gateway is attached (AWS refuses a public NAT gateway before).
    fn nat_gateway(&mut self, dr: &DesiredRegion, or: &ObservedRegion, igw: &Have, subnets: &BTreeMap<String, Have>) -> Option<Have> {
        let spec = dr.nat.as_ref()?;
        let region = &dr.name;
        if let Some(f) = pick(&or.nat_gateways, &spec.key) {
            return Some(Have::found(&f.id));
        }
        let eip = match pick(&or.addresses, &spec.eip_key) {
            Some(f) => Have::found(&f.id),
            None => Have::made(
                &spec.eip_key,
                self.p.push(Action::AllocateAddress { region: region.clone(), key: spec.eip_key.clone() }, vec![]),
            ),
        };
        let sn = &subnets[&spec.subnet_key];
        let a = Action::CreateNatGateway { region: region.clone(), key: spec.key.clone(), subnet: sn.r.clone(), allocation: eip.r.clone() };
        Some(Have::made(&spec.key, self.p.push(a, after(&[sn, &eip, igw]))))
    }

    /// A route table: its default route (the internet or NAT gateway; none when egress is
    /// "none"), `subnets` associated; the peer VPC's route is added once the peering is planned.
    /// Returns the steps after which the subnets are routed.
    fn route_table(
        &mut self,
        dr: &DesiredRegion,
        or: &ObservedRegion,
        vpc: &Have,
        key: &str,
        default: Option<&Have>,
        subnets: &[Have],
    ) -> Vec<usize> {
        let first_step = self.p.steps.len();
        let region = &dr.name;
        let found = pick(&or.route_tables, key);
        let rt = match found {
            Some(f) => Have::found(&f.id),
            None => {
                let a = Action::CreateRouteTable { region: region.clone(), key: key.to_string(), vpc: vpc.r.clone() };
                Have::made(key, self.p.push(a, after(&[vpc])))
            }
        };
        if let Some(gw) = default {
            route(&mut self.p, region, &rt, found, "0.0.0.0/0", gw);
        }
        let associated: BTreeSet<&str> = found.map(|f| f.attrs.associations.iter().map(|(_, s)| s.as_str()).collect()).unwrap_or_default();
        for sn in subnets {
            if !matches!(&sn.r, Ref::Id(id) if associated.contains(id.as_str())) {
                let a = Action::AssociateRouteTable { region: region.clone(), route_table: rt.r.clone(), subnet: sn.r.clone() };
                self.p.push(a, after(&[&rt, sn]));
            }
        }
        self.route_tables.push(RouteTable { region: region.clone(), rt, found: found.cloned(), peer_cidr: dr.peer_cidr.clone() });
        (first_step..self.p.steps.len()).collect()
    }

    /// Security groups and their rules: missing rules authorized, extra ones revoked.
    fn security_groups(&mut self, dr: &DesiredRegion, or: &ObservedRegion, vpc: &Have) -> BTreeMap<String, Have> {
        let region = &dr.name;
        let mut sgs = BTreeMap::new();
        for sg in &dr.sgs {
            let found = pick(&or.sgs, &sg.key);
            let h = match found {
                Some(f) => Have::found(&f.id),
                None => {
                    let a = Action::CreateSecurityGroup {
                        region: region.clone(),
                        key: sg.key.clone(),
                        name: sg.name.clone(),
                        vpc: vpc.r.clone(),
                    };
                    Have::made(&sg.key, self.p.push(a, after(&[vpc])))
                }
            };
            let have: BTreeSet<&Rule> = found.map(|f| f.attrs.rules.iter().collect()).unwrap_or_default();
            let want: BTreeSet<&Rule> = sg.rules.iter().collect();
            let add: Vec<Rule> = want.difference(&have).map(|r| (*r).clone()).collect();
            let remove: Vec<Rule> = have.difference(&want).map(|r| (*r).clone()).collect();
            if !add.is_empty() {
                self.p.push(Action::AuthorizeIngress { region: region.clone(), sg: h.r.clone(), rules: add }, after(&[&h]));
            }
            if let (false, Some(f)) = (remove.is_empty(), found) {
                self.p.push(Action::RevokeIngress { region: region.clone(), sg: f.id.clone(), rules: remove }, vec![]);
            }
            sgs.insert(sg.key.clone(), h);
        }
        sgs
    }

    fn key_pair(&mut self, dr: &DesiredRegion, or: &ObservedRegion) -> Have {
        match pick(&or.key_pairs, &dr.key_pair_key) {
            Some(f) => Have::found(&f.id),
            None => {
                let a = Action::ImportKeyPair {
                    region: dr.name.clone(),
                    key: dr.key_pair_key.clone(),
                    name: dr.key_pair_name.clone(),
                    public_key: self.d.key_pair_material.clone(),
                };
                Have::made(&dr.key_pair_key, self.p.push(a, vec![]))
            }
        }
    }

    /// Missing hosts launched, stopped ones started; each host's address noted for the checks.
    fn instances(
        &mut self,
        dr: &DesiredRegion,
        or: &ObservedRegion,
        subnets: &BTreeMap<String, Have>,
        routed: &BTreeMap<String, Vec<usize>>,
        sgs: &BTreeMap<String, Have>,
        kp: &Have,
    ) -> Result<(), PlanError> {
        let region = &dr.name;
        let mut to_start = Vec::new();
        for h in &dr.hosts {
            let Some(f) = pick(&or.instances, &h.key) else {
                let image = or.image.as_ref().ok_or_else(|| PlanError::NoAmi { region: region.clone() })?;
                if let Some(why) = crate::image::unsupported(image) {
                    return Err(PlanError::UnsupportedImage { region: region.clone(), why });
                }
                let ami = image.id.clone();
                let (sn, sg) = (&subnets[&h.subnet_key], &sgs[&h.sg_key]);
                let a = Action::RunInstance {
                    region: region.clone(),
                    region_role: dr.role.as_str().to_string(),
                    host: h.clone(),
                    ami,
                    subnet: sn.r.clone(),
                    sg: sg.r.clone(),
                    key_name: dr.key_pair_name.clone(),
                };
                let mut deps = after(&[sn, sg, kp]);
                deps.extend(&routed[&h.subnet_key]);
                deps.sort_unstable();
                deps.dedup();
                let s = self.p.push(a, deps);
                self.ips.insert(h.key.clone(), (IpRef::OfInstance { key: h.key.clone(), address: self.d.address }, Some(s)));
                continue;
            };
            if f.attrs.state == "stopped" || f.attrs.state == "stopping" {
                to_start.push(f.id.clone());
            }
            if f.attrs.instance_type != h.instance_type {
                self.p.notes.push(format!(
                    "{} ({}) is {}, the config asks for {}: change it with a stop/modify/start, provision does not resize running hosts",
                    h.key, f.id, f.attrs.instance_type, h.instance_type
                ));
            }
            self.ips.insert(h.key.clone(), (IpRef::Known(self.d.address.of(&f.attrs).unwrap_or_default()), None));
        }
        if !to_start.is_empty() {
            self.p.push(Action::StartInstances { region: region.clone(), ids: to_start }, vec![]);
        }
        Ok(())
    }

    /// What exists but is not wanted in this region, and what [`crate::dedupe`] left out.
    fn unwanted_in(&mut self, dr: &DesiredRegion, or: &ObservedRegion, extra: ObservedRegion) {
        let keep_hosts: BTreeSet<&str> = dr.hosts.iter().map(|h| h.key.as_str()).collect();
        let t = self.unwanted.region(&dr.name);
        t.instances.extend(extra.instances);
        t.sgs.extend(extra.sgs);
        t.subnets.extend(extra.subnets);
        t.vpcs.extend(extra.vpcs);
        t.igws.extend(extra.igws);
        t.route_tables.extend(extra.route_tables);
        t.nat_gateways.extend(extra.nat_gateways);
        t.addresses.extend(extra.addresses);
        t.key_pairs.extend(extra.key_pairs);
        t.instances.extend(extras(&or.instances, |k| keep_hosts.contains(k)));
        let keep_sgs: BTreeSet<&str> = dr.sgs.iter().map(|s| s.key.as_str()).collect();
        t.sgs.extend(extras(&or.sgs, |k| keep_sgs.contains(k)));
        let keep_subnets: BTreeSet<&str> = dr.subnets.iter().map(|s| s.key.as_str()).collect();
        t.subnets.extend(extras(&or.subnets, |k| keep_subnets.contains(k)));
        t.vpcs.extend(extras(&or.vpcs, |k| k == dr.vpc_key));
        t.igws.extend(extras(&or.igws, |k| k == dr.igw_key));
        t.route_tables.extend(extras(&or.route_tables, |k| k == dr.route_table_key || k == dr.private_route_table_key));
        let nat = dr.nat.as_ref();
        t.nat_gateways.extend(extras(&or.nat_gateways, |k| nat.is_some_and(|n| n.key == k)));
        t.addresses.extend(extras(&or.addresses, |k| nat.is_some_and(|n| n.eip_key == k)));
        t.key_pairs.extend(extras(&or.key_pairs, |k| k == dr.key_pair_key));
    }

    /// Peering between the two VPCs, requested from the primary region, accepted in the DR
    /// one; then each region's route to the other VPC over it.
    fn peering(&mut self) {
        let (d, o) = (self.d, self.o);
        let (prim, dr) = (&d.regions[0], &d.regions[1]);
        let live: Vec<Found<PeeringAttrs>> = o
            .peerings
            .iter()
            .filter(|f| matches!(f.attrs.status.as_str(), "active" | "pending-acceptance" | "initiating-request" | "provisioning"))
            .cloned()
            .collect();
        let (pv, dv) = (self.vpcs[&prim.name].clone(), self.vpcs[&dr.name].clone());
        let peering = match pick(&live, &d.peering_key) {
            Some(f) if f.attrs.status == "active" => Have::found(&f.id),
            Some(f) => {
                let h = Have::found(&f.id);
                Have { r: h.r.clone(), step: Some(self.p.push(Action::AcceptPeering { region: dr.name.clone(), peering: h.r }, vec![])) }
            }
            None => {
                let a = Action::CreatePeering {
                    region: prim.name.clone(),
                    key: d.peering_key.clone(),
                    vpc: pv.r.clone(),
                    peer_region: dr.name.clone(),
                    peer_vpc: dv.r.clone(),
                };
                let c = Have::made(&d.peering_key, self.p.push(a, after(&[&pv, &dv])));
                let accept = Action::AcceptPeering { region: dr.name.clone(), peering: c.r.clone() };
                Have { r: c.r.clone(), step: Some(self.p.push(accept, after(&[&c]))) }
            }
        };
        for t in &self.route_tables {
            route(&mut self.p, &t.region, &t.rt, t.found.as_ref(), &t.peer_cidr, &peering);
        }
        self.unwanted.peerings.extend(extras(&o.peerings, |k| k == d.peering_key).into_iter().filter(|f| f.attrs.status != "deleted"));
    }

    /// Route53 health checks: one HTTP check per gateway, one calculated check per region.
    fn checks(&mut self) -> BTreeMap<String, Have> {
        let mut checks: BTreeMap<String, Have> = BTreeMap::new();
        for c in &self.d.http_checks {
            let h = self.http_check(c);
            checks.insert(c.key.clone(), h);
        }
        for c in &self.d.region_checks {
            let h = self.region_check(c, &checks);
            checks.insert(c.key.clone(), h);
        }
        checks
    }

    fn http_check(&mut self, c: &HttpCheckSpec) -> Have {
        let (ip, ip_step) = self.ips[&c.host_key].clone();
        let Some(f) = pick(&self.o.checks, &c.key) else {
            let a = Action::CreateHttpCheck {
                key: c.key.clone(),
                ip,
                port: c.port,
                path: c.path.clone(),
                request_interval_s: c.request_interval_s,
                failure_threshold: c.failure_threshold,
            };
            return Have::made(&c.key, self.p.push(a, ip_step.into_iter().collect()));
        };
        let want = CheckAttrs::Http { ip: ip_text(&ip), port: c.port, path: c.path.clone() };
        if f.attrs == want {
            return Have::found(&f.id);
        }
        let a = Action::UpdateHttpCheck { key: c.key.clone(), id: f.id.clone(), ip, port: c.port, path: c.path.clone() };
        Have { r: Ref::Id(f.id.clone()), step: Some(self.p.push(a, ip_step.into_iter().collect())) }
    }

    fn region_check(&mut self, c: &RegionCheckSpec, checks: &BTreeMap<String, Have>) -> Have {
        let kids: Vec<&Have> = c.children.iter().map(|k| &checks[k]).collect();
        let refs: Vec<Ref> = kids.iter().map(|h| h.r.clone()).collect();
        let Some(f) = pick(&self.o.checks, &c.key) else {
            let a = Action::CreateRegionCheck { key: c.key.clone(), children: refs, healthy_children_min: c.healthy_children_min };
            return Have::made(&c.key, self.p.push(a, after(&kids)));
        };
        let ids: Vec<String> = refs
            .iter()
            .map(|r| match r {
                Ref::Id(i) => i.clone(),
                Ref::Key(k) => k.clone(),
            })
            .collect();
        let want = CheckAttrs::Calculated { children: sorted(ids), healthy_children_min: c.healthy_children_min };
        if f.attrs == want && kids.iter().all(|k| k.step.is_none()) {
            return Have::found(&f.id);
        }
        let a = Action::UpdateRegionCheck {
            key: c.key.clone(),
            id: f.id.clone(),
            children: refs,
            healthy_children_min: c.healthy_children_min,
        };
        Have { r: Ref::Id(f.id.clone()), step: Some(self.p.push(a, after(&kids))) }
    }

    fn zone(&mut self) -> Have {
        match &self.o.zone {
            Some(z) => Have::found(&z.id),
            None => Have::made(ZONE_KEY, self.p.push(Action::CreateZone { name: self.d.zone_name.clone() }, vec![])),
        }
    }

    /// The failover records: each upserted unless it already says what we want.
    fn records(&mut self, zone: &Have, checks: &BTreeMap<String, Have>) {
        let (d, o) = (self.d, self.o);
        for rs in &d.records {
            let region = d.regions.iter().find(|r| r.name == rs.region).expect("record of a desired region");
            let gw: Vec<(IpRef, Option<usize>)> = region.hosts.iter().filter(|h| h.gateway).map(|h| self.ips[&h.key].clone()).collect();
            let check = &checks[&rs.check_key];
            let found = o.records.iter().find(|r| r.set_identifier == rs.set_identifier);
            let want_ips = sorted(gw.iter().map(|(ip, _)| ip_text(ip)).collect());
            let same = match (found, &check.r) {
                (Some(f), Ref::Id(cid)) => {
                    f.failover.as_deref() == Some(rs.failover.as_str())
                        && sorted(f.ips.clone()) == want_ips
                        && f.health_check_id.as_deref() == Some(cid.as_str())
                        && f.ttl_s == Some(d.record_ttl_s)
                        && gw.iter().all(|(_, s)| s.is_none())
                }
                _ => false,
            };
            if same {
                continue;
            }
            let mut deps: Vec<usize> = gw.iter().filter_map(|(_, s)| *s).collect();
            deps.extend(zone.step);
            deps.extend(check.step);
            deps.sort_unstable();
            deps.dedup();
            let a = Action::UpsertRecord {
                zone: zone.r.clone(),
                name: d.record_name.clone(),
                spec: rs.clone(),
                ips: gw.into_iter().map(|(ip, _)| ip).collect(),
                check: check.r.clone(),
                ttl_s: d.record_ttl_s,
            };
            self.p.push(a, deps);
        }
    }

    /// Unwanted checks and records join the removals, which go last: nothing new depends on
    /// them, and records move off old checks first.
    fn finish(mut self, checks: &BTreeMap<String, Have>) -> Plan {
        let o = self.o;
        let keep_checks: BTreeSet<&str> = checks.keys().map(String::as_str).collect();
        self.unwanted.checks.extend(extras(&o.checks, |k| keep_checks.contains(k)));
        let keep_records: BTreeSet<&str> = self.d.records.iter().map(|r| r.set_identifier.as_str()).collect();
        self.unwanted.records.extend(o.records.iter().filter(|r| !keep_records.contains(r.set_identifier.as_str())).cloned());
        self.unwanted.zone_id = o.zone.as_ref().map(|z| z.id.clone());
        let barrier: Vec<usize> = (0..self.p.steps.len()).collect();
        teardown_steps(&self.unwanted, &mut self.p, &barrier);
        self.p
    }
}

fn route(p: &mut Plan, region: &str, rt: &Have, found: Option<&Found<RouteTableAttrs>>, cidr: &str, target: &Have) {
    let current = found.and_then(|f| f.attrs.routes.get(cidr));
    let ok = matches!((current, &target.r), (Some(t), Ref::Id(id)) if t == id) && target.step.is_none();
    if !ok {
        let a = Action::CreateRoute {
            region: region.to_string(),
            route_table: rt.r.clone(),
            cidr: cidr.to_string(),
            target: target.r.clone(),
            replace: current.is_some(),
        };
        p.push(a, after(&[rt, target]));
    }
}

fn immutable(region: &str, key: &str, field: &'static str, have: &str, want: &str) -> Result<(), PlanError> {
    if have == want {
        return Ok(());
    }
    Err(PlanError::Immutable(Box::new(ImmutableChange {
        region: region.to_string(),
        resource: key.to_string(),
        field,
        have: have.to_string(),
        want: want.to_string(),
        fix: "it cannot change in place: restore the old value, or run `provision down` then `up` to rebuild".into(),
    })))
}

/// Resources whose key is not wanted, plus every duplicate of a wanted key but the one kept.
fn extras<A: Clone>(found: &[Found<A>], wanted: impl Fn(&str) -> bool) -> Vec<Found<A>> {
    found.iter().filter(|f| !wanted(&f.key) || pick(found, &f.key).map(|k| &k.id) != Some(&f.id)).cloned().collect()
}

fn ip_text(ip: &IpRef) -> String {
    match ip {
        IpRef::Known(s) => s.clone(),
        IpRef::OfInstance { key, .. } => key.clone(),
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
