//! Reading instances and key pairs from the EC2 API (LocalStack).

use crate::config::RegionConfig;
use crate::model::{Instance, InstanceState};
use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::Client;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    #[error("{region}: {op}: {message}")]
    Api { region: String, op: &'static str, message: String },
}

const API_TIMEOUT_MS: u64 = 5000;
/// Attempts per call for throttling and transient errors (jittered backoff, 50-500 ms).
const API_ATTEMPTS_MAX: u32 = 6;

/// One EC2 client per configured region, all pointed at the same endpoint.
#[derive(Clone)]
pub struct Ec2 {
    clients: Vec<(String, Client)>,
}

impl Ec2 {
    pub async fn new(endpoint_url: &str, regions: &[RegionConfig]) -> Self {
        let mut clients = Vec::new();
        for r in regions {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(r.name.clone()))
                .endpoint_url(endpoint_url)
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder().operation_timeout(Duration::from_millis(API_TIMEOUT_MS)).build(),
                )
                // The lab's API front throttles a share of calls in the test suite, as AWS does.
                .retry_config(
                    aws_config::retry::RetryConfig::standard()
                        .with_max_attempts(API_ATTEMPTS_MAX)
                        .with_initial_backoff(Duration::from_millis(50))
                        .with_max_backoff(Duration::from_millis(500)),
                );
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new("test", "test", None, None, "labhost"));
            }
            let conf = loader.load().await;
            clients.push((r.name.clone(), Client::new(&conf)));
        }
        Ec2 { clients }
    }

    fn api_err(&self, i: usize, op: &'static str, e: impl std::fmt::Display) -> Ec2Error {
        Ec2Error::Api { region: self.clients[i].0.clone(), op, message: e.to_string() }
    }

    /// Live (not terminated) instances of region `i`.
    pub async fn instances(&self, i: usize) -> Result<Vec<Instance>, Ec2Error> {
        let client = &self.clients[i].1;
        let filter = Filter::builder()
            .name("instance-state-name")
            .set_values(Some(vec!["pending".into(), "running".into(), "stopping".into(), "stopped".into()]))
            .build();
        let mut out = Vec::new();
        let mut pages = client.describe_instances().filters(filter).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.api_err(i, "DescribeInstances", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
            for res in page.reservations() {
                for inst in res.instances() {
                    let Some(id) = inst.instance_id() else { continue };
                    let state = inst.state().and_then(|s| s.name()).and_then(|n| InstanceState::parse(n.as_str()));
                    let Some(state) = state else { continue };
                    out.push(Instance {
                        id: id.to_string(),
                        region_index: i,
                        state,
                        private_ip: inst.private_ip_address().and_then(|s| s.parse().ok()),
                        private_dns: inst.private_dns_name().map(str::to_string),
                        key_name: inst.key_name().map(str::to_string),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The instance's UserData, decoded (empty when it has none).
    pub async fn user_data(&self, i: usize, instance_id: &str) -> Result<String, Ec2Error> {
        use base64::Engine as _;
        let client = &self.clients[i].1;
        let resp = client
            .describe_instance_attribute()
            .instance_id(instance_id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .map_err(|e| {
                use aws_sdk_ec2::error::ProvideErrorMetadata as _;
                self.api_err(
                    i,
                    "DescribeInstanceAttribute",
                    format!("{}: {}", e.code().unwrap_or("error"), e.message().unwrap_or_default()),
                )
            })?;
        let Some(b64) = resp.user_data().and_then(|v| v.value()) else { return Ok(String::new()) };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| self.api_err(i, "DescribeInstanceAttribute", format!("UserData is not base64: {e}")))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The public key of a key pair (`None` if the key pair does not exist).
    pub async fn public_key(&self, i: usize, key_name: &str) -> Result<Option<String>, Ec2Error> {
        let client = &self.clients[i].1;
        let resp = client.describe_key_pairs().key_names(key_name).include_public_key(true).send().await;
        match resp {
            Ok(r) => Ok(r.key_pairs().first().and_then(|k| k.public_key()).map(|k| k.trim().to_string())),
            Err(e) => {
                let text = aws_sdk_ec2::error::DisplayErrorContext(&e).to_string();
                if text.contains("NotFound") {
                    Ok(None)
                } else {
                    Err(self.api_err(i, "DescribeKeyPairs", text))
                }
            }
        }
    }
}
