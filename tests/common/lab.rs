//! Lab hosts for end-to-end tests, and probes that check results from outside: PostgreSQL
//! over TCP, HTTP with curl, commands over SSH, the EC2 API. Every probe first asserts that
//! the address is a lab host on this machine.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::ec2;

/// A lab-host emulator of a test's own (its own namespace prefix and state dir); stopped and
/// cleaned on drop, also when the test fails.
pub struct Lab {
    child: Child,
    state: tempfile::TempDir,
    prefix: &'static str,
}

pub fn labhost_bin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let bin = dir.join("debug").join("labhost");
    assert!(bin.exists(), "{} missing: run `cargo build --workspace` first", bin.display());
    bin
}

impl Lab {
    pub fn start(config: &Path, prefix: &'static str) -> Lab {
        Lab::start_with(config, prefix, &[])
    }

    /// With more `labhost run` flags (e.g. `--image`).
    pub fn start_with(config: &Path, prefix: &'static str, run_args: &[&str]) -> Lab {
        let state = tempfile::tempdir().unwrap();
        let child = Command::new(labhost_bin())
            .arg("--state-dir")
            .arg(state.path())
            .args(["run", "--prefix", prefix, "--config"])
            .arg(config)
            .args(run_args)
            .stdout(std::fs::File::create(state.path().join("out.log")).unwrap())
            .stderr(std::fs::File::create(state.path().join("err.log")).unwrap())
            .spawn()
            .unwrap();
        Lab { child, state, prefix }
    }

    /// The command line that controls this lab (for `provision drill --lab`).
    pub fn control(&self) -> String {
        format!("{} --state-dir {}", labhost_bin().display(), self.state.path().display())
    }

    /// Runs a control subcommand (`fault blackout us-east-1`, `heal all`) and asserts success.
    pub fn ctl(&self, args: &[&str]) {
        let out = Command::new(labhost_bin()).arg("--state-dir").arg(self.state.path()).args(args).output().unwrap();
        assert!(out.status.success(), "labhost {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn namespaces(&self) -> Vec<String> {
        lab_namespaces(self.prefix)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failed test shows what the lab did last (its state dir goes with it).
            for log in ["err.log", "out.log"] {
                let text = std::fs::read_to_string(self.state.path().join(log)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(120).collect();
                eprintln!("--- labhost {log}, last {} lines ---", tail.len());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new(labhost_bin()).arg("--state-dir").arg(self.state.path()).args(["clean", "--prefix", self.prefix]).status();
    }
}

/// Lab addresses exist only on this machine's bridges: never let a probe leave the machine.
pub fn assert_local(ip: &str) {
    let out = Command::new("ip").args(["route", "get", ip]).output().unwrap();
    let route = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!route.is_empty() && !route.contains(" via "), "{ip} is not a lab host on this machine (route {route:?})");
}

pub fn psql(ip: &str, password: &str, db: &str, sql: &str) -> String {
    assert_local(ip);
    let out = Command::new("psql")
        .args(["-h", ip, "-U", "postgres", "-d", db, "-tAc", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The gateway's admin listener (`/admin/*`, `/metrics`): the host's private address, port
/// `ports.gateway_admin` of the built-in templates. The public port (8080) answers 404 there.
pub fn admin_base(gateway_ip: &str) -> String {
    format!("http://{gateway_ip}:8081")
}

pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
    let host = url.trim_start_matches("http://").split(':').next().unwrap();
    assert_local(host);
    curl(method, &[url], headers, body)
}

/// curl `method` with `target` (the URL, and any options before it): (HTTP status, body);
/// status 0 when no answer came.
pub fn curl(method: &str, target: &[&str], headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", "-X", method]).args(target);
    for (k, v) in headers {
        c.arg("-H").arg(format!("{k}: {v}"));
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("timed out waiting for {what}");
}

pub async fn ips(region: &str, project: &str, role: &str) -> Vec<String> {
    let c = ec2(region).await;
    let r = c
        .describe_instances()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:Project").values(project).build())
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:provision:role").values(role).build())
        .filters(aws_sdk_ec2::types::Filter::builder().name("instance-state-name").values("running").build())
        .send()
        .await
        .unwrap();
    let mut v: Vec<String> =
        r.reservations().iter().flat_map(|r| r.instances()).filter_map(|i| i.private_ip_address().map(str::to_string)).collect();
    v.sort();
    v
}

pub fn ssh(key: &Path, ip: &str, cmd: &str) -> String {
    ssh_as(key, "root", ip, cmd)
}

/// `cmd` over SSH as `user` (stdout, trimmed; empty when the login is refused).
pub fn ssh_as(key: &Path, user: &str, ip: &str, cmd: &str) -> String {
    assert_local(ip);
    let out = Command::new("ssh")
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-i"])
        .arg(key)
        .arg(format!("{user}@{ip}"))
        .arg(cmd)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn lab_namespaces(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with(&format!("{prefix}-"))).map(str::to_string).collect()
}

/// The DB host of `region` that is a writable primary, if any.
pub fn writable_leader(dbs: &[String], su: &str) -> Option<String> {
    dbs.iter().find(|ip| psql(ip, su, "postgres", "select pg_is_in_recovery()") == "f").cloned()
}

/// Whether one of `dbs` (the region's standby leader; its replicas stream from it) streams
/// from an address in the other region (`prefix`, e.g. "10.80.").
pub fn streams_from(dbs: &[String], su: &str, prefix: &str) -> bool {
    dbs.iter()
        .any(|ip| psql(ip, su, "postgres", "select sender_host from pg_stat_wal_receiver where status = 'streaming'").starts_with(prefix))
}

pub fn orders_of(leader: &str, su: &str, user_id: i64) -> BTreeSet<String> {
    psql(leader, su, "exchange", &format!("select client_order_id from orders where user_id = {user_id}"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// An API fault at the front for one (region, service), set with the lab's CLI and healed on
/// drop (also when a test fails).
pub struct ApiFault {
    region: String,
    service: String,
}

impl ApiFault {
    pub fn set(region: &str, service: &str, fault: &[&str]) -> ApiFault {
        let mut args = vec!["fault", "api", region, service];
        args.extend_from_slice(fault);
        lab_cli(&args);
        ApiFault { region: region.into(), service: service.into() }
    }
}

impl Drop for ApiFault {
    fn drop(&mut self) {
        let _ = Command::new(labhost_bin()).args(["heal", "api", &self.region, &self.service]).output();
    }
}

pub fn lab_cli(args: &[&str]) -> String {
    let out = Command::new(labhost_bin()).args(args).output().expect("labhost");
    assert!(out.status.success(), "labhost {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
