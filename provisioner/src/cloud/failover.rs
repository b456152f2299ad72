//! The cloud's part of a regional failover: the marks on the hosted zone, fencing a region
//! through its EC2 API, and swapping the failover records in one atomic change.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, ResourceRecordSetFailover, RrType, Tag as R53Tag, TagResourceType,
};

use super::{Cloud, CloudError};
use crate::model::{Failover, Marks};

/// How long the fence probe waits for a region's EC2 API before calling it unreachable.
const EC2_PROBE_TIMEOUT_MS: u64 = 5_000;
const CHANGE_WAIT_MS_MAX: u64 = 120_000;
const POLL_MS: u64 = 250;

/// One failover record as it should be after the flip.
#[derive(Debug, Clone)]
pub struct RecordTarget {
    pub set_identifier: String,
    pub failover: Failover,
    pub ips: Vec<String>,
    pub health_check_id: String,
}

fn other(resource: &str, region: &str, message: impl Into<String>) -> CloudError {
    CloudError::Other { resource: resource.into(), region: region.into(), message: message.into() }
}

/// One failover record set: an A record with its SetIdentifier, role and health check.
pub(crate) fn failover_set(name: &str, t: &RecordTarget, ttl_s: i64) -> Result<ResourceRecordSet, CloudError> {
    let mut ips = t.ips.clone();
    ips.sort();
    ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::A)
        .set_identifier(&t.set_identifier)
        .failover(match t.failover {
            Failover::Primary => ResourceRecordSetFailover::Primary,
            Failover::Secondary => ResourceRecordSetFailover::Secondary,
        })
        .ttl(ttl_s)
        .health_check_id(&t.health_check_id)
        .set_resource_records(Some(ips.iter().map(|v| ResourceRecord::builder().value(v).build().expect("value set")).collect()))
        .build()
        .map_err(|e| other(name, "global", e.to_string()))
}

impl Cloud {
    pub(crate) async fn zone_marks(&self, zone_id: &str) -> Result<Marks, CloudError> {
        let r = self
            .r53
            .list_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(zone_id)
            .send()
            .await
            .map_err(|e| self.err("ListTagsForResource", zone_id, "global", e))?;
        let tags: BTreeMap<String, String> = r
            .resource_tag_set()
            .map(|s| s.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect())
            .unwrap_or_default();
        Ok(crate::roles::from_tags(&self.project, &tags))
    }

    /// Records `m` on the zone in one call.
    pub async fn set_marks(&self, zone_id: &str, m: &Marks) -> Result<(), CloudError> {
        let mut req = self.r53.change_tags_for_resource().resource_type(TagResourceType::Hostedzone).resource_id(zone_id);
        for (k, v) in crate::roles::to_tags(&self.project, m) {
            req = req.add_tags(R53Tag::builder().key(k).value(v).build());
        }
        req.send().await.map_err(|e| self.err("ChangeTagsForResource", zone_id, "global", e))?;
        Ok(())
    }

    /// The addresses of the API name's PRIMARY record: what Route53 answers while that
    /// record's health check passes.
    pub async fn primary_answer(&self, cfg: &crate::config::Config) -> Result<Vec<String>, CloudError> {
        let Some(z) = self.observe_zone(&cfg.dns.zone).await? else { return Ok(vec![]) };
        let records = self.observe_records(&z.id, &cfg.dns.api_record).await?;
        Ok(records.into_iter().find(|r| r.failover.as_deref() == Some("PRIMARY")).map(|r| r.ips).unwrap_or_default())
    }

    /// Whether `region`'s EC2 API answers within a few seconds.
    pub async fn ec2_answers(&self, region: &str) -> Result<(), CloudError> {
        let c = self.ec2(region)?;
        match tokio::time::timeout(Duration::from_millis(EC2_PROBE_TIMEOUT_MS), c.describe_availability_zones().send()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.err("DescribeAvailabilityZones", "EC2 API", region, e)),
            Err(_) => Err(CloudError::Unreachable {
                endpoint: self.endpoint.clone(),
                service: "ec2",
                region: region.into(),
                detail: format!("no answer within {EC2_PROBE_TIMEOUT_MS} ms"),
                hint: String::new(),
            }),
        }
    }

    /// The fence: stops the instances through the region's control plane (needs nothing
    /// from the hosts themselves) and tags them, then waits until EC2 reports them stopped.
    pub async fn fence_instances(&self, region: &str, ids: &[String], at_unix_ms: u64) -> Result<(), CloudError> {
        if ids.is_empty() {
            return Ok(());
        }
        let c = self.ec2(region)?;
        c.create_tags()
            .set_resources(Some(ids.to_vec()))
            .tags(super::tags::tag(crate::model::TAG_FENCED, &at_unix_ms.to_string()))
            .send()
            .await
            .map_err(|e| self.err("CreateTags", &ids.join(","), region, e))?;
        c.stop_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .force(true)
            .send()
            .await
            .map_err(|e| self.err("StopInstances", &ids.join(","), region, e))?;
        self.wait_instances(region, ids, &["stopped"]).await
    }

    /// Terminates instances (a fenced region's, before it is rebuilt) and waits for it.
    pub async fn terminate(&self, region: &str, ids: &[String]) -> Result<(), CloudError> {
        if ids.is_empty() {
            return Ok(());
        }
        let c = self.ec2(region)?;
        c.terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| self.err("TerminateInstances", &ids.join(","), region, e))?;
        self.wait_instances(region, ids, &["terminated"]).await
    }

    /// Upserts the failover records in one change batch (Route53 applies it atomically) and
    /// returns the change id.
    pub async fn flip_records(&self, zone_id: &str, name: &str, ttl_s: i64, targets: &[RecordTarget]) -> Result<String, CloudError> {
        let mut batch = ChangeBatch::builder().comment(format!("provision failover: {}", self.project));
        for t in targets {
            let set = failover_set(name, t, ttl_s)?;
            let change = Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(set)
                .build()
                .map_err(|e| other(name, "global", e.to_string()))?;
            batch = batch.changes(change);
        }
        let batch = batch.build().map_err(|e| other(name, "global", e.to_string()))?;
        let r = self
            .r53
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| self.err("ChangeResourceRecordSets", name, "global", e))?;
        Ok(r.change_info().map(|c| c.id().trim_start_matches("/change/").to_string()).unwrap_or_default())
    }

    /// Waits (bounded) until Route53 reports the change INSYNC on all its name servers.
    pub async fn wait_insync(&self, change_id: &str) -> Result<(), CloudError> {
        let deadline = Instant::now() + Duration::from_millis(CHANGE_WAIT_MS_MAX);
        loop {
            let r = self.r53.get_change().id(change_id).send().await.map_err(|e| self.err("GetChange", change_id, "global", e))?;
            if r.change_info().map(|c| c.status().as_str()) == Some("INSYNC") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(other(change_id, "global", format!("change not INSYNC after {} s", CHANGE_WAIT_MS_MAX / 1000)));
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }
}
