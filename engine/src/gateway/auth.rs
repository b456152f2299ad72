//! Who is calling the gateway: a user by API key (hash looked up in `users`, cached), or
//! an admin by the admin token (compared in constant time; routed on the admin listener only).

use super::{lock, Gateway};
use crate::api::ApiError;
use crate::protocol::API_KEY_HEADER;
use crate::requests::parse;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

impl Gateway {
    pub(super) fn admin(&self, h: &HeaderMap) -> Result<(), ApiError> {
        self.tokens.is_admin(h).then_some(()).ok_or_else(ApiError::unauthorized)
    }

    /// Resolves an API key to its user.
    pub(super) async fn user(&self, h: &HeaderMap) -> Result<i64, ApiError> {
        let key = h.get(API_KEY_HEADER).and_then(|v| v.to_str().ok()).ok_or_else(ApiError::unauthorized)?;
        let hash = crate::sha256_hex(key);
        if let Some(u) = lock(&self.keys).get(&hash) {
            return Ok(*u);
        }
        let rows = self.query("SELECT user_id FROM users WHERE api_key_sha256 = $1", &[&hash]).await?;
        let u: i64 = rows.first().map(|r| r.get(0)).ok_or_else(ApiError::unauthorized)?;
        lock(&self.keys).insert(hash, u);
        Ok(u)
    }

    /// A user's request body: the caller first (401), then the body (400).
    pub(super) async fn user_body<T: DeserializeOwned>(&self, h: &HeaderMap, body: &[u8]) -> Result<(i64, T), ApiError> {
        let u = self.user(h).await?;
        Ok((u, parse(body)?))
    }

    /// An admin's request body: the token first (401), then the body (400).
    pub(super) fn admin_body<T: DeserializeOwned>(&self, h: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
        self.admin(h)?;
        parse(body)
    }
}
