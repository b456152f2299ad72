//! Leader logic of a spot or perpetual market partition: one group commit per batch.
//!
//! A batch is decided and matched in memory, then written in one round trip:
//! 1. decide: duplicates answer the first result; an order is accepted if the cached
//!    available funds of its (user, asset) cover its reservation, and before any order is
//!    rejected the batch's funds are read fresh and the batch decided again; ids come from
//!    a pool filled from `order_id_seq` in blocks;
//! 2. match the accepted orders and the cancels through the book;
//! 3. write everything in ONE transaction, pipelined (new orders in their final state,
//!    changed orders, fills, balance deltas, ledger lines, positions, the fence), commit
//!    synchronously; only then answer.
//!
//! The cache is never trusted for money: another partition may have spent the funds, and
//! then the balance delta breaks `balances_non_negative` and the commit fails. Any such
//! conflict (also a client id raced from another market) rolls memory back by reloading
//! the partition from the DB, and the batch is decided again on fresh reads. An order
//! whose deciding or matching fails an invariant is quarantined the same way: memory is
//! reloaded and the batch runs again with that order rejected (`quarantine`).
//! SQL and row types are in `sql`, the market trait in `market`.

mod depth;
mod market;
mod quarantine;
mod sql;

pub use depth::{Depth, DepthView, LEVELS_DEFAULT, LEVELS_MAX};
pub use market::Core;
pub use quarantine::panic_contained;
#[cfg(feature = "poison-test")]
pub use quarantine::POISON_PREFIX;
use quarantine::{contain, Hand, Poison, Poisoned};
use sql::*;
pub use sql::{order_by_client_id, order_by_id, order_json};

use crate::api::{ApiError, Reply};
use crate::book::{NewOrder, OrderKind, Resting, Side};
use crate::partition::{Event, Job, LeadError, LeaderCtx, Logic, Quarantine};
use crate::perp::{Accounts, Halt, Margins, PerpMarket, Position};
use crate::protocol::{ErrorCode, UserOrder};
use crate::settle::{self, Asset, Fees, Postings};
use crate::spot::{Effects, FeeFill, OrderUpdate, SpotMarket};
use serde_json::Value;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

#[derive(Debug)]
pub enum SpotCmd {
    /// A placement, as `MarketKind::normalize` left it.
    Place(UserOrder),
    Cancel {
        user_id: i64,
        order_id: i64,
    },
}

pub type SpotLogic = MarketLogic<SpotMarket>;
pub type PerpLogic = MarketLogic<PerpMarket>;

const ALL_SQL: &[&str] = &[
    SQL_NEW_IDS,
    SQL_KNOWN,
    SQL_FUNDS,
    SQL_NEW_ORDERS,
    SQL_LEDGER,
    SQL_UPDATE_ORDERS,
    SQL_FILLS,
    SQL_BALANCE_ROWS,
    SQL_APPLY_BALANCES,
    SQL_POSITIONS,
    SQL_HALT,
    crate::partition::SQL_FENCE,
];

pub struct MarketLogic<C: Core> {
    pub symbol: String,
    pub base: String,
    pub quote: String,
    market: C,
    make: Box<dyn Fn() -> C + Send + Sync>,
    /// Where the book's depth is published for reads (`depth`).
    depth: Arc<DepthView>,
    /// Batches committed in this leadership (names the batch's ledger entry).
    batches: u64,
    /// Batches left that look up their client ids before deciding (see `read_inputs`).
    known_checks_left: u32,
    /// Available funds per (account, asset) as of this leader's last read or commit.
    /// Other partitions change them meanwhile, so they only decide acceptances, which
    /// the commit re-checks (`balances_non_negative`); a rejection is decided on a fresh read.
    /// Its keys are also the balance rows known to exist (rows are never deleted).
    funds: HashMap<(i64, Asset), i64>,
    /// Order ids taken from `order_id_seq` in blocks, ascending.
    id_pool: std::collections::VecDeque<i64>,
}

/// Order ids fetched from the sequence at a time.
const ID_BLOCK: usize = 1024;

/// Batches that check client ids first after a takeover or a duplicate: retries of
/// requests whose answer was lost arrive then.
const KNOWN_CHECK_BATCHES: u32 = 200;

/// An order of the batch, decided before matching.
struct Fresh {
    order: NewOrder,
    seq: i64,
    client_order_id: String,
    /// The asset its reservation is in.
    asset: Asset,
    /// Funds reserved for it, or why it is rejected (insufficient funds, quarantined).
    reserved: Result<i64, ErrorCode>,
    /// Already in `orders` as `pending` with its funds held (left by an older engine).
    existing: bool,
    /// Its index among the batch's placements (`Hand::Place`); `NO_PLACE` for pending ones.
    place: usize,
}

/// `Fresh::place` of an order matched at load time.
const NO_PLACE: usize = usize::MAX;

