//! Pure unit tests of the planner and teardown order (no cloud: Observed is built by hand).
//!
//! Every case goes through [`check`]: what is wanted, what the cloud holds, and the plan as
//! text. A plan renders one step per line, `index sign scope what`, then `<- i j` for the
//! steps it waits for (see [`render`]). On a mismatch the test prints the actual text, ready
//! to paste over the expected one.

use std::collections::BTreeMap;

use crate::action::{Action, Plan};
use crate::config::Config;
use crate::desired::desired;
use crate::model::*;
use crate::plan::plan_up;
use crate::teardown::plan_down;
use crate::template::Template;

/// What the plan is asked for.
enum Want<'a> {
    /// `up` towards this desired state.
    Up(&'a Desired),
    /// `up --defer-records` (ops): the same plan without the record writes.
    UpDeferringRecords(&'a Desired),
    /// `down`: nothing.
    Down,
}

/// The one helper: plans `want` against `observed` and compares the plan's text with `expect`
/// (indented as in the source; leading and trailing blank lines and the common indent ignored).
#[track_caller]
fn check(want: Want, observed: &Observed, expect: &str) {
    let is_record = |a: &Action| matches!(a, Action::UpsertRecord { .. });
    let actual = match want {
        Want::Up(d) => plan_up(d, observed).map(|p| render(&p)),
        Want::UpDeferringRecords(d) => plan_up(d, observed).map(|p| render(&p.without(is_record))),
        Want::Down => Ok(render(&plan_down(observed))),
    }
    .unwrap_or_else(|e| format!("error: {e}\n"));
    assert_text(&actual, expect);
}

/// One line per step: index, `+` create / `~` update / `-` delete, scope, what; then `<-` and
/// the indexes of the steps it waits for. Notes last. An empty plan is `no changes`.
fn render(p: &Plan) -> String {
    let mut s = String::new();
    for (i, st) in p.steps.iter().enumerate() {
        let sign = match st.action.change() {
            crate::action::Change::Create => '+',
            crate::action::Change::Update => '~',
            crate::action::Change::Delete => '-',
        };
        s.push_str(&format!("{i} {sign} {} {}", st.action.scope(), st.action.describe()));
        if !st.after.is_empty() {
            s.push_str(&format!("  <- {}", st.after.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" ")));
        }
        s.push('\n');
    }
    for n in &p.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    if s.is_empty() {
        s.push_str("no changes\n");
    }
    s
}

#[track_caller]
fn assert_text(actual: &str, expect: &str) {
    let expect = trim_indent(expect);
    if actual != expect {
        let pasteable: String = actual.lines().map(|l| format!("        {l}\n")).collect();
        panic!("plan differs from the expected text.\n--- expected\n{expect}--- actual\n{actual}--- actual, to paste:\n\n{pasteable}");
    }
}

fn trim_indent(text: &str) -> String {
    let lines: Vec<&str> = text.lines().skip_while(|l| l.trim().is_empty()).collect();
    let end = lines.iter().rposition(|l| !l.trim().is_empty()).map_or(0, |i| i + 1);
    let lines = &lines[..end];
    let indent = lines.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    lines.iter().map(|l| format!("{}\n", l.get(indent..).unwrap_or("").trim_end())).collect()
}

// --- Fixtures ---

/// The embedded regions.toml's desired state.
fn want() -> Desired {
    let cfg = Config::parse("regions.toml", std::path::Path::new("."), crate::config::EMBEDDED_REGIONS_TOML).unwrap();
    let tpl = Template::load(&cfg).unwrap();
    desired(&cfg, &tpl, "ssh-ed25519 AAAA test")
}

