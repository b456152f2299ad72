//! Replies of engine operations: a JSON body or a typed error that maps to an HTTP status.

pub use crate::protocol::ErrorCode;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, ErrorCode::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, ErrorCode::NotFound, message)
    }
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }
    /// This node does not lead the partition (any more): the gateway retries elsewhere.
    pub fn not_leader(partition: impl std::fmt::Display) -> Self {
        Self::new(503, ErrorCode::NotLeader, format!("this node does not lead {partition}"))
    }
    /// The outcome is unknown (e.g. the commit was cut off): retry with the same client id.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, ErrorCode::Unavailable, message)
    }
    pub fn standby() -> Self {
        Self::new(503, ErrorCode::RegionStandby, "this region is in standby mode and does not accept writes")
    }
    /// An admin call on a withdrawal named a user who does not own it.
    pub fn wrong_owner(message: impl Into<String>) -> Self {
        Self::new(403, ErrorCode::WrongOwner, message)
    }
    pub fn unauthorized() -> Self {
        Self::new(401, ErrorCode::Unauthorized, "missing or invalid credentials")
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

/// The HTTP answer of a reply: 200 with the JSON body, or the error's status and body.
pub fn respond(r: Reply) -> axum::response::Response {
    use axum::response::IntoResponse;
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
