//! The perpetual insolvency of issue 17 (item 5), on the pure core: two accounts open 1000
//! lots against each other at 100 (10x) and the price moves to 500. Before the fix the
//! winner was paid 400,000 of profit out of a pool that held 20,000 of margin (the pool
//! ended at -390,000: other users' money). Now either the loser is liquidated on the way
//! (the price band makes the price walk there) or, when one trade jumps past its margin and
//! the insurance fund cannot cover the loss, the market halts; the pool and the insurance
//! fund never go negative and money is conserved.

use engine::book::{NewOrder, OrderKind, Side};
use engine::perp::{equity, Accounts, Margins, PerpMarket};
use engine::protocol::ErrorCode;
use engine::settle::{Asset, Entry, Fees};
use engine::spot::{Effects, OrderUpdate};
use std::collections::HashMap;

const FEE: i64 = -1500;
const POOL: i64 = -2000;
const INSURANCE: i64 = -3000;
const DEPOSIT: i64 = 1_000_000;
const A: i64 = 1;
const B: i64 = 2;
const C: i64 = 3;
const D: i64 = 4;

/// A market and every account's (available, held), moved by the market's postings.
struct Venue {
    m: PerpMarket,
    bal: HashMap<i64, (i64, i64)>,
    next: i64,
}

impl Venue {
    /// 10x (initial margin 10 %), maintenance 5 %, maker 10 / taker 20 bps; four users.
    fn new(band_bps: u32) -> Self {
        let accounts = Accounts { fee: FEE, pool: POOL, insurance: INSURANCE };
        let m = PerpMarket::new(Fees { maker_bps: 10, taker_bps: 20 }, Margins { im_bps: 1000, mm_bps: 500 }, accounts);
        let bal = [A, B, C, D].into_iter().map(|u| (u, (DEPOSIT, 0))).collect();
        Venue { m: m.with_price_band(band_bps), bal, next: 1 }
    }

    fn limit(&mut self, user: i64, side: Side, price: i64, qty: i64) -> OrderUpdate {
        let o = NewOrder { id: self.next, user_id: user, side, kind: OrderKind::Limit, price_ticks: price, qty_lots: qty, quote_budget: 0 };
        self.next += 1;
        let (_, amount) = self.m.reservation(&o).unwrap();
        assert!(amount <= self.bal[&user].0, "user {user} cannot afford {amount}");
        let mut out = Effects::default();
        out.postings.post("r", Entry { owner_id: user, asset: Asset::Quote, d_available: -amount, d_held: amount });
        let u = self.m.place(o, amount, &mut out).unwrap();
        for ((owner, _), (da, dh)) in &out.postings.net {
            let b = self.bal.entry(*owner).or_default();
            b.0 += da;
            b.1 += dh;
        }
        self.check();
        u
    }

    /// A trade of `qty` lots at `price` between `buyer` (maker) and `seller` (taker).
    fn trade(&mut self, buyer: i64, seller: i64, price: i64, qty: i64) {
        assert_eq!(self.limit(buyer, Side::Buy, price, qty).status, "open");
        assert_eq!(self.limit(seller, Side::Sell, price, qty).status, "filled");
    }

    fn available(&self, owner: i64) -> i64 {
        self.bal.get(&owner).map_or(0, |b| b.0)
    }

    /// Conservation, and neither the pool nor the insurance fund below zero.
    fn check(&self) {
        let total: i64 = self.bal.values().map(|(a, h)| a + h).sum();
        assert_eq!(total, 4 * DEPOSIT, "money created or destroyed: {:?}", self.bal);
        assert!(self.available(POOL) >= 0, "margin pool negative: {}", self.available(POOL));
        assert!(self.available(INSURANCE) >= 0, "insurance fund negative: {}", self.available(INSURANCE));
        for u in [A, B, C, D] {
            assert!(self.bal[&u].0 >= 0 && self.bal[&u].1 >= 0, "user {u} negative");
        }
    }
}

