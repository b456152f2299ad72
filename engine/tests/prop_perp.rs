//! Property tests of the perpetual core, over prices from 1 to 100,000 ticks with big jumps
//! (so takers trade far from their limits and positions go deep under water): after every
//! step the book is not crossed, the sum of all accounts (users, fee account, margin pool,
//! insurance fund) is conserved, user balances never go negative, neither the margin pool
//! nor the insurance fund ever goes negative, held funds match live orders, long and short
//! sizes net to zero, every fill pays its fees on its trade notional (the fee account
//! holds exactly the fills' fees), no position is more leveraged than the initial margin
//! allows, no open position is left below maintenance at the mark, the pool holds the open
//! positions' equity at the mark (once halted: at most the shortfall less), a halted market
//! refuses every order, no user trades with themself, and no taker trades beyond the price
//! band it met (a buy above it, a sell below).

use engine::book::{NewOrder, OrderKind, Side};
use engine::perp::{equity, initial_margin, maintenance, Accounts, Margins, PerpMarket};
use engine::protocol::ErrorCode;
use engine::settle::{fee, Asset, Entry, Fees, Postings};
use engine::spot::Effects;
use proptest::prelude::*;
use std::collections::HashMap;

const USERS: i64 = 4;
const DEPOSIT: i64 = 100_000_000;
const FEE_ACCOUNT: i64 = -1000;
const POOL: i64 = -2000;
const INSURANCE: i64 = -3000;

/// One step: (user, buy, kind (limit, ioc, fok, post-only), price, qty, cancel instead).
type Op = (i64, bool, u8, i64, i64, bool);

fn ops() -> impl Strategy<Value = Vec<Op>> {
    // Anywhere from 1 to 100,000 ticks (jumps of any size), or near 1,000 (small moves).
    let price = prop_oneof![1i64..=100_000, 900i64..=1_100];
    proptest::collection::vec((1..=USERS, any::<bool>(), 0u8..4, price, 1i64..100, any::<bool>()), 1..200)
}

/// Whether a taker on `side` trading at `price` stayed on its side of band `(lo, hi)`: it
/// may still buy below `lo` from a maker who asked that (orders rested before the band
/// moved), but never above `hi`.
fn within(side: Side, (lo, hi): (i64, i64), price: i64) -> bool {
    match side {
        Side::Buy => price <= hi,
        Side::Sell => price >= lo,
    }
}

struct Model {
    m: PerpMarket,
    fees: Fees,
    im: u32,
    mm: u32,
    bal: HashMap<i64, (i64, i64)>,
    open: Vec<i64>,
    next: i64,
    fees_of_fills: i64,
    /// Fills each user took part in (each may round margin down by one unit).
    fills_of: HashMap<i64, i64>,
}

impl Model {
    fn new(fees: Fees, margins: Margins, band: u32) -> Self {
        let accounts = Accounts { fee: FEE_ACCOUNT, pool: POOL, insurance: INSURANCE };
        Model {
            m: PerpMarket::new(fees, margins, accounts).with_price_band(band),
            fees,
            im: margins.im_bps,
            mm: margins.mm_bps,
            bal: (1..=USERS).map(|u| (u, (DEPOSIT, 0))).collect(),
            open: Vec::new(),
            next: 1,
            fees_of_fills: 0,
            fills_of: HashMap::new(),
        }
    }

    /// Places or cancels; returns the postings of the step (or None: not affordable).
    fn step(&mut self, (user, buy, kind, price, qty, cancel): Op) -> Result<Option<Postings>, TestCaseError> {
        if cancel && !self.open.is_empty() {
            let id = self.open.swap_remove((price as usize) % self.open.len());
            let mut post = Postings::default();
            self.m.cancel(id, &mut post);
            return Ok(Some(post));
        }
        let side = if buy { Side::Buy } else { Side::Sell };
        let kind = OrderKind::from_i16(kind as i16);
        let o = NewOrder { id: self.next, user_id: user, side, kind, price_ticks: price, qty_lots: qty, quote_budget: 0 };
        self.next += 1;
        let (_, amount) = self.m.reservation(&o).unwrap();
        if amount > self.bal[&user].0 {
            return Ok(None);
        }
        let band = self.m.book.band();
        let halted = self.m.halt().is_some();
        let mut out = Effects::default();
        out.postings.post("r", Entry { owner_id: user, asset: Asset::Quote, d_available: -amount, d_held: amount });
        let u = self.m.place(o, amount, &mut out).unwrap();
        prop_assert!(u.filled_qty <= qty);
        prop_assert!(!halted || u.reason == Some(ErrorCode::MarketHalted), "a halted market took an order: {:?}", u);
        prop_assert!(u.status != "rejected" || u.filled_qty == 0);
        if u.status == "open" {
            self.open.push(o.id);
        }
        for f in &out.fills {
            let n = f.fill.price_ticks * f.fill.qty_lots;
            prop_assert_ne!(f.fill.maker_user_id, f.fill.taker_user_id, "self-trade");
            prop_assert!(band.is_none_or(|b| within(side, b, f.fill.price_ticks)), "taker traded beyond the band");
            prop_assert_eq!(f.taker_fee, fee(n, self.fees.taker_bps), "taker fee not on the trade notional");
            prop_assert_eq!(f.maker_fee, fee(n, self.fees.maker_bps), "maker fee not on the trade notional");
            self.fees_of_fills += f.taker_fee + f.maker_fee;
            *self.fills_of.entry(f.fill.maker_user_id).or_default() += 1;
            *self.fills_of.entry(f.fill.taker_user_id).or_default() += 1;
        }
        Ok(Some(out.postings))
    }