/// An empty cloud: nothing of the project, an AMI in every region.
fn empty(d: &Desired) -> Observed {
    Observed {
        regions: d
            .regions
            .iter()
            .map(|r| ObservedRegion {
                name: r.name.clone(),
                image: Some(Image { id: "ami-1".into(), name: "debian-12-amd64-20241201-1948".into(), architecture: "x86_64".into() }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The id the fake cloud gave the resource with this key.
fn id(key: &str) -> String {
    format!("id:{key}")
}

/// The private (and public) address of host `n` (in desired order, both regions).
fn ip(n: usize) -> String {
    format!("10.0.0.{}", n + 1)
}

/// A resource of the fake cloud, under its key.
fn found<A>(key: &str, attrs: A) -> Found<A> {
    Found { key: key.to_string(), id: id(key), attrs }
}

/// Everything `d` asks for, as `up` leaves it: planning `d` against it changes nothing.
fn converged(d: &Desired) -> Observed {
    let mut host_ip = BTreeMap::new();
    let mut o = empty(d);
    for (dr, or) in d.regions.iter().zip(&mut o.regions) {
        or.vpcs.push(found(&dr.vpc_key, VpcAttrs { cidr: dr.vpc_cidr.clone() }));
        or.igws.push(found(&dr.igw_key, IgwAttrs { attached_vpc: Some(id(&dr.vpc_key)) }));
        or.subnets
            .extend(dr.subnets.iter().map(|s| found(&s.key, SubnetAttrs { cidr: s.cidr.clone(), az: s.az.clone(), vpc: id(&dr.vpc_key) })));
        if let Some(nat) = &dr.nat {
            or.addresses
                .push(found(&nat.eip_key, AddressAttrs { public_ip: "198.51.100.1".into(), association: Some("eipassoc-1".into()) }));
            or.nat_gateways.push(found(&nat.key, NatAttrs { state: "available".into(), subnet: id(&nat.subnet_key) }));
        }
        for (key, public) in [(&dr.route_table_key, true), (&dr.private_route_table_key, false)] {
            let mut routes = BTreeMap::from([(dr.peer_cidr.clone(), id(&d.peering_key))]);
            let default = if public { Some(id(&dr.igw_key)) } else { dr.nat.as_ref().map(|n| id(&n.key)) };
            routes.extend(default.map(|gw| ("0.0.0.0/0".to_string(), gw)));
            let associations = dr.subnets.iter().filter(|s| s.public == public).map(|s| (format!("assoc:{}", s.key), id(&s.key))).collect();
            or.route_tables.push(found(key, RouteTableAttrs { routes, associations, vpc: id(&dr.vpc_key) }));
        }
        or.sgs.extend(dr.sgs.iter().map(|s| found(&s.key, SgAttrs { rules: s.rules.clone(), vpc: id(&dr.vpc_key) })));
        or.key_pairs.push(found(&dr.key_pair_key, KeyPairAttrs { name: dr.key_pair_name.clone() }));
        for h in &dr.hosts {
            let a = Some(ip(host_ip.len()));
            host_ip.insert(h.key.clone(), a.clone().unwrap());
            let attrs = InstanceAttrs {
                state: "running".into(),
                instance_type: h.instance_type.clone(),
                az: h.az.clone(),
                private_ip: a.clone(),
                public_ip: a,
                vpc: id(&dr.vpc_key),
            };
            or.instances.push(found(&h.key, attrs));
        }
    }
    let (requester_vpc, accepter_vpc) = (id(&d.regions[0].vpc_key), id(&d.regions[1].vpc_key));
    o.peerings.push(found(&d.peering_key, PeeringAttrs { status: "active".into(), requester_vpc, accepter_vpc }));
    o.zone = Some(ZoneFound { id: "Z-ours".into(), name: d.zone_name.clone(), ours: true });
    for c in &d.http_checks {
        o.checks.push(found(&c.key, CheckAttrs::Http { ip: host_ip[&c.host_key].clone(), port: c.port, path: c.path.clone() }));
    }
    for c in &d.region_checks {
        let mut children: Vec<String> = c.children.iter().map(|k| id(k)).collect();
        children.sort();
        o.checks.push(found(&c.key, CheckAttrs::Calculated { children, healthy_children_min: c.healthy_children_min }));
    }
    for r in &d.records {
        let region = d.regions.iter().find(|x| x.name == r.region).unwrap();
        o.records.push(RecordFound {
            name: d.record_name.clone(),
            set_identifier: r.set_identifier.clone(),
            failover: Some(r.failover.as_str().to_string()),
            ips: region.hosts.iter().filter(|h| h.gateway).map(|h| host_ip[&h.key].clone()).collect(),
            health_check_id: Some(id(&r.check_key)),
            ttl_s: Some(d.record_ttl_s),
        });
    }
    o
}

// --- up ---

#[test]
fn a_converged_cloud_needs_no_change() {
    let d = want();
    check(Want::Up(&d), &converged(&d), "no changes");
}

#[test]
fn empty_cloud_plans_every_host_after_its_subnet_group_and_key() {
    let d = want();
    check(Want::Up(&d), &empty(&d), "
        0 + us-east-1 VPC us-east-1/vpc (10.10.0.0/16)
        1 + us-east-1 internet gateway us-east-1/igw
        2 + us-east-1 attach internet gateway us-east-1/igw to us-east-1/vpc  <- 0 1
        3 + us-east-1 subnet us-east-1/subnet/public-us-east-1a (10.10.0.0/19 in us-east-1a)  <- 0
        4 + us-east-1 subnet us-east-1/subnet/public-us-east-1b (10.10.32.0/19 in us-east-1b)  <- 0
        5 + us-east-1 subnet us-east-1/subnet/public-us-east-1c (10.10.64.0/19 in us-east-1c)  <- 0
        6 + us-east-1 subnet us-east-1/subnet/private-us-east-1a (10.10.128.0/19 in us-east-1a)  <- 0
        7 + us-east-1 subnet us-east-1/subnet/private-us-east-1b (10.10.160.0/19 in us-east-1b)  <- 0
        8 + us-east-1 subnet us-east-1/subnet/private-us-east-1c (10.10.192.0/19 in us-east-1c)  <- 0
        9 + us-east-1 Elastic IP us-east-1/eip/nat
        10 + us-east-1 NAT gateway us-east-1/nat in us-east-1/subnet/public-us-east-1a  <- 2 3 9
        11 + us-east-1 route table us-east-1/route-table  <- 0
        12 + us-east-1 add route 0.0.0.0/0 -> us-east-1/igw in us-east-1/route-table  <- 2 11
        13 + us-east-1 associate us-east-1/route-table with us-east-1/subnet/public-us-east-1a  <- 3 11
        14 + us-east-1 associate us-east-1/route-table with us-east-1/subnet/public-us-east-1b  <- 4 11
        15 + us-east-1 associate us-east-1/route-table with us-east-1/subnet/public-us-east-1c  <- 5 11
        16 + us-east-1 route table us-east-1/route-table/private  <- 0
        17 + us-east-1 add route 0.0.0.0/0 -> us-east-1/nat in us-east-1/route-table/private  <- 10 16
        18 + us-east-1 associate us-east-1/route-table/private with us-east-1/subnet/private-us-east-1a  <- 6 16
        19 + us-east-1 associate us-east-1/route-table/private with us-east-1/subnet/private-us-east-1b  <- 7 16
        20 + us-east-1 associate us-east-1/route-table/private with us-east-1/subnet/private-us-east-1c  <- 8 16
        21 + us-east-1 security group us-east-1/sg/app (exa-app)  <- 0
        22 + us-east-1 allow tcp/22 from 127.0.0.0/8, tcp/7101 from 10.10.0.0/16, tcp/7101 from 10.20.0.0/16, tcp/7102 from 10.10.0.0/16, tcp/7102 from 10.20.0.0/16, tcp/7103 from 10.10.0.0/16, tcp/7103 from 10.20.0.0/16, tcp/7104 from 10.10.0.0/16, tcp/7104 from 10.20.0.0/16, tcp/8080 from 0.0.0.0/0, tcp/8081 from 10.10.0.0/16, tcp/8081 from 10.20.0.0/16, icmp frag-needed from 10.20.0.0/16 in us-east-1/sg/app  <- 21
        23 + us-east-1 security group us-east-1/sg/db (exa-db)  <- 0
        24 + us-east-1 allow tcp/22 from 127.0.0.0/8, tcp/2379 from 10.10.0.0/16, tcp/2379 from 10.20.0.0/16, tcp/2380 from 10.10.0.0/16, tcp/2380 from 10.20.0.0/16, tcp/5432 from 10.10.0.0/16, tcp/5432 from 10.20.0.0/16, tcp/8008 from 10.10.0.0/16, tcp/8008 from 10.20.0.0/16, icmp frag-needed from 10.20.0.0/16 in us-east-1/sg/db  <- 23
        25 + us-east-1 key pair us-east-1/key-pair (exa)
        26 + us-east-1 instance us-east-1/instance/app-0 (t3.medium in us-east-1a)  <- 3 11 12 13 14 15 21 25
        27 + us-east-1 instance us-east-1/instance/app-1 (t3.medium in us-east-1b)  <- 4 11 12 13 14 15 21 25
        28 + us-east-1 instance us-east-1/instance/app-2 (t3.medium in us-east-1c)  <- 5 11 12 13 14 15 21 25
        29 + us-east-1 instance us-east-1/instance/db-0 (r6i.large in us-east-1a)  <- 6 16 17 18 19 20 23 25
        30 + us-east-1 instance us-east-1/instance/db-1 (r6i.large in us-east-1b)  <- 7 16 17 18 19 20 23 25
        31 + us-east-1 instance us-east-1/instance/db-2 (r6i.large in us-east-1c)  <- 8 16 17 18 19 20 23 25
        32 + us-west-2 VPC us-west-2/vpc (10.20.0.0/16)
        33 + us-west-2 internet gateway us-west-2/igw
        34 + us-west-2 attach internet gateway us-west-2/igw to us-west-2/vpc  <- 32 33
        35 + us-west-2 subnet us-west-2/subnet/public-us-west-2a (10.20.0.0/19 in us-west-2a)  <- 32
        36 + us-west-2 subnet us-west-2/subnet/public-us-west-2b (10.20.32.0/19 in us-west-2b)  <- 32
        37 + us-west-2 subnet us-west-2/subnet/public-us-west-2c (10.20.64.0/19 in us-west-2c)  <- 32
        38 + us-west-2 subnet us-west-2/subnet/private-us-west-2a (10.20.128.0/19 in us-west-2a)  <- 32
        39 + us-west-2 subnet us-west-2/subnet/private-us-west-2b (10.20.160.0/19 in us-west-2b)  <- 32
        40 + us-west-2 subnet us-west-2/subnet/private-us-west-2c (10.20.192.0/19 in us-west-2c)  <- 32
        41 + us-west-2 Elastic IP us-west-2/eip/nat
        42 + us-west-2 NAT gateway us-west-2/nat in us-west-2/subnet/public-us-west-2a  <- 34 35 41
        43 + us-west-2 route table us-west-2/route-table  <- 32
        44 + us-west-2 add route 0.0.0.0/0 -> us-west-2/igw in us-west-2/route-table  <- 34 43
        45 + us-west-2 associate us-west-2/route-table with us-west-2/subnet/public-us-west-2a  <- 35 43
        46 + us-west-2 associate us-west-2/route-table with us-west-2/subnet/public-us-west-2b  <- 36 43
        47 + us-west-2 associate us-west-2/route-table with us-west-2/subnet/public-us-west-2c  <- 37 43
        48 + us-west-2 route table us-west-2/route-table/private  <- 32
        49 + us-west-2 add route 0.0.0.0/0 -> us-west-2/nat in us-west-2/route-table/private  <- 42 48
        50 + us-west-2 associate us-west-2/route-table/private with us-west-2/subnet/private-us-west-2a  <- 38 48
        51 + us-west-2 associate us-west-2/route-table/private with us-west-2/subnet/private-us-west-2b  <- 39 48
        52 + us-west-2 associate us-west-2/route-table/private with us-west-2/subnet/private-us-west-2c  <- 40 48
        53 + us-west-2 security group us-west-2/sg/app (exa-app)  <- 32
        54 + us-west-2 allow tcp/22 from 127.0.0.0/8, tcp/7101 from 10.10.0.0/16, tcp/7101 from 10.20.0.0/16, tcp/7102 from 10.10.0.0/16, tcp/7102 from 10.20.0.0/16, tcp/7103 from 10.10.0.0/16, tcp/7103 from 10.20.0.0/16, tcp/7104 from 10.10.0.0/16, tcp/7104 from 10.20.0.0/16, tcp/8080 from 0.0.0.0/0, tcp/8081 from 10.10.0.0/16, tcp/8081 from 10.20.0.0/16, icmp frag-needed from 10.10.0.0/16 in us-west-2/sg/app  <- 53
        55 + us-west-2 security group us-west-2/sg/db (exa-db)  <- 32
        56 + us-west-2 allow tcp/22 from 127.0.0.0/8, tcp/2379 from 10.10.0.0/16, tcp/2379 from 10.20.0.0/16, tcp/2380 from 10.10.0.0/16, tcp/2380 from 10.20.0.0/16, tcp/5432 from 10.10.0.0/16, tcp/5432 from 10.20.0.0/16, tcp/8008 from 10.10.0.0/16, tcp/8008 from 10.20.0.0/16, icmp frag-needed from 10.10.0.0/16 in us-west-2/sg/db  <- 55
        57 + us-west-2 key pair us-west-2/key-pair (exa)
        58 + us-west-2 instance us-west-2/instance/app-0 (t3.medium in us-west-2a)  <- 35 43 44 45 46 47 53 57
        59 + us-west-2 instance us-west-2/instance/app-1 (t3.medium in us-west-2b)  <- 36 43 44 45 46 47 53 57
        60 + us-west-2 instance us-west-2/instance/app-2 (t3.medium in us-west-2c)  <- 37 43 44 45 46 47 53 57
        61 + us-west-2 instance us-west-2/instance/db-0 (r6i.large in us-west-2a)  <- 38 48 49 50 51 52 55 57
        62 + us-west-2 instance us-west-2/instance/db-1 (r6i.large in us-west-2b)  <- 39 48 49 50 51 52 55 57
        63 + us-west-2 instance us-west-2/instance/db-2 (r6i.large in us-west-2c)  <- 40 48 49 50 51 52 55 57
        64 + us-east-1 VPC peering us-east-1/peering/us-west-2 to us-west-2  <- 0 32
        65 + us-west-2 accept VPC peering us-east-1/peering/us-west-2  <- 64
        66 + us-east-1 add route 10.20.0.0/16 -> us-east-1/peering/us-west-2 in us-east-1/route-table  <- 11 65
        67 + us-east-1 add route 10.20.0.0/16 -> us-east-1/peering/us-west-2 in us-east-1/route-table/private  <- 16 65
        68 + us-west-2 add route 10.10.0.0/16 -> us-east-1/peering/us-west-2 in us-west-2/route-table  <- 43 65
        69 + us-west-2 add route 10.10.0.0/16 -> us-east-1/peering/us-west-2 in us-west-2/route-table/private  <- 48 65
        70 + global hosted zone exa.example.internal
        71 + global health check us-east-1/check/app-0 (HTTPS <ip of us-east-1/instance/app-0>:8080/health)  <- 26
        72 + global health check us-east-1/check/app-1 (HTTPS <ip of us-east-1/instance/app-1>:8080/health)  <- 27
        73 + global health check us-east-1/check/app-2 (HTTPS <ip of us-east-1/instance/app-2>:8080/health)  <- 28
        74 + global health check us-west-2/check/app-0 (HTTPS <ip of us-west-2/instance/app-0>:8080/health)  <- 58
        75 + global health check us-west-2/check/app-1 (HTTPS <ip of us-west-2/instance/app-1>:8080/health)  <- 59
        76 + global health check us-west-2/check/app-2 (HTTPS <ip of us-west-2/instance/app-2>:8080/health)  <- 60
        77 + global health check us-east-1/check/region (healthy while 1 of 3 gateways is)  <- 71 72 73
        78 + global health check us-west-2/check/region (healthy while 1 of 3 gateways is)  <- 74 75 76
        79 + global record api.exa.example.internal PRIMARY (exa-primary) -> <ip of us-east-1/instance/app-0>, <ip of us-east-1/instance/app-1>, <ip of us-east-1/instance/app-2>  <- 26 27 28 70 77
        80 + global record api.exa.example.internal SECONDARY (exa-secondary) -> <ip of us-west-2/instance/app-0>, <ip of us-west-2/instance/app-1>, <ip of us-west-2/instance/app-2>  <- 58 59 60 70 78
    ");
}

#[test]
fn a_missing_ami_names_the_region() {
    let d = want();
    let mut o = empty(&d);
    o.regions[1].image = None;
    check(Want::Up(&d), &o, "
        error: no AMI matches the config in us-west-2; fix `ami` for that region in the config (name filter + owner, or an id that exists there)
    ");
}

#[test]
fn an_image_that_is_not_debian_12_is_refused_before_a_launch() {
    let d = want();
    let mut o = empty(&d);
    let xenial = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-20211001";
    o.regions[0].image = Some(Image { id: "ami-2".into(), name: xenial.into(), architecture: "x86_64".into() });
    let Err(err) = plan_up(&d, &o).map(|_| ()) else { panic!("a xenial image was accepted") };
    let err = err.to_string();
    assert!(err.starts_with("region us-east-1: the image ami-2 (\"ubuntu/images/"), "{err}");
    assert!(
        err.contains("not a Debian 12 image") && err.contains(r#"ami = { name = "debian-12-amd64-*", owner = "136693071363" }"#),
        "{err}"
    );
}

#[test]
fn security_group_drift_is_authorized_and_revoked() {
    let d = want();
    let mut o = converged(&d);
    let rules = &mut o.regions[0].sgs[0].attrs.rules;
    rules.pop();
    rules.push(Rule::tcp(3306, "0.0.0.0/0"));
    check(
        Want::Up(&d),
        &o,
        "
        0 + us-east-1 allow icmp frag-needed from 10.20.0.0/16 in id:us-east-1/sg/app
        1 ~ us-east-1 revoke tcp/3306 from 0.0.0.0/0 in id:us-east-1/sg/app
    ",
    );
}

#[test]
fn duplicate_instances_keep_the_lowest_id_and_terminate_the_rest() {
    let d = want();
    let mut o = converged(&d);
    let first = o.regions[0].instances[0].clone();
    o.regions[0].instances[0].id = "i-a".into();
    o.regions[0].instances.push(Found { id: "i-b".into(), ..first });
    check(
        Want::Up(&d),
        &o,
        "
        0 - us-east-1 terminate 1 instance(s): i-b
    ",
    );
}

#[test]
fn deferring_the_records_keeps_every_other_step_and_its_order() {
    // A lost gateway host: a new instance, its check re-pointed, the region check and the
    // record after it. Deferred, the record write goes and the rest stays as it was.
    let d = want();
    let mut o = converged(&d);
    o.regions[0].instances.remove(0);
    check(
        Want::Up(&d),
        &o,
        "
        0 + us-east-1 instance us-east-1/instance/app-0 (t3.medium in us-east-1a)
        1 ~ global health check us-east-1/check/app-0 -> HTTPS <ip of us-east-1/instance/app-0>:8080/health  <- 0
        2 ~ global health check us-east-1/check/region -> 3 children  <- 1
        3 + global record api.exa.example.internal PRIMARY (exa-primary) -> <ip of us-east-1/instance/app-0>, 10.0.0.2, 10.0.0.3  <- 0 2
    ",
    );
    check(
        Want::UpDeferringRecords(&d),
        &o,
        "
        0 + us-east-1 instance us-east-1/instance/app-0 (t3.medium in us-east-1a)
        1 ~ global health check us-east-1/check/app-0 -> HTTPS <ip of us-east-1/instance/app-0>:8080/health  <- 0
        2 ~ global health check us-east-1/check/region -> 3 children  <- 1
    ",
    );
}

#[test]
fn removing_a_middle_step_hands_its_dependencies_to_what_waited_for_it() {
    let mut p = Plan::default();
    let a = p.push(Action::CreateZone { name: "a".into() }, vec![]);
    let b = p.push(Action::CreateZone { name: "b".into() }, vec![a]);
    p.push(Action::CreateZone { name: "c".into() }, vec![b]);
    let q = p.without(|x| matches!(x, Action::CreateZone { name } if name == "b"));
    assert_text(
        &render(&q),
        "
        0 + global hosted zone a
        1 + global hosted zone c  <- 0
    ",
    );
}

// --- down ---

#[test]
fn teardown_removes_dependents_before_what_they_depend_on() {
    let mut r = ObservedRegion { name: "us-east-1".into(), ..Default::default() };
    r.vpcs.push(Found { key: "us-east-1/vpc".into(), id: "vpc-1".into(), attrs: VpcAttrs::default() });
    r.subnets.push(Found { key: "s".into(), id: "subnet-1".into(), attrs: SubnetAttrs::default() });
    r.sgs.push(Found { key: "g".into(), id: "sg-1".into(), attrs: SgAttrs::default() });
    r.igws.push(Found { key: "i".into(), id: "igw-1".into(), attrs: IgwAttrs { attached_vpc: Some("vpc-1".into()) } });
    r.route_tables.push(Found { key: "r".into(), id: "rtb-1".into(), attrs: RouteTableAttrs::default() });
    r.instances.push(Found { key: "x".into(), id: "i-1".into(), attrs: InstanceAttrs::default() });
    r.nat_gateways.push(Found {
        key: "n".into(),
        id: "nat-1".into(),
        attrs: NatAttrs { state: "available".into(), subnet: "subnet-1".into() },
    });
    r.addresses.push(Found { key: "e".into(), id: "eipalloc-1".into(), attrs: AddressAttrs::default() });
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
    check(
        Want::Down,
        &o,
        "
        0 - global record a.z. (p-primary)
        1 - global health check c2 (h2)  <- 0
        2 - global health check c1 (h1)  <- 0 1
        3 - global hosted zone z. (Z1)  <- 0
        4 - us-east-1 terminate 1 instance(s): i-1
        5 - us-east-1 security group g (sg-1)  <- 4
        6 - us-east-1 route table rtb-1  <- 4
        7 - us-east-1 NAT gateway n (nat-1)
        8 - us-east-1 Elastic IP e (eipalloc-1)  <- 7
        9 - us-east-1 subnet s (subnet-1)  <- 4 6 7
        10 - us-east-1 internet gateway igw-1  <- 4 6 7
        11 - us-east-1 VPC us-east-1/vpc (vpc-1)  <- 4 5 6 9 10
    ",
    );
}

/// The embedded regions.toml's desired state with `edit` applied to the file.
fn want_with(edit: (&str, &str)) -> Desired {
    let src = crate::config::EMBEDDED_REGIONS_TOML.replacen(edit.0, edit.1, 1);
    assert_ne!(src, crate::config::EMBEDDED_REGIONS_TOML, "the edit applies");
    let cfg = Config::parse("regions.toml", std::path::Path::new("."), &src).unwrap();
    let tpl = Template::load(&cfg).unwrap();
    desired(&cfg, &tpl, "ssh-ed25519 AAAA test")
}

#[test]
fn gateways_sit_in_public_subnets_with_addresses_and_the_rest_in_private_ones() {
    let d = want();
    for r in &d.regions {
        let public: std::collections::BTreeSet<&str> = r.subnets.iter().filter(|s| s.public).map(|s| s.key.as_str()).collect();
        assert_eq!((public.len(), r.subnets.len()), (3, 6), "{}: a public and a private subnet per AZ", r.name);
        for h in &r.hosts {
            assert_eq!((public.contains(h.subnet_key.as_str()), h.public_ip), (h.gateway, h.gateway), "{}", h.key);
        }
        let nat = r.nat.as_ref().expect("egress defaults to a NAT gateway");
        assert!(public.contains(nat.subnet_key.as_str()), "the NAT gateway sits in a public subnet");
    }
}

#[test]
fn without_egress_no_nat_gateway_is_made_and_private_subnets_get_no_default_route() {
    let d = want_with(("# egress = \"nat\"", "egress = \"none\""));
    let p = plan_up(&d, &empty(&d)).unwrap();
    let text = render(&p);
    assert!(!text.contains("NAT gateway") && !text.contains("Elastic IP"), "{text}");
    assert!(!text.contains("add route 0.0.0.0/0 -> us-east-1/nat"), "{text}");
    assert!(text.contains("associate us-east-1/route-table/private with us-east-1/subnet/private-us-east-1a"), "{text}");
    // And with the default, the private table's default route waits for the NAT gateway.
    let d = want();
    let text = render(&plan_up(&d, &empty(&d)).unwrap());
    let nat = text.lines().find(|l| l.contains("+ us-east-1 NAT gateway us-east-1/nat")).expect("a NAT gateway");
    let nat_step = nat.split(' ').next().unwrap();
    let route =
        text.lines().find(|l| l.contains("add route 0.0.0.0/0 -> us-east-1/nat in us-east-1/route-table/private")).expect("a route");
    assert!(route.split("<-").nth(1).unwrap().split_whitespace().any(|s| s == nat_step), "{route}");
}

#[test]
fn a_zone_up_did_not_create_is_never_deleted() {
    let o = Observed { zone: Some(ZoneFound { id: "Z1".into(), name: "z.".into(), ours: false }), ..Default::default() };
    check(Want::Down, &o, "no changes");
}

#[test]
fn down_waits_for_instances_already_shutting_down_before_their_subnet() {
    let mut r = ObservedRegion { name: "us-east-1".into(), ..Default::default() };
    let leaving = InstanceAttrs { state: "shutting-down".into(), ..Default::default() };
    r.leaving.push(Found { key: "i".into(), id: "i-9".into(), attrs: leaving });
    r.subnets.push(Found { key: "s".into(), id: "subnet-1".into(), attrs: SubnetAttrs::default() });
    let o = Observed { regions: vec![r], ..Default::default() };
    check(
        Want::Down,
        &o,
        "
        0 - us-east-1 terminate 1 instance(s): i-9
        1 - us-east-1 subnet s (subnet-1)  <- 0
    ",
    );
}
