//! One perpetual contract's in-memory state: the book (same matching core as spot), what
//! each live order holds, and positions. Pure, no IO.
//!
//! Everything settles in the quote asset. Fees and initial margin are charged on the trade
//! notional (fill price x quantity). An order holds on entry what its fills can consume at
//! most, `IM(n) + fee(n, max(maker, taker))` with `n` its quantity at the worst price it can
//! trade at: a buy trades at its limit or below; a sell trades at its limit or above, as a
//! taker at most at the best bid it finds, so it holds against `max(limit, best bid)` at
//! entry (the leader also counts the bids of earlier orders of the same batch). A resting
//! order trades only at its own limit, so once it rests it keeps exactly what its remaining
//! quantity needs at its limit and the excess goes back to available (after its taking part,
//! and after each maker fill). An order whose hold does not cover its worst case when it
//! reaches the book is rejected (`insufficient_funds`) instead of overdrawn.
//!
//! On a fill each side pays its fee from held funds; the margin of the opening part moves
//! to the contract's margin pool (the position's margin); the closing part gets back its
//! reserved margin, and is owed the closed share of the position's margin plus the
//! realized PnL. What is owed, the liquidations at the mark and the insurance fund are in
//! `solvency`: neither the pool nor the insurance fund ever goes negative; a market that
//! cannot pay what is owed halts.

mod solvency;

pub use solvency::{equity, maintenance, Accounts, Halt, Margins};

use crate::book::{Book, Fill, IdMap, NewOrder, OrderId, OrderKind, PlaceStatus, Resting, Side, UserId};
use crate::protocol::ErrorCode;
use crate::settle::{self, Asset, Entry, Fees, Held, Postings, SettleError};
use crate::spot::{canceled, maker_update, taker_update, Effects, FeeFill, OrderUpdate};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// Signed: > 0 long, < 0 short.
    pub size_lots: i64,
    /// Notional paid for the open size (absolute).
    pub entry_cost_minor: i64,
    pub margin_minor: i64,
    pub realized_pnl_minor: i64,
}

impl Position {
    /// Average entry price (ticks), 0 when flat.
    pub fn entry_price_ticks(&self) -> i64 {
        if self.size_lots == 0 {
            0
        } else {
            self.entry_cost_minor / self.size_lots.abs()
        }
    }

    /// Closes `q` lots at `price`: returns what the closed part is owed, its share of the
    /// margin plus its realized PnL (negative: a loss beyond that margin). A position
    /// closed in full takes its rounding leftovers of margin with it.
    fn close(&mut self, q: i64, price: i64) -> Result<i64, SettleError> {
        let abs = self.size_lots.abs();
        assert!(q > 0 && q <= abs, "closing {q} lots of a position of {abs}");
        let cost_share = ((self.entry_cost_minor as i128 * q as i128) / abs as i128) as i64;
        let margin_share = ((self.margin_minor as i128 * q as i128) / abs as i128) as i64;
        let exit = settle::notional(price, q)?;
        let pnl = if self.size_lots > 0 { exit - cost_share } else { cost_share - exit };
        self.size_lots -= self.size_lots.signum() * q;
        self.entry_cost_minor -= cost_share;
        self.margin_minor -= margin_share;
        self.realized_pnl_minor += pnl;
        let mut owed = margin_share + pnl;
        if self.size_lots == 0 {
            owed += self.margin_minor;
            self.margin_minor = 0;
            self.entry_cost_minor = 0;
        }
        Ok(owed)
    }
}

#[derive(Debug, Clone, Copy)]
struct Live {
    held: Held,
    limit: i64,
    qty: i64,
    filled: i64,
}

/// One side of a fill, settled on its order's hold and its owner's position; what it is
/// owed (closing part) is paid by `solvency` once both sides' margins are in.
struct Leg {
    user: UserId,
    fee: i64,
    r_open: i64,
    r_close: i64,
    owed: Option<i64>,
}

pub struct PerpMarket {
    pub book: Book,
    pub fees: Fees,
    pub margins: Margins,
    pub accounts: Accounts,
    live: IdMap<Live>,
    pub positions: HashMap<UserId, Position>,
    /// Users whose position changed since the last `take_dirty`.
    dirty: BTreeMap<UserId, ()>,
    fills: Vec<Fill>,
    /// Balances of the margin pool and the insurance fund: this market's leader is their
    /// only writer, so its memory (loaded at takeover, moved with every posting) is exact.
    pool_minor: i64,
    insurance_minor: i64,
    /// Set once the market could not pay what it owed (see `solvency`); never cleared here.
    halt: Option<Halt>,
    /// The halt happened since the last `take_new_halt`.
    new_halt: bool,
}

