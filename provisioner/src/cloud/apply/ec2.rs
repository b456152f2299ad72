//! The EC2 actions: network, security groups, key pairs, instances, peering, and their removal.

use std::time::Duration;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, ConnectivityType, DomainType, EbsBlockDevice, Filter, HttpTokensState, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceType, IpPermission, IpRange, ResourceType,
    TagSpecification, VolumeType,
};

use super::{already_done, is_not_yet_visible, other, Created, Outputs};
use crate::action::Action;
use crate::cloud::{tags, Cloud, CloudError};
use crate::model::*;

const INSTANCE_WAIT_MS_MAX: u64 = 300_000;
const POLL_MS: u64 = 250;
/// A new cross-region peering reaches `pending-acceptance` within seconds to a minute on AWS.
const PEERING_WAIT_MS_MAX: u64 = 120_000;
/// A NAT gateway becomes available, or is deleted, within a few minutes on AWS.
const NAT_WAIT_MS_MAX: u64 = 600_000;

impl Cloud {
    /// The tags a resource is born with: the project, its logical key and its name.
    fn born_with(&self, rt: ResourceType, key: &str, name: &str) -> TagSpecification {
        tags::spec(rt, &self.project, key, name, &[])
    }

    pub(super) async fn apply_ec2(&self, a: &Action, out: &Outputs) -> Result<Option<Created>, CloudError> {
        use Action::*;
        match a {
            CreateVpc { region, key, cidr } => {
                let call = self.ec2(region)?.create_vpc().cidr_block(cidr).tag_specifications(self.born_with(ResourceType::Vpc, key, key));
                self.create("CreateVpc", key, region, || call.clone().send(), |r| r.vpc().and_then(|v| v.vpc_id())).await
            }
            CreateSubnet { region, key, vpc, cidr, az } => {
                let call = self
                    .ec2(region)?
                    .create_subnet()
                    .vpc_id(self.id(vpc, out, region)?)
                    .cidr_block(cidr)
                    .availability_zone(az)
                    .tag_specifications(self.born_with(ResourceType::Subnet, key, key));
                self.create("CreateSubnet", key, region, || call.clone().send(), |r| r.subnet().and_then(|s| s.subnet_id())).await
            }
            CreateInternetGateway { region, key } => {
                let call =
                    self.ec2(region)?.create_internet_gateway().tag_specifications(self.born_with(ResourceType::InternetGateway, key, key));
                self.create(
                    "CreateInternetGateway",
                    key,
                    region,
                    || call.clone().send(),
                    |r| r.internet_gateway().and_then(|g| g.internet_gateway_id()),
                )
                .await
            }
            AttachInternetGateway { region, igw, vpc } => {
                let igw = self.id(igw, out, region)?;
                let call = self.ec2(region)?.attach_internet_gateway().internet_gateway_id(&igw).vpc_id(self.id(vpc, out, region)?);
                // A re-run after an interrupted one may find it attached before the listing shows it.
                already_done(
                    self.call("AttachInternetGateway", &igw, region, || call.clone().send()).await,
                    &["Resource.AlreadyAssociated"],
                )
            }
            CreateRouteTable { region, key, vpc } => {
                let call = self.ec2(region)?.create_route_table().vpc_id(self.id(vpc, out, region)?).tag_specifications(self.born_with(
                    ResourceType::RouteTable,
                    key,
                    key,
                ));
                self.create("CreateRouteTable", key, region, || call.clone().send(), |r| r.route_table().and_then(|t| t.route_table_id()))
                    .await
            }
            CreateRoute { region, route_table, cidr, target, replace } => {
                self.route(region, route_table, cidr, target, *replace, out).await
            }
            AssociateRouteTable { region, route_table, subnet } => {
                let rt = self.id(route_table, out, region)?;
                let call = self.ec2(region)?.associate_route_table().route_table_id(&rt).subnet_id(self.id(subnet, out, region)?);
                self.call("AssociateRouteTable", &rt, region, || call.clone().send()).await.map(|_| None)
            }
            AllocateAddress { region, key } => {
                let call = self.ec2(region)?.allocate_address().domain(DomainType::Vpc).tag_specifications(self.born_with(
                    ResourceType::ElasticIp,
                    key,
                    key,
                ));
                self.create("AllocateAddress", key, region, || call.clone().send(), |r| r.allocation_id()).await
            }
            CreateNatGateway { region, key, subnet, allocation } => {
                let call = self
                    .ec2(region)?
                    .create_nat_gateway()
                    .subnet_id(self.id(subnet, out, region)?)
                    .allocation_id(self.id(allocation, out, region)?)
                    .connectivity_type(ConnectivityType::Public)
                    .client_token(format!("{}-{}", key.replace('/', "-"), self.run_id))
                    .tag_specifications(self.born_with(ResourceType::Natgateway, key, key));
                let made = self
                    .create("CreateNatGateway", key, region, || call.clone().send(), |r| r.nat_gateway().and_then(|n| n.nat_gateway_id()))
                    .await?;
                let id = made.as_ref().map(|c| c.id.clone()).unwrap_or_default();
                self.wait_nat(region, &id, "available").await?;
                Ok(made)
            }
            CreateSecurityGroup { region, key, name, vpc } => {
                let call = self
                    .ec2(region)?
                    .create_security_group()
                    .group_name(name)
                    .description(format!("{}: {key}", self.project))
                    .vpc_id(self.id(vpc, out, region)?)
                    .tag_specifications(self.born_with(ResourceType::SecurityGroup, key, name));
                self.create("CreateSecurityGroup", key, region, || call.clone().send(), |r| r.group_id()).await
            }
            AuthorizeIngress { region, sg, rules } => {
                let sg = self.id(sg, out, region)?;
                let perms: Vec<IpPermission> = rules.iter().map(perm).collect();
                let call = self.ec2(region)?.authorize_security_group_ingress().group_id(&sg).set_ip_permissions(Some(perms));
                already_done(
                    self.call("AuthorizeSecurityGroupIngress", &sg, region, || call.clone().send()).await,
                    &["InvalidPermission.Duplicate"],
                )
            }
            RevokeIngress { region, sg, rules } => {
                let perms: Vec<IpPermission> = rules.iter().map(perm).collect();
                let call = self.ec2(region)?.revoke_security_group_ingress().group_id(sg).set_ip_permissions(Some(perms));
                self.call("RevokeSecurityGroupIngress", sg, region, || call.clone().send()).await.map(|_| None)
            }
            ImportKeyPair { region, key, name, public_key } => {
                let call = self
                    .ec2(region)?
                    .import_key_pair()
                    .key_name(name)
                    .public_key_material(aws_smithy_types::Blob::new(public_key.as_bytes()))
                    .tag_specifications(self.born_with(ResourceType::KeyPair, key, name));
                self.create("ImportKeyPair", name, region, || call.clone().send(), |r| r.key_pair_id().or(r.key_name())).await
            }
            RunInstance { region, region_role, host, ami, subnet, sg, key_name } => {
                self.run_instance(region, region_role, host, ami, self.id(subnet, out, region)?, self.id(sg, out, region)?, key_name).await
            }
            StartInstances { region, ids } => {
                let call = self.ec2(region)?.start_instances().set_instance_ids(Some(ids.clone()));
                self.call("StartInstances", &ids.join(","), region, || call.clone().send()).await.map(|_| None)
            }
            CreatePeering { region, key, vpc, peer_region, peer_vpc } => {
                let call = self
                    .ec2(region)?
                    .create_vpc_peering_connection()
                    .vpc_id(self.id(vpc, out, region)?)
                    .peer_vpc_id(self.id(peer_vpc, out, peer_region)?)
                    .peer_region(peer_region)
                    .tag_specifications(self.born_with(ResourceType::VpcPeeringConnection, key, key));
                self.create(
                    "CreateVpcPeeringConnection",
                    key,
                    region,
                    || call.clone().send(),
                    |r| r.vpc_peering_connection().and_then(|c| c.vpc_peering_connection_id()),
                )
                .await
            }
            AcceptPeering { region, peering } => {
                let id = self.id(peering, out, region)?;
                if self.wait_peering_acceptable(region, &id).await? == "active" {
                    return Ok(None);
                }
                let call = self.ec2(region)?.accept_vpc_peering_connection().vpc_peering_connection_id(&id);
                self.call("AcceptVpcPeeringConnection", &id, region, || call.clone().send()).await.map(|_| None)
            }
            _ => self.remove_ec2(a).await,
        }
    }