/// How a batch attempt failed: like any leader step, or on a panic in its in-memory part.
enum Failed {
    Lead(LeadError),
    Poisoned(Poisoned),
}

impl From<LeadError> for Failed {
    fn from(e: LeadError) -> Self {
        Failed::Lead(e)
    }
}

impl From<Poisoned> for Failed {
    fn from(p: Poisoned) -> Self {
        Failed::Poisoned(p)
    }
}

/// A batch decided, matched and committed.
struct Settled {
    fresh: Vec<Fresh>,
    verdicts: Vec<(usize, Verdict)>,
    /// Each fresh order's state.
    results: Vec<OrderUpdate>,
    /// Each cancel's update (None: nothing to cancel, or quarantined).
    cancels: Vec<Option<OrderUpdate>>,
}

/// The in-memory outcome of a batch, to be written: `finals` are the new orders in their
/// last state, `changed` the older orders' updates.
struct Matched<'a> {
    results: Vec<OrderUpdate>,
    cancels: Vec<Option<OrderUpdate>>,
    finals: Vec<(&'a Fresh, OrderUpdate)>,
    changed: BTreeMap<i64, OrderUpdate>,
    out: Effects,
    positions: Vec<(i64, Position)>,
    /// The market halted in this batch (perpetuals): recorded with it, then reported.
    halt: Option<Halt>,
}

/// Fresh orders, and each job's verdict.
type Decided = (Vec<Fresh>, Vec<(usize, Verdict)>);

/// Orders already placed under a batch's client ids, by (user, client id).
type Known = HashMap<(i64, String), Value>;

/// How each placement of a batch is answered, by job index.
enum Verdict {
    /// The `i`-th fresh order.
    Fresh(usize),
    /// Placed before (a retry): its current state.
    Known(Value),
    /// Same client id as an earlier job of this batch: that job's answer.
    SameAs(usize),
}

impl SpotLogic {
    pub fn spot(symbol: &str, base: &str, quote: &str, fees: Fees, band_bps: u32, fee_account: i64) -> Self {
        MarketLogic::new(symbol, base, quote, Box::new(move || SpotMarket::new(fees, fee_account).with_price_band(band_bps)))
    }
}

impl PerpLogic {
    pub fn perp(symbol: &str, quote: &str, fees: Fees, margins: Margins, band_bps: u32, accounts: Accounts) -> Self {
        let make = move || PerpMarket::new(fees, margins, accounts).with_price_band(band_bps);
        MarketLogic::new(symbol, quote, quote, Box::new(make))
    }
}

impl<C: Core> MarketLogic<C> {
    pub fn new(symbol: &str, base: &str, quote: &str, make: Box<dyn Fn() -> C + Send + Sync>) -> Self {
        MarketLogic {
            symbol: symbol.into(),
            base: base.into(),
            quote: quote.into(),
            market: make(),
            make,
            depth: Arc::default(),
            batches: 0,
            known_checks_left: 0,
            funds: HashMap::new(),
            id_pool: Default::default(),
        }
    }

    /// The asset of this market called `name` (a perpetual's base is its quote).
    fn asset_of(&self, name: &str) -> Option<Asset> {
        if name == self.quote {
            Some(Asset::Quote)
        } else if name == self.base {
            Some(Asset::Base)
        } else {
            None
        }
    }

    fn asset_name(&self, a: Asset) -> &str {
        match a {
            Asset::Base => &self.base,
            Asset::Quote => &self.quote,
        }
    }

    /// Orders placed before under the batch's client ids. Looked up only for a while after
    /// a takeover or a duplicate (retries come then); otherwise a duplicate shows up as a
    /// unique violation of the batch's insert, which rolls it back and reloads, and the
    /// next batches look up again.
    async fn lookup_known(&self, ctx: &LeaderCtx, places: &[(usize, UserOrder)]) -> Result<Known, LeadError> {
        if self.known_checks_left == 0 || places.is_empty() {
            return Ok(Known::new());
        }
        let users: Vec<i64> = places.iter().map(|(_, p)| p.user_id).collect();
        let cids: Vec<&str> = places.iter().map(|(_, p)| p.order.client_order_id.as_str()).collect();
        let rows = ctx.client.query(&ctx.stmts[SQL_KNOWN], &[&users, &cids]).await?;
        Ok(rows.iter().map(|r| ((r.get(KNOWN_USER_COL), r.get(2)), row_json(r))).collect())
    }

    /// The accounts the batch's orders reserve from (quarantined ones left out).
    fn funds_keys(
        &self,
        places: &[(usize, UserOrder)],
        poison: &Poison,
        hand: &Cell<Option<Hand>>,
    ) -> Result<BTreeSet<(i64, Asset)>, LeadError> {
        let mut pairs = BTreeSet::new();
        for (k, (_, p)) in places.iter().enumerate().filter(|(k, _)| !poison.has(Hand::Place(*k))) {
            hand.set(Some(Hand::Place(k)));
            let (asset, _) = self.market.reservation(&new_order(0, p), None).map_err(|e| LeadError::Invariant(e.to_string()))?;
            pairs.insert((p.user_id, asset));
        }
        Ok(pairs)
    }

