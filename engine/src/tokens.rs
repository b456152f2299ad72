//! The two credentials of engine-internal calls. The admin token authenticates admin
//! calls (at the gateway's admin listener, and the gateway's forwards of them to nodes).
//! The region's internal token authenticates the gateway's forwards of user calls (those
//! carrying `x-user-id`) and of book reads; the public API never accepts it, and the admin
//! token never authenticates a user call. Both are compared in constant time.

use axum::http::HeaderMap;

#[derive(Clone)]
pub struct Tokens {
    pub admin: String,
    pub internal: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<redacted>)")
    }
}

impl From<(String, String)> for Tokens {
    fn from((admin, internal): (String, String)) -> Self {
        Tokens { admin, internal }
    }
}

impl Tokens {
    /// The request carries the admin token.
    pub fn is_admin(&self, h: &HeaderMap) -> bool {
        carries(h, crate::protocol::ADMIN_HEADER, &self.admin)
    }

    /// The request carries the internal token.
    pub fn is_internal(&self, h: &HeaderMap) -> bool {
        carries(h, crate::protocol::INTERNAL_HEADER, &self.internal)
    }
}

fn carries(h: &HeaderMap, name: &str, want: &str) -> bool {
    h.get(name).and_then(|v| v.to_str().ok()).is_some_and(|v| crate::ct_eq(v, want))
}
