//! One perpetual contract's in-memory state: the book (same matching core as spot), what
//! each live order holds, and positions. Pure, no IO.
//!
//! Everything settles in the quote asset. An order holds `IM(limit notional) + max fee` on
//! entry (opening or closing alike). On a fill each side pays its fee from held funds; the
//! margin of the opening part moves to the contract's margin pool (the position's margin);
//! the closing part gets back its reserved margin, plus the closed share of the position's
//! margin and the realized PnL (floored at zero: a loss beyond the posted margin is absorbed
//! by the pool, which is the one account allowed to go negative; there is no liquidation
//! engine yet). Fees and margin are computed on the order's limit-price notional, so the
//! amounts a fill consumes never exceed what the order holds.

use crate::book::{Book, Fill, IdMap, NewOrder, OrderId, OrderKind, PlaceStatus, Resting, Side, UserId};
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
}

#[derive(Debug, Clone, Copy)]
struct Live {
    held: Held,
    limit: i64,
    qty: i64,
    filled: i64,
}

pub struct PerpMarket {
    pub book: Book,
    pub fees: Fees,
    pub im_bps: u32,
    pub fee_account: i64,
    pub pool_account: i64,
    live: IdMap<Live>,
    pub positions: HashMap<UserId, Position>,
    /// Users whose position changed since the last `take_dirty`.
    dirty: BTreeMap<UserId, ()>,
    fills: Vec<Fill>,
}

pub fn initial_margin(notional: i64, im_bps: u32) -> i64 {
    ((notional as i128 * im_bps as i128) / 10_000) as i64
}

impl PerpMarket {
    pub fn new(fees: Fees, im_bps: u32, fee_account: i64, pool_account: i64) -> Self {
        PerpMarket {
            book: Book::new(),
            fees,
            im_bps,
            fee_account,
            pool_account,
            live: IdMap::default(),
            positions: HashMap::new(),
            dirty: BTreeMap::new(),
            fills: Vec::new(),
        }
    }

    /// What entering `o` must hold, in quote: initial margin + maximum fee.
    pub fn reservation(&self, o: &NewOrder) -> Result<(Asset, i64), SettleError> {
        let n = settle::notional(o.price_ticks, o.qty_lots)?;
        let fee = settle::fee(n, self.fees.maker_bps.max(self.fees.taker_bps));
        let im = initial_margin(n, self.im_bps);
        im.checked_add(fee).map(|t| (Asset::Quote, t)).ok_or(SettleError::Overflow)
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

    /// Applies one side of a fill to its order's held funds and its owner's position.
    #[allow(clippy::too_many_arguments)]
    fn settle_side(
        &mut self,
        held: &mut Held,
        limit: i64,
        side: Side,
        q: i64,
        price: i64,
        fee_bps: u32,
        out: &mut Postings,
        reference: &str,
    ) -> Result<i64, SettleError> {
        let limit_notional = settle::notional(limit, q)?;
        let fee = settle::fee(limit_notional, fee_bps);
        let r = initial_margin(limit_notional, self.im_bps);
        held.held_minor -= fee + r;
        assert!(held.held_minor >= 0, "contract order reservation overdrawn");
        let user = held.user_id;
        let pos = self.positions.entry(user).or_default();
        let dq = if side == Side::Buy { q } else { -q };
        let closing = if pos.size_lots != 0 && pos.size_lots.signum() != dq.signum() { q.min(pos.size_lots.abs()) } else { 0 };
        let opening = q - closing;
        let r_open = initial_margin(settle::notional(limit, opening)?, self.im_bps);
        let r_close = r - r_open;
        let mut payout = 0i64;
        if closing > 0 {
            let abs = pos.size_lots.abs();
            let cost_share = ((pos.entry_cost_minor as i128 * closing as i128) / abs as i128) as i64;
            let margin_share = ((pos.margin_minor as i128 * closing as i128) / abs as i128) as i64;
            let exit = settle::notional(price, closing)?;
            let pnl = if pos.size_lots > 0 { exit - cost_share } else { cost_share - exit };
            pos.size_lots += if dq > 0 { closing } else { -closing };
            pos.entry_cost_minor -= cost_share;
            pos.margin_minor -= margin_share;
            pos.realized_pnl_minor += pnl;
            payout = (margin_share + pnl).max(0);
            if pos.size_lots == 0 {
                // Rounding leftovers of a fully closed position go with it.
                payout += pos.margin_minor;
                pos.margin_minor = 0;
                pos.entry_cost_minor = 0;
            }
        }
        if opening > 0 {
            pos.size_lots += if dq > 0 { opening } else { -opening };
            pos.entry_cost_minor += settle::notional(price, opening)?;
            pos.margin_minor += r_open;
        }
        assert!(pos.entry_cost_minor >= 0 && pos.margin_minor >= 0, "position accounting broken");
        self.dirty.insert(user, ());
        out.post(reference, Entry { owner_id: user, asset: Asset::Quote, d_available: r_close + payout, d_held: -(fee + r) });
        out.post(reference, Entry { owner_id: self.fee_account, asset: Asset::Quote, d_available: fee, d_held: 0 });
        out.post(reference, Entry { owner_id: self.pool_account, asset: Asset::Quote, d_available: r_open - payout, d_held: 0 });
        Ok(fee)
    }

    pub fn place(&mut self, o: NewOrder, reserved: i64, out: &mut Effects) -> Result<OrderUpdate, SettleError> {
        assert!(o.kind != OrderKind::Market, "contract market orders are rejected at validation");
        let mut taker = Held { user_id: o.user_id, side: o.side, asset: Asset::Quote, held_minor: reserved };
        self.fills.clear();
        let mut fills = std::mem::take(&mut self.fills);
        let res = self.book.place(o, &mut fills);
        let maker_side = if o.side == Side::Buy { Side::Sell } else { Side::Buy };
        for f in fills.drain(..) {
            let reference = format!("perp-fill:{}:{}", f.taker_order_id, f.maker_order_id);
            let taker_fee = self.settle_side(
                &mut taker,
                o.price_ticks,
                o.side,
                f.qty_lots,
                f.price_ticks,
                self.fees.taker_bps,
                &mut out.postings,
                &reference,
            )?;
            let mut maker = *self.live.get(&f.maker_order_id).expect("maker order not tracked");
            let maker_fee = self.settle_side(
                &mut maker.held,
                maker.limit,
                maker_side,
                f.qty_lots,
                f.price_ticks,
                self.fees.maker_bps,
                &mut out.postings,
                &reference,
            )?;
            maker.filled += f.qty_lots;
            assert!(maker.filled <= maker.qty, "maker overfilled");
            maker_update(&f, &mut maker.held, maker.filled, out);
            if f.maker_done {
                self.live.remove(&f.maker_order_id);
            } else {
                self.live.insert(f.maker_order_id, maker);
            }
            out.fills.push(FeeFill { fill: f, maker_fee, taker_fee });
        }
        self.fills = fills;
        let upd = taker_update(&o, &res, &mut taker, out);
        if res.status == PlaceStatus::Open {
            self.live.insert(o.id, Live { held: taker, limit: o.price_ticks, qty: o.qty_lots, filled: res.filled_qty });
        }
        Ok(upd)
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