    /// Reads the available funds of the accounts `pairs`.
    async fn refresh_funds(&mut self, ctx: &LeaderCtx, pairs: BTreeSet<(i64, Asset)>) -> Result<(), LeadError> {
        let users: Vec<i64> = pairs.iter().map(|x| x.0).collect();
        let assets: Vec<&str> = pairs.iter().map(|x| self.asset_name(x.1)).collect();
        let rows = ctx.client.query(&ctx.stmts[SQL_FUNDS], &[&users, &assets]).await?;
        for key in pairs {
            self.funds.remove(&key);
        }
        for r in rows {
            if let Some(a) = self.asset_of(r.get(1)) {
                self.funds.insert((r.get(0), a), r.get(2));
            }
        }
        Ok(())
    }

    /// Makes sure the pool holds at least `n` order ids.
    async fn ensure_ids(&mut self, ctx: &LeaderCtx, n: usize) -> Result<(), LeadError> {
        if self.id_pool.len() >= n {
            return Ok(());
        }
        let want = n.max(ID_BLOCK) as i32;
        let rows = ctx.client.query(&ctx.stmts[SQL_NEW_IDS], &[&want]).await?;
        self.id_pool.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
        Ok(())
    }

    /// Decides each placement: known (a retry), same as an earlier job, or a fresh order
    /// that reserves from the known funds (in job order) or is rejected. `None` when an
    /// order would be rejected on funds that were not just read: read them, then decide
    /// again with `fresh_funds`.
    /// Quarantined orders (`poison`) are rejected without a look; `hand` holds the order
    /// being decided.
    fn decide(
        &self,
        places: &[(usize, UserOrder)],
        known: &Known,
        ids: &[i64],
        fresh_funds: bool,
        poison: &Poison,
        hand: &Cell<Option<Hand>>,
    ) -> Result<Option<Decided>, LeadError> {
        let mut fresh = Vec::new();
        let mut verdicts = Vec::with_capacity(places.len());
        let mut first_job: HashMap<(i64, &str), usize> = HashMap::new();
        let mut spent: HashMap<(i64, Asset), i64> = HashMap::new();
        // The highest bid the batch's accepted buys so far may rest (a later sell may trade at it).
        let mut batch_bid: Option<i64> = None;
        for (k, (job, p)) in places.iter().enumerate() {
            if !known.is_empty() {
                if let Some(v) = known.get(&(p.user_id, p.order.client_order_id.clone())) {
                    verdicts.push((*job, Verdict::Known(v.clone())));
                    continue;
                }
            }
            if let Some(first) = first_job.get(&(p.user_id, p.order.client_order_id.as_str())) {
                verdicts.push((*job, Verdict::SameAs(*first)));
                continue;
            }
            first_job.insert((p.user_id, p.order.client_order_id.as_str()), *job);
            let id = ids[fresh.len()];
            let order = new_order(id, p);
            let cid = p.order.client_order_id.clone();
            if poison.has(Hand::Place(k)) {
                verdicts.push((*job, Verdict::Fresh(fresh.len())));
                let reserved = Err(ErrorCode::Quarantined);
                fresh.push(Fresh { order, seq: id, client_order_id: cid, asset: Asset::Quote, reserved, existing: false, place: k });
                continue;
            }
            hand.set(Some(Hand::Place(k)));
            let (asset, amount) = self.market.reservation(&order, batch_bid).map_err(|e| LeadError::Invariant(e.to_string()))?;
            let have = self.funds.get(&(p.user_id, asset)).copied();
            let used = spent.entry((p.user_id, asset)).or_insert(0);
            let left = have.unwrap_or(0) - *used;
            let reserved = if left >= amount {
                *used += amount;
                if order.side == Side::Buy {
                    batch_bid = batch_bid.max(Some(order.price_ticks));
                }
                Ok(amount)
            } else if fresh_funds {
                Err(ErrorCode::InsufficientFunds)
            } else {
                return Ok(None);
            };
            verdicts.push((*job, Verdict::Fresh(fresh.len())));
            // Order ids come from one sequence in ascending blocks: already in arrival order.
            fresh.push(Fresh { order, seq: id, client_order_id: cid, asset, reserved, existing: false, place: k });
        }
        Ok(Some((fresh, verdicts)))
    }

