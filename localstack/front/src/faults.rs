//! Faults per (region, service): down, hang, slow, throttle, error; and `throttle_all`, the
//! throttling fraction of every (region, service) without a fault of its own.
//!
//! `down` cannot refuse at connect (one port serves every region): the front reads the request
//! and resets the connection without an answer, which the SDKs report as a connection error,
//! like a refused connection.

use crate::aws::{self, Reply};
use std::collections::BTreeMap;
use std::sync::RwLock;

/// A hung call is answered by closing its connection after this long, at the latest.
pub const HANG_MS_MAX: u64 = 10 * 60 * 1000;
/// `slow` delays at most this long.
pub const SLOW_MS_MAX: u64 = 10 * 60 * 1000;
pub const KINDS: [&str; 5] = ["down", "hang", "slow", "throttle", "error"];

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fault {
    Down,
    Hang,
    Slow { ms: u64 },
    Throttle { fraction: f64 },
    Error { code: String },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultError {
    #[error("unknown region {0:?}: not one of AWS's commercial regions (e.g. us-east-1, eu-west-1)")]
    UnknownRegion(String),
    #[error("unknown service {0:?}: one of ec2, route53, sts, iam, ssm")]
    UnknownService(String),
    #[error("{0} is global: its control plane is in us-east-1; use us-east-1")]
    GlobalService(String),
    #[error("throttle fraction {0}: a fraction from 0 to 1, e.g. 0.2")]
    Fraction(f64),
    #[error("slow {0} ms: at most {SLOW_MS_MAX} ms")]
    SlowTooLong(u64),
    #[error("error code {0:?}: give an AWS error code, e.g. InternalError or ServiceUnavailable")]
    BadCode(String),
    #[error("unknown fault kind {0:?}: one of down, hang, slow, throttle, error")]
    UnknownKind(String),
}

/// What the proxy does with one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Pass,
    Down,
    Hang,
    Slow { ms: u64 },
    Reply(Reply),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultEntry {
    pub region: String,
    pub service: String,
    pub fault: Fault,
}

struct Inner {
    faults: BTreeMap<(String, String), Fault>,
    throttle_all: f64,
}

pub struct FaultTable {
    inner: RwLock<Inner>,
}

/// Checks region and service names, and that a global service is named with us-east-1.
pub fn check_target(region: &str, service: &str) -> Result<(), FaultError> {
    if !aws::REGIONS.contains(&region) {
        return Err(FaultError::UnknownRegion(region.to_string()));
    }
    if !aws::SERVICES.contains(&service) {
        return Err(FaultError::UnknownService(service.to_string()));
    }
    if aws::GLOBAL_SERVICES.contains(&service) && region != aws::GLOBAL_REGION {
        return Err(FaultError::GlobalService(service.to_string()));
    }
    Ok(())
}

pub fn check_fraction(fraction: f64) -> Result<(), FaultError> {
    if (0.0..=1.0).contains(&fraction) {
        Ok(())
    } else {
        Err(FaultError::Fraction(fraction))
    }
}

fn check_fault(fault: &Fault) -> Result<(), FaultError> {
    match fault {
        Fault::Throttle { fraction } => check_fraction(*fraction),
        Fault::Slow { ms } if *ms > SLOW_MS_MAX => Err(FaultError::SlowTooLong(*ms)),
        Fault::Error { code } if code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') => {
            Err(FaultError::BadCode(code.clone()))
        }
        _ => Ok(()),
    }
}

/// The HTTP status AWS answers `code` with.
pub fn status_of(code: &str) -> u16 {
    match code {
        "ServiceUnavailable" | "Unavailable" | "RequestLimitExceeded" | "SlowDown" | "ServiceUnavailableException" => 503,
        "InternalError" | "InternalFailure" | "InternalServiceError" | "InternalServerError" => 500,
        _ => 400,
    }
}

fn throttle(service: &str, fraction: f64) -> Action {
    if fraction > 0.0 && rand::random::<f64>() < fraction {
        Action::Reply(aws::throttling(service))
    } else {
        Action::Pass
    }
}

impl FaultTable {
    pub fn new(throttle_all: f64) -> FaultTable {
        FaultTable { inner: RwLock::new(Inner { faults: BTreeMap::new(), throttle_all }) }
    }