pub fn initial_margin(notional: i64, im_bps: u32) -> i64 {
    ((notional as i128 * im_bps as i128) / 10_000) as i64
}

impl PerpMarket {
    pub fn new(fees: Fees, margins: Margins, accounts: Accounts) -> Self {
        assert!(margins.mm_bps <= margins.im_bps, "maintenance margin {margins:?} above the initial margin");
        PerpMarket {
            book: Book::new(),
            fees,
            margins,
            accounts,
            live: IdMap::default(),
            positions: HashMap::new(),
            dirty: BTreeMap::new(),
            fills: Vec::new(),
            pool_minor: 0,
            insurance_minor: 0,
            halt: None,
            new_halt: false,
        }
    }

    /// The same market with a price band of `band_bps` around the last trade (0: none).
    pub fn with_price_band(mut self, band_bps: u32) -> Self {
        assert!(self.book.is_empty(), "the band is set on an empty market");
        self.book = Book::with_band(band_bps);
        self
    }

    /// The most `qty` lots filled at `price` or better can consume: initial margin +
    /// maximum fee of their notional. `i64::MAX` (nobody can hold it) when the notional
    /// does not fit in 64 bits.
    pub fn need(&self, price: i64, qty: i64) -> i64 {
        let Ok(n) = settle::notional(price, qty) else { return i64::MAX };
        let fee = settle::fee(n, self.fees.maker_bps.max(self.fees.taker_bps));
        initial_margin(n, self.margins.im_bps).saturating_add(fee)
    }

    /// What entering `o` must hold, in quote, given the book as it is now.
    pub fn reservation(&self, o: &NewOrder) -> Result<(Asset, i64), SettleError> {
        self.reservation_with(o, None)
    }

    /// What entering `o` must hold, in quote, if bids up to `bid` may also rest before it
    /// (orders earlier in its batch): `need` at the worst price it can trade at, its limit
    /// for a buy, `max(limit, best bid, bid)` for a sell.
    pub fn reservation_with(&self, o: &NewOrder, bid: Option<i64>) -> Result<(Asset, i64), SettleError> {
        let worst = match o.side {
            Side::Buy => o.price_ticks,
            Side::Sell => o.price_ticks.max(self.book.best_bid().unwrap_or(0)).max(bid.unwrap_or(0)),
        };
        Ok((Asset::Quote, self.need(worst, o.qty_lots)))
    }

    pub fn restore(&mut self, r: Resting, qty: i64, filled: i64, held_minor: i64) {
        let held = Held { user_id: r.user_id, side: r.side, asset: Asset::Quote, held_minor };
        self.live.insert(r.id, Live { held, limit: r.price_ticks, qty, filled });
        self.book.restore(r);
    }

    pub fn restore_position(&mut self, user: UserId, p: Position) {
        self.positions.insert(user, p);
    }

    /// Positions changed since the last call.
    pub fn take_dirty(&mut self) -> Vec<(UserId, Position)> {
        let d = std::mem::take(&mut self.dirty);
        d.into_keys().map(|u| (u, self.positions.get(&u).copied().unwrap_or_default())).collect()
    }

    /// Applies one side of a fill (`q` lots at `price`) to its order's held funds and its
    /// owner's position: fee and initial margin on the trade notional.
    fn settle_side(&mut self, held: &mut Held, side: Side, q: i64, price: i64, fee_bps: u32) -> Result<Leg, SettleError> {
        let trade_notional = settle::notional(price, q)?;
        let fee = settle::fee(trade_notional, fee_bps);
        let r = initial_margin(trade_notional, self.margins.im_bps);
        assert!(fee + r <= held.held_minor, "contract order reservation overdrawn: consumes {} of {}", fee + r, held.held_minor);
        held.held_minor -= fee + r;
        let user = held.user_id;
        let pos = self.positions.entry(user).or_default();
        let dq = if side == Side::Buy { q } else { -q };
        let closing = if pos.size_lots != 0 && pos.size_lots.signum() != dq.signum() { q.min(pos.size_lots.abs()) } else { 0 };
        let opening = q - closing;
        let r_open = initial_margin(settle::notional(price, opening)?, self.margins.im_bps);
        let owed = if closing > 0 { Some(pos.close(closing, price)?) } else { None };
        if opening > 0 {
            pos.size_lots += if dq > 0 { opening } else { -opening };
            pos.entry_cost_minor += settle::notional(price, opening)?;
            pos.margin_minor += r_open;
        }
        assert!(pos.entry_cost_minor >= 0 && pos.margin_minor >= 0, "position accounting broken");
        self.dirty.insert(user, ());
        Ok(Leg { user, fee, r_open, r_close: r - r_open, owed })
    }