    /// Matches the batch in memory (no IO): places the fresh orders and runs the cancels
    /// that are not quarantined, `hand` holding the item at work. On error or panic,
    /// memory is ahead of the DB: the caller must reload before deciding anything again.
    fn execute<'a>(
        &mut self,
        fresh: &'a [Fresh],
        cancels: &[(i64, i64)],
        poison: &Poison,
        hand: &Cell<Option<Hand>>,
    ) -> Result<Matched<'a>, LeadError> {
        let mut out = Effects::default();
        let mut results = Vec::with_capacity(fresh.len());
        for f in fresh {
            let reserved = match f.reserved {
                Ok(r) => r,
                Err(code) => {
                    results.push(OrderUpdate::rejected(f.order.id, code));
                    continue;
                }
            };
            hand.set((f.place != NO_PLACE).then_some(Hand::Place(f.place)));
            if !f.existing {
                settle::post_reserve(f.order.user_id, f.asset, reserved, &mut out.postings, "reserve");
            }
            quarantine::trip_if_poison(&f.client_order_id);
            let u = self.market.place(f.order, reserved, &mut out).map_err(|e| LeadError::Invariant(e.to_string()))?;
            results.push(u);
        }
        let mut cancel_results = Vec::with_capacity(cancels.len());
        for (k, (user_id, order_id)) in cancels.iter().enumerate() {
            hand.set(Some(Hand::Cancel(k)));
            let mine = !poison.has(Hand::Cancel(k)) && self.market.book().get(*order_id).is_some_and(|r| r.user_id == *user_id);
            let u = if mine { self.market.cancel(*order_id, &mut out.postings) } else { None };
            if let Some(u) = u {
                out.updates.push(u);
            }
            cancel_results.push(u);
        }
        hand.set(None);
        // The last update of each order wins: a new order may rest and then fill later in
        // the same batch. New orders are inserted in that state, older ones updated.
        let mut last: BTreeMap<i64, OrderUpdate> = BTreeMap::new();
        for u in out.updates.iter().chain(results.iter().filter(|u| u.status == "rejected")) {
            last.insert(u.order_id, *u);
        }
        let mut finals = Vec::with_capacity(fresh.len());
        for f in fresh.iter().filter(|f| !f.existing) {
            let u = last.remove(&f.order.id).ok_or_else(|| LeadError::Invariant(format!("order {} has no state", f.order.id)))?;
            finals.push((f, u));
        }
        let positions = self.market.take_positions();
        let halt = self.market.take_new_halt();
        Ok(Matched { results, cancels: cancel_results, finals, changed: last, out, positions, halt })
    }

    /// Matches in memory (contained: a panic is returned as `Failed::Poisoned`), then
    /// writes the outcome in one transaction. Returns each fresh order's state and each
    /// cancel's update. On error, memory is ahead of the DB: the caller must reload before
    /// deciding anything again.
    async fn apply(
        &mut self,
        ctx: &mut LeaderCtx,
        fresh: &[Fresh],
        cancels: &[(i64, i64)],
        poison: &Poison,
    ) -> Result<(Vec<OrderUpdate>, Vec<Option<OrderUpdate>>), Failed> {
        let hand = Cell::new(None);
        let m = contain(&hand, || self.execute(fresh, cancels, poison, &hand))??;
        Ok(self.commit(ctx, m).await?)
    }

    /// Writes a matched batch (`write`) and refreshes the funds cache from it.
    async fn commit(&mut self, ctx: &mut LeaderCtx, m: Matched<'_>) -> Result<(Vec<OrderUpdate>, Vec<Option<OrderUpdate>>), LeadError> {
        let balances = self.write(ctx, &m.finals, &m.changed, &m.out.fills, &m.out.postings, &m.positions, m.halt).await?;
        for (owner, name, available) in balances {
            if let Some(a) = self.asset_of(&name) {
                self.funds.insert((owner, a), available);
            }
        }
        if let Some(h) = m.halt {
            tracing::error!(market = %self.symbol, shortfall_minor = h.shortfall_minor, "market halted: it owes more than its margin pool and insurance fund hold; new orders are refused");
            let halted = crate::partition::MarketHalted { partition: ctx.key.clone(), shortfall_minor: h.shortfall_minor };
            crate::partition::report(&ctx.events, Event::Halted(halted));
        }
        Ok((m.results, m.cancels))
    }

    /// Round trip 2: the batch's one transaction, statements pipelined, committed
    /// synchronously (primary and synchronous standby) before anything is answered.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        ctx: &mut LeaderCtx,
        finals: &[(&Fresh, OrderUpdate)],
        changed: &BTreeMap<i64, OrderUpdate>,
        fills: &[FeeFill],
        postings: &Postings,
        positions: &[(i64, Position)],
        halt: Option<Halt>,
    ) -> Result<Vec<(i64, String, i64)>, LeadError> {
        let shortfall = halt.map_or(0, |h| h.shortfall_minor);
        let new = NewRows::of(finals);
        let pos = PositionRows::of(positions);
        let changed = ChangedRows::of(changed);
        let fill_rows = FillRows::of(fills);
        // Balance rows in one global order (owner, asset name): concurrent partitions lock
        // them in the same order, so they cannot deadlock.
        let mut b: Vec<(i64, &str, i64, i64)> = postings.net.iter().map(|(k, v)| (k.0, self.asset_name(k.1), v.0, v.1)).collect();
        b.sort_unstable();
        let balances = BalanceRows::of(b.iter());
        let missing = BalanceRows::of(b.iter().filter(|x| self.asset_of(x.1).is_none_or(|a| !self.funds.contains_key(&(x.0, a)))));
        let ledger = self.ledger_params(postings, format!("batch:{}:{}:{}", self.symbol, ctx.epoch, self.batches));
        let (key, epoch) = ctx.fence_params();
        let (st, c, m) = (&ctx.stmts, &ctx.client, &self.symbol);
        // One round trip: BEGIN, the fence, every write and COMMIT are pipelined, and the
        // server runs them in this order. If any fails, the transaction is aborted and the
        // COMMIT rolls it back; the first error is returned.
        let r = futures::try_join!(
            async { c.batch_execute("BEGIN").await },
            async { c.execute(&st[crate::partition::SQL_FENCE], &[&key, &epoch]).await.map(drop) },
            async { exec_if(c, &st[SQL_NEW_ORDERS], !new.ids.is_empty(), &new.params(m)).await },
            async { exec_if(c, &st[SQL_POSITIONS], !pos.users.is_empty(), &pos.params(m)).await },
            async { exec_if(c, &st[SQL_UPDATE_ORDERS], !changed.ids.is_empty(), &changed.params()).await },
            async { exec_if(c, &st[SQL_FILLS], !fills.is_empty(), &fill_rows.params(m)).await },
            async { exec_if(c, &st[SQL_HALT], halt.is_some(), &[m, &shortfall]).await },
            async { exec_if(c, &st[SQL_BALANCE_ROWS], !missing.owners.is_empty(), &missing.keys()).await },
            async {
                if balances.owners.is_empty() {
                    return Ok(Vec::new());
                }
                c.query(&st[SQL_APPLY_BALANCES], &balances.params()).await
            },
            async {
                match &ledger {
                    Some(p) => exec_if(c, &st[SQL_LEDGER], true, &p.as_refs()).await,
                    None => Ok(()),
                }
            },
            async { c.batch_execute("COMMIT").await },
        );
        let e = match r {
            // Balances after this commit (with every other partition's commits before it).
            Ok((_, _, _, _, _, _, _, _, rows, _, _)) => return Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()),
            Err(e) => e,
        };
        // A statement that failed before it was sent leaves the later ones (and the
        // COMMIT) unsent: make sure no transaction stays open on the leader session.
        let _ = c.batch_execute("ROLLBACK").await;
        if crate::db::is_fenced(&e) {
            return Err(LeadError::Fenced(key));
        }
        Err(e.into())
    }

    /// One ledger line per account per batch transaction (the journal entry of the batch;
    /// the per-fill detail is in `fills`). Lines sum to zero per asset like the postings.
    fn ledger_params(&self, p: &Postings, reference: String) -> Option<LedgerParams> {
        let lines: Vec<_> = p.net.iter().filter(|(_, v)| v.0 != 0 || v.1 != 0).collect();
        if lines.is_empty() {
            return None;
        }
        Some(LedgerParams {
            reference,
            owners: lines.iter().map(|(k, _)| k.0).collect(),
            assets: lines.iter().map(|(k, _)| self.asset_name(k.1).to_string()).collect(),
            da: lines.iter().map(|(_, v)| v.0).collect(),
            dh: lines.iter().map(|(_, v)| v.1).collect(),
        })
    }

    /// Puts the open orders of `rows` (in time order) back in the book and returns the
    /// `pending` ones (left by an older engine) to be matched now. Their reservations are
    /// taken first, on the empty book: what that engine held for them (at their limit).
    fn restore_orders(&mut self, rows: &[tokio_postgres::Row]) -> Result<Vec<Fresh>, LeadError> {
        let mut pending = Vec::new();
        for r in rows.iter().filter(|r| r.get::<_, &str>(9) == "pending") {
            let order = order_of_row(r);
            let (asset, reserved) = self.market.reservation(&order, None).map_err(|e| LeadError::Invariant(e.to_string()))?;
            pending.push(Fresh {
                order,
                seq: order.id,
                client_order_id: r.get(10),
                asset,
                reserved: Ok(reserved),
                existing: true,
                place: NO_PLACE,
            });
        }
        for r in rows.iter().filter(|r| r.get::<_, &str>(9) == "open") {
            let o = order_of_row(r);
            let filled: i64 = r.get(7);
            let rest =
                Resting { id: o.id, user_id: o.user_id, side: o.side, price_ticks: o.price_ticks, remaining_qty: o.qty_lots - filled };
            self.market.restore(rest, o.qty_lots, filled, r.get(8));
        }
        Ok(pending)
    }

    /// One attempt at a batch, its quarantined items (`poison`) left out: look up client
    /// ids if due, decide, match and write. Deciding and matching are contained.
    async fn settle(
        &mut self,
        ctx: &mut LeaderCtx,
        places: &[(usize, UserOrder)],
        cancels: &[(i64, i64)],
        poison: &Poison,
    ) -> Result<Settled, Failed> {
        let known = self.lookup_known(ctx, places).await?;
        self.ensure_ids(ctx, places.len()).await?;
        let ids: Vec<i64> = self.id_pool.iter().take(places.len()).copied().collect();
        let hand = Cell::new(None);
        let (fresh, verdicts) = match contain(&hand, || self.decide(places, &known, &ids, false, poison, &hand))?? {
            Some(d) => d,
            None => {
                let pairs = contain(&hand, || self.funds_keys(places, poison, &hand))??;
                self.refresh_funds(ctx, pairs).await?;
                let d = contain(&hand, || self.decide(places, &known, &ids, true, poison, &hand))??;
                d.ok_or_else(|| LeadError::Invariant("undecided batch".into()))?
            }
        };
        let (results, cancels) = self.apply(ctx, &fresh, cancels, poison).await?;
        self.id_pool.drain(..fresh.len());
        Ok(Settled { fresh, verdicts, results, cancels })
    }

    /// Settles the batch. A panic while deciding or matching an item quarantines that item;
    /// a conflict is tried again (5 attempts in all). Either way the market is reloaded
    /// first (memory may be ahead of the DB or half-updated). Returns the batch and what
    /// it took out.
    async fn settle_batch(
        &mut self,
        ctx: &mut LeaderCtx,
        places: &[(usize, UserOrder)],
        cancels: &[(i64, i64)],
    ) -> Result<(Settled, Poison), LeadError> {
        let mut poison = Poison::default();
        let mut conflicts = 0;
        loop {
            match self.settle(ctx, places, cancels, &poison).await {
                Ok(s) => return Ok((s, poison)),
                Err(Failed::Poisoned(Poisoned { hand: Some(h), message })) if !poison.has(h) => {
                    tracing::error!(market = %self.symbol, item = ?h, error = %message, "an order failed an invariant: quarantined; reloading the market");
                    poison.items.insert(h, message);
                }
                Err(Failed::Poisoned(p)) => return Err(LeadError::Invariant(p.message)),
                Err(Failed::Lead(LeadError::Db(e))) if crate::db::is_conflict(&e) && conflicts < 4 => {
                    conflicts += 1;
                    tracing::info!(market = %self.symbol, attempt = conflicts, error = %crate::db::describe(&e), "batch conflicted; reloading the market and deciding again");
                }
                Err(Failed::Lead(e)) => return Err(e),
            }
            self.load(ctx).await?;
        }
    }

    /// Publishes book reads to `depth` (the node's view of this market) instead of a view of its own.
    pub fn with_depth(mut self, depth: Arc<DepthView>) -> Self {
        self.depth = depth;
        self
    }

    /// Reads the balances of the market's pool and insurance fund and its recorded halt.
    async fn load_solvency(&mut self, ctx: &LeaderCtx) -> Result<(), LeadError> {
        let accounts = self.market.system_accounts();
        for r in ctx.client.query(SQL_SYSTEM_BALANCES, &[&accounts, &self.quote]).await? {
            let (owner, available): (i64, i64) = (r.get(0), r.get(1));
            if available < 0 {
                return Err(LeadError::Invariant(format!(
                    "system account {owner} of {} is negative ({available}): settle it first",
                    self.symbol
                )));
            }
            self.market.restore_system_balance(owner, available);
        }
        if let Some(r) = ctx.client.query_opt(SQL_HALT_READ, &[&self.symbol]).await? {
            let h = Halt { shortfall_minor: r.get(0) };
            tracing::error!(market = %self.symbol, shortfall_minor = h.shortfall_minor, "market is halted (perp_halts): new orders are refused");
            self.market.restore_halt(h);
            // Reported again by each leader that loads it, so its node's metric says so too.
            let halted = crate::partition::MarketHalted { partition: ctx.key.clone(), shortfall_minor: h.shortfall_minor };
            crate::partition::report(&ctx.events, Event::Halted(halted));
        }
        Ok(())
    }
}