    fn check(&self) -> Result<(), TestCaseError> {
        prop_assert!(!self.m.book.is_crossed());
        let total: i64 = self.bal.values().map(|(a, h)| a + h).sum();
        prop_assert_eq!(total, DEPOSIT * USERS, "money created or destroyed");
        for u in 1..=USERS {
            prop_assert!(self.bal[&u].0 >= 0 && self.bal[&u].1 >= 0, "user {} negative", u);
        }
        let held: i64 = (1..=USERS).map(|u| self.bal[&u].1).sum();
        prop_assert_eq!(held, self.m.total_held());
        prop_assert_eq!(self.bal.get(&FEE_ACCOUNT).map_or(0, |b| b.0), self.fees_of_fills);
        let net: i64 = self.m.positions.values().map(|p| p.size_lots).sum();
        prop_assert_eq!(net, 0);
        self.check_solvency()?;
        for (u, p) in &self.m.positions {
            let slack = self.fills_of.get(u).copied().unwrap_or(0) + 1;
            prop_assert!(p.margin_minor + slack >= initial_margin(p.entry_cost_minor, self.im), "user {} over-leveraged: {:?}", u, p);
        }
        Ok(())
    }

    /// The pool and the insurance fund are never negative (the model's balances, which
    /// are the postings', agree with the market's); at the mark no open position is left
    /// below maintenance; the pool holds the open positions' equity (what closing them all
    /// at the mark would pay out), or once halted, that less at most the halt's shortfall.
    fn check_solvency(&self) -> Result<(), TestCaseError> {
        let (pool, insurance) = (self.bal.get(&POOL).copied().unwrap_or_default(), self.bal.get(&INSURANCE).copied().unwrap_or_default());
        prop_assert!(pool.0 >= 0 && pool.1 == 0, "margin pool negative: {:?}", pool);
        prop_assert!(insurance.0 >= 0 && insurance.1 == 0, "insurance fund negative: {:?}", insurance);
        prop_assert_eq!((pool.0, insurance.0), (self.m.pool_minor(), self.m.insurance_minor()));
        let Some(mark) = self.m.mark() else { return Ok(()) };
        let open = self.m.positions.values().filter(|p| p.size_lots != 0);
        for p in open.clone() {
            prop_assert!(equity(p, mark) >= maintenance(p, mark, self.mm), "below maintenance at {}: {:?}", mark, p);
        }
        let open_equity: i128 = open.map(|p| equity(p, mark)).sum();
        match self.m.halt() {
            None => prop_assert_eq!(pool.0 as i128, open_equity, "pool != open equity at the mark"),
            // The shortfall is a loss nobody paid; the gains it stands for are not paid out.
            Some(h) => prop_assert!(
                pool.0 as i128 + h.shortfall_minor as i128 >= open_equity,
                "pool {} + shortfall {} < open equity {}: paid out others' margin",
                pool.0,
                h.shortfall_minor,
                open_equity
            ),
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn perp_invariants(ops in ops(), maker in 0u32..30, taker in 0u32..60, (im, mm) in (100u32..5000).prop_flat_map(|im| (Just(im), 0..=im)),
                       band in prop_oneof![Just(0u32), 1u32..5000]) {
        let mut model = Model::new(Fees { maker_bps: maker, taker_bps: taker }, Margins { im_bps: im, mm_bps: mm }, band);
        for op in ops {
            let Some(post) = model.step(op)? else { continue };
            for ((owner, _), (da, dh)) in &post.net {
                let b = model.bal.entry(*owner).or_insert((0, 0));
                b.0 += da;
                b.1 += dh;
            }
            model.check()?;
        }
    }
}
