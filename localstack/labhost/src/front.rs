//! API faults, set on the running labfront (the lab's AWS front) through its `/_front/*` API.
//! They need only the front, not the lab-host emulator.

use serde_json::{json, Value};
use std::time::Duration;

pub const DEFAULT_FRONT_URL: &str = "http://127.0.0.1:4567";
const TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("the API front at {0} does not answer ({1}); start it (localstack/start.sh) or give --front-url / LABFRONT_URL")]
    Unreachable(String, String),
    #[error("the API front refused: {0}")]
    Refused(String),
    #[error("the API front answered {0}: {1}")]
    Bad(u16, String),
}

/// One API fault as the front takes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ApiFault {
    Down,
    Hang,
    Slow { ms: u64 },
    Throttle { fraction: f64 },
    Error { code: String },
}

pub struct Front {
    url: String,
    http: reqwest::blocking::Client,
}

impl Front {
    pub fn new(url: &str) -> Result<Front, FrontError> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(TIMEOUT_MS))
            .build()
            .map_err(|e| FrontError::Unreachable(url.to_string(), e.to_string()))?;
        Ok(Front { url: url.trim_end_matches('/').to_string(), http })
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<Value, FrontError> {
        let resp = req.send().map_err(|e| FrontError::Unreachable(self.url.clone(), e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        match status {
            200 => Ok(v),
            400 => Err(FrontError::Refused(v.get("error").and_then(Value::as_str).unwrap_or(&text).to_string())),
            _ => Err(FrontError::Bad(status, text)),
        }
    }

    pub fn fault(&self, region: &str, service: &str, fault: &ApiFault) -> Result<Value, FrontError> {
        let body = json!({"region": region, "service": service, "fault": fault});
        self.send(self.http.put(format!("{}/_front/faults", self.url)).json(&body))
    }

    pub fn heal(&self, region: &str, service: &str) -> Result<Value, FrontError> {
        self.send(self.http.delete(format!("{}/_front/faults/{region}/{service}", self.url)))
    }

    pub fn heal_all(&self) -> Result<Value, FrontError> {
        self.send(self.http.delete(format!("{}/_front/faults", self.url)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_serialise_as_the_front_reads_them() {
        assert_eq!(serde_json::to_value(ApiFault::Slow { ms: 5 }).unwrap(), json!({"kind": "slow", "ms": 5}));
        assert_eq!(serde_json::to_value(ApiFault::Down).unwrap(), json!({"kind": "down"}));
    }

    #[test]
    fn an_absent_front_is_a_clear_error() {
        let f = Front::new("http://127.0.0.1:9").unwrap();
        let e = f.heal_all().unwrap_err();
        assert!(matches!(e, FrontError::Unreachable(..)), "{e}");
    }
}
