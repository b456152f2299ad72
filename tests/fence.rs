//! Issue 19, point 1: the fence acts on a fresh listing of the old region, never on an older
//! observation, and refuses when that listing lacks a host the config wants there (one EC2
//! cannot stop cannot be fenced; it may still be serving), when the old region's EC2 API is
//! down, or when it hangs; `--force` goes on and says what it could not stop. Checked from
//! outside: the EC2, SSM and Route53 APIs.

mod common;

use std::process::Stdio;

use common::lab::*;
use common::load::records;
use common::*;

const PRIMARY_CIDR: &str = "10.90.0.0/16";
const DR_CIDR: &str = "10.100.0.0/16";
const LAB_PREFIX: &str = "fe";

#[tokio::test(flavor = "multi_thread")]
async fn the_fence_refuses_without_a_complete_fresh_listing_and_exactly_one_of_two_rival_failovers_decides() {
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

    // The old region's EC2 API refuses connections, then hangs: refused, nothing decided.
    for (fault, why) in [("down", "EC2 API does not answer"), ("hang", "EC2 API does not answer")] {
        let _f = ApiFault::set(PRIMARY, "ec2", &[fault]);
        let out = p.run(&["failover", "--to", DR]);
        let err = stderr(&out);
        assert_ne!(out.status.code(), Some(0), "failover went on with {PRIMARY}'s EC2 {fault}: {err}");
        assert!(err.contains(why) && err.contains("--force"), "EC2 {fault}: {err}");
        assert!(state_epochs(DR, &p.name).await.is_empty(), "EC2 {fault}: a failover state was written");
    }
    // Two operators at the same moment (with --force: the victim is missing from the listing).
    // Exactly one decides the failover (one new epoch, in DR's store) and goes on to fence and
    // promote (which fails here: nothing is deployed); the other is refused and changes nothing.
    let args = ["failover", "--to", DR, "--force"];
    let spawn = |mut c: std::process::Command| c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (a, b) = (spawn(p.cmd(&args)), spawn(p.cmd(&args)));
    let errs = [stderr(&a.wait_with_output().unwrap()), stderr(&b.wait_with_output().unwrap())];
    let refused = |e: &String| e.contains("refused") && (e.contains("another run") || e.contains("already decided"));
    let decided = |e: &String| e.contains("fence old region: done");
    assert_eq!(errs.iter().filter(|e| refused(e)).count(), 1, "exactly one of two simultaneous failovers is refused: {errs:#?}");
    assert_eq!(errs.iter().filter(|e| decided(e)).count(), 1, "exactly one of two simultaneous failovers fences: {errs:#?}");
    assert_eq!(state_epochs(DR, &p.name).await, [1], "exactly one failover decision");
    let rec = state_record(DR, &p.name).await;
    assert_eq!((rec["active"].as_str(), rec["fence"]["region"].as_str()), (Some(DR), Some(PRIMARY)), "{rec}");
    let now = instances_now(PRIMARY, &p.name).await;
    assert!(now.iter().all(|(_, s)| s == "stopped"), "the winner stopped the old region: {now:?}");

    // A decided failover is finished only with --resume; with the old region's EC2 API down,
    // --force goes on and says what it could not stop.
    let out = p.run(&["failover", "--to", DR]);
    assert!(stderr(&out).contains("--resume"), "a decided failover without --resume: {}", stderr(&out));
    let down = ApiFault::set(PRIMARY, "ec2", &["down"]);
    let err = stderr(&p.run(&["failover", "--to", DR, "--force", "--resume"]));
    assert!(
        err.contains("FORCED") && err.contains("0 instance(s) stopped") && err.contains("already at epoch 1"),
        "--force --resume: {err}"
    );
    drop(down);
    assert_eq!(state_epochs(DR, &p.name).await, [1], "resuming the same decision writes no new epoch");

    p.ok(&["down"]);
    assert!(
        state_epochs(DR, &p.name).await.is_empty() && state_epochs(PRIMARY, &p.name).await.is_empty(),
        "down removes the failover state"
    );
    drop(lab);
    assert!(lab_namespaces(LAB_PREFIX).is_empty());
}
