//! Every invalid configuration is refused before the first API call, with file:line, the
//! field and a fix. The endpoint is a closed port: had `provision` called out, the error
//! would be "cannot reach", not the config error asserted here.

mod common;

use common::*;

const CLOSED_ENDPOINT: &str = "http://127.0.0.1:9";

struct Case {
    name: &'static str,
    /// (from, to) replacements applied to a valid regions.toml.
    edits: &'static [(&'static str, &'static str)],
    /// A template file to place in templates/, if any.
    template: Option<(&'static str, &'static str)>,
    /// Text on the line the error must point at (in regions.toml or the template).
    line_of: &'static str,
    file: &'static str,
    says: &'static [&'static str],
}

const TINY_TEMPLATE: &str = r#"description = "too few nodes"
[[hosts]]
role = "app"
count = 2
instance_type = "app"
modules = ["matching", "otc", "contract", "wallet"]
gateway = true
[[hosts]]
role = "db"
count = 3
instance_type = "db"
database = true
[ports]
ssh = 22
gateway_http = 8080
postgres = 5432
patroni_rest = 8008
etcd_client = 2379
etcd_peer = 2380
[ports.modules]
matching = 7101
otc = 7102
contract = 7103
wallet = 7104
"#;

const CASES: &[Case] = &[
    Case {
        name: "malformed toml",
        edits: &[("template = \"compact\"", "template = \"compact")],
        template: None,
        line_of: "template = \"compact",
        file: "regions.toml",
        says: &["regions.toml:"],
    },
    Case {
        name: "unknown key",
        edits: &[("[dns]", "colour = \"blue\"\n[dns]")],
        template: None,
        line_of: "colour",
        file: "regions.toml",
        says: &["unknown field `colour`"],
    },
    Case {
        name: "unknown key in a region",
        edits: &[("ssh_user = \"root\"\nami", "ssh_usr = \"root\"\nami")],
        template: None,
        line_of: "ssh_usr",
        file: "regions.toml",
        says: &["unknown field `ssh_usr`"],
    },
    Case {
        name: "bad bastion",
        edits: &[("ssh_user = \"root\"\nami", "ssh_user = \"root\"\nbastion = \"jump.example.com:99999\"\nami")],
        template: None,
        line_of: "bastion = ",
        file: "regions.toml",
        says: &["region.0.bastion", "not host or host:port", "fix:"],
    },
    Case {
        name: "bastion user without a bastion",
        edits: &[("ssh_user = \"root\"\nami", "ssh_user = \"root\"\nbastion_user = \"ec2-user\"\nami")],
        template: None,
        line_of: "bastion_user",
        file: "regions.toml",
        says: &["region.0.bastion_user", "without a bastion", "fix:"],
    },
    Case {
        name: "overlapping cidrs",
        edits: &[("10.60.0.0/16", "10.50.128.0/17")],
        template: None,
        line_of: "10.50.128.0/17",
        file: "regions.toml",
        says: &["region.1.vpc_cidr", "overlaps", "fix:"],
    },
    Case {
        name: "az outside its region",
        edits: &[("\"us-east-1a\", \"us-east-1b\"", "\"us-east-1a\", \"us-west-2b\"")],
        template: None,
        line_of: "\"us-east-1a\", \"us-west-2b\"",
        file: "regions.toml",
        says: &["region.0.azs", "not an availability zone of us-east-1", "fix:"],
    },
    Case {
        name: "two primaries",
        edits: &[("role = \"dr\"", "role = \"primary\"")],
        template: None,
        line_of: "role = \"primary\"",
        file: "regions.toml",
        says: &["region.1.role", "exactly one must", "fix:"],
    },
    Case {
        name: "no primary",
        edits: &[("role = \"primary\"", "role = \"dr\"")],
        template: None,
        line_of: "role = \"dr\"",
        file: "regions.toml",
        says: &["0 regions have role = \"primary\"", "fix:"],
    },
    Case {
        name: "unknown template",
        edits: &[("template = \"compact\"", "template = \"huge\"")],
        template: None,
        line_of: "template = \"huge\"",
        file: "regions.toml",
        says: &["`template`", "unknown template \"huge\"", "compact, standard"],
    },
    Case {
        name: "bad cidr",
        edits: &[("10.50.0.0/16", "10.50.0.0/33")],
        template: None,
        line_of: "10.50.0.0/33",
        file: "regions.toml",
        says: &["region.0.vpc_cidr", "not an IPv4 CIDR", "fix:"],
    },
    Case {
        name: "host bits set",
        edits: &[("10.50.0.0/16", "10.50.0.1/16")],
        template: None,
        line_of: "10.50.0.1/16",
        file: "regions.toml",
        says: &["host bits", "10.50.0.0/16"],
    },
    Case {
        name: "subnets do not fit the vpc",
        edits: &[("10.50.0.0/16", "10.50.0.0/26")],
        template: None,
        line_of: "10.50.0.0/26",
        file: "regions.toml",
        says: &["region.0.vpc_cidr", "does not fit", "fix:"],
    },
    Case {
        name: "one availability zone",
        edits: &[("[\"us-west-2a\", \"us-west-2b\", \"us-west-2c\"]", "[\"us-west-2a\"]")],
        template: None,
        line_of: "[\"us-west-2a\"]",
        file: "regions.toml",
        says: &["region.1.azs", "at least 2", "fix:"],
    },
    Case {
        name: "bad operator cidr",
        edits: &[("127.0.0.0/8", "everyone")],
        template: None,
        line_of: "everyone",
        file: "regions.toml",
        says: &["access.operator_cidr", "not an IPv4 CIDR"],
    },
    Case {
        name: "api record outside the zone",
        edits: &[("api_record = \"api.", "api_record = \"api.elsewhere.example\" # ")],
        template: None,
        line_of: "api_record",
        file: "regions.toml",
        says: &["dns.api_record", "not a name inside the zone"],
    },
    Case {
        name: "fewer than 3 nodes per module",
        edits: &[("template = \"compact\"", "template = \"tiny\"")],
        template: Some(("tiny", TINY_TEMPLATE)),
        line_of: "count = 2",
        file: "tiny.toml",
        says: &["module \"matching\" has 2 node(s)", "at least 3", "fix:"],
    },
];

