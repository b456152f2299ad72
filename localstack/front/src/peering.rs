//! A new cross-region VPC peering is `initiating-request` for a while on AWS before it reaches
//! `pending-acceptance`, and accepting it before then fails. LocalStack makes it
//! `pending-acceptance` at once. While EC2 consistency is on, the front keeps each new peering
//! `initiating-request` for [`INITIATING_MS`] after it becomes visible: listings show that
//! state, and `AcceptVpcPeeringConnection` is refused with `OperationNotPermitted`.

use crate::aws::{self, Call, Reply};
use crate::xml;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a new peering stays `initiating-request` once visible.
pub const INITIATING_MS: u64 = 3_000;
/// At most this many new peerings are remembered (the oldest go first).
const PEERINGS_MAX: usize = 10_000;

#[derive(Default)]
pub struct Peerings {
    /// Peering id -> when it stops being `initiating-request`.
    ready_at: Mutex<HashMap<String, Instant>>,
}

impl Peerings {
    /// After a successful CreateVpcPeeringConnection, visible after `window_ms`.
    pub fn created(&self, id: String, window_ms: u64) {
        let mut m = self.ready_at.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, t| *t > Instant::now());
        if m.len() >= PEERINGS_MAX {
            return;
        }
        tracing::debug!(id, "peering initiating-request");
        m.insert(id, Instant::now() + Duration::from_millis(window_ms + INITIATING_MS));
    }

    fn initiating(&self, id: &str) -> bool {
        self.ready_at.lock().unwrap_or_else(|e| e.into_inner()).get(id).is_some_and(|t| *t > Instant::now())
    }

    /// AWS's refusal to accept a peering that is not `pending-acceptance` yet.
    pub fn refuse(&self, call: &Call) -> Option<Reply> {
        if call.action != "AcceptVpcPeeringConnection" {
            return None;
        }
        let id = call.params.iter().find(|(k, _)| k == "VpcPeeringConnectionId").map(|(_, v)| v.as_str())?;
        self.initiating(id).then(|| {
            let msg = format!("The VPC peering connection {id} is not in the pending-acceptance state (it is initiating-request)");
            aws::error("ec2", 400, "OperationNotPermitted", &msg)
        })
    }

    /// A peering listing with the state of each new peering as AWS would show it.
    pub fn filter(&self, call: &Call, status: u16, body: &[u8]) -> Option<Vec<u8>> {
        if call.action != "DescribeVpcPeeringConnections" || status != 200 {
            return None;
        }
        let pick = |id: &str| self.initiating(id);
        xml::set_item_text(body, "vpcPeeringConnectionSet", "vpcPeeringConnectionId", &pick, &["status", "code"], "initiating-request")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"<DescribeVpcPeeringConnectionsResponse><vpcPeeringConnectionSet><item><vpcPeeringConnectionId>pcx-new</vpcPeeringConnectionId><status><code>pending-acceptance</code></status></item><item><vpcPeeringConnectionId>pcx-old</vpcPeeringConnectionId><status><code>active</code></status></item></vpcPeeringConnectionSet></DescribeVpcPeeringConnectionsResponse>"#;

    fn call(action: &str, params: &[(&str, &str)]) -> Call {
        Call {
            service: "ec2".into(),
            region: "us-west-2".into(),
            action: action.into(),
            method: http::Method::POST,
            path: "/".into(),
            query: String::new(),
            body: Default::default(),
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn a_new_peering_is_initiating_and_cannot_be_accepted_yet() {
        let p = Peerings::default();
        p.created("pcx-new".into(), 0);
        let accept = |id: &str| p.refuse(&call("AcceptVpcPeeringConnection", &[("VpcPeeringConnectionId", id)]));
        assert!(accept("pcx-new").unwrap().body.contains("OperationNotPermitted"));
        assert!(accept("pcx-old").is_none());
        let out = p.filter(&call("DescribeVpcPeeringConnections", &[]), 200, LISTING.as_bytes()).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("<code>initiating-request</code>") && s.contains("<code>active</code>"), "{s}");
        assert!(!s.contains("pending-acceptance"), "{s}");
    }
}
