//! Test fixtures: LocalStack resources (cleaned up on drop), the emulator process (stopped and
//! cleaned on drop, also when a test panics), and probes that look from outside.
#![allow(dead_code)]

use aws_sdk_ec2::types::{Filter, InstanceType};
use aws_sdk_ec2::Client;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const PREFIX: &str = "lt";
pub const EAST: &str = "us-east-1";
pub const WEST: &str = "us-west-2";
pub const EAST_CIDR: &str = "10.110.0.0/16";
pub const WEST_CIDR: &str = "10.120.0.0/16";
/// The lab's API front (localstack/front), before LocalStack.
pub const ENDPOINT: &str = "http://127.0.0.1:4567";

/// Emulators share kernel state: one at a time per test binary.
static LAB: Mutex<()> = Mutex::new(());

pub fn lab_lock() -> MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(|p| p.into_inner())
}

/// The labhost binary: Cargo's path in tests; next to `examples/` for the bench example.
pub fn bin() -> String {
    if let Some(p) = option_env!("CARGO_BIN_EXE_labhost") {
        return p.to_string();
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|d| d.parent()).unwrap().join("labhost").to_string_lossy().into_owned()
}

pub fn config_text(east: &str, west: &str) -> String {
    format!(
        "project = \"exa\"\ntemplate = \"compact\"\n[endpoint]\nurl = \"{ENDPOINT}\"\n\
         [[region]]\nrole = \"primary\"\nname = \"{EAST}\"\nvpc_cidr = \"{east}\"\n\
         [[region]]\nrole = \"dr\"\nname = \"{WEST}\"\nvpc_cidr = \"{west}\"\n"
    )
}

/// A unique /24 inside a /16 test VPC for this process, so reruns never share IPs.
pub fn subnet_cidr(vpc_cidr: &str, n: u32) -> String {
    let octets: Vec<&str> = vpc_cidr.split('.').collect();
    let third = (std::process::id().wrapping_mul(7).wrapping_add(n * 13)) % 230 + 10;
    format!("{}.{}.{}.0/24", octets[0], octets[1], third)
}

#[derive(Debug, Clone)]
pub struct Inst {
    pub region: String,
    pub id: String,
    pub ip: Ipv4Addr,
    pub dns: String,
}

#[derive(Default)]
struct Created {
    instances: Vec<(String, String)>,
    keys: Vec<(String, String)>,
    subnets: Vec<(String, String)>,
    vpcs: Vec<(String, String)>,
}

/// LocalStack EC2 through the SDK; everything created is deleted on drop.
pub struct Cloud {
    pub rt: tokio::runtime::Runtime,
    clients: HashMap<String, Client>,
    created: Mutex<Created>,
}