    /// Posts a leg's fee and margins: the fee to the fee account, the opening margin to the
    /// pool, the closing part's reserved margin back to available.
    fn post_leg(&mut self, leg: &Leg, out: &mut Postings, reference: &str) {
        let d_held = -(leg.fee + leg.r_open + leg.r_close);
        out.post(reference, Entry { owner_id: leg.user, asset: Asset::Quote, d_available: leg.r_close, d_held });
        out.post(reference, Entry { owner_id: self.accounts.fee, asset: Asset::Quote, d_available: leg.fee, d_held: 0 });
        self.pool_in(leg.r_open, out, reference);
    }

    /// Brings the hold of an order that rests at `limit` with `remaining` lots down to
    /// what those lots need (they trade at `limit` only); the excess goes back to available.
    fn release_excess(&self, held: &mut Held, limit: i64, remaining: i64, out: &mut Postings, reference: &str) {
        let need = self.need(limit, remaining);
        assert!(held.held_minor >= need, "resting contract order holds {} < {need} its remaining lots need", held.held_minor);
        let excess = held.held_minor - need;
        out.post(reference, Entry { owner_id: held.user_id, asset: Asset::Quote, d_available: excess, d_held: -excess });
        held.held_minor = need;
    }

    /// Matches an order whose reservation `reserved` is already held. Appends order
    /// updates (taker and touched makers), fills and postings. A halted market, and an
    /// order whose hold no longer covers its worst case, are refused before matching.
    pub fn place(&mut self, o: NewOrder, reserved: i64, out: &mut Effects) -> Result<OrderUpdate, SettleError> {
        assert!(o.kind != OrderKind::Market, "contract market orders are rejected at validation");
        let mut taker = Held { user_id: o.user_id, side: o.side, asset: Asset::Quote, held_minor: reserved };
        let refused = if self.halt.is_some() {
            Some(ErrorCode::MarketHalted)
        } else if reserved < self.reservation(&o)?.1 {
            // Its fills could now consume more than it holds (bids rose since it was decided).
            Some(ErrorCode::InsufficientFunds)
        } else {
            None
        };
        if let Some(code) = refused {
            settle::post_release(&mut taker, &mut out.postings, &format!("done:{}", o.id));
            let upd = OrderUpdate::rejected(o.id, code);
            out.updates.push(upd);
            return Ok(upd);
        }
        let mut fills = std::mem::take(&mut self.fills);
        fills.clear();
        let res = self.book.place(o, &mut fills);
        for f in fills.drain(..) {
            self.settle_fill(&f, o.side, &mut taker, out)?;
        }
        self.fills = fills;
        if res.status == PlaceStatus::Open {
            self.release_excess(&mut taker, o.price_ticks, res.remaining_qty, &mut out.postings, &format!("rest:{}", o.id));
        }
        let upd = taker_update(&o, &res, &mut taker, out);
        if res.status == PlaceStatus::Open {
            self.live.insert(o.id, Live { held: taker, limit: o.price_ticks, qty: o.qty_lots, filled: res.filled_qty });
        }
        Ok(upd)
    }

