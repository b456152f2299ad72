//! Issue 19, point 1: the fence acts on a fresh listing of the old region, never on an older
//! observation, and refuses when that listing lacks a host the config wants there (one EC2
//! cannot stop cannot be fenced; it may still be serving). Checked from outside: the EC2 and
//! Route53 APIs.

mod common;

use common::lab::*;
use common::load::records;
use common::*;

const PRIMARY_CIDR: &str = "10.90.0.0/16";
const DR_CIDR: &str = "10.100.0.0/16";
const LAB_PREFIX: &str = "fe";

#[tokio::test(flavor = "multi_thread")]
async fn an_unplanned_failover_refuses_when_the_old_region_lists_fewer_hosts_than_wanted() {
    let _turn = serial();
    let p = Project::with_cidrs("fen", "compact", PRIMARY_CIDR, DR_CIDR);
    let lab = Lab::start(&p.config(), LAB_PREFIX);
    p.ok(&["up", "--infra-only"]);
    let before = records(&p).await;
    // One primary host is gone behind provision's back (terminated, so EC2 no longer lists it).
    let victim = instances_now(PRIMARY, &p.name).await[0].0.clone();
    ec2(PRIMARY).await.terminate_instances().instance_ids(&victim).send().await.unwrap();
    wait_for("the victim terminated", std::time::Duration::from_secs(60), || {
        let rt = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| rt.block_on(instances_now(PRIMARY, &p.name))).iter().all(|(id, _)| id != &victim)
    });

    let out = p.run(&["failover", "--to", DR]);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "failover went on: {err}");
    assert!(err.contains("fresh listing") && err.contains("--force") && err.contains(&format!("{PRIMARY}/instance/")), "{err}");
    // Nothing was fenced: every remaining primary host still runs, and the records did not move.
    let now = instances_now(PRIMARY, &p.name).await;
    assert!(now.len() == 5 && now.iter().all(|(_, s)| s == "running"), "{now:?}");
    assert_eq!(records(&p).await, before, "the records moved");

    p.ok(&["down"]);
    drop(lab);
    assert!(lab_namespaces(LAB_PREFIX).is_empty());
}
