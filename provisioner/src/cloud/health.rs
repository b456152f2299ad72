//! A region's health as Route53's own checkers see it: the watch's second vantage point on AWS.
//!
//! Route53 does not report a calculated check's status through `GetHealthCheckStatus` (its
//! documentation: "You can't use GetHealthCheckStatus to get the status of a calculated health
//! check"), so the region's calculated check is evaluated here the way Route53 does it: each
//! child HTTP check (one per gateway) is asked for its checkers' latest observations, and the
//! region is healthy when at least `healthy_children_min` children are.

use std::time::Duration;

use super::{Cloud, CloudError};
use crate::model::{CheckAttrs, Found};

/// Route53 calls a check healthy when more than this share of its checkers see it healthy.
const HEALTHY_CHECKERS_PERCENT_MIN: usize = 18;

/// An HTTP check is healthy when MORE THAN 18 % of its checkers' latest observations
/// succeeded (Route53's rule). None when no checker has reported yet.
pub fn observations_healthy<S: AsRef<str>>(statuses: &[S]) -> Option<bool> {
    if statuses.is_empty() {
        return None;
    }
    let ok = statuses.iter().filter(|s| s.as_ref().starts_with("Success")).count();
    Some(ok * 100 > statuses.len() * HEALTHY_CHECKERS_PERCENT_MIN)
}

/// A calculated check from its children's health: None when no child has any observation.
pub fn calculated_healthy(children: &[Option<bool>], healthy_children_min: i32) -> Option<bool> {
    if children.iter().all(Option::is_none) {
        return None;
    }
    let healthy = children.iter().filter(|c| **c == Some(true)).count();
    Some(healthy as i64 >= i64::from(healthy_children_min.max(1)))
}

impl Cloud {
    /// The latest status text of each Route53 checker of one (non-calculated) health check.
    async fn check_observations(&self, check_id: &str) -> Result<Vec<String>, CloudError> {
        let r = self
            .r53
            .get_health_check_status()
            .health_check_id(check_id)
            .send()
            .await
            .map_err(|e| self.err("GetHealthCheckStatus", check_id, "global", e))?;
        Ok(r.health_check_observations().iter().filter_map(|o| o.status_report()?.status().map(str::to_string)).collect())
    }

    /// Whether `check` passes as Route53's checkers see it now; a calculated check is
    /// evaluated from its children (asked in parallel). Bounded by `timeout_ms` in all.
    /// Ok(None): no checker has reported yet.
    pub async fn check_healthy(&self, check: &Found<CheckAttrs>, timeout_ms: u64) -> Result<Option<bool>, CloudError> {
        let timed_out = || CloudError::Unreachable {
            endpoint: self.endpoint.clone(),
            service: "route53",
            region: "global".into(),
            detail: format!("GetHealthCheckStatus: no answer within {timeout_ms} ms"),
            hint: String::new(),
        };
        let f = async {
            match &check.attrs {
                CheckAttrs::Http { .. } => Ok(observations_healthy(&self.check_observations(&check.id).await?)),
                CheckAttrs::Calculated { children, healthy_children_min } => {
                    let answers = futures::future::join_all(children.iter().map(|c| self.check_observations(c))).await;
                    let mut health = Vec::with_capacity(answers.len());
                    for a in answers {
                        health.push(observations_healthy(&a?));
                    }
                    Ok(calculated_healthy(&health, *healthy_children_min))
                }
            }
        };
        tokio::time::timeout(Duration::from_millis(timeout_ms), f).await.unwrap_or_else(|_| Err(timed_out()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_healthy_when_more_than_18_percent_of_checkers_succeed() {
        let ok = "Success: HTTP Status Code 200, OK";
        let bad = "Failure: Connection timed out.";
        assert_eq!(observations_healthy::<&str>(&[]), None);
        assert_eq!(observations_healthy(&[ok, ok, bad]), Some(true));
        assert_eq!(observations_healthy(&[ok, bad]), Some(true));
        // 2 of 8 = 25 % > 18 %; 1 of 8 = 12.5 %; 1 of 5 = 20 %; 1 of 6 = 16.7 %.
        assert_eq!(observations_healthy(&[ok, ok, bad, bad, bad, bad, bad, bad]), Some(true));
        assert_eq!(observations_healthy(&[ok, bad, bad, bad, bad, bad, bad, bad]), Some(false));
        assert_eq!(observations_healthy(&[ok, bad, bad, bad, bad]), Some(true));
        assert_eq!(observations_healthy(&[ok, bad, bad, bad, bad, bad]), Some(false));
        assert_eq!(observations_healthy(&[bad, bad, bad]), Some(false));
    }

    #[test]
    fn a_region_is_healthy_with_enough_healthy_children() {
        assert_eq!(calculated_healthy(&[Some(false), Some(true), None], 1), Some(true));
        assert_eq!(calculated_healthy(&[Some(false), Some(false), None], 1), Some(false));
        assert_eq!(calculated_healthy(&[Some(true), Some(false)], 2), Some(false));
        assert_eq!(calculated_healthy(&[None, None], 1), None);
    }
}