impl<C: Core> Logic for MarketLogic<C> {
    type Cmd = SpotCmd;

    async fn load(&mut self, ctx: &mut LeaderCtx) -> Result<(), LeadError> {
        // Plain settings for the loading queries (a reload after a conflict runs on a session
        // that already has `LEADER_PLANS`), which scan rather than look up.
        self.depth.clear();
        ctx.client.batch_execute(crate::db::LOAD_PLANS).await?;
        ctx.prepare(ALL_SQL).await?;
        self.market = (self.make)();
        self.batches = 0;
        self.known_checks_left = KNOWN_CHECK_BATCHES;
        self.funds.clear();
        if C::HAS_POSITIONS {
            let rows = ctx
                .client
                .query(
                    "SELECT user_id, size_lots, entry_cost_minor, margin_minor, realized_pnl_minor FROM positions WHERE market = $1",
                    &[&self.symbol],
                )
                .await?;
            for r in rows {
                let p = Position { size_lots: r.get(1), entry_cost_minor: r.get(2), margin_minor: r.get(3), realized_pnl_minor: r.get(4) };
                self.market.restore_position(r.get(0), p);
            }
            self.load_solvency(ctx).await?;
        }
        let last = ctx.client.query_opt(SQL_LAST_TRADE, &[&self.symbol]).await?;
        self.market.set_last_trade(last.map(|r| r.get(0)));
        let rows = ctx
            .client
            .query(
                "SELECT order_id, user_id, side, kind, price_ticks, qty_lots, quote_budget, filled_qty, held_minor, status, client_order_id \
                 FROM orders WHERE market = $1 AND status IN ('pending', 'open') ORDER BY seq",
                &[&self.symbol],
            )
            .await?;
        // The batch statements' plans, made at their first execution from here on.
        ctx.client.batch_execute(crate::db::LEADER_PLANS).await?;
        let pending = self.restore_orders(&rows)?;
        if !pending.is_empty() {
            // Written by an engine that committed acceptance and matching separately.
            tracing::info!(market = %self.symbol, n = pending.len(), "matching accepted orders of the previous leader");
            // Not contained: a panic here exits, as anywhere outside a batch's matching.
            let m = self.execute(&pending, &[], &Poison::default(), &Cell::new(None))?;
            self.commit(ctx, m).await?;
        }
        self.depth.publish(self.market.book());
        Ok(())
    }

