//! Performs one action. Creations carry their tags in the same call (TagSpecifications), so
//! an interrupted run leaves nothing that the next run cannot find.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, InstanceType, IpPermission, IpRange, ResourceType};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HealthCheckConfig, HealthCheckType, ResourceRecord, ResourceRecordSet, ResourceRecordSetFailover,
    RrType, Tag as R53Tag, TagResourceType,
};

use super::observe::strip_zone;
use super::{tags, Cloud, CloudError};
use crate::action::{Action, IpRef, Ref, ZONE_KEY};
use crate::model::*;

const INSTANCE_WAIT_MS_MAX: u64 = 300_000;
const POLL_MS: u64 = 250;

/// What a creating step made: its id and, for instances, its addresses.
#[derive(Debug, Clone, Default)]
pub struct Created {
    pub id: String,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
}

pub type Outputs = HashMap<String, Created>;

fn other(resource: &str, region: &str, message: impl Into<String>) -> CloudError {
    CloudError::Other { resource: resource.into(), region: region.into(), message: message.into() }
}

impl Cloud {
    fn id(&self, r: &Ref, out: &Outputs, region: &str) -> Result<String, CloudError> {
        match r {
            Ref::Id(id) => Ok(id.clone()),
            Ref::Key(k) => out.get(k).map(|c| c.id.clone()).ok_or_else(|| other(k, region, "not created by an earlier step")),
        }
    }

    fn ip(&self, r: &IpRef, out: &Outputs) -> Result<String, CloudError> {
        match r {
            IpRef::Known(ip) => Ok(ip.clone()),
            IpRef::OfInstance { key, address } => {
                let c = out.get(key).ok_or_else(|| other(key, "global", "instance not created by an earlier step"))?;
                let ip = address.pick(c.private_ip.as_ref(), c.public_ip.as_ref());
                ip.ok_or_else(|| other(key, "global", format!("instance has no {} IP", address.as_str())))
            }
        }
    }