    async fn remove_ec2(&self, a: &Action) -> Result<Option<Created>, CloudError> {
        use Action::*;
        match a {
            TerminateInstances { region, ids, .. } => {
                let call = self.ec2(region)?.terminate_instances().set_instance_ids(Some(ids.clone()));
                self.delete("TerminateInstances", &ids.join(","), region, || call.clone().send()).await?;
                self.wait_instances(region, ids, &["terminated"]).await?;
                Ok(None)
            }
            DeletePeering { region, id } => {
                let call = self.ec2(region)?.delete_vpc_peering_connection().vpc_peering_connection_id(id);
                self.delete("DeleteVpcPeeringConnection", id, region, || call.clone().send()).await
            }
            DeleteRouteTable { region, id, associations } => {
                let c = self.ec2(region)?;
                for a in associations {
                    self.delete("DisassociateRouteTable", a, region, || c.disassociate_route_table().association_id(a).send()).await?;
                }
                self.delete("DeleteRouteTable", id, region, || c.delete_route_table().route_table_id(id).send()).await
            }
            DeleteInternetGateway { region, id, attached_vpc } => {
                let c = self.ec2(region)?;
                if let Some(v) = attached_vpc {
                    let call = c.detach_internet_gateway().internet_gateway_id(id).vpc_id(v);
                    self.delete("DetachInternetGateway", id, region, || call.clone().send()).await?;
                }
                self.delete("DeleteInternetGateway", id, region, || c.delete_internet_gateway().internet_gateway_id(id).send()).await
            }
            DeleteNatGateway { region, id, key } => {
                let call = self.ec2(region)?.delete_nat_gateway().nat_gateway_id(id);
                self.delete("DeleteNatGateway", &format!("{key} ({id})"), region, || call.clone().send()).await?;
                self.wait_nat(region, id, "deleted").await.map(|_| None)
            }
            ReleaseAddress { region, id, key } => {
                let call = self.ec2(region)?.release_address().allocation_id(id);
                self.delete("ReleaseAddress", &format!("{key} ({id})"), region, || call.clone().send()).await
            }
            DeleteSecurityGroup { region, id, key } => {
                let call = self.ec2(region)?.delete_security_group().group_id(id);
                self.delete("DeleteSecurityGroup", &format!("{key} ({id})"), region, || call.clone().send()).await
            }
            DeleteSubnet { region, id, key } => {
                let call = self.ec2(region)?.delete_subnet().subnet_id(id);
                self.delete("DeleteSubnet", &format!("{key} ({id})"), region, || call.clone().send()).await
            }
            DeleteVpc { region, id, key } => {
                let c = self.ec2(region)?;
                self.delete("DeleteVpc", &format!("{key} ({id})"), region, || c.delete_vpc().vpc_id(id).send()).await
            }
            DeleteKeyPair { region, name, .. } => {
                // By name: unique per region, and understood by every EC2 implementation.
                let c = self.ec2(region)?;
                self.delete("DeleteKeyPair", name, region, || c.delete_key_pair().key_name(name).send()).await
            }
            other_action => unreachable!("not an EC2 action: {}", other_action.describe()),
        }
    }

