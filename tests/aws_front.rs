//! `provision` against the cloud failing as AWS fails, through the lab's API front: one
//! region's EC2 refusing connections or hanging, and AWS's validations. Faults are set with the
//! lab's one CLI (`labhost fault api ...`) and always healed, also when a test fails. Outcomes
//! are read from the AWS API and from `provision`'s exit status and error text.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use common::lab::{labhost_bin, ApiFault};
use common::*;

/// `status` reports a region whose EC2 API does not answer within the SDK's operation bound
/// (`cloud::OPERATION_TIMEOUT_MS`, 20 s), plus the time of one look at the rest.
const UNREACHABLE_REPORTED_S_MAX: u64 = 35;

async fn vpcs(region: &str, project: &str) -> usize {
    let f = Filter::builder().name("tag:Project").values(project).build();
    ec2(region).await.describe_vpcs().filters(f).send().await.unwrap().vpcs().len()
}

/// `status` while DR's EC2 fails: it answers, in bounded time, naming the region unreachable.
fn status_names_unreachable(p: &Project, what: &str) {
    let t0 = Instant::now();
    let out = p.run(&["status", "--output", "json"]);
    let took = t0.elapsed();
    assert!(out.status.success(), "{what}: status failed: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let regions: Vec<&str> = v["unreachable"].as_array().unwrap().iter().filter_map(|u| u["region"].as_str()).collect();
    assert_eq!(regions, [DR], "{what}: status must name {DR} unreachable: {v}");
    assert!(took < Duration::from_secs(UNREACHABLE_REPORTED_S_MAX), "{what}: status took {took:?}");
    eprintln!("{what}: status reported {DR} unreachable after {} ms", took.as_millis());
}

/// `up` while DR's EC2 fails: a clear error naming the region, the service and the endpoint.
fn up_fails_naming(p: &Project, what: &str) {
    let out = p.run(&["up", "--infra-only"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{what}: up succeeded with {DR}'s EC2 failing");
    for part in [DR, "ec2", FRONT] {
        assert!(err.contains(part), "{what}: up's error must name {part}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_region_whose_ec2_is_down_or_hangs_is_reported_and_up_fails_naming_it_then_converges_slow_and_after_heal() {
    let _turn = serial();
    let p = Project::new("flt", "compact");
    {
        let _down = ApiFault::set(DR, "ec2", &["down"]);
        status_names_unreachable(&p, "ec2 down");
        up_fails_naming(&p, "ec2 down");
    }
    {
        let _hang = ApiFault::set(DR, "ec2", &["hang"]);
        status_names_unreachable(&p, "ec2 hangs");
        up_fails_naming(&p, "ec2 hangs");
    }
    // A process alive but slow: the primary region's EC2 answers every call 2 s late (the NAT
    // gateway's wait, the instances' readback and the listing included). `up` converges in one
    // command, seen in both regions' EC2 API, and a second look plans nothing.
    {
        let _slow = ApiFault::set(PRIMARY, "ec2", &["slow", "2000"]);
        let t0 = Instant::now();
        p.ok(&["up", "--infra-only"]);
        eprintln!("up --infra-only with the primary's EC2 2 s slow: {} ms", t0.elapsed().as_millis());
    }
    assert_eq!((vpcs(PRIMARY, &p.name).await, vpcs(DR, &p.name).await), (1, 1), "one VPC per region after heal");
    assert_eq!(p.run(&["plan"]).status.code(), Some(0), "after heal, up converged");
    p.ok(&["down"]);
    assert_eq!((vpcs(PRIMARY, &p.name).await, vpcs(DR, &p.name).await), (0, 0));
}

#[tokio::test]
async fn an_unknown_fault_region_or_service_is_refused_clearly() {
    for (args, says) in [
        (vec!["fault", "api", "us-east-9", "ec2", "down"], "us-east-9"),
        (vec!["fault", "api", DR, "ec3", "down"], "ec3"),
        (vec!["fault", "api", DR, "route53", "down"], "us-east-1"),
        (vec!["fault", "api", DR, "ec2", "explode"], "explode"),
        (vec!["fault", "api", DR, "ec2", "throttle", "1.5"], "1.5"),
    ] {
        let out = Command::new(labhost_bin()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(says), "{args:?}: the error must name {says}: {err}");
    }
}

/// The longest project name `provision` accepts, in the longest region names, goes through
/// the front's AWS validations (CallerReference <= 64, tag limits) without one refusal.
#[tokio::test(flavor = "multi_thread")]
async fn the_longest_valid_names_pass_aws_validations() {
    let _turn = serial();
    let base = Project::new("lng", "compact");
    let (primary, dr) = ("ap-southeast-2", "ap-southeast-1");
    let config = |name: &str| regions_toml(name, "compact", FRONT).replace(PRIMARY, primary).replace(DR, dr);
    // The longest name `provision` accepts (24 characters) in the longest region names: every
    // CallerReference fits AWS's 64 characters, because the logical key in it is hashed.
    let name: String = format!("{}{}", base.name, "x".repeat(24)).chars().take(24).collect();
    std::fs::write(base.config(), config(&name)).unwrap();
    let plan = base.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2), "a 24-character project in {primary}/{dr} is refused: {}", stderr(&plan));
    let out = base.run(&["up", "--infra-only"]);
    let err = stderr(&out);
    let cleanup = base.run(&["down"]);
    assert!(out.status.success(), "up with the longest valid names was refused: {err}");
    assert!(cleanup.status.success(), "down: {}", stderr(&cleanup));
}
