//! EC2's eventual consistency after a create: for `window_ms` after a successful create, the
//! new resource's id is unknown to every other call (NotFound), and tag-filtered Describe*
//! listings do not show it. Ids are global: a young peering id is young in every region.

use crate::aws::{self, Call, Reply};
use crate::peering::Peerings;
use crate::xml;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many young ids are remembered (the oldest go first).
pub const YOUNG_IDS_MAX: usize = 100_000;

/// Create action -> the response element holding the new resource's id.
const CREATES: [(&str, &str); 10] = [
    ("RunInstances", "instanceId"),
    ("CreateVpc", "vpcId"),
    ("CreateSubnet", "subnetId"),
    ("CreateSecurityGroup", "groupId"),
    ("CreateVpcPeeringConnection", "vpcPeeringConnectionId"),
    ("CreateRouteTable", "routeTableId"),
    ("CreateInternetGateway", "internetGatewayId"),
    ("CreateNatGateway", "natGatewayId"),
    ("AllocateAddress", "allocationId"),
    ("CreateVolume", "volumeId"),
];

/// Describe action -> (the listing's set element, the item's id element).
const LISTINGS: [(&str, &str, &str); 10] = [
    ("DescribeInstances", "reservationSet", "instanceId"),
    ("DescribeVpcs", "vpcSet", "vpcId"),
    ("DescribeSubnets", "subnetSet", "subnetId"),
    ("DescribeSecurityGroups", "securityGroupInfo", "groupId"),
    ("DescribeVpcPeeringConnections", "vpcPeeringConnectionSet", "vpcPeeringConnectionId"),
    ("DescribeRouteTables", "routeTableSet", "routeTableId"),
    ("DescribeInternetGateways", "internetGatewaySet", "internetGatewayId"),
    ("DescribeNatGateways", "natGatewaySet", "natGatewayId"),
    ("DescribeAddresses", "addressesSet", "allocationId"),
    ("DescribeVolumes", "volumeSet", "volumeId"),
];

/// Id prefix -> (AWS's NotFound code, the message's noun).
const NOT_FOUND: [(&str, &str, &str); 10] = [
    ("i-", "InvalidInstanceID.NotFound", "The instance ID '{}' does not exist"),
    ("sg-", "InvalidGroup.NotFound", "The security group '{}' does not exist"),
    ("subnet-", "InvalidSubnetID.NotFound", "The subnet ID '{}' does not exist"),
    ("vpc-", "InvalidVpcID.NotFound", "The vpc ID '{}' does not exist"),
    ("pcx-", "InvalidVpcPeeringConnectionID.NotFound", "The vpcPeeringConnection ID '{}' does not exist"),
    ("rtb-", "InvalidRouteTableID.NotFound", "The routeTable ID '{}' does not exist"),
    ("igw-", "InvalidInternetGatewayID.NotFound", "The internetGateway ID '{}' does not exist"),
    ("nat-", "NatGatewayNotFound", "The Nat Gateway {} was not found"),
    ("eipalloc-", "InvalidAllocationID.NotFound", "The allocation ID '{}' does not exist"),
    ("vol-", "InvalidVolume.NotFound", "The volume '{}' does not exist."),
];

pub struct Consistency {
    window_ms: AtomicU64,
    young: Mutex<HashMap<String, Instant>>,
    /// New peerings, `initiating-request` for a while once visible.
    peerings: Peerings,
}

/// AWS's NotFound answer for a young id.
pub fn not_found(id: &str) -> Option<Reply> {
    let (_, code, msg) = NOT_FOUND.iter().find(|(p, _, _)| id.starts_with(p))?;
    Some(aws::error("ec2", 400, code, &msg.replace("{}", id)))
}

/// A Describe* call filtered by tag (`tag:<key>`, `tag-key`, `tag-value`).
fn tag_filtered(call: &Call) -> bool {
    call.params
        .iter()
        .any(|(k, v)| k.starts_with("Filter.") && k.ends_with(".Name") && (v.starts_with("tag:") || v == "tag-key" || v == "tag-value"))
}

