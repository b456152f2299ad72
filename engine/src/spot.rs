//! One spot market's in-memory state: the book plus what each live order still holds.
//! Pure, no IO: the partition leader feeds it orders whose reservation is committed and
//! writes back the order updates, fills and postings it produces.

use crate::book::{Book, Fill, IdMap, NewOrder, OrderId, OrderKind, PlaceResult, PlaceStatus, Resting, Side, Stop};
use crate::protocol::ErrorCode;
use crate::settle::{self, Asset, Fees, Held, Postings, SettleError};

/// Final or current state of an order, as stored in the `orders` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderUpdate {
    pub order_id: OrderId,
    pub filled_qty: i64,
    pub held_minor: i64,
    pub status: &'static str,
    /// Why the order was rejected, or cancelled by the engine rather than its own terms.
    pub reason: Option<ErrorCode>,
}

impl OrderUpdate {
    /// An order refused before matching (nothing held any more).
    pub fn rejected(order_id: OrderId, reason: ErrorCode) -> Self {
        OrderUpdate { order_id, filled_qty: 0, held_minor: 0, status: "rejected", reason: Some(reason) }
    }
}

/// The error code a `Stop` is reported with (the order's `reason`).
pub fn stop_code(s: Stop) -> ErrorCode {
    match s {
        Stop::SelfTrade => ErrorCode::SelfTrade,
        Stop::PriceBand => ErrorCode::PriceBand,
    }
}

#[derive(Debug, Clone, Copy)]
struct Live {
    held: Held,
    qty: i64,
    filled: i64,
}

/// What matching produces, appended to by `place` (spot and perpetual alike): order
/// updates (the taker and the makers it touched), fills with their fees, and postings.
#[derive(Debug, Default)]
pub struct Effects {
    pub updates: Vec<OrderUpdate>,
    pub fills: Vec<FeeFill>,
    pub postings: Postings,
}

impl Effects {
    pub fn clear(&mut self) {
        self.updates.clear();
        self.fills.clear();
        self.postings.clear();
    }
}

/// A fill with its fees, ready to be stored.
#[derive(Debug, Clone, Copy)]
pub struct FeeFill {
    pub fill: Fill,
    pub maker_fee: i64,
    pub taker_fee: i64,
}

pub struct SpotMarket {
    pub book: Book,
    pub fees: Fees,
    pub fee_account: i64,
    live: IdMap<Live>,
    fills: Vec<Fill>,
}

impl SpotMarket {
    pub fn new(fees: Fees, fee_account: i64) -> Self {
        SpotMarket { book: Book::new(), fees, fee_account, live: IdMap::default(), fills: Vec::new() }
    }

    /// The same market with a price band of `band_bps` around the last trade (0: none).
    pub fn with_price_band(mut self, band_bps: u32) -> Self {
        assert!(self.book.is_empty(), "the band is set on an empty market");
        self.book = Book::with_band(band_bps);
        self
    }

    /// Restores a resting order at rebuild time (in time order).
    pub fn restore(&mut self, r: Resting, qty: i64, filled: i64, held_minor: i64) {
        let asset = if r.side == Side::Buy { Asset::Quote } else { Asset::Base };
        let held = Held { user_id: r.user_id, side: r.side, asset, held_minor };
        self.live.insert(r.id, Live { held, qty, filled });
        self.book.restore(r);
    }