/// The last line containing `needle` (edits land on the later of two similar lines).
fn line_of(src: &str, needle: &str) -> usize {
    src.lines().collect::<Vec<_>>().iter().rposition(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not in source")) + 1
}

#[test]
fn every_invalid_config_is_refused_with_location_and_fix_before_any_api_call() {
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        let mut src = regions_toml("cfgtest", "compact", CLOSED_ENDPOINT);
        for (from, to) in case.edits {
            assert!(src.contains(from), "{}: edit {from:?} does not apply", case.name);
            src = src.replacen(from, to, 1);
        }
        let cfg = dir.path().join("regions.toml");
        std::fs::write(&cfg, &src).unwrap();
        let mut located_src = src.clone();
        if let Some((name, body)) = case.template {
            std::fs::create_dir_all(dir.path().join("templates")).unwrap();
            std::fs::write(dir.path().join("templates").join(format!("{name}.toml")), body).unwrap();
            located_src = body.to_string();
        }
        let out = provision_cmd(&cfg, &["plan"]).output().unwrap();
        let err = stderr(&out);
        let want_loc = format!("{}:{}:", case.file, line_of(&located_src, case.line_of));
        let mut problems = Vec::new();
        if out.status.code() != Some(1) {
            problems.push(format!("exit code {:?}, want 1", out.status.code()));
        }
        if err.contains("cannot reach") {
            problems.push("an API call was attempted".to_string());
        }
        if !err.contains(&want_loc) {
            problems.push(format!("no location {want_loc}"));
        }
        for s in case.says {
            if !err.contains(s) {
                problems.push(format!("does not say {s:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n---\n{err}", case.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn valid_config_reaches_the_endpoint_and_names_it_when_down() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("regions.toml");
    std::fs::write(&cfg, regions_toml("cfgtest", "compact", CLOSED_ENDPOINT)).unwrap();
    let out = provision_cmd(&cfg, &["plan"]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot reach the AWS endpoint http://127.0.0.1:9"), "{err}");
    assert!(err.contains("localstack/start.sh"), "{err}");
}

#[test]
fn failover_commands_refuse_bad_arguments_before_any_api_call() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("regions.toml");
    std::fs::write(&cfg, regions_toml("cfgtest", "compact", CLOSED_ENDPOINT)).unwrap();
    let cases: [(&[&str], &[&str]); 4] = [
        (&["failover", "--to", "eu-nowhere-1"], &["\"eu-nowhere-1\" is not a region", "us-east-1, us-west-2"]),
        (&["drill", "--unplanned"], &["needs a way to do it", "--lab"]),
        (&["drill", "--db-leader"], &["--lab"]),
        (&["watch", "--failures", "1"], &["--failures"]),
    ];
    for (args, says) in cases {
        let out = provision_cmd(&cfg, args).output().unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!err.contains("cannot reach the AWS endpoint"), "{args:?} called the API before refusing: {err}");
        for s in says {
            assert!(err.contains(s), "{args:?} does not say {s:?}: {err}");
        }
    }
}
