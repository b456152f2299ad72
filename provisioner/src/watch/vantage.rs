//! The second vantage point: Route53's own checkers (the primary region's calculated check,
//! evaluated from its children through `GetHealthCheckStatus`), the same on AWS and on the
//! lab's front, whose checkers really probe the gateways.

use crate::model::{pick, CheckAttrs, Found};
use crate::situation::Situation;

pub(super) enum Vantage {
    Route53 { check: Found<CheckAttrs> },
    Nowhere,
}

impl Vantage {
    pub(super) fn describe(&self) -> String {
        match self {
            Vantage::Route53 { check, .. } => format!("Route53 checkers of the primary region's health check {}", check.id),
            Vantage::Nowhere => "none".into(),
        }
    }
}

pub(super) fn vantage(w: &Situation, primary: &str) -> Vantage {
    match pick(&w.observed.checks, &format!("{primary}/check/region")) {
        Some(c) => Vantage::Route53 { check: c.clone() },
        None => Vantage::Nowhere,
    }
}

/// The primary seen from the second vantage point: Some(healthy), or None (no answer / not asked).
pub(super) async fn second_vantage(v: &Vantage, cloud: &crate::cloud::Cloud, ask: bool, interval_ms: u64) -> Option<bool> {
    if !ask {
        return None;
    }
    let budget_ms = interval_ms.saturating_sub(100).max(super::PROBE_TIMEOUT_MS);
    match v {
        Vantage::Nowhere => None,
        Vantage::Route53 { check } => cloud.check_healthy(check, budget_ms).await.ok().flatten(),
    }
}