    async fn run_batch(&mut self, ctx: &mut LeaderCtx, jobs: Vec<Job<SpotCmd>>) -> Result<(), LeadError> {
        let mut places = Vec::new();
        let mut cancels = Vec::new();
        let mut cancel_jobs = Vec::new();
        let mut answers: HashMap<usize, Reply> = HashMap::new();
        let mut replies: Vec<Option<oneshot_reply::Sender>> = Vec::new();
        for (i, j) in jobs.into_iter().enumerate() {
            match j.cmd {
                SpotCmd::Place(p) => places.push((i, p)),
                SpotCmd::Cancel { user_id, order_id } => {
                    cancels.push((user_id, order_id));
                    cancel_jobs.push(i);
                }
            }
            replies.push(Some(j.reply));
        }
        let (s, poison) = self.settle_batch(ctx, &places, &cancels).await?;
        // Committed: reads see this batch before any of its requests is answered.
        self.depth.publish(self.market.book());
        self.batches += 1;
        self.known_checks_left = self.known_checks_left.saturating_sub(1);
        for (job, v) in s.verdicts {
            let reply = match v {
                Verdict::Known(v) => Ok(v),
                Verdict::Fresh(i) => {
                    let (f, u) = (&s.fresh[i], &s.results[i]);
                    let reason = u.reason.map(|c| c.as_str());
                    Ok(order_json(&self.symbol, u.order_id, &f.client_order_id, u.status, u.filled_qty, f.order.qty_lots, reason))
                }
                Verdict::SameAs(first) => answers.get(&first).cloned().unwrap_or_else(|| Err(ApiError::unavailable("retry"))),
            };
            answers.insert(job, reply);
        }
        report_quarantined(ctx, &places, &cancels, &poison);
        let cancel_results = s.cancels;
        for (k, ((user_id, order_id), (job, _))) in cancels.iter().zip(cancel_jobs.iter().zip(cancel_results)).enumerate() {
            if let Some(why) = poison.items.get(&Hand::Cancel(k)) {
                answers.insert(*job, Err(ApiError::conflict(ErrorCode::Quarantined, format!("cancel quarantined: {why}"))));
                continue;
            }
            let reply = order_by_id(&ctx.client, *user_id, *order_id).await?;
            answers.insert(*job, reply.ok_or_else(|| ApiError::not_found(format!("no order {order_id} of this user"))));
        }
        for (job, reply) in answers {
            if let Some(tx) = replies[job].take() {
                let _ = tx.send(reply);
            }
        }
        Ok(())
    }
}

