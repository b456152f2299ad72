//! Shared by the end-to-end tests: a throwaway project directory with its own regions.toml,
//! the real `provision` binary, and AWS SDK clients pointed at the lab's API front to check results.
#![allow(dead_code)]

pub mod api;
pub mod bastion;
pub mod lab;
pub mod load;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The lab's API front (localstack/front), before LocalStack: what a customer's AWS would be.
pub const FRONT: &str = "http://127.0.0.1:4567";
pub const PRIMARY: &str = "us-east-1";
pub const DR: &str = "us-west-2";

static SEQ: AtomicU32 = AtomicU32::new(0);
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// LocalStack's cross-region VPC peering is not safe with several projects changing at once
/// (a peering of one project went missing while another's was deleted): tests that build
/// infrastructure take turns. The turn is held for the whole test, across its awaits: each
/// `#[tokio::test]` runs on a runtime of its own, so no other task of that runtime waits for it.
pub fn serial() -> Turn {
    Turn(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// One test's turn (see `serial`); released on drop.
pub struct Turn(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

/// A unique, valid project name for one test.
pub fn project(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 1_000_000;
    format!("{prefix}{t}{n}")
}

pub fn regions_toml(project: &str, template: &str, endpoint: &str) -> String {
    regions_toml_cidrs(project, template, endpoint, "10.50.0.0/16", "10.60.0.0/16")
}

pub fn regions_toml_cidrs(project: &str, template: &str, endpoint: &str, primary_cidr: &str, dr_cidr: &str) -> String {
    format!(
        r#"project = "{project}"
template = "{template}"

[dns]
zone = "{project}.test.internal"
api_record = "api.{project}.test.internal"
record_ttl_s = 10

[access]
operator_cidr = "127.0.0.0/8"
ssh_address = "private_ip"

[endpoint]
url = "{endpoint}"
health_target = "private_ip"

[[region]]
role = "primary"
name = "{PRIMARY}"
vpc_cidr = "{primary_cidr}"
azs = ["us-east-1a", "us-east-1b", "us-east-1c"]
ssh_user = "root"
ami = {{ name = "debian-12-amd64-*", owner = "136693071363" }}
instance_types = {{ app = "t3.medium", db = "r6i.large", gateway = "t3.small" }}

[[region]]
role = "dr"
name = "{DR}"
vpc_cidr = "{dr_cidr}"
azs = ["us-west-2a", "us-west-2b", "us-west-2c"]
ssh_user = "root"
ami = {{ name = "debian-12-amd64-*", owner = "136693071363" }}
instance_types = {{ app = "t3.medium", db = "r6i.large", gateway = "t3.small" }}
"#
    )
}

/// A project directory holding regions.toml; removed on drop.
pub struct Project {
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new(prefix: &str, template: &str) -> Project {
        Project::with_cidrs(prefix, template, "10.50.0.0/16", "10.60.0.0/16")
    }

    pub fn with_cidrs(prefix: &str, template: &str, primary_cidr: &str, dr_cidr: &str) -> Project {
        let name = project(prefix);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("regions.toml"), regions_toml_cidrs(&name, template, FRONT, primary_cidr, dr_cidr)).unwrap();
        Project { name, dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("regions.toml")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        provision_cmd(&self.config(), args)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run provision")
    }

    /// Runs and asserts success, printing the output if not.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "provision {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Project {
    /// Best effort: leave nothing in LocalStack even when a test fails half-way.
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

pub fn provision_cmd(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_provision"));
    c.arg("--config").arg(config).args(args);
    c.env_remove("AWS_ENDPOINT_URL");
    c
}

pub async fn ec2(region: &str) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&sdk(region).await)
}

/// The project's instances in `region` that are not terminated, as (id, state), read
/// through the API.
pub async fn instances_now(region: &str, project: &str) -> Vec<(String, String)> {
    let r = ec2(region)
        .await
        .describe_instances()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:Project").values(project).build())
        .send()
        .await
        .unwrap();
    r.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| (i.instance_id().unwrap().to_string(), i.state().and_then(|s| s.name()).unwrap().as_str().to_string()))
        .filter(|(_, s)| s != "terminated")
        .collect()
}

pub async fn route53() -> aws_sdk_route53::Client {
    aws_sdk_route53::Client::new(&sdk(PRIMARY).await)
}

/// The names of the project's parameters in `region` (failover state and vault), read
/// through SSM's API; values are never read here.
pub async fn project_parameters(region: &str, project: &str) -> Vec<String> {
    let c = aws_sdk_ssm::Client::new(&sdk(region).await);
    let r = c.get_parameters_by_path().path(format!("/provision/{project}/")).recursive(true).send().await.unwrap();
    let mut v: Vec<String> = r.parameters().iter().filter_map(|p| p.name().map(String::from)).collect();
    v.sort();
    v
}

/// The failover state's epochs in `region`'s Parameter Store (sorted), read through SSM's API.
pub async fn state_epochs(region: &str, project: &str) -> Vec<u64> {
    let c = aws_sdk_ssm::Client::new(&sdk(region).await);
    let path = format!("/provision/{project}/failover/");
    let r = c.get_parameters_by_path().path(&path).send().await.unwrap();
    let mut v: Vec<u64> = r.parameters().iter().filter_map(|p| p.name()?.strip_prefix(&path)?.parse().ok()).collect();
    v.sort();
    v
}

/// The newest epoch's record in `region` (JSON), read through SSM's API.
pub async fn state_record(region: &str, project: &str) -> serde_json::Value {
    let c = aws_sdk_ssm::Client::new(&sdk(region).await);
    let epoch = *state_epochs(region, project).await.last().expect("a failover state");
    let r = c.get_parameter().name(format!("/provision/{project}/failover/{epoch:010}")).send().await.unwrap();
    serde_json::from_str(r.parameter().unwrap().value().unwrap()).unwrap()
}

/// The epoch tag on the project's hosted zone, read through Route53's API.
pub async fn zone_epoch(project: &str) -> Option<u64> {
    let r53 = route53().await;
    let zones = r53.list_hosted_zones_by_name().dns_name(format!("{project}.test.internal.")).send().await.unwrap();
    let zone = zones.hosted_zones().iter().find(|z| z.name() == format!("{project}.test.internal."))?;
    let id = zone.id().trim_start_matches("/hostedzone/");
    let tags = r53
        .list_tags_for_resource()
        .resource_type(aws_sdk_route53::types::TagResourceType::Hostedzone)
        .resource_id(id)
        .send()
        .await
        .unwrap();
    let key = format!("provision:{project}:epoch");
    tags.resource_tag_set()?.tags().iter().find(|t| t.key() == Some(key.as_str()))?.value()?.parse().ok()
}

async fn sdk(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .endpoint_url(FRONT)
        .credentials_provider(aws_credential_types::Credentials::new("test", "test", None, None, "test"))
        // The front throttles a share of calls in the test suite, as AWS does: retry as a client should.
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(10).with_max_backoff(std::time::Duration::from_secs(2)))
        .load()
        .await
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
