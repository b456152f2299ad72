//! The only module that talks to AWS (EC2 and SSM Parameter Store per region, Route53 globally).
//! `observe` reads the project's resources into [`crate::model::Observed`];
//! `apply` performs one [`crate::action::Action`].

mod apply;
mod failover;
mod health;
mod iam;
mod observe;
mod preflight;
#[cfg(test)]
mod seam_tests;
mod state;
mod tags;
mod vault;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

pub use apply::{Created, Outputs};
pub use failover::RecordTarget;
pub use iam::IAM_POLICY_JSON;
pub use state::MarksWrite;

use crate::config::Config;

const CONNECT_TIMEOUT_MS: u64 = 3_000;
/// One attempt of one call; a hung API is given up on after this and retried.
const ATTEMPT_TIMEOUT_MS: u64 = 8_000;
/// One call with all its retries: a region whose API does not answer is reported within this.
pub const OPERATION_TIMEOUT_MS: u64 = 20_000;
/// Attempts per call for throttling and transient errors, with the SDK's jittered exponential
/// backoff from `RETRY_BACKOFF_MS_FIRST` up to `RETRY_BACKOFF_MS_MAX` (AWS's guidance for
/// `RequestLimitExceeded` / `Throttling`). At a 20 % throttling rate, 10 attempts fail once in
/// 10 million calls.
const RETRY_ATTEMPTS_MAX: u32 = 10;
const RETRY_BACKOFF_MS_FIRST: u64 = 100;
const RETRY_BACKOFF_MS_MAX: u64 = 3_000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CloudError {
    #[error("cannot reach the AWS endpoint {endpoint} ({service} in {region}): {detail}{hint}")]
    Unreachable { endpoint: String, service: &'static str, region: String, detail: String, hint: String },
    #[error("{op} {resource} in {region} failed: {code}: {message}")]
    Api { op: String, resource: String, region: String, code: String, message: String },
    #[error("{resource} in {region}: {message}")]
    Other { resource: String, region: String, message: String },
    /// A create-only write lost: another run wrote this epoch of the failover state first.
    #[error(
        "another run decided failover epoch {epoch} first ({resource} in {region} already exists: {theirs}); this run changed nothing\n  \
         fix: run `provision status` to see the state that run set; do not retry this command blindly"
    )]
    Raced { resource: String, region: String, epoch: u64, theirs: String },
}

impl CloudError {
    /// AWS refuses for now, because of something a listing does not show yet (EC2 is
    /// eventually consistent) or that is going away: a resource still depended on (by what an
    /// interrupted run made, or by an instance shutting down), or a subnet range or group name
    /// taken by a subnet or group an interrupted run made. A fresh look and a later round
    /// clear it (the unlisted one is then listed, and kept).
    pub fn retry_later(&self) -> bool {
        const LATER: [&str; 3] = ["DependencyViolation", "InvalidSubnet.Conflict", "InvalidGroup.Duplicate"];
        matches!(self, CloudError::Api { code, .. } if LATER.contains(&code.as_str()))
    }
}

pub struct Cloud {
    pub project: String,
    endpoint: String,
    ec2: BTreeMap<String, aws_sdk_ec2::Client>,
    ssm: BTreeMap<String, aws_sdk_ssm::Client>,
    quotas: BTreeMap<String, aws_sdk_servicequotas::Client>,
    r53: aws_sdk_route53::Client,
    /// Distinguishes this run's ClientTokens and CallerReferences from earlier runs'.
    run_id: String,
}

