//! The protocol between clients, the gateway and the nodes, in one place: header names,
//! paths, error codes, partition keys, and the internal request/response types of the
//! gateway -> node hop. The public REST request bodies (and their validation) are in
//! `requests`; both sides use these definitions, neither spells a header, a path, a code or
//! a key itself.

mod error;
mod partition_key;

pub use error::ErrorCode;
pub use partition_key::{shard_of, PartitionKey};

use crate::requests::PlaceOrder;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// A client's API key (gateway).
pub const API_KEY_HEADER: &str = "x-api-key";
/// The admin token: admin calls to the gateway's admin listener, and the gateway's
/// forwards of them to nodes. Never authenticates a user call.
pub const ADMIN_HEADER: &str = "x-admin-token";
/// The region's internal token: the gateway's forwards of user calls (with
/// `USER_HEADER`) and book reads to nodes. The gateway's listeners never accept it.
pub const INTERNAL_HEADER: &str = "x-internal-token";
/// The authenticated user, set by the gateway on gateway -> node calls.
pub const USER_HEADER: &str = "x-user-id";
/// Set by a gateway on its status probes of a node (the gateway's id): a node that hears
/// no gateway for `db.leader_silence_ms` gives up its leaderships.
pub const GATEWAY_HEADER: &str = "x-gateway-id";

/// Paths. Writes are forwarded to the leader on the same path unless a separate node path
/// is named; `{...}` are axum route parameters.
pub mod paths {
    // Both gateway and node.
    pub const METRICS: &str = "/metrics";
    pub const ORDERS: &str = "/v1/orders";
    pub const ORDERS_CANCEL: &str = "/v1/orders/cancel";
    pub const BOOK: &str = "/v1/book/{market}";
    pub const CONTRACT_ORDERS: &str = "/v1/contract/orders";
    pub const CONTRACT_ORDERS_CANCEL: &str = "/v1/contract/orders/cancel";
    pub const CONTRACT_BOOK: &str = "/v1/contract/book/{market}";
    pub const WITHDRAWALS: &str = "/v1/withdrawals";
    pub const OTC_QUOTES: &str = "/v1/otc/quotes";
    pub const ADMIN_OTC_REFERENCE: &str = "/admin/otc/reference";
    pub const ADMIN_MODE: &str = "/admin/mode";
    /// Runs the conservation check now (gateway: on whichever node holds the
    /// reconciliation lock; node: if it holds it, else `not_leader`).
    pub const ADMIN_RECONCILE: &str = "/admin/reconcile";

    // Gateway only (public).
    pub const HEALTH: &str = "/health";
    pub const ORDER: &str = "/v1/orders/{id}";
    pub const ORDER_BY_CLIENT_ID: &str = "/v1/orders/by-client-id/{cid}";
    pub const POSITIONS: &str = "/v1/contract/positions";
    pub const BALANCES: &str = "/v1/balances";
    pub const WITHDRAWAL: &str = "/v1/withdrawals/{id}";
    pub const OTC_ACCEPT: &str = "/v1/otc/quotes/{id}/accept";
    pub const ADMIN_USERS: &str = "/admin/users";
    pub const ADMIN_DEPOSITS: &str = "/admin/deposits";
    pub const ADMIN_WITHDRAWAL_ACTION: &str = "/admin/withdrawals/{id}/{action}";

    // Node only (internal: the internal token for user calls, the admin token for admin ones).
    pub const NODE_STATUS: &str = "/internal/status";
    pub const NODE_PING: &str = "/internal/ping";
    pub const NODE_ORDERS_BATCH: &str = "/v1/orders/batch";
    pub const NODE_DEPOSITS: &str = "/v1/deposits";
    pub const NODE_WITHDRAWAL_ACTION: &str = "/v1/withdrawals/{id}/action";
    pub const NODE_OTC_ACCEPT: &str = "/v1/otc/accept";

    /// `BOOK` of `market`.
    pub fn book(market: &str) -> String {
        format!("/v1/book/{market}")
    }
    /// `CONTRACT_BOOK` of `market`.
    pub fn contract_book(market: &str) -> String {
        format!("/v1/contract/book/{market}")
    }
    /// `NODE_WITHDRAWAL_ACTION` of withdrawal `id`.
    pub fn node_withdrawal_action(id: i64) -> String {
        format!("/v1/withdrawals/{id}/action")
    }
}

