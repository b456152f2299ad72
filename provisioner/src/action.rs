//! What a plan is made of: actions on cloud resources, ordered by `after` edges.
//! Plain data, rendered by `report` and applied by `cloud::apply`.

use serde::Serialize;

use crate::model::{Address, HostSpec, RecordFound, RecordSpec, Rule};

/// A resource: an id that exists, or the key of one that an earlier step of this plan creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ref {
    Id(String),
    Key(String),
}

/// An IP address: known now, or the given address of an instance an earlier step creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IpRef {
    Known(String),
    OfInstance { key: String, address: Address },
}

/// The scope of Route53's (global) actions.
pub const GLOBAL_SCOPE: &str = "global";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    CreateVpc {
        region: String,
        key: String,
        cidr: String,
    },
    CreateSubnet {
        region: String,
        key: String,
        vpc: Ref,
        cidr: String,
        az: String,
    },
    CreateInternetGateway {
        region: String,
        key: String,
    },
    AttachInternetGateway {
        region: String,
        igw: Ref,
        vpc: Ref,
    },
    CreateRouteTable {
        region: String,
        key: String,
        vpc: Ref,
    },
    CreateRoute {
        region: String,
        route_table: Ref,
        cidr: String,
        target: Ref,
        replace: bool,
    },
    AssociateRouteTable {
        region: String,
        route_table: Ref,
        subnet: Ref,
    },
    /// An Elastic IP (for the NAT gateway).
    AllocateAddress {
        region: String,
        key: String,
    },
    /// A public NAT gateway; the step waits until it is available.
    CreateNatGateway {
        region: String,
        key: String,
        subnet: Ref,
        allocation: Ref,
    },
    CreateSecurityGroup {
        region: String,
        key: String,
        name: String,
        vpc: Ref,
    },
    AuthorizeIngress {
        region: String,
        sg: Ref,
        rules: Vec<Rule>,
    },
    RevokeIngress {
        region: String,
        sg: String,
        rules: Vec<Rule>,
    },
    ImportKeyPair {
        region: String,
        key: String,
        name: String,
        #[serde(skip)]
        public_key: String,
    },
    RunInstance {
        region: String,
        region_role: String,
        host: HostSpec,
        ami: String,
        subnet: Ref,
        sg: Ref,
        key_name: String,
    },
    StartInstances {
        region: String,
        ids: Vec<String>,
    },
    CreatePeering {
        region: String,
        key: String,
        vpc: Ref,
        peer_region: String,
        peer_vpc: Ref,
    },
    AcceptPeering {
        region: String,
        peering: Ref,
    },
    CreateZone {
        name: String,
    },
    CreateHttpCheck {
        key: String,
        ip: IpRef,
        port: u16,
        path: String,
        request_interval_s: i32,
        failure_threshold: i32,
    },
    UpdateHttpCheck {
        key: String,
        id: String,
        ip: IpRef,
        port: u16,
        path: String,
    },
    CreateRegionCheck {
        key: String,
        children: Vec<Ref>,
        healthy_children_min: i32,
    },
    UpdateRegionCheck {
        key: String,
        id: String,
        children: Vec<Ref>,
        healthy_children_min: i32,
    },
    UpsertRecord {
        zone: Ref,
        name: String,
        spec: RecordSpec,
        ips: Vec<IpRef>,
        check: Ref,
        ttl_s: i64,
    },

    DeleteRecord {
        zone_id: String,
        record: RecordFound,
    },
    DeleteCheck {
        key: String,
        id: String,
    },
    DeleteZone {
        id: String,
        name: String,
    },
    TerminateInstances {
        region: String,
        ids: Vec<String>,
        keys: Vec<String>,
    },
    DeletePeering {
        region: String,
        id: String,
    },
    DeleteRouteTable {
        region: String,
        id: String,
        associations: Vec<String>,
    },
    DeleteInternetGateway {
        region: String,
        id: String,
        attached_vpc: Option<String>,
    },
    /// Waits until it is deleted (it holds its subnet and Elastic IP until then).
    DeleteNatGateway {
        region: String,
        id: String,
        key: String,
    },
    ReleaseAddress {
        region: String,
        id: String,
        key: String,
    },
    DeleteSecurityGroup {
        region: String,
        id: String,
        key: String,
    },
    DeleteSubnet {
        region: String,
        id: String,
        key: String,
    },
    DeleteVpc {
        region: String,
        id: String,
        key: String,
    },
    DeleteKeyPair {
        region: String,
        id: String,
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Create,
    Update,
    Delete,
}

