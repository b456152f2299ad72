//! The minimal IAM policy for `provision` (`docs/iam-policy.json`, printed by
//! `provision iam-policy`). A test keeps it exactly the calls this module's sources make.

pub const IAM_POLICY_JSON: &str = include_str!("../../../docs/iam-policy.json");

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Route53's and SSM's operations among the calls (the rest are EC2's).
    const ROUTE53_MARKS: [&str; 5] = ["health_check", "hosted_zone", "record_sets", "get_change", "tags_for_resource"];
    const SSM_MARKS: [&str; 1] = ["parameter"];
    const QUOTA_MARKS: [&str; 1] = ["service_quota"];
    /// Builder methods that look like calls but are response accessors.
    const NOT_CALLS: [&str; 1] = ["change_info"];
    const VERBS: [&str; 24] = [
        "accept",
        "allocate",
        "associate",
        "attach",
        "authorize",
        "change",
        "create",
        "delete",
        "describe",
        "detach",
        "disassociate",
        "get",
        "import",
        "list",
        "modify",
        "put",
        "release",
        "replace",
        "revoke",
        "run",
        "start",
        "stop",
        "terminate",
        "update",
    ];

    fn camel(snake: &str) -> String {
        snake.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect()
    }

    /// Every `.verb_object()` in the cloud module's sources, as `service:Operation`.
    fn calls() -> BTreeSet<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cloud");
        let mut files: Vec<std::path::PathBuf> = vec![];
        for d in [dir.clone(), dir.join("apply")] {
            files.extend(std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "rs")));
        }
        let mut out = BTreeSet::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for piece in text.split('.').skip(1) {
                let name: String = piece.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                let is_call = piece[name.len()..].starts_with("()") && name.contains('_');
                let verb = name.split('_').next().unwrap_or_default();
                if is_call && VERBS.contains(&verb) && !NOT_CALLS.contains(&name.as_str()) {
                    let service = if ROUTE53_MARKS.iter().any(|m| name.contains(m)) {
                        "route53"
                    } else if SSM_MARKS.iter().any(|m| name.contains(m)) {
                        "ssm"
                    } else if QUOTA_MARKS.iter().any(|m| name.contains(m)) {
                        "servicequotas"
                    } else {
                        "ec2"
                    };
                    out.insert(format!("{service}:{}", camel(&name)));
                }
            }
        }
        out
    }

    #[test]
    fn the_policy_is_exactly_the_calls_the_cloud_module_makes() {
        let v: serde_json::Value = serde_json::from_str(super::IAM_POLICY_JSON).unwrap();
        let policy: BTreeSet<String> = v["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()))
            .collect();
        let calls = calls();
        let missing: Vec<&String> = calls.difference(&policy).collect();
        let unused: Vec<&String> = policy.difference(&calls).filter(|a| *a != "ec2:CreateTags").collect();
        assert!(missing.is_empty(), "docs/iam-policy.json lacks calls the code makes: {missing:?}");
        assert!(unused.is_empty(), "docs/iam-policy.json grants calls the code never makes: {unused:?}");
    }
}
