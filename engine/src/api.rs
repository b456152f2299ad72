//! Replies of engine operations: a JSON body or a typed error that maps to an HTTP status.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }
    /// This node does not lead the partition (any more): the gateway retries elsewhere.
    pub fn not_leader(partition: &str) -> Self {
        Self::new(503, "not_leader", format!("this node does not lead {partition}"))
    }
    /// The outcome is unknown (e.g. the commit was cut off): retry with the same client id.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", message)
    }
    pub fn standby() -> Self {
        Self::new(503, "region_standby", "this region is in standby mode and does not accept writes")
    }
    pub fn unauthorized() -> Self {
        Self::new(401, "unauthorized", "missing or invalid credentials")
    }
    pub fn body(&self) -> Value {
        serde_json::json!({"error": self.code, "message": self.message})
    }
}

pub type Reply = Result<Value, ApiError>;

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let status = axum::http::StatusCode::from_u16(self.status).unwrap_or(axum::http::StatusCode::BAD_REQUEST);
        (status, axum::Json(self.body())).into_response()
    }
}
