//! An interrupted `up` can leave several resources under one key: a run killed after a create
//! whose result the next run could not yet list (EC2's listings lag) makes the next run
//! create it again. Before planning, each key keeps one resource, chosen so that what is kept
//! fits together, and the rest is marked for removal. Pure.
//!
//! The rule: the kept VPC is the one holding most of the project's subnets, security groups
//! and instances (ties: the lowest id, so every run chooses the same); inside it, each key
//! keeps the resource in that VPC (ties: the lowest id). Keeping the lowest id alone could
//! keep an empty VPC and try to delete the one every host runs in.

use crate::model::{Found, ObservedRegion};

/// `or` with one resource per key, and the resources it left out: duplicates, and whatever
/// sits in another VPC than the kept one (it is made again inside the kept one).
pub fn dedupe(or: &ObservedRegion) -> (ObservedRegion, ObservedRegion) {
    let home = home_vpc(or);
    let place = |vpc: Option<&str>| match (home.as_deref(), vpc) {
        (Some(h), Some(v)) if !v.is_empty() => Some(h == v),
        _ => None,
    };
    let mut kept = ObservedRegion { name: or.name.clone(), image: or.image.clone(), ..Default::default() };
    let mut extra = ObservedRegion { name: or.name.clone(), ..Default::default() };
    (kept.vpcs, extra.vpcs) = split(&or.vpcs, |f| place(Some(&f.id)));
    (kept.subnets, extra.subnets) = split(&or.subnets, |f| place(Some(&f.attrs.vpc)));
    (kept.igws, extra.igws) = split(&or.igws, |f| place(f.attrs.attached_vpc.as_deref()));
    (kept.route_tables, extra.route_tables) = split(&or.route_tables, |f| place(Some(&f.attrs.vpc)));
    (kept.sgs, extra.sgs) = split(&or.sgs, |f| place(Some(&f.attrs.vpc)));
    (kept.key_pairs, extra.key_pairs) = split(&or.key_pairs, |_| None);
    // A failed or deleting NAT gateway is never the one kept: it is removed, and a live one
    // (or a new one) serves the key.
    let (live, dead): (Vec<_>, Vec<_>) = or.nat_gateways.iter().cloned().partition(|f| f.attrs.is_live());
    (kept.nat_gateways, extra.nat_gateways) = split(&live, |_| None);
    extra.nat_gateways.extend(dead);
    (kept.addresses, extra.addresses) = split(&or.addresses, |_| None);
    (kept.instances, extra.instances) = split(&or.instances, |f| place(Some(&f.attrs.vpc)));
    (kept, extra)
}

/// The id of the VPC to keep among those sharing a key (one key per region).
fn home_vpc(or: &ObservedRegion) -> Option<String> {
    let held = |vpc: &str| {
        or.subnets.iter().filter(|f| f.attrs.vpc == vpc).count()
            + or.sgs.iter().filter(|f| f.attrs.vpc == vpc).count()
            + or.instances.iter().filter(|f| f.attrs.vpc == vpc).count()
    };
    or.vpcs.iter().max_by(|a, b| held(&a.id).cmp(&held(&b.id)).then_with(|| b.id.cmp(&a.id))).map(|f| f.id.clone())
}

/// `in_home` says whether a resource is in the kept VPC (`None`: unknown, or no VPC kept).
/// Out of it: left out. Per key, the rest keeps one: in the kept VPC first, then the lowest id.
fn split<A: Clone>(found: &[Found<A>], in_home: impl Fn(&Found<A>) -> Option<bool>) -> (Vec<Found<A>>, Vec<Found<A>>) {
    let rank = |f: &Found<A>| (in_home(f) != Some(true), f.id.clone());
    let (mut kept, mut extra): (Vec<Found<A>>, Vec<Found<A>>) = (vec![], vec![]);
    for f in found {
        match kept.iter_mut().find(|k| k.key == f.key) {
            _ if in_home(f) == Some(false) => extra.push(f.clone()),
            None => kept.push(f.clone()),
            Some(k) if rank(f) < rank(k) => extra.push(std::mem::replace(k, f.clone())),
            Some(_) => extra.push(f.clone()),
        }
    }
    (kept, extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SubnetAttrs, VpcAttrs};

    fn vpc(id: &str) -> Found<VpcAttrs> {
        Found { key: "r/vpc".into(), id: id.into(), attrs: VpcAttrs { cidr: "10.0.0.0/16".into() } }
    }

    fn subnet(id: &str, vpc: &str) -> Found<SubnetAttrs> {
        Found { key: "r/subnet/a".into(), id: id.into(), attrs: SubnetAttrs { vpc: vpc.into(), ..Default::default() } }
    }

    #[test]
    fn keeps_the_vpc_in_use_not_the_lowest_id() {
        // A killed run made vpc-a (empty); the next one could not list it and built in vpc-b.
        let or =
            ObservedRegion { vpcs: vec![vpc("vpc-a"), vpc("vpc-b")], subnets: vec![subnet("subnet-b", "vpc-b")], ..Default::default() };
        let (kept, extra) = dedupe(&or);
        assert_eq!(kept.vpcs.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["vpc-b"]);
        assert_eq!(extra.vpcs.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["vpc-a"]);
        assert_eq!(kept.subnets.len(), 1);
    }

    #[test]
    fn children_outside_the_kept_vpc_go_and_ties_keep_the_lowest_id() {
        let or = ObservedRegion {
            vpcs: vec![vpc("vpc-b"), vpc("vpc-a")],
            subnets: vec![subnet("subnet-1", "vpc-b"), subnet("subnet-2", "vpc-a"), subnet("subnet-0", "vpc-a")],
            ..Default::default()
        };
        let (kept, extra) = dedupe(&or);
        assert_eq!(kept.vpcs[0].id, "vpc-a");
        assert_eq!(kept.subnets.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["subnet-0"]);
        let mut gone: Vec<&str> = extra.subnets.iter().map(|f| f.id.as_str()).collect();
        gone.sort();
        assert_eq!(gone, ["subnet-1", "subnet-2"]);
    }
}
