//! The shapes the planner compares: what the config asks for ([`Desired`]) and what the
//! cloud has ([`Observed`]). Plain data; no IO, no SDK types.
//!
//! Every resource has a logical key (`us-east-1/instance/app-0`), stored on EC2 resources
//! and health checks as the `provision:key` tag, so the cloud itself is the state.

use std::collections::BTreeMap;

use serde::Serialize;

pub const TAG_PROJECT: &str = "Project";
pub const TAG_KEY: &str = "provision:key";
pub const TAG_REGION_ROLE: &str = "provision:region-role";
pub const TAG_ROLE: &str = "provision:role";
/// On instances stopped by a failover: when (unix ms).
pub const TAG_FENCED: &str = "provision:fenced";
pub const TAG_MODULES: &str = "provision:modules";
pub const TAG_INDEX: &str = "provision:index";
pub const TAG_GATEWAY: &str = "provision:gateway";
pub const TAG_DATABASE: &str = "provision:database";

/// What an ingress rule lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Proto {
    Tcp(u16),
    /// ICMP type 3 code 4, "fragmentation needed": inter-region peering carries at most
    /// 8500 bytes and drops larger DF packets, so path MTU discovery needs these from the peer.
    IcmpFragNeeded,
}

/// ICMP "destination unreachable" / "fragmentation needed" (EC2 puts type and code in the
/// rule's from and to port).
pub const ICMP_FRAG_NEEDED: (i32, i32) = (3, 4);

/// An ingress rule: `proto` from `cidr`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Rule {
    pub proto: Proto,
    pub cidr: String,
}