/// A node's `/internal/status`, as the node writes it and the gateway's probe reads it.
/// (Fields in alphabetical order: the JSON is the one `json!` used to render.)
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its latest monitor sample crossed a threshold (it may not be isolated yet). A peer
    /// that is breaching does not count as healthy when another node decides to step aside.
    #[serde(default)]
    pub breaching: bool,
    #[serde(default)]
    pub db_sessions: usize,
    /// Partitions it leads whose DB work (usually a commit) is outstanding: age in ms.
    #[serde(default)]
    pub in_flight_ms: BTreeMap<PartitionKey, u64>,
    pub isolated: bool,
    pub leading: Vec<PartitionKey>,
    /// `active` or `standby`.
    pub mode: String,
    pub module: String,
    pub node_id: String,
    #[serde(default)]
    pub region: String,
    /// When the gateway received this status (not on the wire).
    #[serde(skip)]
    pub received: Option<Instant>,
}

pub const MODE_ACTIVE: &str = "active";
pub const MODE_STANDBY: &str = "standby";

/// One order of a user: what the gateway forwards in a batch, and what a market leader
/// receives (`SpotCmd::Place`) once the node has normalized it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserOrder {
    pub user_id: i64,
    pub order: PlaceOrder,
}

/// Gateway -> node: placements of many users in one call (`NODE_ORDERS_BATCH`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceBatch {
    pub orders: Vec<UserOrder>,
}

/// One answer of a batch: the HTTP status and body the single call would have returned.
/// The gateway reads it with the body kept as raw JSON text (`B` = `Box<RawValue>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchReply<B = serde_json::Value> {
    pub status: u16,
    pub body: B,
}

/// The two kinds of order book market: spot (`matching/<symbol>`) and perpetual
/// (`contract/<symbol>`). They share the order type, the node and gateway handlers and
/// the leader logic; this says where they differ on the way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketKind {
    Spot,
    Perp,
}

impl MarketKind {
    pub fn key(self, symbol: &str) -> PartitionKey {
        match self {
            MarketKind::Spot => PartitionKey::matching(symbol),
            MarketKind::Perp => PartitionKey::contract(symbol),
        }
    }
    /// A configured market of this kind, or 400.
    pub fn check_market(self, ex: &engine_config::ExchangeConfig, symbol: &str) -> Result<(), crate::api::ApiError> {
        match self {
            MarketKind::Spot => crate::requests::spot_market(ex, symbol).map(drop),
            MarketKind::Perp => crate::requests::perp_market(ex, symbol).map(drop),
        }
    }
    pub fn validate(self, o: &PlaceOrder, ex: &engine_config::ExchangeConfig) -> Result<(), crate::api::ApiError> {
        match self {
            MarketKind::Spot => o.validate(ex),
            MarketKind::Perp => o.validate_perp(ex),
        }
    }
    /// The order as its leader takes it: a spot market order has no price, and only a
    /// spot market buy has a quote budget.
    pub fn normalize(self, mut o: PlaceOrder) -> PlaceOrder {
        use crate::book::{OrderKind, Side};
        let market = o.kind == OrderKind::Market;
        if self == MarketKind::Spot && market {
            o.price_ticks = 0;
        }
        if self == MarketKind::Perp || !market || o.side != Side::Buy {
            o.quote_budget_minor = 0;
        }
        o
    }
    pub fn place_path(self) -> &'static str {
        match self {
            MarketKind::Spot => paths::ORDERS,
            MarketKind::Perp => paths::CONTRACT_ORDERS,
        }
    }
    pub fn cancel_path(self) -> &'static str {
        match self {
            MarketKind::Spot => paths::ORDERS_CANCEL,
            MarketKind::Perp => paths::CONTRACT_ORDERS_CANCEL,
        }
    }
    pub fn book_path(self, market: &str) -> String {
        match self {
            MarketKind::Spot => paths::book(market),
            MarketKind::Perp => paths::contract_book(market),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_status_wire_form() {
        let s = NodeStatus {
            leading: vec![PartitionKey::matching("BTC-USD")],
            in_flight_ms: [(PartitionKey::wallet(1), 7)].into(),
            received: Some(Instant::now()),
            ..Default::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(
            text,
            r#"{"breaching":false,"db_sessions":0,"in_flight_ms":{"wallet/1":7},"isolated":false,"leading":["matching/BTC-USD"],"mode":"","module":"","node_id":"","region":""}"#
        );
        let back: NodeStatus = serde_json::from_str(&text).unwrap();
        assert_eq!(back.leading, s.leading);
        assert_eq!(back.in_flight_ms, s.in_flight_ms);
    }

    #[test]
    fn paths_fill_in_their_parameters() {
        assert_eq!(paths::book("BTC-USD"), paths::BOOK.replace("{market}", "BTC-USD"));
        assert_eq!(paths::contract_book("X"), paths::CONTRACT_BOOK.replace("{market}", "X"));
        assert_eq!(paths::node_withdrawal_action(5), paths::NODE_WITHDRAWAL_ACTION.replace("{id}", "5"));
    }
}
