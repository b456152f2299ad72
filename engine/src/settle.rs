//! Spot settlement: turns order entry, fills and order completion into double-entry
//! balance movements. Pure, no IO. Every movement posted here sums to zero per asset.
//!
//! Funds are reserved ("held") on entry: a buy holds `notional + max fee` in quote, a sell
//! holds its quantity in base, a market buy holds its quote budget. Fills consume held
//! funds; whatever is left when the order is done goes back to available.

use crate::book::{Fill, NewOrder, OrderKind, Side, UserId};
use std::collections::BTreeMap;

/// Index of an asset within a market: base or quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Asset {
    Base,
    Quote,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    pub maker_bps: u32,
    pub taker_bps: u32,
}

impl Fees {
    fn max_bps(self) -> u32 {
        self.maker_bps.max(self.taker_bps)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettleError {
    #[error("amount overflows 64 bits")]
    Overflow,
}

pub fn notional(price_ticks: i64, qty_lots: i64) -> Result<i64, SettleError> {
    price_ticks.checked_mul(qty_lots).ok_or(SettleError::Overflow)
}

/// Fee in quote minor units, rounded down.
pub fn fee(notional_minor: i64, bps: u32) -> i64 {
    ((notional_minor as i128 * bps as i128) / 10_000) as i64
}

/// What entering `o` must hold: (asset, amount_minor).
pub fn reservation(o: &NewOrder, fees: Fees) -> Result<(Asset, i64), SettleError> {
    match (o.side, o.kind) {
        (Side::Sell, _) => Ok((Asset::Base, o.qty_lots)),
        (Side::Buy, OrderKind::Market) => Ok((Asset::Quote, o.quote_budget)),
        (Side::Buy, _) => {
            let n = notional(o.price_ticks, o.qty_lots)?;
            n.checked_add(fee(n, fees.max_bps())).map(|t| (Asset::Quote, t)).ok_or(SettleError::Overflow)
        }
    }
}

/// The notional a market buy with `budget` may spend so that notional + taker fee fits.
pub fn market_buy_spend_limit(budget: i64, fees: Fees) -> i64 {
    ((budget as i128 * 10_000) / (10_000 + fees.taker_bps as i128)) as i64
}

/// One movement of one account, as written to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub owner_id: i64,
    pub asset: Asset,
    pub d_available: i64,
    pub d_held: i64,
}

/// Movements of one batch, netted per account: (d_available, d_held). The leader writes
/// them as the batch's balance changes and as its ledger journal entry.
#[derive(Debug, Default, Clone)]
pub struct Postings {
    pub net: BTreeMap<(i64, Asset), (i64, i64)>,
}

impl Postings {
    /// Posts one movement. `_reference` names its cause (kept for readability of callers).
    pub fn post(&mut self, _reference: &str, e: Entry) {
        if e.d_available == 0 && e.d_held == 0 {
            return;
        }
        let n = self.net.entry((e.owner_id, e.asset)).or_insert((0, 0));
        n.0 += e.d_available;
        n.1 += e.d_held;
    }
    pub fn clear(&mut self) {
        self.net.clear();
    }
}

/// How much of its reservation an order still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub user_id: UserId,
    pub side: Side,
    pub asset: Asset,
    pub held_minor: i64,
}

/// Posts a fill. `taker`/`maker` are the two orders' held amounts, decreased in place.
pub fn post_fill(
    f: &Fill,
    fees: Fees,
    fee_account: i64,
    taker: &mut Held,
    maker: &mut Held,
    out: &mut Postings,
    reference: &str,
) -> Result<(i64, i64), SettleError> {
    let n = notional(f.price_ticks, f.qty_lots)?;
    let taker_fee = fee(n, fees.taker_bps);
    let maker_fee = fee(n, fees.maker_bps);
    let (buyer, buyer_fee, seller, seller_fee) = match f.taker_side {
        Side::Buy => (taker, taker_fee, maker, maker_fee),
        Side::Sell => (maker, maker_fee, taker, taker_fee),
    };
    let buyer_cost = n + buyer_fee;
    buyer.held_minor -= buyer_cost;
    seller.held_minor -= f.qty_lots;
    assert!(buyer.held_minor >= 0, "buyer reservation overdrawn by fill {f:?}");
    assert!(seller.held_minor >= 0, "seller reservation overdrawn by fill {f:?}");
    out.post(reference, Entry { owner_id: buyer.user_id, asset: Asset::Quote, d_available: 0, d_held: -buyer_cost });
    out.post(reference, Entry { owner_id: buyer.user_id, asset: Asset::Base, d_available: f.qty_lots, d_held: 0 });
    out.post(reference, Entry { owner_id: seller.user_id, asset: Asset::Base, d_available: 0, d_held: -f.qty_lots });
    out.post(reference, Entry { owner_id: seller.user_id, asset: Asset::Quote, d_available: n - seller_fee, d_held: 0 });
    out.post(reference, Entry { owner_id: fee_account, asset: Asset::Quote, d_available: buyer_fee + seller_fee, d_held: 0 });
    Ok((maker_fee, taker_fee))
}

/// Posts the reservation of a new order (available -> held).
pub fn post_reserve(user_id: UserId, asset: Asset, amount: i64, out: &mut Postings, reference: &str) {
    out.post(reference, Entry { owner_id: user_id, asset, d_available: -amount, d_held: amount });
}

/// Releases what an order still holds once it is done (filled, cancelled).
pub fn post_release(h: &mut Held, out: &mut Postings, reference: &str) {
    let amount = h.held_minor;
    assert!(amount >= 0, "negative held amount on release");
    out.post(reference, Entry { owner_id: h.user_id, asset: h.asset, d_available: amount, d_held: -amount });
    h.held_minor = 0;
}
