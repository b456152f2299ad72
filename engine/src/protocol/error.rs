//! The `error` codes of API error bodies (`{"error": <code>, "message": ...}`), one enum
//! for the nodes that answer them and the gateway that reads them.

use std::fmt;
use std::str::FromStr;

/// An error code as it appears on the wire. `as_str` and serde yield exactly the strings
/// clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    NotFound,
    Unauthorized,
    /// This node does not lead the partition (any more): retry at its leader.
    NotLeader,
    /// The outcome is unknown or the node cannot serve it now: retry with the same id.
    Unavailable,
    RegionStandby,
    UserExists,
    NoReferencePrice,
    QuoteExpired,
    UnknownMarket,
    InsufficientFunds,
    DealerInsufficientFunds,
    InvalidTransition,
    /// A SQL error of the request (e.g. a CHECK), reported by a wallet or OTC leader.
    Rejected,
    /// An order's `reason`: its limit is outside the market's price band (refused), or a
    /// market order's sweep reached the band's edge (the rest cancelled).
    PriceBand,
    /// An order's `reason`: it reached a resting order of the same user and was cancelled
    /// there (self-trade prevention cancels the newest order).
    SelfTrade,
    /// An order's `reason`: deciding or matching it made the leader fail an invariant
    /// (a bug the order triggers); it was taken out of its batch and refused, and reported.
    Quarantined,
    /// Too many unauthenticated reads from this client address: retry after `Retry-After`.
    RateLimited,
    /// An order's `reason`: the perpetual halted (it owed more than its margin pool and
    /// insurance fund held) and refuses new orders until an operator reopens it.
    MarketHalted,
    /// An admin's withdrawal action named a user who does not own the withdrawal.
    WrongOwner,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::BadRequest,
        ErrorCode::NotFound,
        ErrorCode::Unauthorized,
        ErrorCode::NotLeader,
        ErrorCode::Unavailable,
        ErrorCode::RegionStandby,
        ErrorCode::UserExists,
        ErrorCode::NoReferencePrice,
        ErrorCode::QuoteExpired,
        ErrorCode::UnknownMarket,
        ErrorCode::InsufficientFunds,
        ErrorCode::DealerInsufficientFunds,
        ErrorCode::InvalidTransition,
        ErrorCode::Rejected,
        ErrorCode::PriceBand,
        ErrorCode::SelfTrade,
        ErrorCode::Quarantined,
        ErrorCode::RateLimited,
        ErrorCode::MarketHalted,
        ErrorCode::WrongOwner,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RegionStandby => "region_standby",
            ErrorCode::UserExists => "user_exists",
            ErrorCode::NoReferencePrice => "no_reference_price",
            ErrorCode::QuoteExpired => "quote_expired",
            ErrorCode::UnknownMarket => "unknown_market",
            ErrorCode::InsufficientFunds => "insufficient_funds",
            ErrorCode::DealerInsufficientFunds => "dealer_insufficient_funds",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::Rejected => "rejected",
            ErrorCode::PriceBand => "price_band",
            ErrorCode::SelfTrade => "self_trade",
            ErrorCode::Quarantined => "quarantined",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::MarketHalted => "market_halted",
            ErrorCode::WrongOwner => "wrong_owner",
        }
    }

    /// A 503 with this code says the answering node is not (or no longer) the leader that
    /// can serve the request: the gateway forgets it as the partition's leader and sends
    /// the request again (by client id, so it is not applied twice).
    pub fn means_not_leading(self) -> bool {
        matches!(self, ErrorCode::NotLeader | ErrorCode::Unavailable)
    }

    /// The code of an error body (`{"error": "<code>", ...}`), if it has a known one.
    pub fn of_body(body: &str) -> Option<ErrorCode> {
        #[derive(serde::Deserialize)]
        struct E<'a> {
            #[serde(borrow)]
            error: &'a str,
        }
        serde_json::from_str::<E>(body).ok().and_then(|e| e.error.parse().ok())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| format!("unknown error code {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_and_as_str_agree() {
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::Value::String(c.as_str().into()));
            assert_eq!(c.as_str().parse::<ErrorCode>(), Ok(c));
            assert_eq!(ErrorCode::of_body(&format!(r#"{{"error":"{c}","message":"m"}}"#)), Some(c));
        }
        assert_eq!(ErrorCode::of_body(r#"{"error":"nope"}"#), None);
    }
}
