//! Property tests of the pure core: after every step of any order/cancel sequence the
//! book is not crossed, no order is overfilled, no balance is negative, the sum of all
//! balances plus fees equals deposits per asset (no withdrawals in this model), no user
//! trades with themself, and no taker trades beyond the price band it met.

use engine::book::{NewOrder, OrderKind, Side};
use engine::settle::{self, Asset, Fees, Postings};
use engine::spot::{Effects, SpotMarket};
use proptest::prelude::*;
use std::collections::HashMap;

const FEE_ACCOUNT: i64 = -1000;
const USERS: i64 = 4;
const DEPOSIT: i64 = 1_000_000;

#[derive(Debug, Clone)]
enum Op {
    Place { user: i64, side: bool, kind: u8, price: i64, qty: i64, budget: i64 },
    Cancel { pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..=USERS, any::<bool>(), 0u8..5, 95i64..106, 1i64..40, 0i64..5000)
            .prop_map(|(user, side, kind, price, qty, budget)| Op::Place { user, side, kind, price, qty, budget }),
        1 => (0usize..64).prop_map(|pick| Op::Cancel { pick }),
    ]
}

fn apply(bal: &mut HashMap<(i64, Asset), (i64, i64)>, p: &Postings) {
    for ((owner, asset), (da, dh)) in &p.net {
        let b = bal.entry((*owner, *asset)).or_insert((0, 0));
        b.0 += da;
        b.1 += dh;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn book_and_ledger_invariants(ops in proptest::collection::vec(op(), 1..200), maker in 0u32..30, taker in 0u32..60,
                                  band in prop_oneof![Just(0u32), 1u32..3000]) {
        let fees = Fees { maker_bps: maker, taker_bps: taker };
        let mut m = SpotMarket::new(fees, FEE_ACCOUNT).with_price_band(band);
        let mut bal: HashMap<(i64, Asset), (i64, i64)> = HashMap::new();
        for u in 1..=USERS {
            bal.insert((u, Asset::Base), (DEPOSIT, 0));
            bal.insert((u, Asset::Quote), (DEPOSIT * 100, 0));
        }
        let mut open: Vec<i64> = Vec::new();
        let mut qty_of: HashMap<i64, i64> = HashMap::new();
        let mut next_id = 1i64;
        for op in ops {
            let mut out = Effects::default();
            match op {
                Op::Place { user, side, kind, price, qty, budget } => {
                    let side = if side { Side::Buy } else { Side::Sell };
                    let kind = OrderKind::from_i16(kind as i16);
                    let o = NewOrder { id: next_id, user_id: user, side, kind, price_ticks: price, qty_lots: qty, quote_budget: budget };
                    next_id += 1;
                    let (asset, amount) = settle::reservation(&o, fees).unwrap();
                    let avail = bal[&(user, asset)].0;
                    if amount > avail || amount == 0 { continue; }
                    settle::post_reserve(user, asset, amount, &mut out.postings, "r");
                    let band = m.book.band();
                    let upd = m.place(o, amount, &mut out).unwrap();
                    qty_of.insert(o.id, qty);
                    for u in &out.updates {
                        prop_assert!(u.filled_qty <= qty_of[&u.order_id], "order overfilled");
                    }
                    for f in &out.fills {
                        prop_assert!(f.fill.qty_lots > 0);
                        prop_assert_ne!(f.fill.maker_user_id, f.fill.taker_user_id, "self-trade");
                        // A taker never buys above the band or sells below it (it may meet makers
                        // who rested beyond the band before it moved, on its good side).
                        if let Some((lo, hi)) = band {
                            prop_assert!(if side == Side::Buy { f.fill.price_ticks <= hi } else { f.fill.price_ticks >= lo }, "taker traded beyond the band");
                        }
                        if kind != OrderKind::Market {
                            match side {
                                Side::Buy => prop_assert!(f.fill.price_ticks <= price),
                                Side::Sell => prop_assert!(f.fill.price_ticks >= price),
                            }
                        }
                    }
                    if upd.status == "open" { open.push(o.id); }
                    if kind == OrderKind::Fok { prop_assert!(upd.filled_qty == 0 || upd.filled_qty == qty); }
                }
                Op::Cancel { pick } => {
                    if open.is_empty() { continue; }
                    let id = open.swap_remove(pick % open.len());
                    m.cancel(id, &mut out.postings);
                }
            }
            apply(&mut bal, &out.postings);
            m.book.check_invariants();
            prop_assert!(!m.book.is_crossed());
            let mut sums: HashMap<Asset, i64> = HashMap::new();
            let mut held: HashMap<Asset, i64> = HashMap::new();
            for ((owner, asset), (a, h)) in &bal {
                prop_assert!(*a >= 0 && *h >= 0, "negative balance {owner} {asset:?}");
                *sums.entry(*asset).or_default() += a + h;
                *held.entry(*asset).or_default() += h;
            }
            prop_assert_eq!(sums[&Asset::Base], DEPOSIT * USERS);
            prop_assert_eq!(sums[&Asset::Quote], DEPOSIT * 100 * USERS);
            prop_assert_eq!(held[&Asset::Base], m.total_held(Asset::Base));
            prop_assert_eq!(held[&Asset::Quote], m.total_held(Asset::Quote));
        }
    }
}