    async fn route(
        &self,
        region: &str,
        route_table: &crate::action::Ref,
        cidr: &str,
        target: &crate::action::Ref,
        replace: bool,
        out: &Outputs,
    ) -> Result<Option<Created>, CloudError> {
        let rt = self.id(route_table, out, region)?;
        let t = self.id(target, out, region)?;
        let c = self.ec2(region)?;
        let what = format!("{rt} {cidr}");
        let res = if replace {
            let b = c.replace_route().route_table_id(&rt).destination_cidr_block(cidr);
            let b = match target_kind(&t) {
                RouteTarget::Peering => b.vpc_peering_connection_id(&t),
                RouteTarget::Nat => b.nat_gateway_id(&t),
                RouteTarget::Gateway => b.gateway_id(&t),
            };
            self.call("ReplaceRoute", &what, region, || b.clone().send()).await
        } else {
            let b = c.create_route().route_table_id(&rt).destination_cidr_block(cidr);
            let b = match target_kind(&t) {
                RouteTarget::Peering => b.vpc_peering_connection_id(&t),
                RouteTarget::Nat => b.nat_gateway_id(&t),
                RouteTarget::Gateway => b.gateway_id(&t),
            };
            self.call("CreateRoute", &what, region, || b.clone().send()).await
        };
        already_done(res, &["RouteAlreadyExists"])
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_instance(
        &self,
        region: &str,
        region_role: &str,
        host: &HostSpec,
        ami: &str,
        subnet: String,
        sg: String,
        key_name: &str,
    ) -> Result<Option<Created>, CloudError> {
        let extra = [
            (TAG_REGION_ROLE, region_role.to_string()),
            (TAG_ROLE, host.role.clone()),
            (TAG_MODULES, host.modules.join(",")),
            (TAG_INDEX, host.index.to_string()),
            (TAG_GATEWAY, host.gateway.to_string()),
            (TAG_DATABASE, host.database.to_string()),
        ];
        let mut specs = vec![tags::spec(ResourceType::Instance, &self.project, &host.key, &host.name, &extra)];
        if host.data_volume_gib.is_some() {
            // The data volume carries the project's tags too (it goes with its instance).
            specs.push(tags::spec(ResourceType::Volume, &self.project, &format!("{}/data", host.key), &host.name, &extra));
        }
        let b = self
            .ec2(region)?
            .run_instances()
            .image_id(ami)
            .instance_type(InstanceType::from(host.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .key_name(key_name)
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(subnet)
                    .groups(sg)
                    .associate_public_ip_address(host.public_ip)
                    .delete_on_termination(true)
                    .build(),
            )
            .metadata_options(imds_v2_only())
            .user_data(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, crate::userdata::user_data(&self.project, host)))
            .set_block_device_mappings(host.data_volume_gib.map(|gib| vec![data_volume(gib)]))
            .client_token(format!("{}-{}", host.key.replace('/', "-"), self.run_id))
            .set_tag_specifications(Some(specs));
        let r = self.eventually("RunInstances", &host.key, region, || b.clone().send()).await?;
        let i = r.instances().first().ok_or_else(|| other(&host.key, region, "RunInstances returned no instance"))?;
        let made = Created {
            id: i.instance_id().unwrap_or_default().into(),
            private_ip: i.private_ip_address().map(str::to_string),
            public_ip: i.public_ip_address().map(str::to_string),
        };
        if made.private_ip.is_some() && (made.public_ip.is_some() || !host.public_ip) {
            return Ok(Some(made));
        }
        // The answer describes a pending instance: on AWS its public address (and at times its
        // private one) shows only in a later DescribeInstances.
        self.read_back_addresses(region, made, host.public_ip).await.map(Some)
    }

    /// Describes the instance until it shows a private address, and a public one when it asks
    /// for one (bounded by [`INSTANCE_WAIT_MS_MAX`]).
    async fn read_back_addresses(&self, region: &str, mut made: Created, public: bool) -> Result<Created, CloudError> {
        let c = self.ec2(region)?;
        let deadline = std::time::Instant::now() + Duration::from_millis(INSTANCE_WAIT_MS_MAX);
        loop {
            let call = c.describe_instances().instance_ids(&made.id);
            let r = self.eventually("DescribeInstances", &made.id, region, || call.clone().send()).await?;
            if let Some(i) = r.reservations().iter().flat_map(|r| r.instances()).next() {
                made.private_ip = i.private_ip_address().map(str::to_string).or(made.private_ip);
                made.public_ip = i.public_ip_address().map(str::to_string).or(made.public_ip);
            }
            if made.private_ip.is_some() && (made.public_ip.is_some() || !public) {
                return Ok(made);
            }
            if std::time::Instant::now() > deadline {
                return Err(other(&made.id, region, format!("no public address after {} s", INSTANCE_WAIT_MS_MAX / 1000)));
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS * 4)).await;
        }
    }

