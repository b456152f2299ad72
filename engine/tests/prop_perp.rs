//! Property tests of the perpetual core: after every step the book is not crossed, the
//! sum of all accounts (users, fee account, margin pool) is conserved, user balances never
//! go negative, held funds match live orders, and long and short sizes net to zero.

use engine::book::{NewOrder, OrderKind, Side};
use engine::perp::PerpMarket;
use engine::settle::{Asset, Fees, Postings};
use engine::spot::Effects;
use proptest::prelude::*;
use std::collections::HashMap;

const USERS: i64 = 4;
const DEPOSIT: i64 = 100_000_000;

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn perp_invariants(ops in proptest::collection::vec((1..=USERS, any::<bool>(), 0u8..4, 90i64..111, 1i64..30, any::<bool>()), 1..200),
                       maker in 0u32..30, taker in 0u32..60, im in 100u32..5000) {
        let mut m = PerpMarket::new(Fees { maker_bps: maker, taker_bps: taker }, im, -1000, -2000);
        let mut bal: HashMap<i64, (i64, i64)> = (1..=USERS).map(|u| (u, (DEPOSIT, 0))).collect();
        let mut open = Vec::new();
        let mut next = 1;
        for (user, buy, kind, price, qty, cancel) in ops {
            let mut post = Postings::default();
            if cancel && !open.is_empty() {
                let id = open.swap_remove((price as usize) % open.len());
                m.cancel(id, &mut post);
            } else {
                let o = NewOrder { id: next, user_id: user, side: if buy { Side::Buy } else { Side::Sell },
                    kind: OrderKind::from_i16(kind as i16), price_ticks: price, qty_lots: qty, quote_budget: 0 };
                next += 1;
                let (_, amount) = m.reservation(&o).unwrap();
                if amount > bal[&user].0 { continue; }
                post.post("r", engine::settle::Entry { owner_id: user, asset: Asset::Quote, d_available: -amount, d_held: amount });
                let mut out = Effects { postings: std::mem::take(&mut post), ..Default::default() };
                let u = m.place(o, amount, &mut out).unwrap();
                post = out.postings;
                prop_assert!(u.filled_qty <= qty);
                if u.status == "open" { open.push(o.id); }
            }
            for ((owner, _), (da, dh)) in &post.net {
                let b = bal.entry(*owner).or_insert((0, 0));
                b.0 += da;
                b.1 += dh;
            }
            prop_assert!(!m.book.is_crossed());
            let total: i64 = bal.values().map(|(a, h)| a + h).sum();
            prop_assert_eq!(total, DEPOSIT * USERS);
            for u in 1..=USERS {
                prop_assert!(bal[&u].0 >= 0 && bal[&u].1 >= 0, "user {} negative", u);
            }
            let held: i64 = (1..=USERS).map(|u| bal[&u].1).sum();
            prop_assert_eq!(held, m.total_held());
            prop_assert!(bal.get(&-1000).map_or(0, |b| b.0) >= 0);
            let net: i64 = m.positions.values().map(|p| p.size_lots).sum();
            prop_assert_eq!(net, 0);
            let margins: i64 = m.positions.values().map(|p| p.margin_minor).sum();
            prop_assert!(margins >= 0);
        }
    }
}