/// Reports the batch's quarantined items to the monitor, once their batch committed (an
/// order as `rejected`, reason `quarantined`).
fn report_quarantined(ctx: &LeaderCtx, places: &[(usize, UserOrder)], cancels: &[(i64, i64)], poison: &Poison) {
    for (h, message) in &poison.items {
        let (user_id, client_order_id) = match *h {
            Hand::Place(k) => (places[k].1.user_id, places[k].1.order.client_order_id.clone()),
            Hand::Cancel(k) => (cancels[k].0, format!("(cancel of order {})", cancels[k].1)),
        };
        let q = Quarantine { partition: ctx.key.clone(), user_id, client_order_id, message: message.clone() };
        crate::partition::report(&ctx.events, Event::Quarantined(q));
    }
}

/// The order of a row of the load query (order_id, user_id, side, kind, price_ticks,
/// qty_lots, quote_budget first).
fn order_of_row(r: &tokio_postgres::Row) -> NewOrder {
    NewOrder {
        id: r.get(0),
        user_id: r.get(1),
        side: Side::from_i16(r.get(2)),
        kind: OrderKind::from_i16(r.get(3)),
        price_ticks: r.get(4),
        qty_lots: r.get(5),
        quote_budget: r.get(6),
    }
}

/// The order a placement asks for, under `id`.
fn new_order(id: i64, p: &UserOrder) -> NewOrder {
    let o = &p.order;
    NewOrder {
        id,
        user_id: p.user_id,
        side: o.side,
        kind: o.kind,
        price_ticks: o.price_ticks,
        qty_lots: o.qty_lots,
        quote_budget: o.quote_budget_minor,
    }
}