    /// Settles fill `f` for the taker (on `taker_side`, holding `taker`) and its maker,
    /// and liquidates at the new mark (the fill's price).
    fn settle_fill(&mut self, f: &Fill, taker_side: Side, taker: &mut Held, out: &mut Effects) -> Result<(), SettleError> {
        let reference = format!("perp-fill:{}:{}", f.taker_order_id, f.maker_order_id);
        let maker_side = if taker_side == Side::Buy { Side::Sell } else { Side::Buy };
        let (q, price) = (f.qty_lots, f.price_ticks);
        let t = self.settle_side(taker, taker_side, q, price, self.fees.taker_bps)?;
        let mut maker = *self.live.get(&f.maker_order_id).expect("maker order not tracked");
        let m = self.settle_side(&mut maker.held, maker_side, q, price, self.fees.maker_bps)?;
        self.post_leg(&t, &mut out.postings, &reference);
        self.post_leg(&m, &mut out.postings, &reference);
        let mut owed: Vec<(i64, i64)> = [&t, &m].iter().filter_map(|l| Some((l.user, l.owed?))).collect();
        // The fill's price is the new mark: what falls below maintenance there is closed
        // before anything is paid, so its losses are covered first.
        owed.extend(self.liquidate(price)?);
        self.settle_owed(&owed, price, &mut out.postings, &reference);
        maker.filled += q;
        assert!(maker.filled <= maker.qty, "maker overfilled");
        if f.maker_done {
            self.live.remove(&f.maker_order_id);
        } else {
            self.release_excess(&mut maker.held, maker.limit, maker.qty - maker.filled, &mut out.postings, &reference);
            self.live.insert(f.maker_order_id, maker);
        }
        maker_update(f, &mut maker.held, maker.filled, out);
        out.fills.push(FeeFill { fill: *f, maker_fee: m.fee, taker_fee: t.fee });
        Ok(())
    }

    pub fn cancel(&mut self, id: OrderId, postings: &mut Postings) -> Option<OrderUpdate> {
        self.book.cancel(id)?;
        let mut l = self.live.remove(&id).expect("resting order not tracked");
        Some(canceled(id, &mut l.held, l.filled, postings))
    }