impl Cloud {
    pub fn new() -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut clients = HashMap::new();
        for region in [EAST, WEST] {
            let conf = rt.block_on(
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(region))
                    .endpoint_url(ENDPOINT)
                    .credentials_provider(aws_sdk_ec2::config::Credentials::new("test", "test", None, None, "t"))
                    .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(10))
                    .load(),
            );
            clients.insert(region.to_string(), Client::new(&conf));
        }
        Cloud { rt, clients, created: Mutex::new(Created::default()) }
    }

    pub fn client(&self, region: &str) -> &Client {
        &self.clients[region]
    }

    /// One call, retried while EC2 does not show an id it just made (`*.NotFound`, as the
    /// lab's API front answers for a few seconds after a create, like AWS), at most 10 s.
    #[allow(clippy::result_large_err)] // the SDK's own error type, returned as the SDK gives it
    pub fn retry_unseen<T, E, F>(
        &self,
        call: impl Fn() -> F,
    ) -> Result<T, aws_sdk_ec2::error::SdkError<E, aws_sdk_ec2::config::http::HttpResponse>>
    where
        F: std::future::Future<Output = Result<T, aws_sdk_ec2::error::SdkError<E, aws_sdk_ec2::config::http::HttpResponse>>>,
        E: aws_sdk_ec2::error::ProvideErrorMetadata,
    {
        use aws_sdk_ec2::error::ProvideErrorMetadata;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match self.rt.block_on(call()) {
                Err(e) if e.code().is_some_and(|c| c.ends_with("NotFound")) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                r => return r,
            }
        }
    }

    /// A VPC and one subnet in it; returns the subnet id.
    pub fn network(&self, region: &str, vpc_cidr: &str, subnet_cidr: &str) -> String {
        let c = self.client(region);
        let vpc = self.retry_unseen(|| c.create_vpc().cidr_block(vpc_cidr).send()).unwrap();
        let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
        self.created.lock().unwrap().vpcs.push((region.into(), vpc_id.clone()));
        let sub = self.retry_unseen(|| c.create_subnet().vpc_id(&vpc_id).cidr_block(subnet_cidr).send()).unwrap();
        let sub_id = sub.subnet().unwrap().subnet_id().unwrap().to_string();
        self.created.lock().unwrap().subnets.push((region.into(), sub_id.clone()));
        sub_id
    }

    pub fn import_key(&self, region: &str, name: &str, public_key: &str) {
        let c = self.client(region);
        let blob = aws_sdk_ec2::primitives::Blob::new(public_key.as_bytes());
        self.retry_unseen(|| c.import_key_pair().key_name(name).public_key_material(blob.clone()).send()).unwrap();
        self.created.lock().unwrap().keys.push((region.into(), name.into()));
    }

    pub fn ami(&self, region: &str) -> String {
        let c = self.client(region);
        let f = Filter::builder().name("name").values("debian-12-amd64-*").build();
        let r = self.retry_unseen(|| c.describe_images().owners("136693071363").filters(f.clone()).send()).unwrap();
        r.images().first().and_then(|i| i.image_id()).expect("an ubuntu AMI").to_string()
    }

    pub fn launch(&self, region: &str, subnet: &str, key: &str, count: i32) -> Vec<Inst> {
        let c = self.client(region);
        let ami = self.ami(region);
        let call = c
            .run_instances()
            .image_id(ami)
            .instance_type(InstanceType::T3Small)
            .subnet_id(subnet)
            .key_name(key)
            .min_count(count)
            .max_count(count);
        let r = self.retry_unseen(|| call.clone().send()).unwrap();
        let insts: Vec<Inst> = r
            .instances()
            .iter()
            .map(|i| Inst {
                region: region.into(),
                id: i.instance_id().unwrap().to_string(),
                ip: i.private_ip_address().unwrap().parse().unwrap(),
                dns: i.private_dns_name().unwrap_or_default().to_string(),
            })
            .collect();
        let mut created = self.created.lock().unwrap();
        for i in &insts {
            created.instances.push((region.into(), i.id.clone()));
        }
        insts
    }

    /// States of many instances of one region in one call.
    pub fn states(&self, region: &str, ids: &[String]) -> HashMap<String, String> {
        let c = self.client(region);
        let r = self.retry_unseen(|| c.describe_instances().set_instance_ids(Some(ids.to_vec())).send()).unwrap();
        r.reservations()
            .iter()
            .flat_map(|res| res.instances())
            .filter_map(|i| Some((i.instance_id()?.to_string(), i.state()?.name()?.as_str().to_string())))
            .collect()
    }

    pub fn state(&self, i: &Inst) -> String {
        let c = self.client(&i.region);
        let r = self.retry_unseen(|| c.describe_instances().instance_ids(&i.id).send()).unwrap();
        r.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str().to_string()
    }

    /// Polls DescribeInstances until `state`; returns when it was first seen.
    pub fn wait_state(&self, i: &Inst, state: &str) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.state(i) == state {
                return Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} never reached {state}", i.id);
    }

    pub fn stop(&self, i: &Inst) {
        self.retry_unseen(|| self.client(&i.region).stop_instances().instance_ids(&i.id).send()).unwrap();
    }

    pub fn start(&self, i: &Inst) {
        self.retry_unseen(|| self.client(&i.region).start_instances().instance_ids(&i.id).send()).unwrap();
    }

    pub fn terminate(&self, i: &Inst) {
        self.retry_unseen(|| self.client(&i.region).terminate_instances().instance_ids(&i.id).send()).unwrap();
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
        for (region, id) in &created.instances {
            let _ = self.rt.block_on(self.client(region).terminate_instances().instance_ids(id).send());
        }
        for (region, name) in &created.keys {
            let _ = self.rt.block_on(self.client(region).delete_key_pair().key_name(name).send());
        }
        for (region, id) in &created.subnets {
            let _ = self.rt.block_on(self.client(region).delete_subnet().subnet_id(id).send());
        }
        for (region, id) in &created.vpcs {
            let _ = self.rt.block_on(self.client(region).delete_vpc().vpc_id(id).send());
        }
    }
}

