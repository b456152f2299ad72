//! The limit order book: price-time priority, pure in-memory, never does IO.
//!
//! Prices are `price_ticks` (quote minor units per lot), quantities `qty_lots`. The book
//! knows nothing about balances; `settle` turns its fills into ledger movements.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Hasher for engine-assigned order ids (dense integers): one multiply, no SipHash.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ *b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_i64(&mut self, i: i64) {
        self.0 = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub type IdMap<V> = HashMap<OrderId, V, BuildHasherDefault<IdHasher>>;

pub type OrderId = i64;
pub type UserId = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_i16(self) -> i16 {
        match self {
            Side::Buy => 0,
            Side::Sell => 1,
        }
    }
    pub fn from_i16(v: i16) -> Side {
        if v == 0 {
            Side::Buy
        } else {
            Side::Sell
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// Good till cancelled.
    Limit,
    /// Immediate or cancel: fills what it can, cancels the rest.
    Ioc,
    /// Fill or kill: fills completely at once or not at all.
    Fok,
    /// Rests only; cancelled if it would take liquidity.
    PostOnly,
    /// No price limit; a buy is bounded by `quote_budget`.
    Market,
}

impl OrderKind {
    pub fn as_i16(self) -> i16 {
        self as i16
    }
    pub fn from_i16(v: i16) -> OrderKind {
        match v {
            0 => OrderKind::Limit,
            1 => OrderKind::Ioc,
            2 => OrderKind::Fok,
            3 => OrderKind::PostOnly,
            _ => OrderKind::Market,
        }
    }
}

/// An order entering the book. For a market buy, `quote_budget` bounds the notional spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOrder {
    pub id: OrderId,
    pub user_id: UserId,
    pub side: Side,
    pub kind: OrderKind,
    pub price_ticks: i64,
    pub qty_lots: i64,
    pub quote_budget: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    pub maker_order_id: OrderId,
    pub maker_user_id: UserId,
    pub taker_order_id: OrderId,
    pub taker_user_id: UserId,
    pub taker_side: Side,
    pub price_ticks: i64,
    pub qty_lots: i64,
    /// True when this fill completed the maker order.
    pub maker_done: bool,
}

/// How an order left `place`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaceStatus {
    /// Resting in the book (possibly after partial fills).
    Open,
    Filled,
    /// Some or all quantity was cancelled by the order's own terms (IOC/FOK/post-only/market)
    /// or by a `Stop`.
    Canceled,
    /// Refused before matching (`Stop::PriceBand`): nothing filled.
    Rejected,
}