impl Rule {
    pub fn tcp(port: u16, cidr: impl Into<String>) -> Rule {
        Rule { proto: Proto::Tcp(port), cidr: cidr.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostSpec {
    pub key: String,
    pub name: String,
    pub role: String,
    pub index: u32,
    pub az: String,
    pub subnet_key: String,
    pub sg_key: String,
    pub instance_type: String,
    pub modules: Vec<String>,
    pub gateway: bool,
    pub database: bool,
    /// Whether it gets a public address (it sits in a public subnet): gateways only.
    pub public_ip: bool,
    /// An encrypted gp3 volume for the host's data (DB hosts: PostgreSQL), in GiB.
    pub data_volume_gib: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubnetSpec {
    pub key: String,
    pub az: String,
    pub cidr: String,
    /// Public: routed to the internet gateway (gateways, the NAT gateway). Private: routed
    /// to the NAT gateway, if any (engine and DB hosts).
    pub public: bool,
}

/// A region's NAT gateway: in the first public subnet, with its own Elastic IP; the private
/// subnets' way out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NatSpec {
    pub key: String,
    pub eip_key: String,
    pub subnet_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SgSpec {
    pub key: String,
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DesiredRegion {
    pub name: String,
    pub role: crate::config::RegionRole,
    pub vpc_key: String,
    pub vpc_cidr: String,
    pub peer_cidr: String,
    pub igw_key: String,
    /// The public subnets' route table (default route: the internet gateway).
    pub route_table_key: String,
    /// The private subnets' route table (default route: the NAT gateway, when there is one).
    pub private_route_table_key: String,
    pub nat: Option<NatSpec>,
    pub subnets: Vec<SubnetSpec>,
    pub sgs: Vec<SgSpec>,
    pub key_pair_key: String,
    pub key_pair_name: String,
    pub hosts: Vec<HostSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpCheckSpec {
    pub key: String,
    pub region: String,
    /// Key of the gateway instance whose IP is the target.
    pub host_key: String,
    pub port: u16,
    pub path: String,
    pub request_interval_s: i32,
    pub failure_threshold: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionCheckSpec {
    pub key: String,
    pub region: String,
    pub children: Vec<String>,
    pub healthy_children_min: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordSpec {
    pub set_identifier: String,
    pub failover: Failover,
    pub region: String,
    pub check_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Failover {
    Primary,
    Secondary,
}

impl Failover {
    pub fn as_str(self) -> &'static str {
        match self {
            Failover::Primary => "PRIMARY",
            Failover::Secondary => "SECONDARY",
        }
    }
}

/// AWS's limit on a health check's or hosted zone's CallerReference.
pub const CALLER_REFERENCE_CHARS_MAX: usize = 64;
/// A run id is the unix time in ms in hex: 11 digits until the year 2527.
pub const RUN_ID_CHARS: usize = 11;

/// Hex digits of a key's SHA-256 in a CallerReference.
pub const KEY_HASH_CHARS: usize = 12;

/// The CallerReference of a health check or zone `provision` creates: the project, a hash of
/// the logical key (the key itself is a tag: a long region name and key would pass AWS's 64
/// characters) and the run. At most 10 + 24 + 1 + 12 + 1 + 11 = 59 characters for any valid
/// project name.
pub fn caller_reference(project: &str, key: &str, run_id: &str) -> String {
    format!("provision:{project}:{}:{run_id}", key_hash(key))
}

pub fn key_hash(key: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(key.as_bytes());
    h.iter().map(|b| format!("{b:02x}")).collect::<String>()[..KEY_HASH_CHARS].to_string()
}

/// Which of an instance's addresses the records and health checks use (SSH has its own
/// decision, `access.ssh_address`, in `deploy::inventory`): decided once, in
/// `desired` (from `health_target`), and carried in the data from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Address {
    Private,
    Public,
}

impl Address {
    pub fn pick(self, private: Option<&String>, public: Option<&String>) -> Option<String> {
        match self {
            Address::Private => private.cloned(),
            Address::Public => public.cloned(),
        }
    }

    pub fn of(self, a: &InstanceAttrs) -> Option<String> {
        self.pick(a.private_ip.as_ref(), a.public_ip.as_ref())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Address::Private => "private",
            Address::Public => "public",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Desired {
    pub project: String,
    pub key_pair_material: String,
    /// `regions[0]` is the primary region.
    pub regions: Vec<DesiredRegion>,
    pub peering_key: String,
    pub zone_name: String,
    pub record_name: String,
    pub record_ttl_s: i64,
    /// Which address of a host the records and health checks use.
    pub address: Address,
    pub http_checks: Vec<HttpCheckSpec>,
    pub region_checks: Vec<RegionCheckSpec>,
    pub records: Vec<RecordSpec>,
}

// ---------------------------------------------------------------------------------------------
// Observed

/// One resource found in the cloud, with its logical key (from the `provision:key` tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found<A> {
    pub key: String,
    pub id: String,
    pub attrs: A,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VpcAttrs {
    pub cidr: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SubnetAttrs {
    pub cidr: String,
    pub az: String,
    /// The VPC it is in (empty when unknown).
    pub vpc: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IgwAttrs {
    pub attached_vpc: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteTableAttrs {
    /// destination CIDR -> target id (igw-..., pcx-...)
    pub routes: BTreeMap<String, String>,
    /// (association id, subnet id)
    pub associations: Vec<(String, String)>,
    /// The VPC it is in (empty when unknown).
    pub vpc: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SgAttrs {
    pub rules: Vec<Rule>,
    /// The VPC it is in (empty when unknown).
    pub vpc: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyPairAttrs {
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstanceAttrs {
    pub state: String,
    pub instance_type: String,
    pub az: String,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    /// The VPC it is in (empty when unknown).
    pub vpc: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NatAttrs {
    /// pending, available, deleting or failed (deleted ones are left out).
    pub state: String,
    pub subnet: String,
}

impl NatAttrs {
    /// Pending or available: it is (or becomes) the private subnets' way out.
    pub fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "pending" | "available")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AddressAttrs {
    pub public_ip: String,
    /// What it is associated with, if anything (a NAT gateway's network interface).
    pub association: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeeringAttrs {
    pub status: String,
    pub requester_vpc: String,
    pub accepter_vpc: String,
}

/// A machine image, as DescribeImages shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    /// `x86_64`, `arm64`, ...
    pub architecture: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ObservedRegion {
    pub name: String,
    /// The newest image matching the region's `ami` (None: nothing matches).
    pub image: Option<Image>,
    pub vpcs: Vec<Found<VpcAttrs>>,
    pub subnets: Vec<Found<SubnetAttrs>>,
    pub igws: Vec<Found<IgwAttrs>>,
    pub route_tables: Vec<Found<RouteTableAttrs>>,
    pub nat_gateways: Vec<Found<NatAttrs>>,
    /// Elastic IPs (the NAT gateways').
    pub addresses: Vec<Found<AddressAttrs>>,
    pub sgs: Vec<Found<SgAttrs>>,
    pub key_pairs: Vec<Found<KeyPairAttrs>>,
    /// Pending, running, stopping or stopped; terminated ones are left out.
    pub instances: Vec<Found<InstanceAttrs>>,
    /// Shutting down: no longer hosts, but still holding their subnets and groups, so `down`
    /// waits for them before deleting those.
    pub leaving: Vec<Found<InstanceAttrs>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneFound {
    pub id: String,
    pub name: String,
    /// Whether `up` created it (its CallerReference is ours): only then may `down` delete it.
    pub ours: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CheckAttrs {
    Http { ip: String, port: u16, path: String },
    Calculated { children: Vec<String>, healthy_children_min: i32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordFound {
    pub name: String,
    pub set_identifier: String,
    pub failover: Option<String>,
    pub ips: Vec<String>,
    pub health_check_id: Option<String>,
    pub ttl_s: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Observed {
    pub regions: Vec<ObservedRegion>,
    pub peerings: Vec<Found<PeeringAttrs>>,
    pub zone: Option<ZoneFound>,
    pub checks: Vec<Found<CheckAttrs>>,
    /// Record sets of the API name whose SetIdentifier is ours.
    pub records: Vec<RecordFound>,
    /// Which region holds the primary role and which is fenced: the newest epoch any answering
    /// place holds (see `roles`).
    pub marks: Marks,
    /// Each place the failover state is kept, and the epoch it holds (None: it did not answer).
    pub mark_places: Vec<MarkPlace>,
}

/// The failover state. Kept in three places: a parameter per epoch in each region's SSM
/// Parameter Store (created, never overwritten: the compare-and-set) and tags on the hosted
/// zone. `epoch` grows by one with every change; 0 is the state before any failover.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Marks {
    pub epoch: u64,
    /// The region that holds the primary role; None means the configured primary.
    pub active: Option<String>,
    pub fence: Option<Fence>,
}

impl Marks {
    /// Same decision (who is primary, who is fenced), whatever the epoch.
    pub fn same_state(&self, other: &Marks) -> bool {
        self.active == other.active && self.fence == other.fence
    }
}

/// One place the failover state is kept ("zone tags", "ssm eu-west-1") and the epoch it
/// holds; None when it did not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarkPlace {
    pub place: String,
    pub epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A region whose instances `failover` stopped: nothing there may serve writes until
/// `failback` rebuilds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Fence {
    pub region: String,
    pub at_unix_ms: u64,
}

impl Observed {
    /// Every resource id this observation shows.
    pub fn ids(&self) -> std::collections::HashSet<&str> {
        let mut ids: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for r in &self.regions {
            ids.extend(r.vpcs.iter().map(|f| f.id.as_str()));
            ids.extend(r.subnets.iter().map(|f| f.id.as_str()));
            ids.extend(r.igws.iter().map(|f| f.id.as_str()));
            ids.extend(r.route_tables.iter().map(|f| f.id.as_str()));
            ids.extend(r.nat_gateways.iter().map(|f| f.id.as_str()));
            ids.extend(r.addresses.iter().map(|f| f.id.as_str()));
            ids.extend(r.sgs.iter().map(|f| f.id.as_str()));
            ids.extend(r.key_pairs.iter().map(|f| f.id.as_str()));
            ids.extend(r.instances.iter().map(|f| f.id.as_str()));
        }
        ids.extend(self.peerings.iter().map(|f| f.id.as_str()));
        ids.extend(self.checks.iter().map(|f| f.id.as_str()));
        ids
    }

    pub fn region(&self, name: &str) -> Option<&ObservedRegion> {
        self.regions.iter().find(|r| r.name == name)
    }
}

/// The one to keep among resources sharing a key: the lowest id, so every run picks the same.
pub fn pick<'a, A>(found: &'a [Found<A>], key: &str) -> Option<&'a Found<A>> {
    found.iter().filter(|f| f.key == key).min_by(|a, b| a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_reference_fits_for_the_longest_project_region_and_key() {
        let project = "p".repeat(24); // config::validate's limit
        let key = "ap-southeast-4/check/gateway-9999";
        let r = caller_reference(&project, key, &"f".repeat(RUN_ID_CHARS));
        assert!(r.len() <= CALLER_REFERENCE_CHARS_MAX, "{r}: {} characters", r.len());
        assert_ne!(key_hash("us-east-1/check/gateway-0"), key_hash("us-east-1/check/gateway-1"));
        assert_eq!(key_hash(key).len(), KEY_HASH_CHARS);
    }
}