/// A running `labhost run`; on drop: SIGTERM, bounded wait, SIGKILL, then `labhost clean`.
pub struct Emulator {
    child: Option<Child>,
    pub state_dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Emulator {
    pub fn start(config_text: &str) -> Self {
        let state_dir = tempfile::Builder::new().prefix("labhost-test").tempdir().unwrap();
        let config = state_dir.path().join("regions.toml");
        std::fs::write(&config, config_text).unwrap();
        let log = std::fs::File::create(state_dir.path().join("run.log")).unwrap();
        let mut command = Command::new(bin());
        // If the test process dies without running Drop (killed, timeout), the emulator still
        // gets SIGTERM and cleans up after itself.
        // SAFETY: prctl only, in the forked child.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info,labhost=debug".into()))
            .args(["--state-dir", state_dir.path().to_str().unwrap(), "run", "--prefix", PREFIX, "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut emu = Emulator { child: Some(child), state_dir, config };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(st) = emu.try_exit() {
                panic!("emulator exited early ({st}): {}", emu.log());
            }
            if std::fs::read_to_string(emu.state_dir.path().join("status.json")).is_ok_and(|s| s.contains("\"running\"")) {
                return emu;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("emulator not ready: {}", emu.log());
    }

    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.path().join("run.log")).unwrap_or_default()
    }

    pub fn state(&self) -> &Path {
        self.state_dir.path()
    }

    /// Runs a control subcommand (`fault ...`, `heal ...`, `status`) with --output json.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin()).args(["--state-dir", self.state().to_str().unwrap(), "--output", "json"]).args(args).output().unwrap()
    }

    pub fn ctl_ok(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "labhost {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// SIGTERM and wait for exit (bounded). Returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Simulates a crash: SIGKILL, no cleanup.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
        let _ = Command::new(bin()).args(["--state-dir", self.state().to_str().unwrap(), "clean", "--prefix", PREFIX]).output();
    }
}

/// A fresh ed25519 key pair: (private key path, public key line).
pub fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let p = dir.join(name);
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&p).status().unwrap();
    assert!(st.success());
    let public = std::fs::read_to_string(p.with_extension("pub")).unwrap();
    (p, public.trim().to_string())
}

