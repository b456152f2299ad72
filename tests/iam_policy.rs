//! The IAM policy that `provision iam-policy` prints is exactly what `provision` calls: the
//! lab's API front logs every AWS call by the SDK's app id (`app/provision`), and after the
//! whole suite (scripts/test.sh runs this last) the operations it saw must be the policy's
//! actions, no more (a call AWS would refuse) and no fewer (a permission nothing needs).

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::FRONT;

/// Permissions the suite may not show being used, though `provision` needs them:
/// - tags given at creation (`TagSpecifications` of RunInstances, CreateVpc, ...) are
///   authorized as `ec2:CreateTags`, whether or not a CreateTags call is made;
/// - `ssm:GetParameter` reads a rival run's failover epoch after losing the create-only write,
///   which happens only when two runs race to the same write (`tests/fence.rs` races two, but
///   the loser is often refused earlier, on reading the winner's epoch).
const NOT_ALWAYS_SEEN: [&str; 2] = ["ec2:CreateTags", "ssm:GetParameter"];

fn policy_actions() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_provision")).arg("iam-policy").output().unwrap();
    assert!(out.status.success(), "provision iam-policy: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()))
        .collect()
}

fn calls_logged() -> BTreeSet<String> {
    let out = Command::new("curl").args(["-fsS", "--max-time", "5", &format!("{FRONT}/_front/calls")]).output().unwrap();
    assert!(out.status.success(), "the lab's API front does not answer: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["provision"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

#[test]
#[ignore = "audits the calls of the whole suite: scripts/test.sh runs it after every other test"]
fn the_iam_policy_is_exactly_the_calls_provision_made_during_the_suite() {
    let (allowed, called) = (policy_actions(), calls_logged());
    assert!(called.len() > 20, "too few calls logged for an audit ({called:?}): run after the suite, against the same front");
    let refused: Vec<&String> = called.difference(&allowed).collect();
    let unused: Vec<&String> = allowed.difference(&called).filter(|a| !NOT_ALWAYS_SEEN.contains(&a.as_str())).collect();
    assert!(
        refused.is_empty() && unused.is_empty(),
        "provision called what the policy does not allow: {refused:?}\nthe policy allows what provision never called: {unused:?}"
    );
}
