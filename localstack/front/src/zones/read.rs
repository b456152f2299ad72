//! Reading every hosted zone and record set from LocalStack (paginated).

use super::snapshot::{normalize, Failover, RecordSet, Snapshot, Zone};
use aws_sdk_route53::types::{ResourceRecordSet, ResourceRecordSetFailover};
use futures::{StreamExt, TryStreamExt};

/// Bounds: pages per listing, zones read at once.
const PAGES_MAX: usize = 1000;
const ZONES_IN_FLIGHT_MAX: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("ListHostedZones: {0}")]
    ListZones(String),
    #[error("ListResourceRecordSets {zone}: {message}")]
    ListSets { zone: String, message: String },
}

pub async fn snapshot(r53: &aws_sdk_route53::Client) -> Result<Snapshot, ReadError> {
    let listed = list_zones(r53).await?;
    let zones = futures::stream::iter(listed.into_iter().map(|(id, name)| read_zone(r53, id, name)))
        .buffered(ZONES_IN_FLIGHT_MAX)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(Snapshot { zones: zones.into_iter().flatten().collect() })
}

async fn list_zones(r53: &aws_sdk_route53::Client) -> Result<Vec<(String, String)>, ReadError> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..PAGES_MAX {
        let page = r53.list_hosted_zones().set_marker(marker.take()).send().await.map_err(|e| ReadError::ListZones(e.to_string()))?;
        out.extend(page.hosted_zones().iter().map(|z| (z.id().to_string(), normalize(z.name()))));
        match (page.is_truncated(), page.next_marker()) {
            (true, Some(m)) => marker = Some(m.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// A zone deleted between the listing and the read is left out (None).
async fn read_zone(r53: &aws_sdk_route53::Client, id: String, name: String) -> Result<Option<Zone>, ReadError> {
    let mut sets = Vec::new();
    let mut start: Option<(String, aws_sdk_route53::types::RrType, Option<String>)> = None;
    for _ in 0..PAGES_MAX {
        let mut req = r53.list_resource_record_sets().hosted_zone_id(&id);
        if let Some((n, t, i)) = start.take() {
            req = req.start_record_name(n).start_record_type(t).set_start_record_identifier(i);
        }
        let page = match req.send().await {
            Ok(p) => p,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_hosted_zone()) => return Ok(None),
            Err(e) => return Err(ReadError::ListSets { zone: id, message: e.to_string() }),
        };
        sets.extend(page.resource_record_sets().iter().map(record_set));
        match (page.is_truncated(), page.next_record_name(), page.next_record_type()) {
            (true, Some(n), Some(t)) => start = Some((n.to_string(), t.clone(), page.next_record_identifier().map(str::to_string))),
            _ => break,
        }
    }
    Ok(Some(Zone { id, name, sets }))
}

fn record_set(s: &ResourceRecordSet) -> RecordSet {
    let failover = match s.failover() {
        Some(ResourceRecordSetFailover::Primary) => Some(Failover::Primary),
        Some(ResourceRecordSetFailover::Secondary) => Some(Failover::Secondary),
        _ => None,
    };
    RecordSet {
        name: normalize(s.name()),
        rtype: s.r#type().as_str().to_string(),
        ttl: s.ttl().and_then(|t| u32::try_from(t).ok()).unwrap_or(0),
        values: s.resource_records().iter().map(|r| unwrap_value(r.value()).to_string()).collect(),
        set_identifier: s.set_identifier().map(str::to_string),
        failover,
        health_check_id: s.health_check_id().map(str::to_string),
    }
}

/// LocalStack 4.13 returns its own apex SOA value as a Python dict's text,
/// `{'Value': 'ns-2048.awsdns-64.com. hostmaster.example.com. 1 7200 900 1209600 86400'}`: the value inside.
fn unwrap_value(v: &str) -> &str {
    v.strip_prefix("{'Value': '").and_then(|r| r.strip_suffix("'}")).unwrap_or(v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn localstack_soa_value_is_unwrapped() {
        let v = "{'Value': 'ns-2048.awsdns-64.com. hostmaster.example.com. 1 7200 900 1209600 86400'}";
        assert_eq!(super::unwrap_value(v), "ns-2048.awsdns-64.com. hostmaster.example.com. 1 7200 900 1209600 86400");
        assert_eq!(super::unwrap_value("10.0.0.1"), "10.0.0.1");
    }
}