impl Cloud {
    pub async fn connect(cfg: &Config) -> Cloud {
        let (mut ec2, mut ssm, mut quotas) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for r in &cfg.regions {
            let sdk = sdk_config(cfg, &r.name).await;
            ec2.insert(r.name.clone(), aws_sdk_ec2::Client::new(&sdk));
            ssm.insert(r.name.clone(), aws_sdk_ssm::Client::new(&sdk));
            quotas.insert(r.name.clone(), aws_sdk_servicequotas::Client::new(&sdk));
        }
        // Route53 is global; its API lives in us-east-1.
        let r53 = aws_sdk_route53::Client::new(&sdk_config(cfg, "us-east-1").await);
        let endpoint = cfg.endpoint_url.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        // Shown in errors: any credentials in the URL are redacted.
        let endpoint = endpoint.map(|u| crate::config::rules::redact_userinfo(&u)).unwrap_or_else(|| "AWS (default endpoints)".into());
        let run_id = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis());
        Cloud { project: cfg.project.clone(), endpoint, ec2, ssm, quotas, r53, run_id }
    }

    pub(crate) fn ec2(&self, region: &str) -> Result<&aws_sdk_ec2::Client, CloudError> {
        self.ec2.get(region).ok_or_else(|| CloudError::Other {
            resource: "client".into(),
            region: region.into(),
            message: "region is not in the config".into(),
        })
    }

    pub(crate) fn quotas(&self, region: &str) -> Result<&aws_sdk_servicequotas::Client, CloudError> {
        self.quotas.get(region).ok_or_else(|| CloudError::Other {
            resource: "client".into(),
            region: region.into(),
            message: "region is not in the config".into(),
        })
    }

    pub(crate) fn ssm(&self, region: &str) -> Result<&aws_sdk_ssm::Client, CloudError> {
        self.ssm.get(region).ok_or_else(|| CloudError::Other {
            resource: "client".into(),
            region: region.into(),
            message: "region is not in the config".into(),
        })
    }

    /// Turns an SDK error into one that names the operation, resource, region and AWS code.
    pub(crate) fn err<E, R>(&self, op: &str, resource: &str, region: &str, e: SdkError<E, R>) -> CloudError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        self.err_in(service_of(region), op, resource, region, e)
    }

    /// [`Cloud::err`] for a regional service other than EC2.
    pub(crate) fn err_in<E, R>(&self, service: &'static str, op: &str, resource: &str, region: &str, e: SdkError<E, R>) -> CloudError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        match &e {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => CloudError::Unreachable {
                endpoint: self.endpoint.clone(),
                service,
                region: region.into(),
                detail: format!("{op}: {}", root_cause(&e)),
                hint: self.unreachable_hint(),
            },
            _ => CloudError::Api {
                op: op.into(),
                resource: resource.into(),
                region: region.into(),
                code: e.code().unwrap_or("Unknown").into(),
                message: e.message().map(str::to_string).unwrap_or_else(|| root_cause(&e)),
            },
        }
    }
}

impl Cloud {
    fn unreachable_hint(&self) -> String {
        let local = self.endpoint.contains("127.0.0.1") || self.endpoint.contains("localhost");
        if local && self.endpoint.trim_end_matches('/').ends_with(":4567") {
            "\n  fix: start the local cloud (LocalStack and its API front) with `localstack/start.sh` (install it first with `scripts/setup.sh`)".into()
        } else if local {
            format!("\n  fix: nothing answers at {}: correct `endpoint.url` in the config (the lab's API front listens on :4567, started by `localstack/start.sh`), or start the service that should answer there", self.endpoint)
        } else {
            "\n  fix: check network access, credentials and the endpoint setting".into()
        }
    }
}

/// The service a call went to: Route53 calls are named with the region "global".
pub(crate) fn service_of(region: &str) -> &'static str {
    if region == "global" {
        "route53"
    } else {
        "ec2"
    }
}

/// The innermost cause of an SDK error, as one line (not the SDK's nested debug text).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    let text = if text.trim().is_empty() { e.to_string() } else { text };
    crate::config::rules::redact_userinfo(text.lines().next().unwrap_or_default())
}

async fn sdk_config(cfg: &Config, region: &str) -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .operation_attempt_timeout(Duration::from_millis(ATTEMPT_TIMEOUT_MS))
        .operation_timeout(Duration::from_millis(OPERATION_TIMEOUT_MS))
        .build();
    let retries = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(RETRY_ATTEMPTS_MAX)
        .with_initial_backoff(Duration::from_millis(RETRY_BACKOFF_MS_FIRST))
        .with_max_backoff(Duration::from_millis(RETRY_BACKOFF_MS_MAX));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .timeout_config(timeouts)
        .retry_config(retries)
        // `app/provision` in every call's user agent: CloudTrail (and the lab's front) tell our calls apart.
        .app_name(aws_config::AppName::new("provision").expect("a valid app name"));
    if let Some(url) = &cfg.endpoint_url {
        loader = loader.endpoint_url(url);
        // A local cloud accepts any credentials; use dummy ones unless the chain has real ones.
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() && std::env::var_os("AWS_PROFILE").is_none() {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new("test", "test", None, None, "local-endpoint"));
        }
    }
    loader.load().await
}