impl Action {
    /// Where it happens: an AWS region, or "global" for Route53.
    pub fn scope(&self) -> &str {
        use Action::*;
        match self {
            CreateVpc { region, .. }
            | CreateSubnet { region, .. }
            | CreateInternetGateway { region, .. }
            | AttachInternetGateway { region, .. }
            | CreateRouteTable { region, .. }
            | CreateRoute { region, .. }
            | AssociateRouteTable { region, .. }
            | AllocateAddress { region, .. }
            | CreateNatGateway { region, .. }
            | DeleteNatGateway { region, .. }
            | ReleaseAddress { region, .. }
            | CreateSecurityGroup { region, .. }
            | AuthorizeIngress { region, .. }
            | RevokeIngress { region, .. }
            | ImportKeyPair { region, .. }
            | RunInstance { region, .. }
            | StartInstances { region, .. }
            | CreatePeering { region, .. }
            | AcceptPeering { region, .. }
            | TerminateInstances { region, .. }
            | DeletePeering { region, .. }
            | DeleteRouteTable { region, .. }
            | DeleteInternetGateway { region, .. }
            | DeleteSecurityGroup { region, .. }
            | DeleteSubnet { region, .. }
            | DeleteVpc { region, .. }
            | DeleteKeyPair { region, .. } => region,
            CreateZone { .. }
            | CreateHttpCheck { .. }
            | UpdateHttpCheck { .. }
            | CreateRegionCheck { .. }
            | UpdateRegionCheck { .. }
            | UpsertRecord { .. }
            | DeleteRecord { .. }
            | DeleteCheck { .. }
            | DeleteZone { .. } => GLOBAL_SCOPE,
        }
    }

    /// Route53's actions: global, not in one region's API.
    pub fn is_route53(&self) -> bool {
        self.scope() == GLOBAL_SCOPE
    }

    pub fn change(&self) -> Change {
        use Action::*;
        match self {
            CreateVpc { .. }
            | CreateSubnet { .. }
            | CreateInternetGateway { .. }
            | CreateRouteTable { .. }
            | AllocateAddress { .. }
            | CreateNatGateway { .. }
            | CreateSecurityGroup { .. }
            | ImportKeyPair { .. }
            | RunInstance { .. }
            | CreatePeering { .. }
            | CreateZone { .. }
            | CreateHttpCheck { .. }
            | CreateRegionCheck { .. } => Change::Create,
            DeleteRecord { .. }
            | DeleteCheck { .. }
            | DeleteZone { .. }
            | TerminateInstances { .. }
            | DeletePeering { .. }
            | DeleteRouteTable { .. }
            | DeleteInternetGateway { .. }
            | DeleteNatGateway { .. }
            | ReleaseAddress { .. }
            | DeleteSecurityGroup { .. }
            | DeleteSubnet { .. }
            | DeleteVpc { .. }
            | DeleteKeyPair { .. } => Change::Delete,
            CreateRoute { replace: false, .. }
            | AssociateRouteTable { .. }
            | AttachInternetGateway { .. }
            | AuthorizeIngress { .. }
            | AcceptPeering { .. }
            | UpsertRecord { .. } => Change::Create,
            CreateRoute { replace: true, .. }
            | RevokeIngress { .. }
            | StartInstances { .. }
            | UpdateHttpCheck { .. }
            | UpdateRegionCheck { .. } => Change::Update,
        }
    }

    /// The key this action's output is stored under, for actions that create something
    /// later steps refer to.
    pub fn produces(&self) -> Option<&str> {
        use Action::*;
        match self {
            CreateVpc { key, .. }
            | CreateSubnet { key, .. }
            | CreateInternetGateway { key, .. }
            | CreateRouteTable { key, .. }
            | AllocateAddress { key, .. }
            | CreateNatGateway { key, .. }
            | CreateSecurityGroup { key, .. }
            | ImportKeyPair { key, .. }
            | CreatePeering { key, .. }
            | CreateHttpCheck { key, .. }
            | CreateRegionCheck { key, .. } => Some(key),
            RunInstance { host, .. } => Some(&host.key),
            CreateZone { .. } => Some(ZONE_KEY),
            _ => None,
        }
    }