/// Why the book ended an order before its own terms did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The order reached a resting order of its own user: the newest (this one) is
    /// cancelled, what it filled before stays.
    SelfTrade,
    /// A limit outside the price band (refused), or a market order's sweep that reached
    /// the band's edge (the rest cancelled).
    PriceBand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaceResult {
    pub status: PlaceStatus,
    pub filled_qty: i64,
    pub remaining_qty: i64,
    /// Set when a `Stop` ended the order with quantity left.
    pub stop: Option<Stop>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resting {
    pub id: OrderId,
    pub user_id: UserId,
    pub side: Side,
    pub price_ticks: i64,
    pub remaining_qty: i64,
}

#[derive(Debug, Default, Clone)]
struct Level {
    /// Order ids in time priority; may contain ids cancelled since (skipped lazily).
    queue: VecDeque<OrderId>,
    /// Sum of remaining quantity of the live orders at this level.
    qty: i64,
}

/// One market's book.
#[derive(Debug, Default, Clone)]
pub struct Book {
    bids: BTreeMap<i64, Level>,
    asks: BTreeMap<i64, Level>,
    orders: IdMap<Resting>,
    /// Half-width of the price band around the last trade, in basis points; 0: no band.
    band_bps: u32,
    /// Price of the last fill, the band's centre (none yet: no band).
    last_trade_ticks: Option<i64>,
}

/// Takes up to `want` lots for taker `o` from the front of `level` (at `price`), in time
/// order, appending a fill per maker; a maker filled completely leaves the book. Stops at
/// a maker of the taker's own user (self-trade prevention). Returns the lots taken and
/// whether it stopped there.
#[inline]
fn take_from_level(
    orders: &mut IdMap<Resting>,
    level: &mut Level,
    o: &NewOrder,
    price: i64,
    mut want: i64,
    fills: &mut Vec<Fill>,
) -> (i64, bool) {
    let mut taken = 0;
    while want > 0 {
        let Some(&maker_id) = level.queue.front() else { break };
        let Some(maker) = orders.get_mut(&maker_id) else {
            level.queue.pop_front(); // cancelled earlier
            continue;
        };
        if maker.user_id == o.user_id {
            return (taken, true);
        }
        let q = want.min(maker.remaining_qty);
        maker.remaining_qty -= q;
        level.qty -= q;
        want -= q;
        taken += q;
        let maker_done = maker.remaining_qty == 0;
        fills.push(Fill {
            maker_order_id: maker_id,
            maker_user_id: maker.user_id,
            taker_order_id: o.id,
            taker_user_id: o.user_id,
            taker_side: o.side,
            price_ticks: price,
            qty_lots: q,
            maker_done,
        });
        if maker_done {
            orders.remove(&maker_id);
            level.queue.pop_front();
        }
    }
    (taken, false)
}

impl Book {
    pub fn new() -> Self {
        Self::default()
    }

    /// A book that refuses limits more than `band_bps` basis points from the last trade
    /// and stops market sweeps there (0: no band).
    pub fn with_band(band_bps: u32) -> Self {
        Book { band_bps, ..Self::default() }
    }

    pub fn last_trade(&self) -> Option<i64> {
        self.last_trade_ticks
    }

    /// Sets the band's centre at rebuild time (the market's last fill, if any).
    pub fn set_last_trade(&mut self, price_ticks: Option<i64>) {
        self.last_trade_ticks = price_ticks;
    }

    /// The prices orders may trade at now, inclusive: the last trade plus or minus
    /// `band_bps` of it, rounded out to at least one tick. None: no band (off, or no trade yet).
    pub fn band(&self) -> Option<(i64, i64)> {
        let last = self.last_trade_ticks.filter(|_| self.band_bps > 0)?;
        let width = ((last as i128 * self.band_bps as i128 + 9_999) / 10_000).min(i64::MAX as i128) as i64;
        Some((last.saturating_sub(width), last.saturating_add(width)))
    }

    pub fn best_bid(&self) -> Option<i64> {
        self.bids.keys().next_back().copied()
    }
    pub fn best_ask(&self) -> Option<i64> {
        self.asks.keys().next().copied()
    }
    pub fn get(&self, id: OrderId) -> Option<&Resting> {
        self.orders.get(&id)
    }
    pub fn len(&self) -> usize {
        self.orders.len()
    }
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// Aggregated levels, best first: (price_ticks, qty_lots).
    pub fn depth(&self, side: Side, levels: usize) -> Vec<(i64, i64)> {
        match side {
            Side::Buy => self.bids.iter().rev().take(levels).map(|(p, l)| (*p, l.qty)).collect(),
            Side::Sell => self.asks.iter().take(levels).map(|(p, l)| (*p, l.qty)).collect(),
        }
    }

    /// Puts an already-accepted order back in the book without matching (state rebuild).
    /// Orders must be restored in their original time order.
    pub fn restore(&mut self, r: Resting) {
        assert!(r.remaining_qty > 0, "restored order {} has no quantity", r.id);
        let levels = match r.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let level = levels.entry(r.price_ticks).or_default();
        level.queue.push_back(r.id);
        level.qty += r.remaining_qty;
        self.orders.insert(r.id, r);
    }

    /// Removes a resting order; returns it as it was.
    pub fn cancel(&mut self, id: OrderId) -> Option<Resting> {
        let r = self.orders.remove(&id)?;
        let levels = match r.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let level = levels.get_mut(&r.price_ticks).expect("resting order without level");
        level.qty -= r.remaining_qty;
        assert!(level.qty >= 0, "level quantity went negative");
        if level.qty == 0 {
            levels.remove(&r.price_ticks);
        }
        Some(r)
    }

    /// Quantity taker `o` could fill at `limit` or better, up to its quantity, before it
    /// reaches an order of its own user (where self-trade prevention would stop it).
    fn fillable(&self, o: &NewOrder, limit: i64) -> i64 {
        let mut sum = 0i64;
        let iter: Box<dyn Iterator<Item = (&i64, &Level)>> = match o.side {
            Side::Buy => Box::new(self.asks.iter().take_while(|(p, _)| **p <= limit)),
            Side::Sell => Box::new(self.bids.iter().rev().take_while(|(p, _)| **p >= limit)),
        };
        for r in iter.flat_map(|(_, l)| l.queue.iter().filter_map(|id| self.orders.get(id))) {
            if r.user_id == o.user_id {
                break;
            }
            sum += r.remaining_qty;
            if sum >= o.qty_lots {
                break;
            }
        }
        sum
    }

    fn crosses(&self, side: Side, price: i64) -> bool {
        match side {
            Side::Buy => self.best_ask().is_some_and(|a| a <= price),
            Side::Sell => self.best_bid().is_some_and(|b| b >= price),
        }
    }

    /// The price `o` may trade at, at worst: its limit, or for a market order the band's
    /// edge (none: unbounded). Err: a limit outside the band, refused.
    fn limit_of(&self, o: &NewOrder) -> Result<i64, ()> {
        let band = self.band();
        match (o.kind, o.side, band) {
            (OrderKind::Market, Side::Buy, _) => Ok(band.map_or(i64::MAX, |b| b.1)),
            (OrderKind::Market, Side::Sell, _) => Ok(band.map_or(i64::MIN, |b| b.0)),
            (_, _, Some((lo, hi))) if o.price_ticks < lo || o.price_ticks > hi => Err(()),
            _ => Ok(o.price_ticks),
        }
    }

    /// Matches `o` against the book, appending its fills to `fills`, and rests any
    /// remainder of a limit or post-only order. A limit outside the price band is refused;
    /// a market order sweeps no further than the band's edge; an order that reaches one of
    /// its own user's resting orders is cancelled there (self-trade prevention, the newest
    /// order goes).
    pub fn place(&mut self, o: NewOrder, fills: &mut Vec<Fill>) -> PlaceResult {
        assert!(o.qty_lots > 0, "order {} with non-positive quantity", o.id);
        assert!(!self.orders.contains_key(&o.id), "duplicate order id {}", o.id);
        let untouched = |status, stop| PlaceResult { status, filled_qty: 0, remaining_qty: o.qty_lots, stop };
        let Ok(limit) = self.limit_of(&o) else {
            return untouched(PlaceStatus::Rejected, Some(Stop::PriceBand));
        };
        if o.kind == OrderKind::PostOnly && self.crosses(o.side, limit) {
            return untouched(PlaceStatus::Canceled, None);
        }
        if o.kind == OrderKind::Fok && self.fillable(&o, limit) < o.qty_lots {
            return untouched(PlaceStatus::Canceled, None);
        }
        let (remaining, self_trade) = self.sweep(&o, limit, fills);
        let stop = if self_trade {
            Some(Stop::SelfTrade)
        } else if o.kind == OrderKind::Market && self.band().is_some() && self.crosses_beyond(o.side, limit) {
            Some(Stop::PriceBand)
        } else {
            None
        };
        self.finish(&o, remaining, stop)
    }

    /// Whether the best opposite price is beyond `limit` (a sweep stopped at it).
    fn crosses_beyond(&self, side: Side, limit: i64) -> bool {
        match side {
            Side::Buy => self.best_ask().is_some_and(|a| a > limit),
            Side::Sell => self.best_bid().is_some_and(|b| b < limit),
        }
    }

    /// Takes liquidity for `o` at `limit` or better (a market buy also within its budget).
    /// Returns the quantity left and whether self-trade prevention stopped it.
    fn sweep(&mut self, o: &NewOrder, limit: i64, fills: &mut Vec<Fill>) -> (i64, bool) {
        let budget_bound = o.kind == OrderKind::Market && o.side == Side::Buy;
        let mut budget = o.quote_budget;
        let mut remaining = o.qty_lots;
        let opposite = match o.side {
            Side::Buy => &mut self.asks,
            Side::Sell => &mut self.bids,
        };
        while remaining > 0 {
            let mut entry = match o.side {
                Side::Buy => match opposite.first_entry() {
                    Some(e) if *e.key() <= limit => e,
                    _ => break,
                },
                Side::Sell => match opposite.last_entry() {
                    Some(e) if *e.key() >= limit => e,
                    _ => break,
                },
            };
            let price = *entry.key();
            let level = entry.get_mut();
            let mut want = remaining;
            if budget_bound {
                want = want.min(budget / price.max(1));
                if want == 0 {
                    break;
                }
            }
            let (taken, self_trade) = take_from_level(&mut self.orders, level, o, price, want, fills);
            remaining -= taken;
            if taken > 0 {
                self.last_trade_ticks = Some(price);
            }
            if budget_bound {
                budget -= taken * price;
            }
            assert!(level.qty >= 0, "level quantity went negative");
            let emptied = level.qty == 0;
            if emptied {
                entry.remove();
            }
            if self_trade {
                return (remaining, true);
            }
            if !emptied && budget_bound {
                break; // budget exhausted within this level
            }
        }
        (remaining, false)
    }

    /// The result of `o` once matching is over; a limit or post-only remainder rests
    /// unless a `Stop` ended it.
    fn finish(&mut self, o: &NewOrder, remaining: i64, stop: Option<Stop>) -> PlaceResult {
        let filled = o.qty_lots - remaining;
        assert!(filled >= 0 && remaining >= 0, "fill accounting broken");
        if remaining == 0 {
            return PlaceResult { status: PlaceStatus::Filled, filled_qty: filled, remaining_qty: 0, stop: None };
        }
        let rests = stop.is_none() && matches!(o.kind, OrderKind::Limit | OrderKind::PostOnly);
        if !rests {
            return PlaceResult { status: PlaceStatus::Canceled, filled_qty: filled, remaining_qty: remaining, stop };
        }
        self.restore(Resting { id: o.id, user_id: o.user_id, side: o.side, price_ticks: o.price_ticks, remaining_qty: remaining });
        debug_assert!(!self.is_crossed());
        PlaceResult { status: PlaceStatus::Open, filled_qty: filled, remaining_qty: remaining, stop: None }
    }

    pub fn is_crossed(&self) -> bool {
        matches!((self.best_bid(), self.best_ask()), (Some(b), Some(a)) if b >= a)
    }

    /// Full consistency check (tests and debug): levels match the orders map.
    pub fn check_invariants(&self) {
        assert!(!self.is_crossed(), "book crossed");
        let mut seen = 0usize;
        for (side, levels) in [(Side::Buy, &self.bids), (Side::Sell, &self.asks)] {
            for (price, l) in levels {
                let live: i64 = l
                    .queue
                    .iter()
                    .filter_map(|id| self.orders.get(id))
                    .filter(|r| r.price_ticks == *price && r.side == side)
                    .map(|r| {
                        seen += 1;
                        r.remaining_qty
                    })
                    .sum();
                assert_eq!(live, l.qty, "level {price} quantity mismatch");
                assert!(l.qty > 0, "empty level kept");
            }
        }
        assert_eq!(seen, self.orders.len(), "orders not on a level");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(id: i64, side: Side, kind: OrderKind, price: i64, qty: i64) -> NewOrder {
        NewOrder { id, user_id: id, side, kind, price_ticks: price, qty_lots: qty, quote_budget: 0 }
    }

    #[test]
    fn price_time_priority() {
        let mut b = Book::new();
        let mut f = Vec::new();
        b.place(o(1, Side::Sell, OrderKind::Limit, 101, 5), &mut f);
        b.place(o(2, Side::Sell, OrderKind::Limit, 100, 5), &mut f);
        b.place(o(3, Side::Sell, OrderKind::Limit, 100, 5), &mut f);
        let r = b.place(o(4, Side::Buy, OrderKind::Limit, 101, 12), &mut f);
        assert_eq!(r.status, PlaceStatus::Filled);
        let makers: Vec<_> = f.iter().map(|x| (x.maker_order_id, x.price_ticks, x.qty_lots)).collect();
        assert_eq!(makers, vec![(2, 100, 5), (3, 100, 5), (1, 101, 2)]);
        assert_eq!(b.get(1).unwrap().remaining_qty, 3);
        b.check_invariants();
    }

    #[test]
    fn ioc_fok_post_only_market() {
        let mut b = Book::new();
        let mut f = Vec::new();
        b.place(o(1, Side::Sell, OrderKind::Limit, 100, 5), &mut f);
        let r = b.place(o(2, Side::Buy, OrderKind::Fok, 100, 6), &mut f);
        assert_eq!((r.status, r.filled_qty), (PlaceStatus::Canceled, 0));
        let r = b.place(o(3, Side::Buy, OrderKind::PostOnly, 100, 1), &mut f);
        assert_eq!((r.status, r.filled_qty), (PlaceStatus::Canceled, 0));
        let r = b.place(o(4, Side::Buy, OrderKind::Ioc, 100, 3), &mut f);
        assert_eq!((r.status, r.filled_qty), (PlaceStatus::Filled, 3));
        let mut m = o(5, Side::Buy, OrderKind::Market, 0, 10);
        m.quote_budget = 150; // affords one lot at 100
        let r = b.place(m, &mut f);
        assert_eq!((r.status, r.filled_qty, r.remaining_qty), (PlaceStatus::Canceled, 1, 9));
        assert_eq!(b.get(1).unwrap().remaining_qty, 1);
        b.cancel(1).unwrap();
        assert!(b.is_empty());
        b.check_invariants();
    }

    /// Reproduced in issue #17: a user's order traded with that user's resting order.
    #[test]
    fn self_trade_cancels_the_newest_order() {
        let mut b = Book::new();
        let mut f = Vec::new();
        b.place(NewOrder { user_id: 7, ..o(1, Side::Sell, OrderKind::Limit, 100, 5) }, &mut f);
        b.place(NewOrder { user_id: 8, ..o(2, Side::Sell, OrderKind::Limit, 100, 5) }, &mut f);
        b.place(NewOrder { user_id: 9, ..o(3, Side::Sell, OrderKind::Limit, 99, 2) }, &mut f);
        // User 7's buy takes the 99 ask, then reaches its own sell at 100 and is cancelled
        // there; it does not rest (it would cross) and the older order stays untouched.
        let r = b.place(NewOrder { user_id: 7, ..o(4, Side::Buy, OrderKind::Limit, 100, 10) }, &mut f);
        assert_eq!((r.status, r.filled_qty, r.remaining_qty, r.stop), (PlaceStatus::Canceled, 2, 8, Some(Stop::SelfTrade)));
        assert!(f.iter().all(|x| x.maker_user_id != x.taker_user_id), "self-trade: {f:?}");
        assert_eq!(b.get(1).unwrap().remaining_qty, 5);
        assert_eq!(b.get(2).unwrap().remaining_qty, 5);
        assert!(b.get(4).is_none());
        b.check_invariants();
        // A fill-or-kill that could only fill by trading with its own order is killed whole.
        let r = b.place(NewOrder { user_id: 7, ..o(5, Side::Buy, OrderKind::Fok, 100, 10) }, &mut f);
        assert_eq!((r.status, r.filled_qty), (PlaceStatus::Canceled, 0));
        // Another user's order still trades with both.
        let r = b.place(o(6, Side::Buy, OrderKind::Ioc, 100, 10), &mut f);
        assert_eq!((r.status, r.filled_qty), (PlaceStatus::Filled, 10));
    }

    #[test]
    fn price_band_refuses_far_limits_and_stops_market_sweeps() {
        let mut b = Book::with_band(1000); // 10 %
        let mut f = Vec::new();
        // No trade yet: no band.
        assert_eq!(b.band(), None);
        b.place(o(1, Side::Buy, OrderKind::Limit, 100, 10), &mut f);
        b.place(o(2, Side::Buy, OrderKind::Limit, 50, 1000), &mut f);
        b.place(o(3, Side::Buy, OrderKind::Limit, 1, 1000), &mut f);
        let r = b.place(o(4, Side::Sell, OrderKind::Ioc, 100, 1), &mut f);
        assert_eq!(r.status, PlaceStatus::Filled);
        assert_eq!((b.last_trade(), b.band()), (Some(100), Some((90, 110))));
        // Limits outside [90, 110] are refused, whatever their kind.
        for (id, side, kind, price) in
            [(5, Side::Sell, OrderKind::Limit, 1), (6, Side::Buy, OrderKind::PostOnly, 111), (7, Side::Sell, OrderKind::Ioc, 89)]
        {
            let r = b.place(o(id, side, kind, price, 1), &mut f);
            assert_eq!((r.status, r.filled_qty, r.stop), (PlaceStatus::Rejected, 0, Some(Stop::PriceBand)), "price {price}");
            assert!(b.get(id).is_none());
        }
        // A market sell no longer sweeps down to 1 tick: it stops at 90, the rest cancelled.
        let before = f.len();
        let r = b.place(o(8, Side::Sell, OrderKind::Market, 0, 2000), &mut f);
        assert_eq!((r.status, r.filled_qty, r.remaining_qty, r.stop), (PlaceStatus::Canceled, 9, 1991, Some(Stop::PriceBand)));
        assert!(f[before..].iter().all(|x| x.price_ticks >= 90));
        assert_eq!(b.best_bid(), Some(50));
        // Within the band, a market order that runs out of liquidity is not a band stop.
        b.place(o(9, Side::Sell, OrderKind::Limit, 100, 3), &mut f);
        let mut m = o(10, Side::Buy, OrderKind::Market, 0, 5);
        m.quote_budget = 10_000;
        let r = b.place(m, &mut f);
        assert_eq!((r.status, r.filled_qty, r.stop), (PlaceStatus::Canceled, 3, None));
        b.check_invariants();
    }

    #[test]
    fn band_is_at_least_one_tick_wide() {
        let mut b = Book::with_band(10);
        b.set_last_trade(Some(5));
        assert_eq!(b.band(), Some((4, 6)));
        assert_eq!(Book::with_band(0).band(), None);
    }
}