    /// What to do with a call to (region, service).
    pub fn decide(&self, region: &str, service: &str) -> Action {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let Some(fault) = inner.faults.get(&(region.to_string(), service.to_string())) else {
            return throttle(service, inner.throttle_all);
        };
        match fault {
            Fault::Down => Action::Down,
            Fault::Hang => Action::Hang,
            Fault::Slow { ms } => Action::Slow { ms: *ms },
            Fault::Throttle { fraction } => throttle(service, *fraction),
            Fault::Error { code } => {
                Action::Reply(aws::error(service, status_of(code), code, &format!("{code} (fault injected by labfront)")))
            }
        }
    }

    pub fn set(&self, region: &str, service: &str, fault: Fault) -> Result<(), FaultError> {
        check_target(region, service)?;
        check_fault(&fault)?;
        tracing::info!(region, service, fault = ?fault, healed = false, "api fault set");
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.faults.insert((region.to_string(), service.to_string()), fault);
        Ok(())
    }

    /// Heals one (region, service); Ok(false) when it had no fault.
    pub fn heal(&self, region: &str, service: &str) -> Result<bool, FaultError> {
        check_target(region, service)?;
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let was = inner.faults.remove(&(region.to_string(), service.to_string()));
        tracing::info!(region, service, fault = ?was, healed = true, "api fault healed");
        Ok(was.is_some())
    }

    /// Heals every fault (throttle_all stays); returns how many there were.
    pub fn heal_all(&self) -> usize {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let n = inner.faults.len();
        inner.faults.clear();
        tracing::info!(region = "all", service = "all", count = n, healed = true, "every api fault healed");
        n
    }

    pub fn set_throttle_all(&self, fraction: f64) -> Result<(), FaultError> {
        check_fraction(fraction)?;
        tracing::info!(region = "all", service = "all", fault = "throttle_all", fraction, healed = fraction == 0.0, "throttle_all set");
        self.inner.write().unwrap_or_else(|e| e.into_inner()).throttle_all = fraction;
        Ok(())
    }

    pub fn throttle_all(&self) -> f64 {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).throttle_all
    }

    pub fn list(&self) -> Vec<FaultEntry> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.faults.iter().map(|((r, s), f)| FaultEntry { region: r.clone(), service: s.clone(), fault: f.clone() }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked() {
        assert_eq!(check_target("mars-1", "ec2"), Err(FaultError::UnknownRegion("mars-1".into())));
        assert_eq!(check_target("us-east-1", "s3"), Err(FaultError::UnknownService("s3".into())));
        assert_eq!(check_target("eu-west-1", "route53"), Err(FaultError::GlobalService("route53".into())));
        assert!(check_target("us-east-1", "route53").is_ok());
        assert!(check_target("eu-west-1", "ec2").is_ok());
    }

    #[test]
    fn faults_apply_to_their_target_only() {
        let t = FaultTable::new(0.0);
        t.set("us-east-1", "ec2", Fault::Down).unwrap();
        assert_eq!(t.decide("us-east-1", "ec2"), Action::Down);
        assert_eq!(t.decide("us-west-2", "ec2"), Action::Pass);
        assert!(t.set("us-east-1", "ec2", Fault::Throttle { fraction: 1.5 }).is_err());
        assert!(t.heal("us-east-1", "ec2").unwrap());
        assert_eq!(t.decide("us-east-1", "ec2"), Action::Pass);
    }

    #[test]
    fn throttle_all_covers_targets_without_a_fault() {
        let t = FaultTable::new(1.0);
        assert!(matches!(t.decide("us-west-2", "ec2"), Action::Reply(r) if r.body.contains("RequestLimitExceeded")));
        t.set("us-west-2", "ec2", Fault::Slow { ms: 5 }).unwrap();
        assert_eq!(t.decide("us-west-2", "ec2"), Action::Slow { ms: 5 });
    }

    #[test]
    fn error_codes_get_aws_statuses() {
        assert_eq!(status_of("ServiceUnavailable"), 503);
        assert_eq!(status_of("InternalError"), 500);
        assert_eq!(status_of("AccessDenied"), 400);
    }
}
