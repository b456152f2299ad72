//! What a perpetual owes and who pays it: the margin pool, the insurance fund, the mark
//! price, liquidation and the halt. Pure, no IO.
//!
//! * The mark is the last trade price (the price band's centre, see ARCHITECTURE.md).
//! * After every fill, each position whose equity at the mark (margin + unrealized PnL)
//!   is below its maintenance margin (`mm_bps` of its notional at the mark) is closed at the
//!   mark against the opposite positions, largest unrealized profit first (auto-deleveraging:
//!   net size stays zero and nothing trades away from the mark). Its remaining equity goes
//!   to the insurance fund; a loss beyond its margin is paid by the insurance fund.
//! * A loss beyond margin is covered by the insurance fund (into the pool) before anything
//!   is paid; then the pool pays what closed parts are owed (a fill's two sides, and the
//!   positions liquidated after it, settled together).
//! * Neither the pool nor the insurance fund ever goes below zero. A loss the insurance
//!   fund cannot cover halts the market (it refuses new orders, `market_halted`, until an
//!   operator reopens it); that settlement's payees share what the pool holds beyond the
//!   open positions' equity, and the rest of what they are owed is the halt's shortfall.

use super::{PerpMarket, Position};
use crate::book::UserId;
use crate::settle::{Asset, Entry, Postings, SettleError};

/// Initial and maintenance margin, in basis points of notional.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Margins {
    pub im_bps: u32,
    pub mm_bps: u32,
}

/// The system accounts of one perpetual (see migrations 001 and 004).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accounts {
    pub fee: i64,
    pub pool: i64,
    pub insurance: i64,
}

/// Why a market halted: what it owed and could not pay (pool and insurance fund empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt {
    pub shortfall_minor: i64,
}

/// Margin + unrealized PnL of `p` at `mark` (exact: i128).
pub fn equity(p: &Position, mark: i64) -> i128 {
    let value = mark as i128 * p.size_lots.unsigned_abs() as i128;
    let upnl = if p.size_lots > 0 { value - p.entry_cost_minor as i128 } else { p.entry_cost_minor as i128 - value };
    p.margin_minor as i128 + upnl
}

/// The maintenance margin of `p` at `mark`: `mm_bps` of its notional there.
pub fn maintenance(p: &Position, mark: i64, mm_bps: u32) -> i128 {
    mark as i128 * p.size_lots.unsigned_abs() as i128 * mm_bps as i128 / 10_000
}

impl PerpMarket {
    pub fn pool_minor(&self) -> i64 {
        self.pool_minor
    }

    pub fn insurance_minor(&self) -> i64 {
        self.insurance_minor
    }

    /// The mark price: the last trade (None before the first one).
    pub fn mark(&self) -> Option<i64> {
        self.book.last_trade()
    }

    pub fn halt(&self) -> Option<Halt> {
        self.halt
    }

    /// Sets a system account's balance at takeover (the pool or the insurance fund).
    pub fn restore_system_balance(&mut self, owner: i64, available: i64) {
        assert!(available >= 0, "system account {owner} of a perpetual is negative: {available}");
        if owner == self.accounts.pool {
            self.pool_minor = available;
        } else if owner == self.accounts.insurance {
            self.insurance_minor = available;
        }
    }

    /// A halt recorded before (at takeover): the market stays halted.
    pub fn restore_halt(&mut self, h: Halt) {
        self.halt = Some(h);
    }

    /// The halt, once, if it happened since the last call (to be recorded and reported).
    pub fn take_new_halt(&mut self) -> Option<Halt> {
        std::mem::take(&mut self.new_halt).then_some(self.halt).flatten()
    }

    fn halt_for(&mut self, shortfall: i64) {
        assert!(shortfall > 0, "a halt for nothing");
        let total = self.halt.map_or(0, |h| h.shortfall_minor) + shortfall;
        self.halt = Some(Halt { shortfall_minor: total });
        self.new_halt = true;
    }

    fn move_quote(&mut self, from: i64, to: i64, amount: i64, out: &mut Postings, reference: &str) {
        for (owner, d) in [(from, -amount), (to, amount)] {
            if owner == self.accounts.pool {
                self.pool_minor += d;
            } else if owner == self.accounts.insurance {
                self.insurance_minor += d;
            }
            out.post(reference, Entry { owner_id: owner, asset: Asset::Quote, d_available: d, d_held: 0 });
        }
        assert!(
            self.pool_minor >= 0 && self.insurance_minor >= 0,
            "pool {} or insurance {} negative",
            self.pool_minor,
            self.insurance_minor
        );
    }

