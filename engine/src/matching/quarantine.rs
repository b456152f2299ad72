//! Containing a poison order: one whose deciding or matching fails an invariant.
//!
//! `engine-node`'s panic hook exits the process (code 70) on any failed assertion, so that
//! memory that cannot be trusted is rebuilt from the DB by another node. For an order that
//! trips an assertion every time, that would crash every leader in turn: the gateway
//! retries it by client id at the next one. So a market leader runs the in-memory steps of
//! a batch (deciding, matching, cancelling; no IO, no await) inside `contain`, which tells
//! the hook to let the panic unwind to it (a thread-local flag, on the worker thread that
//! runs the step), and notes which item of the batch is in hand (`Hand`). On a panic the
//! leader drops its in-memory market (half-updated, so untrusted) by reloading it from the
//! DB, exactly as after a commit conflict, takes that item out of the batch, and runs the
//! batch again. A quarantined order is written in the batch's one transaction as
//! `rejected` with reason `quarantined`, so a retry of it is answered from the DB; a
//! quarantined cancel is answered `409 quarantined`. Each is reported (log, metric,
//! webhook) once its batch committed. A panic anywhere else (IO, loading) still exits.
//!
//! The cost in the normal case is setting a thread-local flag around each step and one
//! `Cell` write per order; `catch_unwind` costs nothing until something panics.

use std::any::Any;
use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

/// True on a thread inside `contain`: `engine-node`'s panic hook then lets the panic
/// unwind to `contain` instead of exiting.
pub fn panic_contained() -> bool {
    CONTAINED.with(|c| c.get())
}

/// The item of a batch being decided or matched: a placement or a cancel, by its index
/// among the batch's placements or cancels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Hand {
    Place(usize),
    Cancel(usize),
}

/// A contained panic: the item in hand (if any) and the panic's message.
#[derive(Debug)]
pub(super) struct Poisoned {
    pub hand: Option<Hand>,
    pub message: String,
}

/// Runs the in-memory step `f`; a panic inside it is caught and returned with the item
/// `hand` held when it happened.
pub(super) fn contain<T>(hand: &Cell<Option<Hand>>, f: impl FnOnce() -> T) -> Result<T, Poisoned> {
    let was = CONTAINED.with(|c| c.replace(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(was));
    r.map_err(|p| Poisoned { hand: hand.get(), message: message(&*p) })
}

fn message(p: &(dyn Any + Send)) -> String {
    match (p.downcast_ref::<&str>(), p.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "panic".into(),
    }
}

/// The items taken out of one batch, and why.
#[derive(Default)]
pub(super) struct Poison {
    pub items: HashMap<Hand, String>,
}

impl Poison {
    pub fn has(&self, h: Hand) -> bool {
        self.items.contains_key(&h)
    }
}

/// The client order id prefix that trips an assertion in test builds with the
/// `poison-test` feature (`engine/tests/poison_order.rs`). The feature refuses to build
/// without debug assertions, so no release (deployed) binary can have it.
#[cfg(feature = "poison-test")]
pub const POISON_PREFIX: &str = "poison-test-";

#[cfg(all(feature = "poison-test", not(debug_assertions)))]
compile_error!("the `poison-test` feature is for test builds only (it lets an order crash a leader)");

/// Test builds with `poison-test`: an order whose client id starts with `POISON_PREFIX`
/// fails an assertion while it is matched. A no-op otherwise.
#[inline(always)]
pub(super) fn trip_if_poison(_client_order_id: &str) {
    #[cfg(feature = "poison-test")]
    assert!(!_client_order_id.starts_with(POISON_PREFIX), "poison-test order {_client_order_id} trips an assertion");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_is_caught_with_the_item_in_hand() {
        let hand = Cell::new(None);
        let r = contain(&hand, || {
            assert!(panic_contained());
            hand.set(Some(Hand::Place(3)));
            panic!("boom {}", 7);
        });
        let p: Poisoned = r.map(|_: ()| ()).unwrap_err();
        assert_eq!((p.hand, p.message.as_str()), (Some(Hand::Place(3)), "boom 7"));
        assert!(!panic_contained());
        assert_eq!(contain(&hand, || 5).unwrap(), 5);
    }
}
