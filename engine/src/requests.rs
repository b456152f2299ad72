//! Request bodies of the REST API, shared by the gateway (which validates them) and the
//! nodes (which validate again). Unknown fields and out-of-range values are 400s. The
//! internal gateway -> node types are in `protocol`.

use crate::api::ApiError;
use crate::book::{OrderKind, Side};
use crate::wallet::WithdrawalAction;
use engine_config::{ExchangeConfig, MarketConfig};
use serde::{Deserialize, Serialize};

/// Upper bound of quantities and prices, so that products fit in 64 bits.
pub const MAX_QTY: i64 = 1_000_000_000_000;
pub const MAX_PRICE: i64 = 1_000_000_000_000;
pub const MAX_AMOUNT: i64 = 4_000_000_000_000_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    pub market: String,
    pub client_order_id: String,
    pub side: Side,
    #[serde(rename = "type")]
    pub kind: OrderKind,
    #[serde(default)]
    pub price_ticks: i64,
    pub qty_lots: i64,
    /// Market buys only: the most quote (incl. fee) to spend.
    #[serde(default)]
    pub quote_budget_minor: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    pub market: String,
    pub order_id: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deposit {
    pub deposit_id: String,
    pub user_id: i64,
    pub asset: String,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdraw {
    pub client_id: String,
    pub asset: String,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalActionReq {
    pub user_id: i64,
    pub action: WithdrawalAction,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteReq {
    pub client_id: String,
    pub market: String,
    pub side: Side,
    pub qty_lots: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptReq {
    pub quote_id: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferencePrice {
    pub market: String,
    pub price_ticks: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeReq {
    pub mode: engine_config::RegionMode,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub user_id: i64,
}

pub fn check_id(name: &str, v: &str) -> Result<(), ApiError> {
    if v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::bad_request(format!("{name} must be 1-64 printable ASCII characters")));
    }
    Ok(())
}

pub fn check_range(name: &str, v: i64, min: i64, max: i64) -> Result<(), ApiError> {
    if v < min || v > max {
        return Err(ApiError::bad_request(format!("{name} must be in {min}..={max}")));
    }
    Ok(())
}

pub fn check_user(user_id: i64) -> Result<(), ApiError> {
    check_range("user_id", user_id, 1, i64::MAX)
}

pub fn spot_market<'a>(ex: &'a ExchangeConfig, symbol: &str) -> Result<(usize, &'a MarketConfig), ApiError> {
    find_market(&ex.spot_markets, symbol, "market")
}

pub fn perp_market<'a>(ex: &'a ExchangeConfig, symbol: &str) -> Result<(usize, &'a MarketConfig), ApiError> {
    find_market(&ex.perp_markets, symbol, "contract")
}

fn find_market<'a>(list: &'a [MarketConfig], symbol: &str, what: &str) -> Result<(usize, &'a MarketConfig), ApiError> {
    list.iter().enumerate().find(|(_, m)| m.symbol == symbol).ok_or_else(|| ApiError::bad_request(format!("unknown {what} {symbol:?}")))
}

pub fn known_asset(ex: &ExchangeConfig, asset: &str) -> Result<(), ApiError> {
    let known = ex.spot_markets.iter().chain(ex.perp_markets.iter()).any(|m| m.base == asset || m.quote == asset);
    if known {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("unknown asset {asset:?}")))
    }
}

impl PlaceOrder {
    pub fn validate(&self, ex: &ExchangeConfig) -> Result<(), ApiError> {
        spot_market(ex, &self.market)?;
        check_id("client_order_id", &self.client_order_id)?;
        check_range("qty_lots", self.qty_lots, 1, MAX_QTY)?;
        if self.kind == OrderKind::Market {
            if self.side == Side::Buy {
                check_range("quote_budget_minor", self.quote_budget_minor, 1, MAX_AMOUNT)?;
            }
        } else {
            self.check_limit()?;
        }
        Ok(())
    }
}

impl PlaceOrder {
    /// Contract orders: a configured perpetual, a limit price on every order type.
    pub fn validate_perp(&self, ex: &ExchangeConfig) -> Result<(), ApiError> {
        perp_market(ex, &self.market)?;
        if self.kind == OrderKind::Market {
            return Err(ApiError::bad_request("contract orders need a limit price: use limit, ioc, fok or post_only"));
        }
        check_id("client_order_id", &self.client_order_id)?;
        check_range("qty_lots", self.qty_lots, 1, MAX_QTY)?;
        self.check_limit()
    }

    /// A limit price, and a notional that fits.
    fn check_limit(&self) -> Result<(), ApiError> {
        check_range("price_ticks", self.price_ticks, 1, MAX_PRICE)?;
        if self.price_ticks.checked_mul(self.qty_lots).is_none_or(|n| n > MAX_AMOUNT) {
            return Err(ApiError::bad_request("price_ticks * qty_lots is too large"));
        }
        Ok(())
    }
}

impl Deposit {
    pub fn validate(&self, ex: &ExchangeConfig) -> Result<(), ApiError> {
        check_id("deposit_id", &self.deposit_id)?;
        check_user(self.user_id)?;
        known_asset(ex, &self.asset)?;
        check_range("amount_minor", self.amount_minor, 1, MAX_AMOUNT)
    }
}

impl Withdraw {
    pub fn validate(&self, ex: &ExchangeConfig) -> Result<(), ApiError> {
        check_id("client_id", &self.client_id)?;
        known_asset(ex, &self.asset)?;
        check_range("amount_minor", self.amount_minor, 1, MAX_AMOUNT)
    }
}

impl QuoteReq {
    pub fn validate(&self, ex: &ExchangeConfig) -> Result<(), ApiError> {
        check_id("client_id", &self.client_id)?;
        spot_market(ex, &self.market)?;
        check_range("qty_lots", self.qty_lots, 1, MAX_QTY)
    }
}

/// Parses a JSON body into `T`, mapping every failure to a 400 with the reason.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