/// The reproduction, with no price band (one trade may jump anywhere): A buys 1000 lots from
/// B at 100, then they trade them back at 500. B loses 400,000 on 10,000 of margin and the
/// insurance fund is empty: the market halts instead of paying A from other users' money.
/// The bystanders C and D (10 lots each way at 100) keep their margin: D's short is
/// liquidated at 500 too, and what the pool pays out is only what it holds beyond the
/// open positions' equity.
#[test]
fn price_jump_from_100_to_500_halts_and_the_pool_pays_no_one_else_s_money() {
    let mut v = Venue::new(0);
    v.trade(A, B, 100, 1000);
    v.trade(C, D, 100, 10);
    let pool_before = v.available(POOL);
    assert_eq!(pool_before, 2 * 10_000 + 2 * 100);
    // A sells its 1000 lots at 500 and B buys them back there (B is short 1000 at 100).
    assert_eq!(v.limit(A, Side::Sell, 500, 1000).status, "open");
    let u = v.limit(B, Side::Buy, 500, 1000);
    assert_eq!((u.status, u.filled_qty), ("filled", 1000));
    let halt = v.m.halt().expect("the market halts: B's loss beyond margin is not covered");
    assert!(halt.shortfall_minor >= 390_000, "{halt:?}");
    // Nobody was paid more than the pool held: A got its margin and B's back, not 400,000.
    let a_fees = 100 + 500; // maker at 100 (10 bps of 100,000) and at 500 (10 bps of 500,000)
    assert_eq!(v.available(A), DEPOSIT - a_fees + 10_000, "A gets its margin and B's back, nobody else's money");
    assert_eq!(v.available(C), DEPOSIT - 1 + 100, "C (long 10 at 100) likewise: its margin and D's");
    assert_eq!(v.available(POOL), 0, "every position is closed (D liquidated against C at 500)");
    assert_eq!(v.m.positions.values().map(|p| p.size_lots.abs()).sum::<i64>(), 0);
    // A halted market refuses new orders, with a clear reason, and holds nothing for them.
    let refused = v.limit(C, Side::Buy, 500, 1);
    assert_eq!((refused.status, refused.reason), ("rejected", Some(ErrorCode::MarketHalted)));
    assert_eq!(v.bal[&C].1, 0);
}

/// The same positions with the shipped price band (10 %): the price has to walk from 100 to
/// 500, so B is liquidated on the way at the mark (the last trade, 105: its equity 5,000 is
/// below 5 % of 105,000), against A's long; B's remaining equity goes to the insurance fund
/// and the market trades on to 500, where nobody owes more than the pool holds.
#[test]
fn with_the_band_the_loser_is_liquidated_on_the_way_and_the_market_trades_on() {
    let mut v = Venue::new(1000);
    v.trade(A, B, 100, 1000);
    v.trade(C, D, 105, 1);
    let (a, b) = (v.m.positions.get(&A).copied().unwrap_or_default(), v.m.positions[&B]);
    assert_eq!((a.size_lots, b.size_lots), (0, 0), "B liquidated at 105 against A: {a:?} {b:?}");
    assert_eq!(v.available(INSURANCE), 5_000, "B's equity at 105: 10,000 margin - 5,000 loss");
    // A was closed at the mark: its margin back and 5,000 of profit; fees as a maker at 100.
    assert_eq!(v.available(A), DEPOSIT - 100 + 5_000);
    assert_eq!(v.available(B), DEPOSIT - 200 - 10_000);
    // The price goes on to 500 in band steps between C and D; the market never halts.
    let mut price = 105;
    while price < 500 {
        price = (price * 11 / 10).min(500);
        v.trade(C, D, price, 1);
    }
    assert_eq!(v.m.halt(), None);
    let mark = v.m.mark().unwrap();
    let open: i128 = v.m.positions.values().filter(|p| p.size_lots != 0).map(|p| equity(p, mark)).sum();
    assert_eq!(v.available(POOL) as i128, open, "the pool holds exactly the open positions' equity");
}
