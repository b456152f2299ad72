//! The in-memory market a leader drives, spot or perpetual, behind one trait.

use crate::book::{Book, NewOrder, Resting};
use crate::perp::{Halt, PerpMarket, Position};
use crate::settle::{self, Asset, Postings, SettleError};
use crate::spot::{Effects, OrderUpdate, SpotMarket};

/// The in-memory market a leader drives: spot (`SpotMarket`) or perpetual (`PerpMarket`).
pub trait Core: Send + Sync + 'static {
    /// What entering `o` must hold, if bids up to `batch_bid` (earlier orders of its batch)
    /// may rest before it reaches the book.
    fn reservation(&self, o: &NewOrder, batch_bid: Option<i64>) -> Result<(Asset, i64), SettleError>;
    fn restore(&mut self, r: Resting, qty: i64, filled: i64, held_minor: i64);
    fn place(&mut self, o: NewOrder, reserved: i64, out: &mut Effects) -> Result<OrderUpdate, SettleError>;
    fn cancel(&mut self, id: i64, postings: &mut Postings) -> Option<OrderUpdate>;
    fn book(&self) -> &Book;
    /// Sets the centre of the price band at rebuild time (the market's last fill).
    fn set_last_trade(&mut self, price_ticks: Option<i64>);
    /// Positions changed since the last call (perpetuals only).
    fn take_positions(&mut self) -> Vec<(i64, Position)> {
        Vec::new()
    }
    fn restore_position(&mut self, _user: i64, _p: Position) {}
    const HAS_POSITIONS: bool = false;
    /// The system accounts the market alone writes and keeps balances of (perpetuals: its
    /// margin pool and insurance fund), read at takeover.
    fn system_accounts(&self) -> Vec<i64> {
        Vec::new()
    }
    fn restore_system_balance(&mut self, _owner: i64, _available: i64) {}
    fn restore_halt(&mut self, _h: Halt) {}
    /// A halt that happened since the last call, to be recorded with the batch.
    fn take_new_halt(&mut self) -> Option<Halt> {
        None
    }
}

impl Core for SpotMarket {
    fn reservation(&self, o: &NewOrder, _batch_bid: Option<i64>) -> Result<(Asset, i64), SettleError> {
        settle::reservation(o, self.fees)
    }
    fn restore(&mut self, r: Resting, qty: i64, filled: i64, held_minor: i64) {
        SpotMarket::restore(self, r, qty, filled, held_minor)
    }
    fn place(&mut self, o: NewOrder, reserved: i64, out: &mut Effects) -> Result<OrderUpdate, SettleError> {
        SpotMarket::place(self, o, reserved, out)
    }
    fn cancel(&mut self, id: i64, postings: &mut Postings) -> Option<OrderUpdate> {
        SpotMarket::cancel(self, id, postings)
    }
    fn book(&self) -> &Book {
        &self.book
    }
    fn set_last_trade(&mut self, price_ticks: Option<i64>) {
        self.book.set_last_trade(price_ticks)
    }
}

impl Core for PerpMarket {
    fn reservation(&self, o: &NewOrder, batch_bid: Option<i64>) -> Result<(Asset, i64), SettleError> {
        PerpMarket::reservation_with(self, o, batch_bid)
    }
    fn restore(&mut self, r: Resting, qty: i64, filled: i64, held_minor: i64) {
        PerpMarket::restore(self, r, qty, filled, held_minor)
    }
    fn place(&mut self, o: NewOrder, reserved: i64, out: &mut Effects) -> Result<OrderUpdate, SettleError> {
        PerpMarket::place(self, o, reserved, out)
    }
    fn cancel(&mut self, id: i64, postings: &mut Postings) -> Option<OrderUpdate> {
        PerpMarket::cancel(self, id, postings)
    }
    fn book(&self) -> &Book {
        &self.book
    }
    fn set_last_trade(&mut self, price_ticks: Option<i64>) {
        self.book.set_last_trade(price_ticks)
    }
    fn take_positions(&mut self) -> Vec<(i64, Position)> {
        self.take_dirty()
    }
    fn restore_position(&mut self, user: i64, p: Position) {
        PerpMarket::restore_position(self, user, p)
    }
    const HAS_POSITIONS: bool = true;
    fn system_accounts(&self) -> Vec<i64> {
        vec![self.accounts.pool, self.accounts.insurance]
    }
    fn restore_system_balance(&mut self, owner: i64, available: i64) {
        PerpMarket::restore_system_balance(self, owner, available)
    }
    fn restore_halt(&mut self, h: Halt) {
        PerpMarket::restore_halt(self, h)
    }
    fn take_new_halt(&mut self) -> Option<Halt> {
        PerpMarket::take_new_halt(self)
    }
}
