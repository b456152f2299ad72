//! `/_front/*` on the front's port: faults and settings, as JSON.
//!
//! - `GET /_front/health` -> `{"ok":true}`
//! - `GET /_front/faults` -> `{"faults":[{"region","service","fault":{"kind",..}}],"throttle_all","consistency_ms"}`
//! - `PUT /_front/faults` `{"region":"us-east-1","service":"ec2","fault":{"kind":"slow","ms":500}}`
//! - `DELETE /_front/faults/<region>/<service>`, `DELETE /_front/faults` (heal all)
//! - `PUT /_front/settings` `{"throttle_all":0.2,"consistency_ms":2000}` (either optional)
//!
//! Bad input: 400 `{"error":"..."}`.

use crate::faults::{self, Fault, FaultError};
use crate::run::Front;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};

pub type Answer = (StatusCode, Value);

#[derive(Debug, thiserror::Error)]
enum ControlError {
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error("bad JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Input(String),
    #[error("no such endpoint: {0} {1}")]
    NotFound(Method, String),
}

pub fn handle(front: &Front, method: &Method, path: &str, body: &Bytes) -> Answer {
    match route(front, method, path, body) {
        Ok(v) => (StatusCode::OK, v),
        Err(e @ ControlError::NotFound(..)) => (StatusCode::NOT_FOUND, json!({"error": e.to_string()})),
        Err(e) => (StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    }
}

fn route(front: &Front, method: &Method, path: &str, body: &Bytes) -> Result<Value, ControlError> {
    let parts: Vec<&str> = path.trim_start_matches("/_front/").trim_end_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["health"]) => Ok(json!({"ok": true})),
        ("GET", ["faults"]) => Ok(state(front)),
        ("PUT", ["faults"]) => put_fault(front, body),
        ("DELETE", ["faults"]) => Ok(json!({"ok": true, "healed": front.faults.heal_all()})),
        ("DELETE", ["faults", region, service]) => Ok(json!({"ok": true, "changed": front.faults.heal(region, service)?})),
        ("PUT", ["settings"]) => put_settings(front, body),
        ("PUT", ["checkers"]) => put_checkers(front, body),
        ("GET", ["calls"]) => Ok(json!(front.calls.snapshot())),
        _ => Err(ControlError::NotFound(method.clone(), path.to_string())),
    }
}

fn state(front: &Front) -> Value {
    json!({
        "faults": front.faults.list(),
        "throttle_all": front.faults.throttle_all(),
        "consistency_ms": front.consistency.window_ms(),
        "checkers": front.checkers.count,
        "checkers_blind": front.checkers.blind(),
        "vcpu_quota": front.quotas.vcpus(),
    })
}

/// `{"blind": n}`: the first n simulated checkers see every target failing, as if their
/// network were cut (for the 18 % rule).
fn put_checkers(front: &Front, body: &Bytes) -> Result<Value, ControlError> {
    let v: Value = serde_json::from_slice(body)?;
    let n = v.get("blind").and_then(Value::as_u64).ok_or_else(|| ControlError::Input("blind: a whole number of checkers".into()))?;
    let count = front.checkers.count as u64;
    if n > count {
        return Err(ControlError::Input(format!("blind {n}: there are {count} checkers")));
    }
    tracing::info!(blind = n, "checkers blinded");
    front.checkers.set_blind(n as usize);
    Ok(state(front))
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a str, ControlError> {
    v.get(name).and_then(Value::as_str).ok_or_else(|| ControlError::Input(format!("missing string field {name:?}")))
}

fn put_fault(front: &Front, body: &Bytes) -> Result<Value, ControlError> {
    let v: Value = serde_json::from_slice(body)?;
    let (region, service) = (field(&v, "region")?, field(&v, "service")?);
    let raw = v.get("fault").ok_or_else(|| ControlError::Input("missing object field \"fault\"".into()))?;
    let kind = field(raw, "kind")?;
    if !faults::KINDS.contains(&kind) {
        return Err(FaultError::UnknownKind(kind.to_string()).into());
    }
    let fault: Fault = serde_json::from_value(raw.clone())
        .map_err(|e| ControlError::Input(format!("fault {kind}: {e} (slow needs \"ms\", throttle \"fraction\", error \"code\")")))?;
    front.faults.set(region, service, fault.clone())?;
    Ok(json!({"ok": true, "region": region, "service": service, "fault": fault}))
}

fn put_settings(front: &Front, body: &Bytes) -> Result<Value, ControlError> {
    let v: Value = serde_json::from_slice(body)?;
    let throttle_all = match v.get("throttle_all") {
        None | Some(Value::Null) => None,
        Some(t) => Some(t.as_f64().ok_or_else(|| ControlError::Input("throttle_all: a number from 0 to 1".into()))?),
    };
    let consistency_ms = match v.get("consistency_ms") {
        None | Some(Value::Null) => None,
        Some(t) => Some(t.as_u64().ok_or_else(|| ControlError::Input("consistency_ms: a whole number of ms, 0 = off".into()))?),
    };
    match v.get("vcpu_quota") {
        None | Some(Value::Null) => {}
        Some(q) => front
            .quotas
            .set_vcpus(q.as_f64().filter(|q| *q >= 0.0).ok_or_else(|| ControlError::Input("vcpu_quota: vCPUs, a number >= 0".into()))?),
    }
    if let Some(t) = throttle_all {
        front.faults.set_throttle_all(t)?;
    }
    if let Some(ms) = consistency_ms {
        front.consistency.set_window_ms(ms);
    }
    Ok(state(front))
}
