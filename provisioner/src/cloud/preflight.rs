//! What EC2 says before anything is created: which instance types each AZ offers, whether
//! RunInstances would be allowed (a DryRun), and the region's vCPU quota (Service Quotas)
//! beside what already runs.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, InstanceType, LocationType};

use super::{Cloud, CloudError};

/// The code EC2 answers a DryRun that would have succeeded.
const DRY_RUN_OK: &str = "DryRunOperation";

/// How long `plan` waits for Service Quotas (the quota check is skipped with a note after).
pub const QUOTA_TIMEOUT_MS: u64 = 5_000;

impl Cloud {
    /// The (instance type, AZ) pairs of `types` that `region` offers.
    pub async fn type_offerings(&self, region: &str, types: &[String]) -> Result<BTreeSet<(String, String)>, CloudError> {
        let c = self.ec2(region)?;
        let mut out = BTreeSet::new();
        let mut next: Option<String> = None;
        loop {
            let r = c
                .describe_instance_type_offerings()
                .location_type(LocationType::AvailabilityZone)
                .filters(Filter::builder().name("instance-type").set_values(Some(types.to_vec())).build())
                .set_next_token(next.clone())
                .send()
                .await
                .map_err(|e| self.err("DescribeInstanceTypeOfferings", &types.join(","), region, e))?;
            for o in r.instance_type_offerings() {
                if let (Some(t), Some(az)) = (o.instance_type(), o.location()) {
                    out.insert((t.as_str().to_string(), az.to_string()));
                }
            }
            next = r.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if next.is_none() {
                return Ok(out);
            }
        }
    }

    /// A DryRun of RunInstances for one instance of `instance_type` from `ami`: `Ok(None)` when
    /// EC2 says it would succeed, else the code and message it refused with.
    pub async fn dry_run_instance(&self, region: &str, ami: &str, instance_type: &str) -> Result<Option<(String, String)>, CloudError> {
        let c = self.ec2(region)?;
        let r = c
            .run_instances()
            .dry_run(true)
            .image_id(ami)
            .instance_type(InstanceType::from(instance_type))
            .min_count(1)
            .max_count(1)
            .send()
            .await;
        match r.map_err(|e| self.err("RunInstances (DryRun)", instance_type, region, e)) {
            Ok(_) => Ok(None),
            Err(CloudError::Api { code, .. }) if code == DRY_RUN_OK => Ok(None),
            Err(CloudError::Api { code, message, .. }) => Ok(Some((code, message))),
            Err(e) => Err(e),
        }
    }

    /// The region's quota of running On-Demand standard vCPUs (`code`), from Service Quotas.
    /// Bounded by [`QUOTA_TIMEOUT_MS`]: the check is optional, so a hung Service Quotas costs
    /// `plan` seconds, not the SDK's whole operation bound.
    pub async fn vcpu_quota(&self, region: &str, code: &str) -> Result<f64, CloudError> {
        let call = self.quotas(region)?.get_service_quota().service_code("ec2").quota_code(code).send();
        let r = tokio::time::timeout(std::time::Duration::from_millis(QUOTA_TIMEOUT_MS), call)
            .await
            .map_err(|_| CloudError::Other {
                resource: code.into(),
                region: region.into(),
                message: format!("Service Quotas did not answer within {QUOTA_TIMEOUT_MS} ms"),
            })?
            .map_err(|e| self.err("GetServiceQuota", code, region, e))?;
        r.quota().and_then(|q| q.value()).ok_or_else(|| CloudError::Other {
            resource: code.into(),
            region: region.into(),
            message: "Service Quotas answered without a value".into(),
        })
    }

    /// The default vCPUs of each of `types` that EC2 knows.
    pub async fn type_vcpus(&self, region: &str, types: &[String]) -> Result<BTreeMap<String, i32>, CloudError> {
        let c = self.ec2(region)?;
        let mut out = BTreeMap::new();
        for chunk in types.chunks(100) {
            let asked: Vec<InstanceType> = chunk.iter().map(|t| InstanceType::from(t.as_str())).collect();
            let r = c
                .describe_instance_types()
                .set_instance_types(Some(asked))
                .send()
                .await
                .map_err(|e| self.err("DescribeInstanceTypes", &chunk.join(","), region, e))?;
            for t in r.instance_types() {
                if let (Some(name), Some(v)) = (t.instance_type(), t.v_cpu_info().and_then(|v| v.default_v_cpus())) {
                    out.insert(name.as_str().to_string(), v);
                }
            }
        }
        Ok(out)
    }

    /// The type of every instance pending or running in the region, the project's or not:
    /// they all count against the account's quota.
    pub async fn running_types(&self, region: &str) -> Result<Vec<String>, CloudError> {
        let c = self.ec2(region)?;
        let state = Filter::builder().name("instance-state-name").values("pending").values("running").build();
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let r = c
                .describe_instances()
                .filters(state.clone())
                .set_next_token(next.clone())
                .send()
                .await
                .map_err(|e| self.err("DescribeInstances", "running instances", region, e))?;
            for i in r.reservations().iter().flat_map(|r| r.instances()) {
                out.extend(i.instance_type().map(|t| t.as_str().to_string()));
            }
            next = r.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if next.is_none() {
                return Ok(out);
            }
        }
    }
}
