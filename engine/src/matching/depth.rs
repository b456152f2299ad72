//! The book depth a market leader publishes after every committed batch (and after it
//! loads), so that `GET /v1/book` is answered from memory: no job in the leader's queue, no
//! transaction, no fence update, no batch (issue 17, item 7). The leader publishes before
//! it answers the batch, so a client that got its order's answer then reads a book that
//! has it.

use crate::book::{Book, Side};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// Most levels a book read may ask for (per side); the snapshot holds this many.
pub const LEVELS_MAX: usize = 1000;

/// Levels a book read gets when it does not say.
pub const LEVELS_DEFAULT: usize = 20;

/// Aggregated levels, best first: (price_ticks, qty_lots).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Depth {
    pub bids: Vec<(i64, i64)>,
    pub asks: Vec<(i64, i64)>,
}

impl Depth {
    fn of(book: &Book) -> Depth {
        Depth { bids: book.depth(Side::Buy, LEVELS_MAX), asks: book.depth(Side::Sell, LEVELS_MAX) }
    }
}

/// One market's latest published depth, shared by its leader loop (writer) and the node's
/// HTTP handler (reader). Empty while no leadership of this node has loaded the market.
#[derive(Default)]
pub struct DepthView {
    snap: Mutex<Option<Arc<Depth>>>,
}

impl DepthView {
    /// The leader's book as of now (after a commit or a load).
    pub fn publish(&self, book: &Book) {
        let d = Arc::new(Depth::of(book));
        *self.snap.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
    }

    /// Forgets the depth (a leadership starts loading: its memory is not the book yet).
    pub fn clear(&self) {
        *self.snap.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The latest depth, if any was published.
    pub fn latest(&self) -> Option<Arc<Depth>> {
        self.snap.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The answer of `GET /v1/book/{market}`: up to `levels` levels a side (at most
    /// `LEVELS_MAX`), or None if nothing was published.
    pub fn json(&self, market: &str, levels: usize) -> Option<Value> {
        let d = self.latest()?;
        let n = levels.min(LEVELS_MAX);
        let side = |v: &[(i64, i64)]| v[..n.min(v.len())].to_vec();
        Some(json!({"market": market, "bids": side(&d.bids), "asks": side(&d.asks)}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest(book: &mut Book, id: i64, side: Side, price_ticks: i64, qty_lots: i64) {
        book.restore(crate::book::Resting { id, user_id: 1, side, price_ticks, remaining_qty: qty_lots });
    }

    #[test]
    fn a_published_depth_is_the_book_cut_to_the_levels_asked() {
        let mut book = Book::new();
        rest(&mut book, 1, Side::Buy, 10, 2);
        rest(&mut book, 2, Side::Buy, 10, 3);
        rest(&mut book, 3, Side::Buy, 9, 1);
        rest(&mut book, 4, Side::Sell, 12, 4);
        let v = DepthView::default();
        assert_eq!(v.json("M", 5), None);
        v.publish(&book);
        assert_eq!(v.json("M", 5).unwrap(), json!({"market": "M", "bids": [[10, 5], [9, 1]], "asks": [[12, 4]]}));
        assert_eq!(v.json("M", 1).unwrap()["bids"], json!([[10, 5]]));
        v.clear();
        assert_eq!(v.latest(), None);
    }
}