    pub async fn apply(&self, a: &Action, out: &Outputs) -> Result<Option<Created>, CloudError> {
        use Action::*;
        let p = self.project.as_str();
        let made = |id: Option<&str>| Ok(Some(Created { id: id.unwrap_or_default().to_string(), ..Default::default() }));
        match a {
            CreateVpc { region, key, cidr } => {
                let r = self
                    .ec2(region)?
                    .create_vpc()
                    .cidr_block(cidr)
                    .tag_specifications(tags::spec(ResourceType::Vpc, p, key, key, &[]))
                    .send()
                    .await;
                let r = r.map_err(|e| self.err("CreateVpc", key, region, e))?;
                made(r.vpc().and_then(|v| v.vpc_id()))
            }
            CreateSubnet { region, key, vpc, cidr, az } => {
                let r = self
                    .ec2(region)?
                    .create_subnet()
                    .vpc_id(self.id(vpc, out, region)?)
                    .cidr_block(cidr)
                    .availability_zone(az)
                    .tag_specifications(tags::spec(ResourceType::Subnet, p, key, key, &[]))
                    .send()
                    .await
                    .map_err(|e| self.err("CreateSubnet", key, region, e))?;
                made(r.subnet().and_then(|s| s.subnet_id()))
            }
            CreateInternetGateway { region, key } => {
                let r = self
                    .ec2(region)?
                    .create_internet_gateway()
                    .tag_specifications(tags::spec(ResourceType::InternetGateway, p, key, key, &[]))
                    .send()
                    .await
                    .map_err(|e| self.err("CreateInternetGateway", key, region, e))?;
                made(r.internet_gateway().and_then(|g| g.internet_gateway_id()))
            }
            AttachInternetGateway { region, igw, vpc } => {
                let igw = self.id(igw, out, region)?;
                self.ec2(region)?
                    .attach_internet_gateway()
                    .internet_gateway_id(&igw)
                    .vpc_id(self.id(vpc, out, region)?)
                    .send()
                    .await
                    .map_err(|e| self.err("AttachInternetGateway", &igw, region, e))?;
                Ok(None)
            }
            CreateRouteTable { region, key, vpc } => {
                let r = self
                    .ec2(region)?
                    .create_route_table()
                    .vpc_id(self.id(vpc, out, region)?)
                    .tag_specifications(tags::spec(ResourceType::RouteTable, p, key, key, &[]))
                    .send()
                    .await
                    .map_err(|e| self.err("CreateRouteTable", key, region, e))?;
                made(r.route_table().and_then(|t| t.route_table_id()))
            }
            CreateRoute { region, route_table, cidr, target, replace } => {
                let rt = self.id(route_table, out, region)?;
                let t = self.id(target, out, region)?;
                let c = self.ec2(region)?;
                let res = if *replace {
                    let b = c.replace_route().route_table_id(&rt).destination_cidr_block(cidr);
                    let b = if t.starts_with("pcx-") { b.vpc_peering_connection_id(&t) } else { b.gateway_id(&t) };
                    b.send().await.map(|_| ()).map_err(|e| self.err("ReplaceRoute", &format!("{rt} {cidr}"), region, e))
                } else {
                    let b = c.create_route().route_table_id(&rt).destination_cidr_block(cidr);
                    let b = if t.starts_with("pcx-") { b.vpc_peering_connection_id(&t) } else { b.gateway_id(&t) };
                    b.send().await.map(|_| ()).map_err(|e| self.err("CreateRoute", &format!("{rt} {cidr}"), region, e))
                };
                match res {
                    Err(CloudError::Api { code, .. }) if code == "RouteAlreadyExists" => Ok(None),
                    r => r.map(|_| None),
                }
            }
            AssociateRouteTable { region, route_table, subnet } => {
                let rt = self.id(route_table, out, region)?;
                self.ec2(region)?
                    .associate_route_table()
                    .route_table_id(&rt)
                    .subnet_id(self.id(subnet, out, region)?)
                    .send()
                    .await
                    .map_err(|e| self.err("AssociateRouteTable", &rt, region, e))?;
                Ok(None)
            }
            CreateSecurityGroup { region, key, name, vpc } => {
                let r = self
                    .ec2(region)?
                    .create_security_group()
                    .group_name(name)
                    .description(format!("{p}: {key}"))
                    .vpc_id(self.id(vpc, out, region)?)
                    .tag_specifications(tags::spec(ResourceType::SecurityGroup, p, key, name, &[]))
                    .send()
                    .await
                    .map_err(|e| self.err("CreateSecurityGroup", key, region, e))?;
                made(r.group_id())
            }
            AuthorizeIngress { region, sg, rules } => {
                let sg = self.id(sg, out, region)?;
                let perms: Vec<IpPermission> = rules.iter().map(perm).collect();
                let r = self.ec2(region)?.authorize_security_group_ingress().group_id(&sg).set_ip_permissions(Some(perms)).send().await;
                match r.map_err(|e| self.err("AuthorizeSecurityGroupIngress", &sg, region, e)) {
                    Err(CloudError::Api { code, .. }) if code == "InvalidPermission.Duplicate" => Ok(None),
                    r => r.map(|_| None),
                }
            }
            RevokeIngress { region, sg, rules } => {
                let perms: Vec<IpPermission> = rules.iter().map(perm).collect();
                self.ec2(region)?
                    .revoke_security_group_ingress()
                    .group_id(sg)
                    .set_ip_permissions(Some(perms))
                    .send()
                    .await
                    .map_err(|e| self.err("RevokeSecurityGroupIngress", sg, region, e))?;
                Ok(None)
            }
            ImportKeyPair { region, key, name, public_key } => {
                let r = self
                    .ec2(region)?
                    .import_key_pair()
                    .key_name(name)
                    .public_key_material(aws_smithy_types::Blob::new(public_key.as_bytes()))
                    .tag_specifications(tags::spec(ResourceType::KeyPair, p, key, name, &[]))
                    .send()
                    .await
                    .map_err(|e| self.err("ImportKeyPair", name, region, e))?;
                made(r.key_pair_id().or(r.key_name()))
            }
            RunInstance { region, region_role, host, ami, subnet, sg, key_name } => {
                let extra = [
                    (TAG_REGION_ROLE, region_role.clone()),
                    (TAG_ROLE, host.role.clone()),
                    (TAG_MODULES, host.modules.join(",")),
                    (TAG_INDEX, host.index.to_string()),
                    (TAG_GATEWAY, host.gateway.to_string()),
                    (TAG_DATABASE, host.database.to_string()),
                ];
                let r = self
                    .ec2(region)?
                    .run_instances()
                    .image_id(ami)
                    .instance_type(InstanceType::from(host.instance_type.as_str()))
                    .min_count(1)
                    .max_count(1)
                    .key_name(key_name)
                    .subnet_id(self.id(subnet, out, region)?)
                    .security_group_ids(self.id(sg, out, region)?)
                    .client_token(format!("{}-{}", host.key.replace('/', "-"), self.run_id))
                    .tag_specifications(tags::spec(ResourceType::Instance, p, &host.key, &host.name, &extra))
                    .send()
                    .await
                    .map_err(|e| self.err("RunInstances", &host.key, region, e))?;
                let i = r.instances().first().ok_or_else(|| other(&host.key, region, "RunInstances returned no instance"))?;
                Ok(Some(Created {
                    id: i.instance_id().unwrap_or_default().into(),
                    private_ip: i.private_ip_address().map(str::to_string),
                    public_ip: i.public_ip_address().map(str::to_string),
                }))
            }
            StartInstances { region, ids } => {
                self.ec2(region)?
                    .start_instances()
                    .set_instance_ids(Some(ids.clone()))
                    .send()
                    .await
                    .map_err(|e| self.err("StartInstances", &ids.join(","), region, e))?;
                Ok(None)
            }
            CreatePeering { region, key, vpc, peer_region, peer_vpc } => {
                let r = self
                    .ec2(region)?
                    .create_vpc_peering_connection()
                    .vpc_id(self.id(vpc, out, region)?)
                    .peer_vpc_id(self.id(peer_vpc, out, peer_region)?)
                    .peer_region(peer_region)
                    .tag_specifications(tags::spec(ResourceType::VpcPeeringConnection, p, key, key, &[]))
                    .send()
                    .await
                    .map_err(|e| self.err("CreateVpcPeeringConnection", key, region, e))?;
                made(r.vpc_peering_connection().and_then(|c| c.vpc_peering_connection_id()))
            }
            AcceptPeering { region, peering } => {
                let id = self.id(peering, out, region)?;
                self.ec2(region)?
                    .accept_vpc_peering_connection()
                    .vpc_peering_connection_id(&id)
                    .send()
                    .await
                    .map_err(|e| self.err("AcceptVpcPeeringConnection", &id, region, e))?;
                Ok(None)
            }
            CreateZone { name } => {
                let r = self
                    .r53
                    .create_hosted_zone()
                    .name(name)
                    .caller_reference(format!("{}zone:{}", self.caller_prefix(), self.run_id))
                    .send()
                    .await
                    .map_err(|e| self.err("CreateHostedZone", name, "global", e))?;
                let id = strip_zone(r.hosted_zone().map(|z| z.id()).unwrap_or_default());
                self.tag_r53(TagResourceType::Hostedzone, &id, ZONE_KEY).await?;
                made(Some(&id))
            }
            CreateHttpCheck { key, ip, port, path, request_interval_s, failure_threshold } => {
                let cfg = HealthCheckConfig::builder()
                    .r#type(HealthCheckType::Http)
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
                self.r53
                    .update_health_check()
                    .health_check_id(id)
                    .ip_address(self.ip(ip, out)?)
                    .port(i32::from(*port))
                    .resource_path(path)
                    .send()
                    .await
                    .map_err(|e| self.err("UpdateHealthCheck", key, "global", e))?;
                Ok(None)
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
                self.r53
                    .update_health_check()
                    .health_check_id(id)
                    .set_child_health_checks(Some(kids))
                    .health_threshold(*healthy_children_min)
                    .send()
                    .await
                    .map_err(|e| self.err("UpdateHealthCheck", key, "global", e))?;
                Ok(None)
            }
            UpsertRecord { zone, name, spec, ips, check, ttl_s } => {
                let zone = self.id(zone, out, "global")?;
                let values = ips.iter().map(|i| self.ip(i, out)).collect::<Result<Vec<_>, _>>()?;
                let target = super::RecordTarget {
                    set_identifier: spec.set_identifier.clone(),
                    failover: spec.failover,
                    ips: values,
                    health_check_id: self.id(check, out, "global")?,
                };
                let set = super::failover::failover_set(name, &target, *ttl_s)?;
                self.change_record(&zone, ChangeAction::Upsert, set, name).await?;
                Ok(None)
            }
            DeleteRecord { zone_id, record } => {
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
                let set = b
                    .set_resource_records(Some(
                        record.ips.iter().map(|v| ResourceRecord::builder().value(v).build().expect("value set")).collect(),
                    ))
                    .build()
                    .map_err(|e| other(&record.name, "global", e.to_string()))?;
                self.change_record(zone_id, ChangeAction::Delete, set, &record.name).await?;
                Ok(None)
            }
            DeleteCheck { key, id } => {
                let r = self.r53.delete_health_check().health_check_id(id).send().await;
                ignore_missing(r.map(|_| ()).map_err(|e| self.err("DeleteHealthCheck", key, "global", e)))
            }
            DeleteZone { id, name } => {
                let r = self.r53.delete_hosted_zone().id(id).send().await;
                ignore_missing(r.map(|_| ()).map_err(|e| self.err("DeleteHostedZone", name, "global", e)))
            }
            TerminateInstances { region, ids, .. } => {
                let r = self.ec2(region)?.terminate_instances().set_instance_ids(Some(ids.clone())).send().await;
                ignore_missing(r.map(|_| ()).map_err(|e| self.err("TerminateInstances", &ids.join(","), region, e)))?;
                self.wait_instances(region, ids, &["terminated"]).await?;
                Ok(None)
            }
            DeletePeering { region, id } => {
                let r = self.ec2(region)?.delete_vpc_peering_connection().vpc_peering_connection_id(id).send().await;
                ignore_missing(r.map(|_| ()).map_err(|e| self.err("DeleteVpcPeeringConnection", id, region, e)))
            }
            DeleteRouteTable { region, id, associations } => {
                let c = self.ec2(region)?;
                for a in associations {
                    let r = c.disassociate_route_table().association_id(a).send().await;
                    ignore_missing(r.map(|_| ()).map_err(|e| self.err("DisassociateRouteTable", a, region, e)))?;
                }
                let r = c.delete_route_table().route_table_id(id).send().await;
                ignore_missing(r.map(|_| ()).map_err(|e| self.err("DeleteRouteTable", id, region, e)))
            }
            DeleteInternetGateway { region, id, attached_vpc } => {
                let c = self.ec2(region)?;
                if let Some(v) = attached_vpc {
                    let r = c.detach_internet_gateway().internet_gateway_id(id).vpc_id(v).send().await;
                    ignore_missing(r.map(|_| ()).map_err(|e| self.err("DetachInternetGateway", id, region, e)))?;
                }
                let r = c.delete_internet_gateway().internet_gateway_id(id).send().await;
                ignore_missing(r.map(|_| ()).map_err(|e| self.err("DeleteInternetGateway", id, region, e)))
            }
            DeleteSecurityGroup { region, id, key } => {
                let r = self.ec2(region)?.delete_security_group().group_id(id).send().await;
                ignore_missing(r.map(|_| ()).map_err(|e| self.err("DeleteSecurityGroup", &format!("{key} ({id})"), region, e)))
            }
            DeleteSubnet { region, id, key } => {
                let r = self.ec2(region)?.delete_subnet().subnet_id(id).send().await;
                ignore_missing(r.map(|_| ()).map_err(|e| self.err("DeleteSubnet", &format!("{key} ({id})"), region, e)))
            }
            DeleteVpc { region, id, key } => {
                let r = self.ec2(region)?.delete_vpc().vpc_id(id).send().await;
                ignore_missing(r.map(|_| ()).map_err(|e| self.err("DeleteVpc", &format!("{key} ({id})"), region, e)))
            }
            DeleteKeyPair { region, name, .. } => {
                // By name: unique per region, and understood by every EC2 implementation.
                let r = self.ec2(region)?.delete_key_pair().key_name(name).send().await;
                ignore_missing(r.map(|_| ()).map_err(|e| self.err("DeleteKeyPair", name, region, e)))
            }
        }
    }

