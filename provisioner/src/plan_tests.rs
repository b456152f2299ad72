//! Pure unit tests of the planner and teardown order (no cloud: Observed is built by hand).

use crate::action::{Action, Plan};
use crate::config::Config;
use crate::desired::desired;
use crate::model::*;
use crate::plan::plan_up;
use crate::teardown::plan_down;
use crate::template::Template;

fn want() -> Desired {
    let cfg = Config::parse("regions.toml", std::path::Path::new("."), crate::config::EMBEDDED_REGIONS_TOML).unwrap();
    let tpl = Template::load(&cfg).unwrap();
    desired(&cfg, &tpl, "ssh-ed25519 AAAA test")
}

fn observed_with_ami(d: &Desired) -> Observed {
    Observed {
        regions: d
            .regions
            .iter()
            .map(|r| ObservedRegion { name: r.name.clone(), ami_id: Some("ami-1".into()), ..Default::default() })
            .collect(),
        ..Default::default()
    }
}

fn index_of(p: &Plan, f: impl Fn(&Action) -> bool) -> Vec<usize> {
    p.steps.iter().enumerate().filter(|(_, s)| f(&s.action)).map(|(i, _)| i).collect()
}

/// Whether step `later` transitively waits for step `earlier`.
fn waits_for(p: &Plan, later: usize, earlier: usize) -> bool {
    let mut stack = vec![later];
    let mut seen = vec![false; p.steps.len()];
    while let Some(i) = stack.pop() {
        for &a in &p.steps[i].after {
            if a == earlier {
                return true;
            }
            if !seen[a] {
                seen[a] = true;
                stack.push(a);
            }
        }
    }
    false
}

#[test]
fn empty_cloud_plans_every_host_after_its_subnet_group_and_key() {
    let d = want();
    let p = plan_up(&d, &observed_with_ami(&d)).unwrap();
    let runs = index_of(&p, |a| matches!(a, Action::RunInstance { .. }));
    assert_eq!(runs.len(), 12);
    for r in runs {
        let deps: Vec<&Action> = p.steps[r].after.iter().map(|&i| &p.steps[i].action).collect();
        assert!(deps.iter().any(|a| matches!(a, Action::CreateSubnet { .. })));
        assert!(deps.iter().any(|a| matches!(a, Action::CreateSecurityGroup { .. })));
        assert!(deps.iter().any(|a| matches!(a, Action::ImportKeyPair { .. })));
    }
    let records = index_of(&p, |a| matches!(a, Action::UpsertRecord { .. }));
    let checks = index_of(&p, |a| matches!(a, Action::CreateRegionCheck { .. }));
    assert_eq!((records.len(), checks.len()), (2, 2));
    for r in &records {
        assert!(checks.iter().any(|c| waits_for(&p, *r, *c)), "record does not wait for its region check");
    }
}

#[test]
fn a_missing_ami_names_the_region() {
    let d = want();
    let mut o = observed_with_ami(&d);
    o.regions[1].ami_id = None;
    let e = plan_up(&d, &o).unwrap_err();
    assert!(e.to_string().contains("us-west-2"), "{e}");
}

#[test]
fn security_group_drift_is_authorized_and_revoked() {
    let d = want();
    let mut o = observed_with_ami(&d);
    let sg = &d.regions[0].sgs[0];
    let mut rules = sg.rules.clone();
    let missing = rules.pop().unwrap();
    rules.push(Rule { port: 3306, cidr: "0.0.0.0/0".into() });
    o.regions[0].sgs.push(Found { key: sg.key.clone(), id: "sg-1".into(), attrs: SgAttrs { rules } });
    let p = plan_up(&d, &o).unwrap();
    let auth: Vec<&Action> = p
        .steps
        .iter()
        .map(|s| &s.action)
        .filter(|a| matches!(a, Action::AuthorizeIngress { sg: crate::action::Ref::Id(id), .. } if id == "sg-1"))
        .collect();
    assert!(matches!(auth.as_slice(), [Action::AuthorizeIngress { rules, .. }] if rules == &vec![missing]));
    let revoke: Vec<&Action> = p.steps.iter().map(|s| &s.action).filter(|a| matches!(a, Action::RevokeIngress { .. })).collect();
    assert!(matches!(revoke.as_slice(), [Action::RevokeIngress { sg, rules, .. }] if sg == "sg-1" && rules[0].port == 3306));
}

#[test]
fn duplicate_instances_keep_the_lowest_id_and_terminate_the_rest() {
    let d = want();
    let mut o = observed_with_ami(&d);
    let h = &d.regions[0].hosts[0];
    for id in ["i-b", "i-a"] {
        o.regions[0].instances.push(Found {
            key: h.key.clone(),
            id: id.into(),
            attrs: InstanceAttrs {
                state: "running".into(),
                instance_type: h.instance_type.clone(),
                az: h.az.clone(),
                private_ip: Some("10.10.0.9".into()),
                public_ip: None,
            },
        });
    }
    let p = plan_up(&d, &o).unwrap();
    let term: Vec<&Action> = p.steps.iter().map(|s| &s.action).filter(|a| matches!(a, Action::TerminateInstances { .. })).collect();
    assert!(matches!(term.as_slice(), [Action::TerminateInstances { ids, .. }] if ids == &vec!["i-b".to_string()]), "{term:?}");
    assert!(!p.steps.iter().any(|s| matches!(&s.action, Action::RunInstance { host, .. } if host.key == h.key)));
}

