//! What EC2 says before anything is created: which instance types each AZ offers, and whether
//! RunInstances would be allowed (a DryRun).

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{Filter, InstanceType, LocationType};

use super::{Cloud, CloudError};

/// The code EC2 answers a DryRun that would have succeeded.
const DRY_RUN_OK: &str = "DryRunOperation";

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
}