pub fn ssh(key: &Path, ip: Ipv4Addr, command: &str) -> Output {
    assert_routed_locally(ip);
    Command::new("ssh")
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR", "-i"])
        .arg(key)
        .arg(format!("root@{ip}"))
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn ssh_ok(key: &Path, ip: Ipv4Addr, command: &str) -> String {
    let out = ssh(key, ip, command);
    assert!(out.status.success(), "ssh {ip} {command:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls until `ssh true` succeeds; the time it took, or None after `timeout`.
pub fn wait_ssh(key: &Path, ip: Ipv4Addr, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if tcp(ip, 22) && ssh(key, ip, "true").status.success() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Panics unless `ip` is routed into one of the emulator's bridges: a probe must never leave
/// the machine (with the bridges gone, VPC addresses would follow the default route).
pub fn assert_routed_locally(ip: Ipv4Addr) {
    let out = Command::new("ip").args(["route", "get", &ip.to_string()]).output().unwrap();
    let route = String::from_utf8_lossy(&out.stdout);
    assert!(route.contains(&format!("dev {PREFIX}br")), "refusing to probe {ip}: route {route}");
}

/// TCP connect from the machine, only to addresses routed into the emulator's bridges.
pub fn tcp(ip: Ipv4Addr, port: u16) -> bool {
    tcp_within(ip, port, Duration::from_millis(500))
}

pub fn tcp_within(ip: Ipv4Addr, port: u16, timeout: Duration) -> bool {
    assert_routed_locally(ip);
    TcpStream::connect_timeout(&SocketAddr::from((ip, port)), timeout).is_ok()
}

/// TCP connect from inside a host's network namespace.
pub fn tcp_from(from: &Inst, ip: Ipv4Addr, port: u16) -> bool {
    Command::new("ip")
        .args(["netns", "exec", &netns(from), "timeout", "2", "bash", "-c"])
        .arg(format!("</dev/tcp/{ip}/{port}"))
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Polls `cond` every 50 ms for up to `timeout`.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub fn netns(i: &Inst) -> String {
    format!("{PREFIX}-{}", i.id)
}

pub fn netns_exists(i: &Inst) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().next() == Some(netns(i).as_str()))
}

pub fn netns_pids(name: &str) -> Vec<i32> {
    let out = Command::new("ip").args(["netns", "pids", name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// Every kernel object and process of the test prefix still on the machine.
pub fn leftovers() -> Vec<String> {
    let mut left = Vec::new();
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for l in String::from_utf8_lossy(&ns.stdout).lines() {
        let name = l.split_whitespace().next().unwrap_or("");
        if name.starts_with(&format!("{PREFIX}-")) {
            left.push(format!("netns {name}"));
            for pid in netns_pids(name) {
                left.push(format!("process {pid}"));
            }
        }
    }
    let links = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    for l in String::from_utf8_lossy(&links.stdout).lines() {
        let name = l.split(':').nth(1).unwrap_or("").trim().split('@').next().unwrap_or("");
        if name.starts_with(&format!("{PREFIX}br")) || name.starts_with(&format!("{PREFIX}v")) {
            left.push(format!("link {name}"));
        }
    }
    let rules = Command::new("iptables").args(["-S"]).output().unwrap();
    for l in String::from_utf8_lossy(&rules.stdout).lines() {
        if l.contains(&format!("LABHOST-{}", PREFIX.to_uppercase())) {
            left.push(format!("iptables {l}"));
        }
    }
    left
}

/// Sets up both test VPCs, one key pair per region; returns (east subnet, west subnet, key path, key name).
pub struct Net {
    pub east_subnet: String,
    pub west_subnet: String,
    pub key: PathBuf,
    pub key_name: String,
    pub other_key: PathBuf,
    pub keys_dir: tempfile::TempDir,
}

pub fn net(cloud: &Cloud, tag: &str, n: u32) -> Net {
    let keys_dir = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys_dir.path(), "id");
    let (other_key, _) = keypair(keys_dir.path(), "other");
    let key_name = format!("labhost-test-{tag}-{}", std::process::id());
    cloud.import_key(EAST, &key_name, &public);
    cloud.import_key(WEST, &key_name, &public);
    let east_subnet = cloud.network(EAST, EAST_CIDR, &subnet_cidr(EAST_CIDR, n));
    let west_subnet = cloud.network(WEST, WEST_CIDR, &subnet_cidr(WEST_CIDR, n));
    Net { east_subnet, west_subnet, key, key_name, other_key, keys_dir }
}