    /// Matches an order whose reservation `reserved` is already held. Appends order
    /// updates (taker and touched makers), fills and postings.
    pub fn place(&mut self, o: NewOrder, reserved: i64, out: &mut Effects) -> Result<OrderUpdate, SettleError> {
        let asset = if o.side == Side::Buy { Asset::Quote } else { Asset::Base };
        let mut taker = Held { user_id: o.user_id, side: o.side, asset, held_minor: reserved };
        let mut book_order = o;
        if o.kind == OrderKind::Market && o.side == Side::Buy {
            book_order.quote_budget = settle::market_buy_spend_limit(o.quote_budget, self.fees);
        }
        self.fills.clear();
        let res = self.book.place(book_order, &mut self.fills);
        for f in std::mem::take(&mut self.fills) {
            let reference = format!("fill:{}:{}", f.taker_order_id, f.maker_order_id);
            let maker = self.live.get_mut(&f.maker_order_id).expect("maker order not tracked");
            let (maker_fee, taker_fee) =
                settle::post_fill(&f, self.fees, self.fee_account, &mut taker, &mut maker.held, &mut out.postings, &reference)?;
            maker.filled += f.qty_lots;
            assert!(maker.filled <= maker.qty, "maker overfilled");
            maker_update(&f, &mut maker.held, maker.filled, out);
            if f.maker_done {
                self.live.remove(&f.maker_order_id);
            }
            out.fills.push(FeeFill { fill: f, maker_fee, taker_fee });
        }
        assert!(res.filled_qty <= o.qty_lots, "taker overfilled");
        let upd = taker_update(&o, &res, &mut taker, out);
        if res.status == PlaceStatus::Open {
            self.live.insert(o.id, Live { held: taker, qty: o.qty_lots, filled: res.filled_qty });
        }
        Ok(upd)
    }

    /// Cancels a resting order, releasing what it holds. None if it is not resting.
    pub fn cancel(&mut self, id: OrderId, postings: &mut Postings) -> Option<OrderUpdate> {
        self.book.cancel(id)?;
        let mut l = self.live.remove(&id).expect("resting order not tracked");
        Some(canceled(id, &mut l.held, l.filled, postings))
    }

    /// Sum of what live orders hold, per (asset): used by invariant checks.
    pub fn total_held(&self, asset: Asset) -> i64 {
        self.live.values().filter(|l| l.held.asset == asset).map(|l| l.held.held_minor).sum()
    }
}

// The order-state tail both market kinds share (spot here, perpetuals in `perp`): what a
// fill, the end of matching and a cancel do to an order's hold and its stored state.

/// A maker's update after fill `f` brought it to `filled`: done (what it still held
/// released; the caller stops tracking it) or still open.
pub(crate) fn maker_update(f: &Fill, held: &mut Held, filled: i64, out: &mut Effects) {
    if f.maker_done {
        settle::post_release(held, &mut out.postings, &format!("done:{}", f.maker_order_id));
        out.updates.push(OrderUpdate { order_id: f.maker_order_id, filled_qty: filled, held_minor: 0, status: "filled", reason: None });
    } else {
        let upd = OrderUpdate { order_id: f.maker_order_id, filled_qty: filled, held_minor: held.held_minor, status: "open", reason: None };
        out.updates.push(upd);
    }
}

/// The taker's update once matching is over: open (it rests; the caller tracks it with
/// `taker`, what it still holds), or filled, canceled or rejected (what it held released).
pub(crate) fn taker_update(o: &NewOrder, res: &PlaceResult, taker: &mut Held, out: &mut Effects) -> OrderUpdate {
    let status = match res.status {
        PlaceStatus::Open => "open",
        PlaceStatus::Filled => "filled",
        PlaceStatus::Canceled => "canceled",
        PlaceStatus::Rejected => "rejected",
    };
    if res.status != PlaceStatus::Open {
        settle::post_release(taker, &mut out.postings, &format!("done:{}", o.id));
    }
    let reason = res.stop.map(stop_code);
    let upd = OrderUpdate { order_id: o.id, filled_qty: res.filled_qty, held_minor: taker.held_minor, status, reason };
    out.updates.push(upd);
    upd
}

/// A resting order taken out of the book by its owner: what it held released.
pub(crate) fn canceled(id: OrderId, held: &mut Held, filled: i64, postings: &mut Postings) -> OrderUpdate {
    settle::post_release(held, postings, &format!("cancel:{id}"));
    OrderUpdate { order_id: id, filled_qty: filled, held_minor: 0, status: "canceled", reason: None }
}
