//! Reads what exists: every EC2 resource tagged with the project in each region, the hosted
//! zone, the project's health checks (by CallerReference prefix) and its failover records.

use aws_sdk_ec2::types::Filter;

use super::{tags, Cloud, CloudError};
use crate::config::{Ami, Config};
use crate::model::*;

/// EC2's ids (`vpc-…`, `i-…`, ...): only EC2's listings lag its creates.
fn is_ec2_id(id: &str) -> bool {
    ["vpc-", "subnet-", "sg-", "igw-", "rtb-", "i-", "pcx-", "key-", "nat-", "eipalloc-", "vol-"].iter().any(|p| id.starts_with(p))
}

/// How long a run waits for what it created to show in listings.
const LISTED_WAIT_MS_MAX: u64 = 60_000;

impl Cloud {
    pub async fn observe(&self, cfg: &Config) -> Result<Observed, CloudError> {
        let (o, mut unreachable) = self.observe_partial(cfg).await?;
        match unreachable.pop() {
            Some((_, e)) => Err(e),
            None => Ok(o),
        }
    }

    /// [`Cloud::observe`] once every id in `created` is listed. EC2's tag-filtered listings
    /// show a new resource only some time after its create; a run that ended before would let
    /// the next look miss it and create it twice. Bounded by [`LISTED_WAIT_MS_MAX`].
    pub async fn observe_listing(&self, cfg: &Config, created: &[String]) -> Result<Observed, CloudError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(LISTED_WAIT_MS_MAX);
        loop {
            let o = self.observe(cfg).await?;
            let listed = o.ids();
            let unlisted: Vec<&String> = created.iter().filter(|id| is_ec2_id(id) && !listed.contains(id.as_str())).collect();
            if unlisted.is_empty() {
                return Ok(o);
            }
            if std::time::Instant::now() > deadline {
                let ids = unlisted.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
                return Err(CloudError::Other {
                    resource: ids,
                    region: "any".into(),
                    message: format!("created, but not listed after {} s: run `provision up` again later", LISTED_WAIT_MS_MAX / 1000),
                });
            }
            tokio::time::sleep(super::apply::backoff(2)).await;
        }
    }

    /// Like [`Cloud::observe`], but what does not answer is left empty and named in the second
    /// value instead of failing the whole observation: `failover` must work when a region, or
    /// Route53's control plane, is dead. Names: the region for its EC2 API, `route53`, and
    /// `ssm <region>` for a region's Parameter Store (where the failover state is kept).
    pub async fn observe_partial(&self, cfg: &Config) -> Result<(Observed, Vec<(String, CloudError)>), CloudError> {
        let t0 = std::time::Instant::now();
        let region_views = futures::future::join_all(cfg.regions.iter().map(|r| async move {
            let v = tokio::try_join!(self.observe_region(&r.name, &r.ami), self.observe_peerings(&r.name));
            (r.name.clone(), v)
        }));
        let global = async {
            let (zone, checks) = tokio::try_join!(self.observe_zone(&cfg.dns.zone), self.observe_checks())?;
            let (records, marks) = match &zone {
                Some(z) => {
                    let (r, m) = tokio::try_join!(self.observe_records(&z.id, &cfg.dns.api_record), self.zone_marks(&z.id))?;
                    (r, Some(m))
                }
                None => (vec![], None),
            };
            Ok::<_, CloudError>((zone, checks, records, marks))
        };
        let (region_views, global) = tokio::join!(region_views, global);
        let mut regions = Vec::new();
        let mut peerings = Vec::new();
        let mut unreachable = Vec::new();
        for (name, v) in region_views {
            match v {
                Ok((r, p)) => {
                    regions.push(r);
                    peerings.push(p);
                }
                Err(e) => {
                    regions.push(ObservedRegion { name: name.clone(), ..Default::default() });
                    unreachable.push((name, e));
                }
            }
        }
        let (zone, checks, records, zone_marks) = match global {
            Ok((zone, checks, records, marks)) => (zone, checks, records, marks.map(Ok)),
            Err(e) => {
                unreachable.push(("route53".to_string(), e.clone()));
                (None, vec![], vec![], Some(Err(e)))
            }
        };
        let (marks, mark_places, stores_dead) = self.observe_marks(cfg, zone_marks).await;
        unreachable.extend(stores_dead);
        let mut all: Vec<Found<PeeringAttrs>> = Vec::new();
        for p in peerings.into_iter().flatten() {
            if !all.iter().any(|q| q.id == p.id) {
                all.push(p);
            }
        }
        tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, endpoint = %self.endpoint, "observed the cloud");
        Ok((Observed { regions, peerings: all, zone, checks, records, marks, mark_places }, unreachable))
    }

    async fn observe_region(&self, region: &str, ami: &Ami) -> Result<ObservedRegion, CloudError> {
        let c = self.ec2(region)?;
        let f = || tags::project_filter(&self.project);
        let e = |op: &str| op.to_string();
        let (vpcs, subnets, igws, rts, sgs, kps, inst, image, (nat_gateways, addresses)) = tokio::try_join!(
            async { c.describe_vpcs().filters(f()).send().await.map_err(|x| self.err(&e("DescribeVpcs"), "VPCs", region, x)) },
            async { c.describe_subnets().filters(f()).send().await.map_err(|x| self.err("DescribeSubnets", "subnets", region, x)) },
            async {
                c.describe_internet_gateways()
                    .filters(f())
                    .send()
                    .await
                    .map_err(|x| self.err("DescribeInternetGateways", "internet gateways", region, x))
            },
            async {
                c.describe_route_tables().filters(f()).send().await.map_err(|x| self.err("DescribeRouteTables", "route tables", region, x))
            },
            async {
                c.describe_security_groups()
                    .filters(f())
                    .send()
                    .await
                    .map_err(|x| self.err("DescribeSecurityGroups", "security groups", region, x))
            },
            async { c.describe_key_pairs().filters(f()).send().await.map_err(|x| self.err("DescribeKeyPairs", "key pairs", region, x)) },
            self.observe_instances(region),
            self.resolve_ami(region, ami),
            self.observe_egress(region),
        )?;
        let (leaving, instances) = inst.into_iter().partition(|i| i.attrs.state == "shutting-down");
        let mut o = ObservedRegion { name: region.to_string(), image, instances, leaving, nat_gateways, addresses, ..Default::default() };
        for v in vpcs.vpcs() {
            o.vpcs.push(Found {
                key: tags::key(v.tags()),
                id: v.vpc_id().unwrap_or_default().into(),
                attrs: VpcAttrs { cidr: v.cidr_block().unwrap_or_default().into() },
            });
        }
        for s in subnets.subnets() {
            o.subnets.push(Found {
                key: tags::key(s.tags()),
                id: s.subnet_id().unwrap_or_default().into(),
                attrs: SubnetAttrs {
                    cidr: s.cidr_block().unwrap_or_default().into(),
                    az: s.availability_zone().unwrap_or_default().into(),
                    vpc: s.vpc_id().unwrap_or_default().into(),
                },
            });
        }
        for g in igws.internet_gateways() {
            let attached_vpc = g.attachments().iter().find_map(|a| a.vpc_id().map(str::to_string));
            o.igws.push(Found {
                key: tags::key(g.tags()),
                id: g.internet_gateway_id().unwrap_or_default().into(),
                attrs: IgwAttrs { attached_vpc },
            });
        }
        for t in rts.route_tables() {
            let mut attrs = RouteTableAttrs { vpc: t.vpc_id().unwrap_or_default().into(), ..Default::default() };
            for r in t.routes() {
                let target = r.gateway_id().or(r.vpc_peering_connection_id()).or(r.nat_gateway_id());
                if let (Some(d), Some(t)) = (r.destination_cidr_block(), target) {
                    if t != "local" {
                        attrs.routes.insert(d.into(), t.into());
                    }
                }
            }
            for a in t.associations() {
                if let (Some(id), Some(sn)) = (a.route_table_association_id(), a.subnet_id()) {
                    attrs.associations.push((id.into(), sn.into()));
                }
            }
            o.route_tables.push(Found { key: tags::key(t.tags()), id: t.route_table_id().unwrap_or_default().into(), attrs });
        }
        for g in sgs.security_groups() {
            let mut rules = Vec::new();
            for p in g.ip_permissions() {
                let proto = match (p.ip_protocol(), p.from_port(), p.to_port()) {
                    (Some("tcp"), Some(from), Some(to)) if from == to => u16::try_from(from).ok().map(Proto::Tcp),
                    (Some("icmp"), Some(t), Some(c)) if (t, c) == ICMP_FRAG_NEEDED => Some(Proto::IcmpFragNeeded),
                    _ => None,
                };
                let Some(proto) = proto else { continue };
                for r in p.ip_ranges() {
                    rules.push(Rule { proto, cidr: r.cidr_ip().unwrap_or_default().into() });
                }
            }
            rules.sort();
            o.sgs.push(Found {
                key: tags::key(g.tags()),
                id: g.group_id().unwrap_or_default().into(),
                attrs: SgAttrs { rules, vpc: g.vpc_id().unwrap_or_default().into() },
            });
        }
        for k in kps.key_pairs() {
            o.key_pairs.push(Found {
                key: tags::key(k.tags()),
                id: k.key_pair_id().or(k.key_name()).unwrap_or_default().into(),
                attrs: KeyPairAttrs { name: k.key_name().unwrap_or_default().into() },
            });
        }
        Ok(o)
    }

    /// The project's NAT gateways (not yet deleted) and Elastic IPs.
    async fn observe_egress(&self, region: &str) -> Result<(Vec<Found<NatAttrs>>, Vec<Found<AddressAttrs>>), CloudError> {
        let c = self.ec2(region)?;
        let (nats, eips) = tokio::try_join!(
            async {
                c.describe_nat_gateways()
                    .filter(tags::project_filter(&self.project))
                    .send()
                    .await
                    .map_err(|x| self.err("DescribeNatGateways", "NAT gateways", region, x))
            },
            async {
                c.describe_addresses()
                    .filters(tags::project_filter(&self.project))
                    .send()
                    .await
                    .map_err(|x| self.err("DescribeAddresses", "Elastic IPs", region, x))
            },
        )?;
        // moto ignores the tag filter for NAT gateways (AWS honours it): check the tag here too,
        // or `down` would take another project's NAT gateway for an unwanted one of ours.
        let ours = |t: &[aws_sdk_ec2::types::Tag]| tags::get(t, TAG_PROJECT) == Some(self.project.as_str());
        let nat_gateways = nats
            .nat_gateways()
            .iter()
            .filter(|n| ours(n.tags()))
            .map(|n| Found {
                key: tags::key(n.tags()),
                id: n.nat_gateway_id().unwrap_or_default().into(),
                attrs: NatAttrs {
                    state: n.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
                    subnet: n.subnet_id().unwrap_or_default().into(),
                },
            })
            .filter(|f| f.attrs.state != "deleted")
            .collect();
        let addresses = eips
            .addresses()
            .iter()
            .filter(|a| ours(a.tags()))
            .map(|a| Found {
                key: tags::key(a.tags()),
                id: a.allocation_id().unwrap_or_default().into(),
                attrs: AddressAttrs {
                    public_ip: a.public_ip().unwrap_or_default().into(),
                    association: a.association_id().map(str::to_string),
                },
            })
            .collect();
        Ok((nat_gateways, addresses))
    }

    pub(crate) async fn observe_instances(&self, region: &str) -> Result<Vec<Found<InstanceAttrs>>, CloudError> {
        let c = self.ec2(region)?;
        let states = Filter::builder()
            .name("instance-state-name")
            .set_values(Some(["pending", "running", "shutting-down", "stopping", "stopped"].map(String::from).to_vec()))
            .build();
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        for _page in 0..100 {
            let resp = c
                .describe_instances()
                .filters(tags::project_filter(&self.project))
                .filters(states.clone())
                .set_next_token(next.clone())
                .send()
                .await
                .map_err(|x| self.err("DescribeInstances", "instances", region, x))?;
            for i in resp.reservations().iter().flat_map(|r| r.instances()) {
                out.push(Found {
                    key: tags::key(i.tags()),
                    id: i.instance_id().unwrap_or_default().into(),
                    attrs: InstanceAttrs {
                        state: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default(),
                        instance_type: i.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                        az: i.placement().and_then(|p| p.availability_zone()).unwrap_or_default().into(),
                        private_ip: i.private_ip_address().map(str::to_string),
                        public_ip: i.public_ip_address().map(str::to_string),
                        vpc: i.vpc_id().unwrap_or_default().into(),
                    },
                });
            }
            next = resp.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn resolve_ami(&self, region: &str, ami: &Ami) -> Result<Option<Image>, CloudError> {
        let c = self.ec2(region)?;
        let req = match ami {
            Ami::Id { id } => c.describe_images().image_ids(id),
            Ami::Filter { name, owner } => c.describe_images().owners(owner).filters(Filter::builder().name("name").values(name).build()),
        };
        match req.send().await {
            Ok(r) => Ok(r.images().iter().max_by(|a, b| a.creation_date().cmp(&b.creation_date())).and_then(|i| {
                Some(Image {
                    id: i.image_id()?.to_string(),
                    name: i.name().unwrap_or_default().to_string(),
                    architecture: i.architecture().map(|a| a.as_str().to_string()).unwrap_or_default(),
                })
            })),
            Err(e) => {
                let err = self.err("DescribeImages", "AMI", region, e);
                match err {
                    CloudError::Api { ref code, .. } if code.starts_with("InvalidAMIID") => Ok(None),
                    other => Err(other),
                }
            }
        }
    }

    async fn observe_peerings(&self, region: &str) -> Result<Vec<Found<PeeringAttrs>>, CloudError> {
        let c = self.ec2(region)?;
        let r = c
            .describe_vpc_peering_connections()
            .filters(tags::project_filter(&self.project))
            .send()
            .await
            .map_err(|x| self.err("DescribeVpcPeeringConnections", "VPC peerings", region, x))?;
        const GONE: [&str; 4] = ["deleted", "rejected", "failed", "expired"];
        Ok(r.vpc_peering_connections()
            .iter()
            .filter(|p| !GONE.contains(&p.status().and_then(|s| s.code()).map(|c| c.as_str()).unwrap_or("")))
            // LocalStack ignores the tag filter for peerings: check the tag here too.
            .filter(|p| tags::get(p.tags(), TAG_PROJECT) == Some(self.project.as_str()))
            .map(|p| Found {
                key: tags::key(p.tags()),
                id: p.vpc_peering_connection_id().unwrap_or_default().into(),
                attrs: PeeringAttrs {
                    status: p.status().and_then(|s| s.code()).map(|c| c.as_str().to_string()).unwrap_or_default(),
                    requester_vpc: p.requester_vpc_info().and_then(|v| v.vpc_id()).unwrap_or_default().into(),
                    accepter_vpc: p.accepter_vpc_info().and_then(|v| v.vpc_id()).unwrap_or_default().into(),
                },
            })
            .collect())
    }

    pub(crate) async fn observe_zone(&self, zone: &str) -> Result<Option<ZoneFound>, CloudError> {
        let want = format!("{}.", zone.trim_end_matches('.'));
        let r = self
            .r53
            .list_hosted_zones_by_name()
            .dns_name(&want)
            .send()
            .await
            .map_err(|e| self.err("ListHostedZonesByName", &want, "global", e))?;
        let Some(z) = r.hosted_zones().iter().find(|z| z.name() == want) else { return Ok(None) };
        let ours = z.caller_reference().starts_with(&self.caller_prefix());
        Ok(Some(ZoneFound { id: strip_zone(z.id()), name: want, ours }))
    }

    async fn observe_checks(&self) -> Result<Vec<Found<CheckAttrs>>, CloudError> {
        let prefix = self.caller_prefix();
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        for _page in 0..100 {
            let r = self
                .r53
                .list_health_checks()
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| self.err("ListHealthChecks", "health checks", "global", e))?;
            for h in r.health_checks() {
                let Some(rest) = h.caller_reference().strip_prefix(&prefix) else { continue };
                let key = rest.rsplit_once(':').map(|(k, _)| k).unwrap_or(rest).to_string();
                let Some(c) = h.health_check_config() else { continue };
                let attrs = if c.r#type().as_str() == "CALCULATED" {
                    let mut children: Vec<String> = c.child_health_checks().to_vec();
                    children.sort();
                    CheckAttrs::Calculated { children, healthy_children_min: c.health_threshold().unwrap_or(1) }
                } else {
                    CheckAttrs::Http {
                        ip: c.ip_address().unwrap_or_default().into(),
                        port: c.port().unwrap_or(80) as u16,
                        path: c.resource_path().unwrap_or("/").into(),
                    }
                };
                out.push(Found { key, id: h.id().into(), attrs });
            }
            if !r.is_truncated() {
                break;
            }
            marker = r.next_marker().map(str::to_string);
        }
        let keys = self.check_key_tags(&out.iter().map(|c| c.id.clone()).collect::<Vec<_>>()).await?;
        for c in &mut out {
            c.key = match keys.get(&c.id) {
                Some(k) => k.clone(),
                // Whole keys contain '/'; a hash without a key tag is a check whose create was
                // interrupted before its tags: a key nothing wants, so the plan removes it.
                None if c.key.contains('/') => c.key.clone(),
                None => format!("untagged/check/{}", c.key),
            };
        }
        Ok(out)
    }

    /// The `provision:key` tag of each health check, read 10 at a time.
    async fn check_key_tags(&self, ids: &[String]) -> Result<std::collections::BTreeMap<String, String>, CloudError> {
        let mut keys = std::collections::BTreeMap::new();
        for chunk in ids.chunks(10) {
            let r = self
                .r53
                .list_tags_for_resources()
                .resource_type(aws_sdk_route53::types::TagResourceType::Healthcheck)
                .set_resource_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| self.err("ListTagsForResources", "health checks", "global", e))?;
            for set in r.resource_tag_sets() {
                let key = set.tags().iter().find(|t| t.key() == Some(TAG_KEY)).and_then(|t| t.value());
                if let (Some(id), Some(key)) = (set.resource_id(), key) {
                    keys.insert(id.to_string(), key.to_string());
                }
            }
        }
        Ok(keys)
    }

    pub(crate) async fn observe_records(&self, zone_id: &str, record: &str) -> Result<Vec<RecordFound>, CloudError> {
        let name = format!("{}.", record.trim_end_matches('.'));
        let r = self
            .r53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(&name)
            .send()
            .await
            .map_err(|e| self.err("ListResourceRecordSets", &name, "global", e))?;
        let prefix = format!("{}-", self.project);
        Ok(r.resource_record_sets()
            .iter()
            .filter(|s| s.name() == name && s.set_identifier().is_some_and(|i| i.starts_with(&prefix)))
            .map(|s| RecordFound {
                name: name.clone(),
                set_identifier: s.set_identifier().unwrap_or_default().into(),
                failover: s.failover().map(|f| f.as_str().to_string()),
                ips: s.resource_records().iter().map(|v| v.value().to_string()).collect(),
                health_check_id: s.health_check_id().map(str::to_string),
                ttl_s: s.ttl(),
            })
            .collect())
    }

    /// CallerReferences of this project's zone and health checks start with this.
    pub(crate) fn caller_prefix(&self) -> String {
        format!("provision:{}:", self.project)
    }
}

pub(crate) fn strip_zone(id: &str) -> String {
    id.trim_start_matches("/hostedzone/").to_string()
}