    /// One line for humans: what and which resource.
    pub fn describe(&self) -> String {
        use Action::*;
        match self {
            CreateVpc { key, cidr, .. } => format!("VPC {key} ({cidr})"),
            CreateSubnet { key, cidr, az, .. } => format!("subnet {key} ({cidr} in {az})"),
            CreateInternetGateway { key, .. } => format!("internet gateway {key}"),
            AttachInternetGateway { igw, vpc, .. } => format!("attach internet gateway {} to {}", r(igw), r(vpc)),
            CreateRouteTable { key, .. } => format!("route table {key}"),
            CreateRoute { route_table, cidr, target, replace, .. } => {
                format!("{} route {cidr} -> {} in {}", if *replace { "replace" } else { "add" }, r(target), r(route_table))
            }
            AssociateRouteTable { route_table, subnet, .. } => format!("associate {} with {}", r(route_table), r(subnet)),
            AllocateAddress { key, .. } => format!("Elastic IP {key}"),
            CreateNatGateway { key, subnet, .. } => format!("NAT gateway {key} in {}", r(subnet)),
            DeleteNatGateway { id, key, .. } => format!("NAT gateway {key} ({id})"),
            ReleaseAddress { id, key, .. } => format!("Elastic IP {key} ({id})"),
            CreateSecurityGroup { key, name, .. } => format!("security group {key} ({name})"),
            AuthorizeIngress { sg, rules, .. } => format!("allow {} in {}", rules_text(rules), r(sg)),
            RevokeIngress { sg, rules, .. } => format!("revoke {} in {sg}", rules_text(rules)),
            ImportKeyPair { key, name, .. } => format!("key pair {key} ({name})"),
            RunInstance { host, .. } => format!("instance {} ({} in {})", host.key, host.instance_type, host.az),
            StartInstances { ids, .. } => format!("start stopped instances {}", ids.join(", ")),
            CreatePeering { key, peer_region, .. } => format!("VPC peering {key} to {peer_region}"),
            AcceptPeering { peering, .. } => format!("accept VPC peering {}", r(peering)),
            CreateZone { name } => format!("hosted zone {name}"),
            CreateHttpCheck { key, ip, port, path, .. } => format!("health check {key} (HTTPS {}:{port}{path})", ip_text(ip)),
            UpdateHttpCheck { key, ip, port, path, .. } => format!("health check {key} -> HTTPS {}:{port}{path}", ip_text(ip)),
            CreateRegionCheck { key, children, .. } => format!("health check {key} (healthy while 1 of {} gateways is)", children.len()),
            UpdateRegionCheck { key, children, .. } => format!("health check {key} -> {} children", children.len()),
            UpsertRecord { name, spec, ips, .. } => format!(
                "record {name} {} ({}) -> {}",
                spec.failover.as_str(),
                spec.set_identifier,
                ips.iter().map(ip_text).collect::<Vec<_>>().join(", ")
            ),
            DeleteRecord { record, .. } => format!("record {} ({})", record.name, record.set_identifier),
            DeleteCheck { key, id } => format!("health check {key} ({id})"),
            DeleteZone { id, name } => format!("hosted zone {name} ({id})"),
            TerminateInstances { ids, .. } => format!("terminate {} instance(s): {}", ids.len(), ids.join(", ")),
            DeletePeering { id, .. } => format!("VPC peering {id}"),
            DeleteRouteTable { id, .. } => format!("route table {id}"),
            DeleteInternetGateway { id, .. } => format!("internet gateway {id}"),
            DeleteSecurityGroup { id, key, .. } => format!("security group {key} ({id})"),
            DeleteSubnet { id, key, .. } => format!("subnet {key} ({id})"),
            DeleteVpc { id, key, .. } => format!("VPC {key} ({id})"),
            DeleteKeyPair { name, .. } => format!("key pair {name}"),
        }
    }
}

pub const ZONE_KEY: &str = "global/zone";

fn r(x: &Ref) -> &str {
    match x {
        Ref::Id(s) | Ref::Key(s) => s,
    }
}

fn ip_text(x: &IpRef) -> String {
    match x {
        IpRef::Known(ip) => ip.clone(),
        IpRef::OfInstance { key, .. } => format!("<ip of {key}>"),
    }
}

fn rules_text(rules: &[Rule]) -> String {
    let what = |p: &crate::model::Proto| match p {
        crate::model::Proto::Tcp(port) => format!("tcp/{port}"),
        crate::model::Proto::IcmpFragNeeded => "icmp frag-needed".to_string(),
    };
    rules.iter().map(|x| format!("{} from {}", what(&x.proto), x.cidr)).collect::<Vec<_>>().join(", ")
}

/// One step of a plan: an action and the steps that must finish before it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub action: Action,
    /// Indexes of earlier steps (always smaller than this step's own index).
    pub after: Vec<usize>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Differences the plan cannot fix by itself (reported, not applied).
    pub notes: Vec<String>,
}

impl Plan {
    /// Appends a step and returns its index. Invariant: edges point backwards only.
    pub fn push(&mut self, action: Action, after: Vec<usize>) -> usize {
        let idx = self.steps.len();
        assert!(after.iter().all(|&a| a < idx), "plan edges must point to earlier steps");
        self.steps.push(Step { action, after });
        idx
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The plan without the steps `drop` selects. A kept step that waited for a dropped one
    /// waits for what that one waited for instead, so the order among kept steps holds.
    pub fn without(&self, drop: impl Fn(&Action) -> bool) -> Plan {
        let mut new_index: Vec<Option<usize>> = Vec::with_capacity(self.steps.len());
        // For each old step: the kept steps it stands for (itself, or its kept ancestors).
        let mut stands_for: Vec<Vec<usize>> = Vec::with_capacity(self.steps.len());
        let mut out = Plan { steps: vec![], notes: self.notes.clone() };
        for s in &self.steps {
            let mut after: Vec<usize> = s.after.iter().flat_map(|&a| stands_for[a].clone()).collect();
            after.sort_unstable();
            after.dedup();
            if drop(&s.action) {
                new_index.push(None);
                stands_for.push(after);
            } else {
                let i = out.push(s.action.clone(), after);
                new_index.push(Some(i));
                stands_for.push(vec![i]);
            }
        }
        out
    }

    pub fn count(&self, change: Change) -> usize {
        self.steps.iter().filter(|s| s.action.change() == change).count()
    }
}
