//! The Route53 actions: the hosted zone, health checks and failover records. Route53 takes
//! tags in a second call, so a zone or check is also found by its CallerReference.

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HealthCheckConfig, HealthCheckType, ResourceRecord, ResourceRecordSet, ResourceRecordSetFailover,
    RrType, Tag as R53Tag, TagResourceType,
};

use super::{other, Created, Outputs};
use crate::action::{Action, ZONE_KEY};
use crate::cloud::observe::strip_zone;
use crate::cloud::{Cloud, CloudError, RecordTarget};
use crate::model::*;

impl Cloud {
    pub(super) async fn apply_route53(&self, a: &Action, out: &Outputs) -> Result<Option<Created>, CloudError> {
        use Action::*;
        match a {
            CreateZone { name } => {
                let call = self.r53.create_hosted_zone().name(name).caller_reference(caller_reference(&self.project, "zone", &self.run_id));
                let r = call.send().await.map_err(|e| self.err("CreateHostedZone", name, "global", e))?;
                let id = strip_zone(r.hosted_zone().map(|z| z.id()).unwrap_or_default());
                self.tag_r53(TagResourceType::Hostedzone, &id, ZONE_KEY).await?;
                Ok(Some(Created { id, ..Default::default() }))
            }
            CreateHttpCheck { key, ip, port, path, request_interval_s, failure_threshold } => {
                let cfg = HealthCheckConfig::builder()
                    .r#type(HealthCheckType::Https)
                    .ip_address(self.ip(ip, out)?)
                    .port(i32::from(*port))
                    .resource_path(path)
                    .request_interval(*request_interval_s)
                    .failure_threshold(*failure_threshold)
                    .build()
                    .map_err(|e| other(key, "global", e.to_string()))?;
                self.create_check(key, cfg).await
            }
            UpdateHttpCheck { key, id, ip, port, path } => {
                let call = self
                    .r53
                    .update_health_check()
                    .health_check_id(id)
                    .ip_address(self.ip(ip, out)?)
                    .port(i32::from(*port))
                    .resource_path(path);
                self.call("UpdateHealthCheck", key, "global", || call.clone().send()).await.map(|_| None)
            }
            CreateRegionCheck { key, children, healthy_children_min } => {
                let kids = children.iter().map(|c| self.id(c, out, "global")).collect::<Result<Vec<_>, _>>()?;
                let cfg = HealthCheckConfig::builder()
                    .r#type(HealthCheckType::Calculated)
                    .set_child_health_checks(Some(kids))
                    .health_threshold(*healthy_children_min)
                    .build()
                    .map_err(|e| other(key, "global", e.to_string()))?;
                self.create_check(key, cfg).await
            }
            UpdateRegionCheck { key, id, children, healthy_children_min } => {
                let kids = children.iter().map(|c| self.id(c, out, "global")).collect::<Result<Vec<_>, _>>()?;
                let call = self
                    .r53
                    .update_health_check()
                    .health_check_id(id)
                    .set_child_health_checks(Some(kids))
                    .health_threshold(*healthy_children_min);
                self.call("UpdateHealthCheck", key, "global", || call.clone().send()).await.map(|_| None)
            }
            UpsertRecord { zone, name, spec, ips, check, ttl_s } => {
                let zone = self.id(zone, out, "global")?;
                let target = RecordTarget {
                    set_identifier: spec.set_identifier.clone(),
                    failover: spec.failover,
                    ips: ips.iter().map(|i| self.ip(i, out)).collect::<Result<Vec<_>, _>>()?,
                    health_check_id: self.id(check, out, "global")?,
                };
                let set = crate::cloud::failover::failover_set(name, &target, *ttl_s)?;
                self.change_record(&zone, ChangeAction::Upsert, set, name).await.map(|_| None)
            }
            DeleteRecord { zone_id, record } => {
                self.change_record(zone_id, ChangeAction::Delete, found_set(record)?, &record.name).await.map(|_| None)
            }
            DeleteCheck { key, id } => {
                self.delete("DeleteHealthCheck", key, "global", || self.r53.delete_health_check().health_check_id(id).send()).await
            }
            DeleteZone { id, name } => {
                self.delete("DeleteHostedZone", name, "global", || self.r53.delete_hosted_zone().id(id).send()).await
            }
            other_action => unreachable!("not a Route53 action: {}", other_action.describe()),
        }
    }

    async fn create_check(&self, key: &str, cfg: HealthCheckConfig) -> Result<Option<Created>, CloudError> {
        let r = self
            .r53
            .create_health_check()
            .caller_reference(caller_reference(&self.project, key, &self.run_id))
            .health_check_config(cfg)
            .send()
            .await
            .map_err(|e| self.err("CreateHealthCheck", key, "global", e))?;
        let id = r.health_check().map(|h| h.id().to_string()).unwrap_or_default();
        self.tag_r53(TagResourceType::Healthcheck, &id, key).await?;
        Ok(Some(Created { id, ..Default::default() }))
    }

    async fn tag_r53(&self, rt: TagResourceType, id: &str, key: &str) -> Result<(), CloudError> {
        let t = |k: &str, v: &str| R53Tag::builder().key(k).value(v).build();
        let call = self
            .r53
            .change_tags_for_resource()
            .resource_type(rt)
            .resource_id(id)
            .add_tags(t(TAG_PROJECT, &self.project))
            .add_tags(t(TAG_KEY, key));
        self.call("ChangeTagsForResource", key, "global", || call.clone().send()).await
    }

    async fn change_record(&self, zone: &str, action: ChangeAction, set: ResourceRecordSet, name: &str) -> Result<(), CloudError> {
        let change = Change::builder().action(action).resource_record_set(set).build().map_err(|e| other(name, "global", e.to_string()))?;
        let batch = ChangeBatch::builder().changes(change).build().map_err(|e| other(name, "global", e.to_string()))?;
        let call = self.r53.change_resource_record_sets().hosted_zone_id(zone).change_batch(batch);
        self.call("ChangeResourceRecordSets", name, "global", || call.clone().send()).await
    }
}

/// A record set exactly as it was found (a DELETE must match it field by field).
fn found_set(record: &RecordFound) -> Result<ResourceRecordSet, CloudError> {
    let mut b = ResourceRecordSet::builder().name(&record.name).r#type(RrType::A).set_identifier(&record.set_identifier);
    if let Some(f) = &record.failover {
        b = b.failover(ResourceRecordSetFailover::from(f.as_str()));
    }
    if let Some(t) = record.ttl_s {
        b = b.ttl(t);
    }
    if let Some(h) = &record.health_check_id {
        b = b.health_check_id(h);
    }
    b.set_resource_records(Some(record.ips.iter().map(|v| ResourceRecord::builder().value(v).build().expect("value set")).collect()))
        .build()
        .map_err(|e| other(&record.name, "global", e.to_string()))
}