#[test]
fn teardown_removes_dependents_before_what_they_depend_on() {
    let found = |key: &str, id: &str| (key.to_string(), id.to_string());
    let mut r = ObservedRegion { name: "us-east-1".into(), ..Default::default() };
    let (k, i) = found("us-east-1/vpc", "vpc-1");
    r.vpcs.push(Found { key: k, id: i, attrs: VpcAttrs::default() });
    r.subnets.push(Found { key: "s".into(), id: "subnet-1".into(), attrs: SubnetAttrs::default() });
    r.sgs.push(Found { key: "g".into(), id: "sg-1".into(), attrs: SgAttrs::default() });
    r.igws.push(Found { key: "i".into(), id: "igw-1".into(), attrs: IgwAttrs { attached_vpc: Some("vpc-1".into()) } });
    r.route_tables.push(Found { key: "r".into(), id: "rtb-1".into(), attrs: RouteTableAttrs::default() });
    r.instances.push(Found { key: "x".into(), id: "i-1".into(), attrs: InstanceAttrs::default() });
    let o = Observed {
        regions: vec![r],
        zone: Some(ZoneFound { id: "Z1".into(), name: "z.".into(), ours: true }),
        checks: vec![
            Found { key: "c1".into(), id: "h1".into(), attrs: CheckAttrs::Http { ip: "1.1.1.1".into(), port: 1, path: "/".into() } },
            Found {
                key: "c2".into(),
                id: "h2".into(),
                attrs: CheckAttrs::Calculated { children: vec!["h1".into()], healthy_children_min: 1 },
            },
        ],
        records: vec![RecordFound {
            name: "a.z.".into(),
            set_identifier: "p-primary".into(),
            failover: None,
            ips: vec![],
            health_check_id: Some("h2".into()),
            ttl_s: Some(10),
        }],
        ..Default::default()
    };
    let p = plan_down(&o);
    let one = |f: &dyn Fn(&Action) -> bool| index_of(&p, f)[0];
    let vpc = one(&|a| matches!(a, Action::DeleteVpc { .. }));
    for dep in [
        one(&|a| matches!(a, Action::DeleteSubnet { .. })),
        one(&|a| matches!(a, Action::DeleteSecurityGroup { .. })),
        one(&|a| matches!(a, Action::DeleteInternetGateway { .. })),
        one(&|a| matches!(a, Action::DeleteRouteTable { .. })),
        one(&|a| matches!(a, Action::TerminateInstances { .. })),
    ] {
        assert!(waits_for(&p, vpc, dep), "VPC deleted before {:?}", p.steps[dep].action);
    }
    let sg = one(&|a| matches!(a, Action::DeleteSecurityGroup { .. }));
    assert!(waits_for(&p, sg, one(&|a| matches!(a, Action::TerminateInstances { .. }))));
    let http = one(&|a| matches!(a, Action::DeleteCheck { id, .. } if id == "h1"));
    let calc = one(&|a| matches!(a, Action::DeleteCheck { id, .. } if id == "h2"));
    let rec = one(&|a| matches!(a, Action::DeleteRecord { .. }));
    let zone = one(&|a| matches!(a, Action::DeleteZone { .. }));
    assert!(waits_for(&p, http, calc) && waits_for(&p, calc, rec) && waits_for(&p, zone, rec));
}

#[test]
fn a_zone_up_did_not_create_is_never_deleted() {
    let o = Observed { zone: Some(ZoneFound { id: "Z1".into(), name: "z.".into(), ours: false }), ..Default::default() };
    assert!(index_of(&plan_down(&o), |a| matches!(a, Action::DeleteZone { .. })).is_empty());
}

#[test]
fn deferring_the_records_keeps_every_other_step_and_its_order() {
    let d = want();
    let full = plan_up(&d, &observed_with_ami(&d)).unwrap();
    let is_record = |a: &Action| matches!(a, Action::UpsertRecord { .. });
    assert!(!index_of(&full, is_record).is_empty(), "a fresh plan writes the records");
    let deferred = full.without(is_record);
    assert!(index_of(&deferred, is_record).is_empty());
    assert_eq!(deferred.steps.len(), full.steps.len() - index_of(&full, is_record).len());
    for (i, s) in deferred.steps.iter().enumerate() {
        assert!(s.after.iter().all(|&a| a < i), "edges still point backwards");
    }
    // Removing a middle step hands its own dependencies to what waited for it.
    let mut p = Plan::default();
    let a = p.push(Action::CreateZone { name: "a".into() }, vec![]);
    let b = p.push(Action::CreateZone { name: "b".into() }, vec![a]);
    p.push(Action::CreateZone { name: "c".into() }, vec![b]);
    let q = p.without(|x| matches!(x, Action::CreateZone { name } if name == "b"));
    assert_eq!(q.steps.len(), 2);
    assert_eq!(q.steps[1].after, vec![0], "c now waits for a");
}
