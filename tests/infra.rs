//! `up`/`plan`/`down` against a real LocalStack, checked through the AWS API (never through
//! provision's own output). Each test owns a unique project name, zone and tags.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use common::*;

fn tag_filter(project: &str) -> Filter {
    Filter::builder().name("tag:Project").values(project).build()
}

fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], k: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(k)).and_then(|t| t.value())
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inst {
    id: String,
    key: String,
    role: String,
    modules: String,
    az: String,
    region_role: String,
    index: String,
}

async fn instances(region: &str, project: &str) -> Vec<Inst> {
    let c = ec2(region).await;
    let live =
        Filter::builder().name("instance-state-name").values("pending").values("running").values("stopping").values("stopped").build();
    let r = c.describe_instances().filters(tag_filter(project)).filters(live).send().await.unwrap();
    let mut v: Vec<Inst> = r
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| Inst {
            id: i.instance_id().unwrap().into(),
            key: tag(i.tags(), "provision:key").unwrap_or_default().into(),
            role: tag(i.tags(), "provision:role").unwrap_or_default().into(),
            modules: tag(i.tags(), "provision:modules").unwrap_or_default().into(),
            az: i.placement().and_then(|p| p.availability_zone()).unwrap_or_default().into(),
            region_role: tag(i.tags(), "provision:region-role").unwrap_or_default().into(),
            index: tag(i.tags(), "provision:index").unwrap_or_default().into(),
        })
        .collect();
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

/// Counts of every EC2 resource kind of the project in a region.
async fn ec2_counts(region: &str, project: &str) -> BTreeMap<&'static str, usize> {
    let c = ec2(region).await;
    let f = || tag_filter(project);
    let mut m = BTreeMap::new();
    m.insert("vpc", c.describe_vpcs().filters(f()).send().await.unwrap().vpcs().len());
    m.insert("subnet", c.describe_subnets().filters(f()).send().await.unwrap().subnets().len());
    m.insert("igw", c.describe_internet_gateways().filters(f()).send().await.unwrap().internet_gateways().len());
    m.insert("route_table", c.describe_route_tables().filters(f()).send().await.unwrap().route_tables().len());
    m.insert("security_group", c.describe_security_groups().filters(f()).send().await.unwrap().security_groups().len());
    m.insert("key_pair", c.describe_key_pairs().filters(f()).send().await.unwrap().key_pairs().len());
    m.insert("instance", instances(region, project).await.len());
    let nats = c.describe_nat_gateways().filter(f()).send().await.unwrap();
    // (Counted by the tag as read: moto ignores the tag filter for NAT gateways.)
    let nat_live =
        |n: &&aws_sdk_ec2::types::NatGateway| n.state().map(|s| s.as_str()) != Some("deleted") && tag(n.tags(), "Project") == Some(project);
    m.insert("nat", nats.nat_gateways().iter().filter(nat_live).count());
    m.insert("address", c.describe_addresses().filters(f()).send().await.unwrap().addresses().len());
    let volumes = c.describe_volumes().filters(f()).send().await.unwrap();
    m.insert("volume", volumes.volumes().iter().filter(|v| v.state().map(|s| s.as_str()) != Some("deleting")).count());
    let pcx = c.describe_vpc_peering_connections().filters(f()).send().await.unwrap();
    let gone = |p: &aws_sdk_ec2::types::VpcPeeringConnection| p.status().and_then(|s| s.code()).map(|c| c.as_str()) == Some("deleted");
    m.insert("peering", pcx.vpc_peering_connections().iter().filter(|p| tag(p.tags(), "Project") == Some(project) && !gone(p)).count());
    m
}