    /// Opening margin into the pool (its counter-entry is the leg's held funds).
    pub(super) fn pool_in(&mut self, amount: i64, out: &mut Postings, reference: &str) {
        self.pool_minor += amount;
        out.post(reference, Entry { owner_id: self.accounts.pool, asset: Asset::Quote, d_available: amount, d_held: 0 });
    }

    /// Settles what closed parts at `mark` are owed, as (payee, amount): losses beyond
    /// margin (amount < 0) are covered by the insurance fund first, then the pool pays the
    /// rest. Once every position below maintenance is closed, the pool holds the equity of
    /// every open position plus what is owed. A loss the insurance fund could not cover
    /// halts the market, and the payees share pro rata what the pool holds beyond the open
    /// positions' equity (theirs is not paid to others).
    pub(super) fn settle_owed(&mut self, owed: &[(i64, i64)], mark: i64, out: &mut Postings, reference: &str) {
        let uncovered: i64 = owed.iter().filter(|(_, o)| *o < 0).map(|&(_, o)| self.cover(-o, out, reference)).sum();
        let payouts: Vec<(i64, i64)> = owed.iter().copied().filter(|(_, o)| *o > 0).collect();
        let total: i64 = payouts.iter().map(|(_, o)| o).sum();
        if uncovered > 0 {
            self.halt_for(uncovered);
        }
        let reserve: i128 = if uncovered > 0 { self.open_equity(mark) } else { 0 };
        let budget = (self.pool_minor as i128 - reserve).clamp(0, total as i128);
        for (payee, o) in payouts {
            let paid = (o as i128 * budget / (total as i128).max(1)) as i64;
            assert!(paid <= self.pool_minor, "pool {} cannot pay {paid}", self.pool_minor);
            self.move_quote(self.accounts.pool, payee, paid, out, reference);
        }
    }

    /// The insurance fund pays a loss beyond margin into the pool; returns what it lacked.
    fn cover(&mut self, loss: i64, out: &mut Postings, reference: &str) -> i64 {
        let from_insurance = loss.min(self.insurance_minor);
        self.move_quote(self.accounts.insurance, self.accounts.pool, from_insurance, out, reference);
        loss - from_insurance
    }

    /// The equity of the open positions at `mark` (none is below maintenance, so none is
    /// negative): what the pool must keep for them.
    pub fn open_equity(&self, mark: i64) -> i128 {
        self.positions.values().filter(|p| p.size_lots != 0).map(|p| equity(p, mark).max(0)).sum()
    }

    fn below_maintenance(&self, p: &Position, mark: i64) -> bool {
        p.size_lots != 0 && equity(p, mark) < maintenance(p, mark, self.margins.mm_bps)
    }

    /// Closes, in user order, every position below maintenance at `mark`; returns what
    /// the closed parts are owed, as (payee, amount), to be settled with the fill's.
    pub(super) fn liquidate(&mut self, mark: i64) -> Result<Vec<(i64, i64)>, SettleError> {
        let mut under: Vec<UserId> = self.positions.iter().filter(|(_, p)| self.below_maintenance(p, mark)).map(|(u, _)| *u).collect();
        under.sort_unstable();
        let mut owed = Vec::new();
        for u in under {
            // An earlier liquidation may have closed it (as a counterparty).
            if self.below_maintenance(&self.positions[&u], mark) {
                self.liquidate_one(u, mark, &mut owed)?;
            }
        }
        Ok(owed)
    }

    /// Closes `user`'s position at `mark` against the opposite positions (largest
    /// unrealized profit first, then user id); its equity is owed to the insurance fund.
    fn liquidate_one(&mut self, user: UserId, mark: i64, owed: &mut Vec<(i64, i64)>) -> Result<(), SettleError> {
        let size = self.positions[&user].size_lots;
        let mut opposite: Vec<(i128, UserId)> = self
            .positions
            .iter()
            .filter(|(_, p)| p.size_lots.signum() == -size.signum())
            .map(|(v, p)| (equity(p, mark) - p.margin_minor as i128, *v))
            .collect();
        opposite.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        owed.push((self.accounts.insurance, self.close_at(user, size.abs(), mark)?));
        let mut left = size.abs();
        for (_, v) in opposite {
            if left == 0 {
                break;
            }
            let q = left.min(self.positions[&v].size_lots.abs());
            owed.push((v, self.close_at(v, q, mark)?));
            left -= q;
        }
        assert_eq!(left, 0, "liquidating {user}: opposite positions do not net its {size} lots");
        Ok(())
    }

    fn close_at(&mut self, user: UserId, q: i64, mark: i64) -> Result<i64, SettleError> {
        self.dirty.insert(user, ());
        self.positions.get_mut(&user).expect("position").close(q, mark)
    }
}