    /// Waits (bounded) until the NAT gateway is `state` (`available`, or `deleted`: then not
    /// being listed counts too). A NAT gateway that fails is an error naming AWS's reason.
    async fn wait_nat(&self, region: &str, id: &str, state: &str) -> Result<(), CloudError> {
        let c = self.ec2(region)?;
        let deadline = std::time::Instant::now() + Duration::from_millis(NAT_WAIT_MS_MAX);
        loop {
            // By filter, and the answer searched for the id: moto ignores `NatGatewayId.N`.
            let call = c.describe_nat_gateways().filter(Filter::builder().name("nat-gateway-id").values(id).build());
            let seen = match self.eventually("DescribeNatGateways", id, region, || call.clone().send()).await {
                Ok(r) => r
                    .nat_gateways()
                    .iter()
                    .find(|n| n.nat_gateway_id() == Some(id))
                    .map(|n| (n.state().map(|s| s.as_str().to_string()).unwrap_or_default(), n.failure_message().map(str::to_string))),
                Err(CloudError::Api { code, .. }) if state == "deleted" && is_not_yet_visible(&code) => None,
                Err(e) => return Err(e),
            };
            match seen {
                None if state == "deleted" => return Ok(()),
                Some((s, _)) if s == state => return Ok(()),
                Some((s, why)) if s == "failed" && state != "deleted" => {
                    return Err(other(id, region, format!("NAT gateway failed: {}", why.unwrap_or_default())))
                }
                _ => {}
            }
            if std::time::Instant::now() > deadline {
                return Err(other(id, region, format!("NAT gateway not {state} after {} s", NAT_WAIT_MS_MAX / 1000)));
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS * 8)).await;
        }
    }

    /// Waits (bounded) until the peering can be accepted, and returns its state
    /// (`pending-acceptance`, or `active` when an earlier run accepted it). A new cross-region
    /// peering is `initiating-request` for a while on AWS, and accepting it then fails.
    async fn wait_peering_acceptable(&self, region: &str, id: &str) -> Result<String, CloudError> {
        let c = self.ec2(region)?;
        let deadline = std::time::Instant::now() + Duration::from_millis(PEERING_WAIT_MS_MAX);
        loop {
            let call = c.describe_vpc_peering_connections().vpc_peering_connection_ids(id);
            let r = self.eventually("DescribeVpcPeeringConnections", id, region, || call.clone().send()).await?;
            let state = r.vpc_peering_connections().first().and_then(|p| p.status()).and_then(|s| s.code()).map(|c| c.as_str().to_string());
            match state.as_deref() {
                Some(s @ ("pending-acceptance" | "active")) => return Ok(s.to_string()),
                Some("initiating-request" | "provisioning") | None => {}
                Some(s) => {
                    return Err(other(
                        id,
                        region,
                        format!("peering is {s}: it cannot be accepted; run `provision up` again to request a new one"),
                    ))
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(other(id, region, format!("peering not pending-acceptance after {} s", PEERING_WAIT_MS_MAX / 1000)));
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Waits (bounded) until every instance in `ids` is in one of `states`. An instance the
    /// listing does not show yet (EC2 is eventually consistent) is still waited for, except
    /// when waiting for `terminated`: then not being listed means gone.
    pub async fn wait_instances(&self, region: &str, ids: &[String], states: &[&str]) -> Result<(), CloudError> {
        let c = self.ec2(region)?;
        let deadline = std::time::Instant::now() + Duration::from_millis(INSTANCE_WAIT_MS_MAX);
        let unlisted_is_done = states == ["terminated"];
        loop {
            let call = c.describe_instances().filters(Filter::builder().name("instance-id").set_values(Some(ids.to_vec())).build());
            let r = self.eventually("DescribeInstances", &ids.join(","), region, || call.clone().send()).await?;
            let seen: std::collections::HashMap<&str, &str> = r
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter_map(|i| Some((i.instance_id()?, i.state().and_then(|s| s.name()).map(|n| n.as_str()).unwrap_or(""))))
                .collect();
            let pending: Vec<String> = ids
                .iter()
                .filter(|id| match seen.get(id.as_str()) {
                    Some(state) => !states.contains(state),
                    None => !unlisted_is_done,
                })
                .cloned()
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

/// The device name a host's data volume is attached as (Nitro instances show it as an NVMe
/// disk; cloud-init finds it either way, see `templates/cloud-init.yaml`).
pub const DATA_VOLUME_DEVICE: &str = "/dev/sdf";

/// An encrypted gp3 volume of `gib` GiB (the account's default EBS key), deleted with its
/// instance: the host's data, off the root disk.
fn data_volume(gib: u32) -> BlockDeviceMapping {
    let ebs = EbsBlockDevice::builder()
        .volume_type(VolumeType::Gp3)
        .volume_size(i32::try_from(gib).unwrap_or(i32::MAX))
        .encrypted(true)
        .delete_on_termination(true)
        .build();
    BlockDeviceMapping::builder().device_name(DATA_VOLUME_DEVICE).ebs(ebs).build()
}

/// The instance metadata service answers only session-token (IMDSv2) requests, and only to
/// the instance itself (one hop): a request forged through a proxy on the host gets nothing.
fn imds_v2_only() -> InstanceMetadataOptionsRequest {
    InstanceMetadataOptionsRequest::builder()
        .http_endpoint(InstanceMetadataEndpointState::Enabled)
        .http_tokens(HttpTokensState::Required)
        .http_put_response_hop_limit(1)
        .build()
}

enum RouteTarget {
    Peering,
    Nat,
    Gateway,
}

/// What kind of target a route's id names (EC2 takes each in its own field).
fn target_kind(id: &str) -> RouteTarget {
    if id.starts_with("pcx-") {
        RouteTarget::Peering
    } else if id.starts_with("nat-") {
        RouteTarget::Nat
    } else {
        RouteTarget::Gateway
    }
}

fn perm(r: &Rule) -> IpPermission {
    let (proto, from, to) = match r.proto {
        Proto::Tcp(port) => ("tcp", i32::from(port), i32::from(port)),
        Proto::IcmpFragNeeded => ("icmp", ICMP_FRAG_NEEDED.0, ICMP_FRAG_NEEDED.1),
    };
    IpPermission::builder().ip_protocol(proto).from_port(from).to_port(to).ip_ranges(IpRange::builder().cidr_ip(&r.cidr).build()).build()
}