/// The project's health checks (by CallerReference), the zone, and the API name's records.
async fn route53_state(
    project: &str,
) -> (Vec<aws_sdk_route53::types::HealthCheck>, Option<String>, Vec<aws_sdk_route53::types::ResourceRecordSet>) {
    let r = route53().await;
    let prefix = format!("provision:{project}:");
    let checks: Vec<_> = r
        .list_health_checks()
        .send()
        .await
        .unwrap()
        .health_checks()
        .iter()
        .filter(|h| h.caller_reference().starts_with(&prefix))
        .cloned()
        .collect();
    let zone_name = format!("{project}.test.internal.");
    let zones = r.list_hosted_zones_by_name().dns_name(&zone_name).send().await.unwrap();
    let zone = zones.hosted_zones().iter().find(|z| z.name() == zone_name).map(|z| z.id().trim_start_matches("/hostedzone/").to_string());
    let mut records = vec![];
    if let Some(z) = &zone {
        let sets = r.list_resource_record_sets().hosted_zone_id(z).send().await.unwrap();
        records = sets.resource_record_sets().iter().filter(|s| s.set_identifier().is_some()).cloned().collect();
    }
    (checks, zone, records)
}

async fn assert_nothing_left(project: &str) {
    for region in [PRIMARY, DR] {
        let counts = ec2_counts(region, project).await;
        assert!(counts.values().all(|&n| n == 0), "left in {region}: {counts:?}");
    }
    let (checks, zone, records) = route53_state(project).await;
    assert!(checks.is_empty(), "health checks left: {checks:?}");
    assert!(zone.is_none(), "zone left: {zone:?}");
    assert!(records.is_empty(), "records left: {records:?}");
    for region in [PRIMARY, DR] {
        let params = project_parameters(region, project).await;
        assert!(params.is_empty(), "parameters left in {region}: {params:?}");
    }
}