impl Consistency {
    pub fn new(window_ms: u64) -> Consistency {
        Consistency { window_ms: AtomicU64::new(window_ms), young: Mutex::new(HashMap::new()), peerings: Peerings::default() }
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms.load(Ordering::Relaxed)
    }

    pub fn set_window_ms(&self, window_ms: u64) {
        tracing::info!(window_ms, "consistency window set");
        self.window_ms.store(window_ms, Ordering::Relaxed);
    }

    fn active(&self, call: &Call) -> bool {
        call.service == "ec2" && self.window_ms() > 0
    }

    fn is_young(&self, young: &HashMap<String, Instant>, id: &str) -> bool {
        young.get(id).is_some_and(|born| born.elapsed() < Duration::from_millis(self.window_ms()))
    }

    /// NotFound for a call naming a young id as a parameter value.
    pub fn refuse(&self, call: &Call) -> Option<Reply> {
        if !self.active(call) {
            return None;
        }
        if let Some(r) = self.peerings.refuse(call) {
            return Some(r);
        }
        let young = self.young.lock().unwrap_or_else(|e| e.into_inner());
        if young.is_empty() {
            return None;
        }
        // A filter value is not a reference: AWS answers a filtered listing without the young
        // item (see `filter`), not NotFound.
        let named = |k: &str| k != "Action" && k != "Version" && !k.starts_with("Filter.");
        let id = call.params.iter().filter(|(k, _)| named(k)).find(|(_, v)| self.is_young(&young, v))?;
        not_found(&id.1)
    }

    /// After a successful response: remember what a create made.
    pub fn record(&self, call: &Call, status: u16, body: &[u8]) {
        if !self.active(call) || !(200..300).contains(&status) {
            return;
        }
        let Some((_, field)) = CREATES.iter().find(|(a, _)| *a == call.action) else { return };
        let ids = xml::created_ids(body, &call.action, field);
        if call.action == "CreateVpcPeeringConnection" {
            ids.iter().for_each(|id| self.peerings.created(id.clone(), self.window_ms()));
        }
        let now = Instant::now();
        let mut young = self.young.lock().unwrap_or_else(|e| e.into_inner());
        self.prune(&mut young);
        for id in ids {
            tracing::debug!(id, window_ms = self.window_ms(), "young");
            young.insert(id, now);
        }
    }

    fn prune(&self, young: &mut HashMap<String, Instant>) {
        let window = Duration::from_millis(self.window_ms());
        young.retain(|_, born| born.elapsed() < window);
        while young.len() >= YOUNG_IDS_MAX {
            let Some(oldest) = young.iter().min_by_key(|(_, b)| **b).map(|(k, _)| k.clone()) else { break };
            young.remove(&oldest);
        }
    }

    /// A listing filtered by tag, or by a young id, without its young items; None = leave
    /// the body as it is.
    pub fn filter(&self, call: &Call, status: u16, body: &[u8]) -> Option<Vec<u8>> {
        if !self.active(call) || status != 200 {
            return None;
        }
        let peerings_shown = self.peerings.filter(call, status, body);
        let body = peerings_shown.as_deref().unwrap_or(body);
        self.drop_young(call, body).or(peerings_shown)
    }

    fn drop_young(&self, call: &Call, body: &[u8]) -> Option<Vec<u8>> {
        let (_, set, field) = LISTINGS.iter().find(|(a, _, _)| *a == call.action)?;
        let young = self.young.lock().unwrap_or_else(|e| e.into_inner());
        let by_young_id = || call.params.iter().any(|(k, v)| k.starts_with("Filter.") && self.is_young(&young, v));
        if young.is_empty() || !(tag_filtered(call) || by_young_id()) {
            return None;
        }
        xml::drop_items(body, set, field, &|id| self.is_young(&young, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_codes_follow_the_id_prefix() {
        assert!(not_found("i-0abc").unwrap().body.contains("InvalidInstanceID.NotFound"));
        assert!(not_found("sg-1").unwrap().body.contains("InvalidGroup.NotFound"));
        assert!(not_found("eipalloc-1").unwrap().body.contains("InvalidAllocationID.NotFound"));
        assert!(not_found("ami-1").is_none());
    }
}