    async fn create_check(&self, key: &str, cfg: HealthCheckConfig) -> Result<Option<Created>, CloudError> {
        let r = self
            .r53
            .create_health_check()
            .caller_reference(format!("{}{key}:{}", self.caller_prefix(), self.run_id))
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
        self.r53
            .change_tags_for_resource()
            .resource_type(rt)
            .resource_id(id)
            .add_tags(t(TAG_PROJECT, &self.project))
            .add_tags(t(TAG_KEY, key))
            .send()
            .await
            .map_err(|e| self.err("ChangeTagsForResource", key, "global", e))?;
        Ok(())
    }

    async fn change_record(&self, zone: &str, action: ChangeAction, set: ResourceRecordSet, name: &str) -> Result<(), CloudError> {
        let change = Change::builder().action(action).resource_record_set(set).build().map_err(|e| other(name, "global", e.to_string()))?;
        let batch = ChangeBatch::builder().changes(change).build().map_err(|e| other(name, "global", e.to_string()))?;
        self.r53
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| self.err("ChangeResourceRecordSets", name, "global", e))?;
        Ok(())
    }

    /// Waits (bounded) until every instance in `ids` is in one of `states`.
    pub async fn wait_instances(&self, region: &str, ids: &[String], states: &[&str]) -> Result<(), CloudError> {
        let c = self.ec2(region)?;
        let deadline = std::time::Instant::now() + Duration::from_millis(INSTANCE_WAIT_MS_MAX);
        loop {
            let r = c
                .describe_instances()
                .filters(Filter::builder().name("instance-id").set_values(Some(ids.to_vec())).build())
                .send()
                .await
                .map_err(|e| self.err("DescribeInstances", &ids.join(","), region, e))?;
            let pending: Vec<String> = r
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter(|i| !states.contains(&i.state().and_then(|s| s.name()).map(|n| n.as_str()).unwrap_or("")))
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(other(&pending.join(","), region, format!("not {} after {} s", states.join("/"), INSTANCE_WAIT_MS_MAX / 1000)));
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }
}

fn perm(r: &Rule) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(i32::from(r.port))
        .to_port(i32::from(r.port))
        .ip_ranges(IpRange::builder().cidr_ip(&r.cidr).build())
        .build()
}

/// Deleting what is already gone is success: it makes `down` re-runnable.
fn ignore_missing(r: Result<(), CloudError>) -> Result<Option<Created>, CloudError> {
    match r {
        Err(CloudError::Api { code, .. }) if code.contains("NotFound") || code.starts_with("NoSuch") => Ok(None),
        r => r.map(|_| None),
    }
}