mod oneshot_reply {
    pub type Sender = tokio::sync::oneshot::Sender<crate::api::Reply>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::PlaceOrder;

    const MARGINS: Margins = Margins { im_bps: 1000, mm_bps: 500 };
    const ACCOUNTS: Accounts = Accounts { fee: -1000, pool: -2000, insurance: -3000 };

    fn limit(user_id: i64, cid: &str, side: Side, price_ticks: i64, qty_lots: i64) -> UserOrder {
        let order = PlaceOrder {
            market: "BTC-PERP".into(),
            client_order_id: cid.into(),
            side,
            kind: OrderKind::Limit,
            price_ticks,
            qty_lots,
            quote_budget_minor: 0,
        };
        UserOrder { user_id, order }
    }

    /// A sell decided after a buy of its own batch may trade at that buy's limit (the buy
    /// rests first): it holds against it, and matched in order it fills within its hold.
    #[test]
    fn a_sell_holds_against_the_bids_of_earlier_orders_in_its_batch() {
        let mut l = PerpLogic::perp("BTC-PERP", "USD", Fees { maker_bps: 10, taker_bps: 20 }, MARGINS, 0, ACCOUNTS);
        l.funds.insert((1, Asset::Quote), 1_000_000);
        l.funds.insert((2, Asset::Quote), 1_000_000);
        let places = vec![(0, limit(1, "b", Side::Buy, 500, 10)), (1, limit(2, "s", Side::Sell, 1, 10))];
        let (fresh, _) = l.decide(&places, &Known::new(), &[1, 2], true, &Poison::default(), &Cell::new(None)).unwrap().expect("decided");
        assert_eq!(fresh[1].reserved, Ok(l.market.need(500, 10)));
        let mut out = Effects::default();
        let updates: Vec<_> = fresh.iter().map(|f| l.market.place(f.order, f.reserved.unwrap(), &mut out).unwrap()).collect();
        assert_eq!((updates[1].status, updates[1].filled_qty), ("filled", 10));
        assert_eq!(out.fills[0].fill.price_ticks, 500);
    }

    /// A quarantined placement is decided `rejected`/`quarantined` without a reservation
    /// and keeps its slot (an order id, a row); the rest of the batch is decided as usual.
    #[test]
    fn a_quarantined_order_is_rejected_and_the_rest_decided() {
        let mut l = PerpLogic::perp("BTC-PERP", "USD", Fees { maker_bps: 10, taker_bps: 20 }, MARGINS, 0, ACCOUNTS);
        l.funds.insert((1, Asset::Quote), 1_000_000);
        let places = vec![(0, limit(1, "a", Side::Buy, 500, 10)), (1, limit(1, "b", Side::Buy, 500, 10))];
        let mut poison = Poison::default();
        poison.items.insert(Hand::Place(0), "boom".into());
        let (fresh, verdicts) = l.decide(&places, &Known::new(), &[1, 2], true, &poison, &Cell::new(None)).unwrap().expect("decided");
        assert_eq!((fresh[0].order.id, fresh[0].reserved), (1, Err(ErrorCode::Quarantined)));
        assert_eq!(fresh[1].reserved, Ok(l.market.need(500, 10)));
        assert_eq!(verdicts.len(), 2);
        let m = l.execute(&fresh, &[], &poison, &Cell::new(None)).unwrap();
        assert_eq!((m.results[0].status, m.results[0].reason), ("rejected", Some(ErrorCode::Quarantined)));
        assert_eq!(m.finals.len(), 2);
    }
}