    pub fn total_held(&self) -> i64 {
        self.live.values().map(|l| l.held.held_minor).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEE: i64 = -1000;
    const POOL: i64 = -2000;
    const INSURANCE: i64 = -3000;

    /// Maker 10 bps, taker 20 bps, initial margin 10 % (10x), maintenance 5 %.
    fn market() -> PerpMarket {
        let accounts = Accounts { fee: FEE, pool: POOL, insurance: INSURANCE };
        PerpMarket::new(Fees { maker_bps: 10, taker_bps: 20 }, Margins { im_bps: 1000, mm_bps: 500 }, accounts)
    }

    /// Places a limit order holding what `reservation` asks; returns its update and effects.
    fn place(m: &mut PerpMarket, id: i64, user: i64, side: Side, price: i64, qty: i64) -> (OrderUpdate, Effects, i64) {
        let o = NewOrder { id, user_id: user, side, kind: OrderKind::Limit, price_ticks: price, qty_lots: qty, quote_budget: 0 };
        let (_, reserved) = m.reservation(&o).unwrap();
        let mut out = Effects::default();
        settle::post_reserve(user, Asset::Quote, reserved, &mut out.postings, "reserve");
        let u = m.place(o, reserved, &mut out).unwrap();
        (u, out, reserved)
    }

    fn net(out: &Effects, owner: i64) -> (i64, i64) {
        out.postings.net.get(&(owner, Asset::Quote)).copied().unwrap_or_default()
    }

    /// Issue #17: a sell at limit 1 for 1000 lots filled against bids at 100 reserved 102,
    /// paid a fee of 2 instead of 200 and opened a 100,000 position on 100 of margin.
    #[test]
    fn sell_at_one_tick_pays_fee_and_margin_on_the_trade_price() {
        let mut m = market();
        place(&mut m, 1, 1, Side::Buy, 100, 1000);
        let (u, out, reserved) = place(&mut m, 2, 2, Side::Sell, 1, 1000);
        assert_eq!((u.status, u.filled_qty), ("filled", 1000));
        assert_eq!(reserved, 10_000 + 200, "held against the best bid, not the limit");
        assert_eq!((out.fills[0].taker_fee, out.fills[0].maker_fee), (200, 100));
        let short = m.positions[&2];
        assert_eq!((short.size_lots, short.entry_cost_minor, short.margin_minor), (-1000, 100_000, 10_000));
        assert_eq!(m.positions[&1].margin_minor, 10_000);
        assert_eq!(net(&out, 2), (-10_200, 0), "the seller pays margin and fee, holds nothing after");
        assert_eq!(net(&out, FEE), (300, 0));
        assert_eq!(net(&out, POOL), (20_000, 0));
    }

    /// The buy side of the same bug: a high limit was charged on its limit notional.
    #[test]
    fn buy_with_a_high_limit_pays_on_the_trade_price_and_keeps_only_what_it_needs() {
        let mut m = market();
        place(&mut m, 1, 1, Side::Sell, 100, 10);
        let (u, out, reserved) = place(&mut m, 2, 2, Side::Buy, 1000, 20);
        assert_eq!(reserved, 2_000 + 40);
        assert_eq!((u.status, u.filled_qty), ("open", 10));
        assert_eq!(out.fills[0].taker_fee, 2);
        assert_eq!(m.positions[&2].margin_minor, 100);
        // The 10 resting lots trade at 1000 only: they keep 1000 + 20 held, the rest is back.
        assert_eq!(u.held_minor, 1_000 + 20);
        assert_eq!(net(&out, 2), (-(100 + 2) - (1_000 + 20), 1_000 + 20));
        assert_eq!(m.total_held(), 1_000 + 20);
    }

    /// A resting maker is charged at its own price, and keeps exactly what its rest needs.
    #[test]
    fn maker_keeps_what_its_remaining_lots_need() {
        let mut m = market();
        let (_, _, reserved) = place(&mut m, 1, 1, Side::Sell, 333, 7);
        assert_eq!(reserved, m.need(333, 7));
        let (_, out, _) = place(&mut m, 2, 2, Side::Buy, 400, 3);
        assert_eq!(out.fills[0].fill.price_ticks, 333);
        assert_eq!(m.total_held(), m.need(333, 4));
        assert_eq!(m.positions[&1].margin_minor, initial_margin(999, 1000));
    }

    /// Below maintenance at the mark (the last trade), a position is closed there against
    /// the opposite position with the largest unrealized profit; its remaining equity goes
    /// to the insurance fund, the counterparty gets its margin and profit from the pool.
    #[test]
    fn liquidation_closes_at_the_mark_against_the_most_profitable_opposite_position() {
        let mut m = market();
        place(&mut m, 1, 1, Side::Buy, 100, 10);
        place(&mut m, 2, 2, Side::Sell, 100, 10);
        place(&mut m, 3, 3, Side::Buy, 102, 10);
        place(&mut m, 4, 4, Side::Sell, 102, 10);
        place(&mut m, 5, 5, Side::Buy, 106, 1);
        let (_, out, _) = place(&mut m, 6, 6, Side::Sell, 106, 1);
        // At 106, 2's short (margin 100, loss 60) has 40 < 53 (5 % of 1060); 4's has 62.
        let size = |u: i64| m.positions.get(&u).map_or(0, |p| p.size_lots);
        assert_eq!((size(1), size(2), size(3), size(4)), (0, 0, 10, -10));
        assert_eq!(net(&out, INSURANCE), (40, 0));
        assert_eq!(net(&out, 1), (100 + 60, 0), "1's margin and profit at the mark");
        assert_eq!(m.insurance_minor(), 40);
        assert_eq!(m.pool_minor() as i128, m.open_equity(106));
        assert_eq!(m.halt(), None);
    }

    /// Bids that rest before a sell in the same batch raise what the sell must hold; a sell
    /// that reaches the book holding less than its worst case is rejected, not overdrawn.
    #[test]
    fn a_sell_holds_against_the_highest_bid_it_can_meet() {
        let mut m = market();
        let sell = NewOrder { id: 9, user_id: 2, side: Side::Sell, kind: OrderKind::Limit, price_ticks: 1, qty_lots: 10, quote_budget: 0 };
        assert_eq!(m.reservation(&sell).unwrap().1, m.need(1, 10));
        assert_eq!(m.reservation_with(&sell, Some(500)).unwrap().1, m.need(500, 10));
        let (_, too_little) = m.reservation(&sell).unwrap();
        place(&mut m, 1, 1, Side::Buy, 500, 10);
        let mut out = Effects::default();
        settle::post_reserve(2, Asset::Quote, too_little, &mut out.postings, "reserve");
        let u = m.place(sell, too_little, &mut out).unwrap();
        assert_eq!((u.status, u.reason), ("rejected", Some(ErrorCode::InsufficientFunds)));
        assert!(out.fills.is_empty());
        assert_eq!(net(&out, 2), (0, 0));
        // A notional beyond 64 bits can never be held.
        assert_eq!(m.need(i64::MAX, 2), i64::MAX);
    }
}