/// What `compact` must give, checked through the API.
async fn assert_compact(project: &str) {
    for (region, region_role, vpc, peer) in
        [(PRIMARY, "primary", "10.50.0.0/16", "10.60.0.0/16"), (DR, "dr", "10.60.0.0/16", "10.50.0.0/16")]
    {
        let vault = project_parameters(region, project).await;
        assert!(
            vault.contains(&format!("/provision/{project}/vault/id_ed25519")),
            "{region}: the project key is not in the vault: {vault:?}"
        );
        let inst = instances(region, project).await;
        let by_role = |r: &str| inst.iter().filter(|i| i.role == r).cloned().collect::<Vec<_>>();
        let (app, db) = (by_role("app"), by_role("db"));
        assert_eq!((app.len(), db.len(), inst.len()), (3, 3, 6), "{region}: {inst:?}");
        for m in ["matching", "otc", "contract", "wallet"] {
            assert!(inst.iter().filter(|i| i.modules.split(',').any(|x| x == m)).count() >= 3, "{region}: module {m} on < 3 hosts");
        }
        let azs: BTreeSet<&str> = app.iter().map(|i| i.az.as_str()).collect();
        assert_eq!(azs.len(), 3, "{region}: app hosts not spread over AZs: {app:?}");
        assert!(inst.iter().all(|i| i.region_role == region_role && !i.index.is_empty()), "{region}: tags {inst:?}");
        let keys: BTreeSet<&str> = inst.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys.len(), inst.len(), "{region}: duplicate instances {inst:?}");

        let c = ec2(region).await;
        let counts = ec2_counts(region, project).await;
        assert_eq!(
            (
                counts["vpc"],
                counts["subnet"],
                counts["igw"],
                counts["route_table"],
                counts["security_group"],
                counts["key_pair"],
                counts["volume"],
                counts["nat"],
                counts["address"]
            ),
            (1, 6, 1, 2, 2, 1, 3, 1, 1),
            "{region}: {counts:?}"
        );

        // Security groups: exactly the template's rules, and ICMP "fragmentation needed"
        // (type 3, code 4) from the peer VPC, for path MTU discovery over the peering.
        let sgs = c.describe_security_groups().filters(tag_filter(project)).send().await.unwrap();
        for sg in sgs.security_groups() {
            let mut rules: Vec<(String, i32, i32, String)> = sg
                .ip_permissions()
                .iter()
                .flat_map(|p| {
                    let (proto, from, to) = (p.ip_protocol().unwrap().to_string(), p.from_port().unwrap(), p.to_port().unwrap());
                    p.ip_ranges().iter().map(move |r| (proto.clone(), from, to, r.cidr_ip().unwrap().to_string()))
                })
                .collect();
            rules.sort();
            let role = tag(sg.tags(), "provision:key").unwrap().rsplit('/').next().unwrap().to_string();
            let tcp = |port: i32, cidr: &str| ("tcp".to_string(), port, port, cidr.to_string());
            let mut want = vec![tcp(22, "127.0.0.0/8"), ("icmp".to_string(), 3, 4, peer.to_string())];
            let ports: &[i32] = if role == "app" { &[7101, 7102, 7103, 7104] } else { &[2379, 2380, 5432, 8008] };
            for p in ports {
                want.push(tcp(*p, vpc));
                want.push(tcp(*p, peer));
            }
            if role == "app" {
                // The public API to all; the gateway's admin listener to the project's VPCs only.
                want.push(tcp(8080, "0.0.0.0/0"));
                want.push(tcp(8081, vpc));
                want.push(tcp(8081, peer));
            }
            want.sort();
            assert_eq!(rules, want, "{region}: security group {role}");
        }

        // Subnets: a public and a private one per AZ.
        let subnets = c.describe_subnets().filters(tag_filter(project)).send().await.unwrap();
        let subnet_key: BTreeMap<String, String> = subnets
            .subnets()
            .iter()
            .map(|s| (s.subnet_id().unwrap().to_string(), tag(s.tags(), "provision:key").unwrap_or_default().to_string()))
            .collect();
        let public_subnet = |id: &str| subnet_key.get(id).is_some_and(|k| k.contains("/subnet/public-"));
        assert_eq!(subnet_key.keys().filter(|id| public_subnet(id)).count(), 3, "{region}: public subnets {subnet_key:?}");

        // Every host's metadata service takes IMDSv2 session requests only, from one hop.
        // (Live ones: a duplicate an interrupted or retried launch made is terminated by `up`,
        // and EC2 lists terminated instances for a while, without their volumes or subnet.)
        let live =
            Filter::builder().name("instance-state-name").values("pending").values("running").values("stopping").values("stopped").build();
        let described = c.describe_instances().filters(tag_filter(project)).filters(live).send().await.unwrap();
        for i in described.reservations().iter().flat_map(|r| r.instances()) {
            // Gateways sit in public subnets with a public address; the rest in private
            // subnets with none.
            let gateway = tag(i.tags(), "provision:gateway") == Some("true");
            let placed = (public_subnet(i.subnet_id().unwrap_or_default()), i.public_ip_address().is_some());
            assert_eq!(placed, (gateway, gateway), "{region} {:?}: (public subnet, public address)", i.instance_id());
            let m = i.metadata_options();
            let tokens = m.and_then(|m| m.http_tokens()).map(|t| t.as_str());
            assert_eq!((tokens, m.and_then(|m| m.http_put_response_hop_limit())), (Some("required"), Some(1)), "{region}: {m:?}");
            // Issue 18: the cloud-config is the instance's UserData, and a DB host has an
            // encrypted gp3 data volume (an app host none).
            let id = i.instance_id().unwrap();
            let a = c.describe_instance_attribute().instance_id(id).attribute("userData".into()).send().await.unwrap();
            let b64 = a.user_data().and_then(|u| u.value()).unwrap_or_default();
            let text = String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap()).unwrap();
            assert!(
                text.starts_with("#cloud-config\n") && text.contains(&format!("/opt/{project}/bin")),
                "{region} {id}: UserData {text:?}"
            );
            let role = tag(i.tags(), "provision:role").unwrap_or_default();
            let data = i.block_device_mappings().iter().find(|b| b.device_name() == Some("/dev/sdf"));
            let Some(vol) = data.and_then(|b| b.ebs()).and_then(|e| e.volume_id()) else {
                assert_ne!(role, "db", "{region} {id}: a DB host without its data volume");
                continue;
            };
            assert_eq!(role, "db", "{region} {id}: a data volume on a {role} host");
            let v = c.describe_volumes().volume_ids(vol).send().await.unwrap();
            let v = &v.volumes()[0];
            let got = (v.volume_type().map(|t| t.as_str()), v.encrypted(), v.size());
            assert_eq!(got, (Some("gp3"), Some(true), Some(100)), "{region} {id}: data volume {vol}");
            assert!(text.contains(r#"[ "yes" = yes ]"#), "{region} {id}: a DB host's cloud-config formats its volume");
        }

        // Routes: the public subnets' default via the IGW, the private ones' via the NAT
        // gateway (available, in a public subnet); both reach the peer VPC via the peering.
        let nats = c.describe_nat_gateways().filter(tag_filter(project)).send().await.unwrap();
        let nat = nats
            .nat_gateways()
            .iter()
            .filter(|n| tag(n.tags(), "Project") == Some(project))
            .find(|n| n.state().map(|s| s.as_str()) == Some("available"))
            .expect("an available NAT gateway");
        assert!(public_subnet(nat.subnet_id().unwrap_or_default()), "{region}: the NAT gateway is not in a public subnet");
        let rts = c.describe_route_tables().filters(tag_filter(project)).send().await.unwrap();
        for rt in rts.route_tables() {
            let public = tag(rt.tags(), "provision:key").is_some_and(|k| !k.ends_with("/private"));
            let default = rt.routes().iter().find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"));
            let via = default.and_then(|r| r.gateway_id().or(r.nat_gateway_id())).unwrap_or_default();
            assert!(via.starts_with(if public { "igw-" } else { "nat-" }), "{region}: default route via {via:?} (public: {public})");
            let pcx = rt.routes().iter().find(|r| r.destination_cidr_block() == Some(peer)).and_then(|r| r.vpc_peering_connection_id());
            assert!(pcx.is_some_and(|p| p.starts_with("pcx-")), "{region}: no route to {peer} via peering");
            let assoc: Vec<&str> = rt.associations().iter().filter_map(|a| a.subnet_id()).collect();
            assert_eq!(assoc.len(), 3, "{region}: subnets not associated");
            assert!(assoc.iter().all(|s| public_subnet(s) == public), "{region}: a subnet in the wrong route table");
        }
    }
    let c = ec2(PRIMARY).await;
    let pcx = c.describe_vpc_peering_connections().filters(tag_filter(project)).send().await.unwrap();
    let active: Vec<_> = pcx
        .vpc_peering_connections()
        .iter()
        .filter(|p| tag(p.tags(), "Project") == Some(project) && p.status().and_then(|s| s.code()).map(|c| c.as_str()) == Some("active"))
        .collect();
    assert_eq!(active.len(), 1, "peering: {pcx:?}");

    let (checks, zone, records) = route53_state(project).await;
    assert!(zone.is_some(), "no hosted zone");
    let calc = checks.iter().filter(|h| h.health_check_config().map(|c| c.r#type().as_str()) == Some("CALCULATED")).count();
    // HTTPS: the gateways serve the public port over TLS only.
    let http: Vec<_> = checks.iter().filter(|h| h.health_check_config().map(|c| c.r#type().as_str()) == Some("HTTPS")).collect();
    assert_eq!((calc, http.len()), (2, 6), "health checks: {checks:?}");
    for h in &http {
        let c = h.health_check_config().unwrap();
        assert_eq!(
            (c.port(), c.resource_path(), c.request_interval(), c.failure_threshold()),
            (Some(8080), Some("/health"), Some(10), Some(3))
        );
    }
    let mut failover: Vec<(String, Vec<String>)> = records
        .iter()
        .map(|r| {
            let mut ips: Vec<String> = r.resource_records().iter().map(|v| v.value().to_string()).collect();
            ips.sort();
            (r.failover().unwrap().as_str().to_string(), ips)
        })
        .collect();
    failover.sort();
    assert_eq!(failover.len(), 2, "records: {records:?}");
    assert_eq!(failover[0].0, "PRIMARY");
    assert!(failover[0].1.iter().all(|ip| ip.starts_with("10.50.")) && failover[0].1.len() == 3, "PRIMARY -> {:?}", failover[0].1);
    assert_eq!(failover[1].0, "SECONDARY");
    assert!(failover[1].1.iter().all(|ip| ip.starts_with("10.60.")) && failover[1].1.len() == 3, "SECONDARY -> {:?}", failover[1].1);
    assert!(records.iter().all(|r| r.health_check_id().is_some()), "records without health checks");
}

#[tokio::test(flavor = "multi_thread")]
async fn compact_up_is_idempotent_and_down_removes_everything_then_recreate_works() {
    let _turn = serial();
    let p = Project::new("cmp", "compact");
    p.ok(&["up", "--infra-only"]);
    assert_compact(&p.name).await;
    let before = instances(PRIMARY, &p.name).await;

    // A second `up` changes nothing, and `plan` agrees (exit 0).
    p.ok(&["up", "--infra-only"]);
    assert_eq!(instances(PRIMARY, &p.name).await, before, "second up replaced instances");
    assert_compact(&p.name).await;
    assert_eq!(p.run(&["plan"]).status.code(), Some(0));

    // Teardown: nothing left of any kind; a second `down` succeeds.
    p.ok(&["down"]);
    assert_nothing_left(&p.name).await;
    p.ok(&["down"]);

    // Recreate after teardown.
    p.ok(&["up", "--infra-only"]);
    assert_compact(&p.name).await;
    p.ok(&["down"]);
    assert_nothing_left(&p.name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_reports_pending_changes_with_exit_2_and_changes_nothing() {
    // Takes turns: the vCPU quota test changes the front's quota for everyone.
    let _turn = serial();
    let p = Project::new("pln", "compact");
    let out = p.run(&["plan", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["create"].as_u64().unwrap() > 50, "{v}");
    assert_nothing_left(&p.name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn standard_up_and_down() {
    let _turn = serial();
    let p = Project::new("std", "standard");
    p.ok(&["up", "--infra-only"]);
    for region in [PRIMARY, DR] {
        let inst = instances(region, &p.name).await;
        let mut per_role: BTreeMap<String, usize> = BTreeMap::new();
        for i in &inst {
            *per_role.entry(i.role.clone()).or_default() += 1;
        }
        let want: BTreeMap<String, usize> = [("matching", 3), ("otc", 3), ("contract", 3), ("wallet", 3), ("gateway", 2), ("db", 3)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(per_role, want, "{region}");
        for role in ["matching", "otc", "contract", "wallet"] {
            let azs: BTreeSet<String> = inst.iter().filter(|i| i.role == role).map(|i| i.az.clone()).collect();
            assert_eq!(azs.len(), 3, "{region}: {role} not spread over AZs");
        }
    }
    let (checks, _, records) = route53_state(&p.name).await;
    assert_eq!((checks.len(), records.len()), (2 * 2 + 2, 2));
    assert_eq!(p.run(&["plan"]).status.code(), Some(0));
    p.ok(&["down"]);
    assert_nothing_left(&p.name).await;
}

/// Kill `up` at several moments; the next `up` converges with no duplicates.
#[tokio::test(flavor = "multi_thread")]
async fn interrupted_up_converges_without_duplicates() {
    let _turn = serial();
    let p = Project::new("kil", "compact");
    for kill_after_ms in [80u64, 200, 350, 600] {
        let mut child =
            p.cmd(&["up", "--infra-only"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    p.ok(&["up", "--infra-only"]);
    assert_compact(&p.name).await;
    assert_eq!(p.run(&["plan"]).status.code(), Some(0));
    p.ok(&["down"]);
    assert_nothing_left(&p.name).await;
}

/// With no lab hosts running, instance addresses would route off this machine: `deploy`
/// must refuse before connecting anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn deploy_without_lab_hosts_refuses_before_connecting() {
    let _turn = serial();
    let p = Project::new("nol", "compact");
    p.ok(&["up", "--infra-only"]);
    let out = p.run(&["deploy"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("route check") && err.contains("localstack/labhost.sh start"), "{err}");
    assert!(!p.dir.path().join(".provision").join(&p.name).join("known_hosts").exists(), "a host was contacted");
    p.ok(&["down"]);
}

/// An AZ that does not offer an instance type (us-east-1e offers no t3 or r6i in EC2's
/// offerings): `plan` and `up` refuse before creating anything, naming the type, the AZ, the
/// field and where the type is offered.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_type_an_az_does_not_offer_is_refused_before_anything_is_created() {
    // Takes turns: the vCPU quota test changes the front's quota for everyone.
    let _turn = serial();
    let p = Project::new("ofr", "compact");
    let cfg = std::fs::read_to_string(p.config()).unwrap().replace("\"us-east-1c\"]", "\"us-east-1e\"]");
    std::fs::write(p.config(), cfg).unwrap();
    for cmd in ["plan", "up"] {
        let out = p.run(&[cmd, "--output", "json"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        for says in ["nothing was created", "instance_types.app = \"t3.medium\" is not offered in us-east-1e", "us-east-1a", "fix:"] {
            assert!(err.contains(says), "{cmd} must say {says:?}: {err}");
        }
    }
    assert_nothing_left(&p.name).await;
}

/// Issue 18: an image `provision` cannot deploy onto (here Ubuntu 16.04, whose packages and
/// glibc are too old) is refused by `plan` and `up` before anything is created, naming the
/// region, the image and the supported one. An arm64 Debian 12 image is refused too.
#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_is_not_debian_12_on_x86_64_is_refused_before_anything_is_created() {
    // Takes turns: the vCPU quota test changes the front's quota for everyone.
    let _turn = serial();
    let p = Project::new("img", "compact");
    let debian = r#"ami = { name = "debian-12-amd64-*", owner = "136693071363" }"#;
    let cases = [
        (r#"ami = { name = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*", owner = "099720109477" }"#, "not a Debian 12 image"),
        (r#"ami = { name = "debian-12-arm64-*", owner = "136693071363" }"#, "is built for arm64"),
    ];
    let shipped = std::fs::read_to_string(p.config()).unwrap();
    assert!(shipped.contains(debian), "the test config uses Debian 12");
    for (ami, why) in cases {
        std::fs::write(p.config(), shipped.replacen(debian, ami, 1)).unwrap();
        for cmd in ["plan", "up"] {
            let out = p.run(&[cmd, "--output", "json"]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
            for says in ["region us-east-1: the image ami-", why, "fix `ami`", "debian-12-amd64-*"] {
                assert!(err.contains(says), "{cmd} must say {says:?}: {err}");
            }
        }
    }
    assert_nothing_left(&p.name).await;
}

/// The front's vCPU quota (Service Quotas' `L-1216C47A`), set for one test and restored after
/// it, also when it fails.
struct VcpuQuota(f64);

impl VcpuQuota {
    fn set(vcpus: f64) -> VcpuQuota {
        let state = std::process::Command::new("curl").args(["-fsS", &format!("{FRONT}/_front/faults")]).output().unwrap();
        let before =
            serde_json::from_slice::<serde_json::Value>(&state.stdout).unwrap()["vcpu_quota"].as_f64().expect("the front's vcpu_quota");
        put_quota(vcpus);
        VcpuQuota(before)
    }
}

impl Drop for VcpuQuota {
    fn drop(&mut self) {
        put_quota(self.0);
    }
}

fn put_quota(vcpus: f64) {
    let body = format!(r#"{{"vcpu_quota":{vcpus}}}"#);
    let out = std::process::Command::new("curl")
        .args(["-fsS", "-X", "PUT", "-H", "content-type: application/json", "-d", &body, &format!("{FRONT}/_front/settings")])
        .output()
        .unwrap();
    assert!(out.status.success(), "setting the front's vCPU quota: {}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 18: an account whose vCPU quota cannot hold the plan (a new account's few vCPUs) is
/// refused by `plan` and `up` before anything is created, with the numbers, the quota's code
/// and the fix; with the quota raised, `plan` passes.
#[tokio::test(flavor = "multi_thread")]
async fn a_plan_over_the_vcpu_quota_is_refused_before_anything_is_created() {
    // Takes turns: the vCPU quota test changes the front's quota for everyone.
    let _turn = serial();
    let p = Project::new("vcq", "compact");
    {
        let _quota = VcpuQuota::set(4.0);
        for cmd in ["plan", "up"] {
            let out = p.run(&[cmd, "--output", "json"]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
            for says in
                ["nothing was created", "region us-east-1: the plan launches", "quota of 4 vCPUs", "L-1216C47A", "fix: request at least"]
            {
                assert!(err.contains(says), "{cmd} must say {says:?}: {err}");
            }
        }
        assert_nothing_left(&p.name).await;
    }
    let out = p.run(&["plan", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "plan under the default quota: pending changes, no refusal: {}", stderr(&out));

    // Service Quotas hung in one region: the check is optional, so `plan` goes on without it,
    // says so, and waits for it at most its own bound (5 s), not the SDK's 20 s.
    let _hung = common::lab::ApiFault::set(PRIMARY, "servicequotas", &["hang"]);
    let started = std::time::Instant::now();
    let out = p.run(&["plan", "--output", "json"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(2), "plan with Service Quotas hung: {}", stderr(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("region us-east-1: the vCPU quota was not checked") && report.contains("did not answer within 5000 ms"),
        "the plan must say the quota was not checked: {report}"
    );
    assert!(took < Duration::from_secs(20), "plan waited {took:?} for a hung Service Quotas");
}

/// Drift made behind `provision`'s back, through the AWS API as an operator or a script would:
/// SSH opened to the world on a security group, the peering route pointed at the internet
/// gateway, an instance stopped, a health check aimed at another address. `plan` reports
/// pending changes, and one `up` repairs each, seen through the API (this is also where the
/// suite makes the repair calls the IAM audit expects: RevokeSecurityGroupIngress,
/// ReplaceRoute, StartInstances, UpdateHealthCheck).
#[tokio::test(flavor = "multi_thread")]
async fn drift_behind_provisions_back_is_repaired_by_one_up() {
    let _turn = serial();
    let p = Project::new("dft", "compact");
    p.ok(&["up", "--infra-only"]);
    let c = ec2(PRIMARY).await;
    let vpc = c.describe_vpcs().filters(tag_filter(&p.name)).send().await.unwrap().vpcs()[0].vpc_id().unwrap().to_string();
    let in_vpc = Filter::builder().name("vpc-id").values(&vpc).build();

    // SSH from anywhere on the project's first security group.
    let sgs = c.describe_security_groups().filters(tag_filter(&p.name)).send().await.unwrap();
    let sg = sgs.security_groups()[0].group_id().unwrap().to_string();
    let world_ssh = aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .ip_ranges(aws_sdk_ec2::types::IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build();
    c.authorize_security_group_ingress().group_id(&sg).ip_permissions(world_ssh).send().await.unwrap();
    let open_to_world = |sg_id: String| {
        let c = c.clone();
        async move {
            let g = c.describe_security_groups().group_ids(sg_id).send().await.unwrap();
            g.security_groups()[0]
                .ip_permissions()
                .iter()
                .any(|p| p.from_port() == Some(22) && p.ip_ranges().iter().any(|r| r.cidr_ip() == Some("0.0.0.0/0")))
        }
    };
    assert!(open_to_world(sg.clone()).await);

    // The peering route of a route table that has one, now to the internet gateway.
    let igw = c.describe_internet_gateways().filters(tag_filter(&p.name)).send().await.unwrap().internet_gateways()[0]
        .internet_gateway_id()
        .unwrap()
        .to_string();
    let tables = c.describe_route_tables().filters(in_vpc.clone()).send().await.unwrap();
    let (rt, peer_cidr) = tables
        .route_tables()
        .iter()
        .find_map(|t| {
            let r = t.routes().iter().find(|r| r.vpc_peering_connection_id().is_some())?;
            Some((t.route_table_id()?.to_string(), r.destination_cidr_block()?.to_string()))
        })
        .expect("a route table with the peering route");
    c.replace_route().route_table_id(&rt).destination_cidr_block(&peer_cidr).gateway_id(&igw).send().await.unwrap();
    let peer_target = |rt: String| {
        let (c, cidr) = (c.clone(), peer_cidr.clone());
        async move {
            let t = c.describe_route_tables().route_table_ids(rt).send().await.unwrap();
            let route = t.route_tables()[0].routes().iter().find(|r| r.destination_cidr_block() == Some(cidr.as_str())).cloned();
            route.and_then(|r| r.vpc_peering_connection_id().map(str::to_string))
        }
    };
    assert_eq!(peer_target(rt.clone()).await, None);

    // One instance stopped.
    let stopped = instances(PRIMARY, &p.name).await.into_iter().next().expect("an instance").id;
    c.stop_instances().instance_ids(&stopped).send().await.unwrap();
    let state = |id: String| {
        let c = c.clone();
        async move {
            let r = c.describe_instances().instance_ids(id).send().await.unwrap();
            r.reservations()[0].instances()[0].state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default()
        }
    };
    wait_until("the instance stopped", || state(stopped.clone()), |s| s == "stopped").await;

    // One health check aimed at another address.
    let r53 = route53().await;
    let (checks, _, _) = route53_state(&p.name).await;
    let check = checks.iter().find(|h| h.health_check_config().and_then(|c| c.ip_address()).is_some()).expect("an HTTPS check");
    let (check_id, right_ip) = (check.id().to_string(), check.health_check_config().unwrap().ip_address().unwrap().to_string());
    r53.update_health_check().health_check_id(&check_id).ip_address("10.99.99.99").send().await.unwrap();

    assert_eq!(p.run(&["plan"]).status.code(), Some(2), "plan must report the drift");
    p.ok(&["up", "--infra-only"]);

    assert!(!open_to_world(sg).await, "SSH from anywhere is still open");
    assert!(peer_target(rt).await.is_some(), "the peering route was not restored");
    wait_until("the stopped instance running again", || state(stopped.clone()), |s| s == "running").await;
    let now = r53.get_health_check().health_check_id(&check_id).send().await.unwrap();
    assert_eq!(now.health_check().and_then(|h| h.health_check_config()).and_then(|c| c.ip_address()), Some(right_ip.as_str()));
    assert_eq!(p.run(&["plan"]).status.code(), Some(0), "after up, nothing pending");
    p.ok(&["down"]);
    assert_nothing_left(&p.name).await;
}

async fn wait_until<F, Fut>(what: &str, mut read: F, ok: impl Fn(&str) -> bool)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let mut last = String::new();
    for _ in 0..60 {
        last = read().await;
        if ok(&last) {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("timed out waiting for {what}: last {last:?}");
}
