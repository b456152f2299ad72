//! Leader logic of a spot market partition: group commit in two phases per batch.
//!
//! Phase 1 (accept): insert the batch's orders as `pending` (idempotent on
//! `(user_id, client_order_id)`) and reserve their funds; commit. Rejections are final.
//! Phase 2 (match): run the accepted orders and cancels through the in-memory book, then
//! write order states, fills, balance changes and ledger entries; commit; answer.
//! Each transaction touches `balances` in essentially one statement, which keeps cross-market
//! lock waits short. If the leader dies between the phases, the next leader replays the
//! `pending` orders in sequence order while loading, so each is applied exactly once.

use crate::api::{ApiError, Reply};
use crate::book::{NewOrder, OrderKind, Resting, Side};
use crate::partition::{Job, LeadError, LeaderCtx, Logic};
use crate::settle::{self, Asset, Fees, Postings};
use crate::perp::{PerpMarket, Position};
use crate::spot::{FeeFill, OrderUpdate, SpotMarket};
use crate::book::Book;
use crate::settle::SettleError;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone)]
pub struct PlaceReq {
    pub user_id: i64,
    pub client_order_id: String,
    pub side: Side,
    pub kind: OrderKind,
    pub price_ticks: i64,
    pub qty_lots: i64,
    pub quote_budget: i64,
}

#[derive(Debug)]
pub enum SpotCmd {
    Place(PlaceReq),
    Cancel { user_id: i64, order_id: i64 },
    Book { levels: usize },
}

const SQL_INSERT_ORDERS: &str = "INSERT INTO orders (order_id, market, seq, user_id, client_order_id, side, kind, price_ticks, qty_lots, quote_budget, status) \
     SELECT nextval('order_id_seq'), $1, s, u, c, sd, k, p, q, b, 'pending' \
     FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::int2[], $6::int2[], $7::bigint[], $8::bigint[], $9::bigint[]) \
       AS t(s, u, c, sd, k, p, q, b) ORDER BY s \
     ON CONFLICT (user_id, client_order_id) DO NOTHING RETURNING order_id, seq";
/// Locks balance rows in one global order, so concurrent partitions cannot deadlock.
const SQL_LOCK_BALANCES: &str = "SELECT 1 FROM balances WHERE (owner_id, asset) IN \
     (SELECT * FROM unnest($1::bigint[], $2::text[])) ORDER BY owner_id, asset FOR UPDATE";
const SQL_RESERVE_GROUPS: &str = "UPDATE balances b SET available = b.available - t.amt, held = b.held + t.amt \
     FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS t(o, a, amt) \
     WHERE b.owner_id = t.o AND b.asset = t.a AND b.available >= t.amt RETURNING b.owner_id, b.asset";
const SQL_RESERVE_ONE: &str = "UPDATE balances SET available = available - $3, held = held + $3 \
     WHERE owner_id = $1 AND asset = $2 AND available >= $3";
const SQL_REJECT: &str = "UPDATE orders SET status = 'rejected', reason = 'insufficient_funds' WHERE order_id = ANY($1)";
const SQL_LEDGER: &str = "INSERT INTO ledger (ref, owner_id, asset, d_available, d_held) \
     SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[])";
const SQL_UPDATE_ORDERS: &str = "UPDATE orders o SET filled_qty = t.f, held_minor = t.h, status = t.s \
     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[]) AS t(id, f, h, s) WHERE o.order_id = t.id";
const SQL_FILLS: &str = "INSERT INTO fills (market, maker_order_id, taker_order_id, maker_user_id, taker_user_id, price_ticks, qty_lots, maker_fee, taker_fee) \
     SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])";
/// Creates missing rows first: a CHECK applies to the proposed row of an upsert.
const SQL_BALANCE_ROWS: &str = "INSERT INTO balances (owner_id, asset) SELECT * FROM unnest($1::bigint[], $2::text[]) ORDER BY 1, 2 \
     ON CONFLICT (owner_id, asset) DO NOTHING";
const SQL_APPLY_BALANCES: &str = "UPDATE balances b SET available = b.available + t.da, held = b.held + t.dh \
     FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[]) AS t(o, a, da, dh) \
     WHERE b.owner_id = t.o AND b.asset = t.a";

/// The in-memory market a leader drives: spot (`SpotMarket`) or perpetual (`PerpMarket`).
pub trait Core: Send + Sync + 'static {
    fn reservation(&self, o: &NewOrder) -> Result<(Asset, i64), SettleError>;
    fn restore(&mut self, r: Resting, qty: i64, filled: i64, held_minor: i64);
    fn place(
        &mut self,
        o: NewOrder,
        reserved: i64,
        updates: &mut Vec<OrderUpdate>,
        fills: &mut Vec<FeeFill>,
        postings: &mut Postings,
    ) -> Result<OrderUpdate, SettleError>;
    fn cancel(&mut self, id: i64, postings: &mut Postings) -> Option<OrderUpdate>;
    fn book(&self) -> &Book;
    /// Positions changed since the last call (perpetuals only).
    fn take_positions(&mut self) -> Vec<(i64, Position)> {
        Vec::new()
    }
    fn restore_position(&mut self, _user: i64, _p: Position) {}
    const HAS_POSITIONS: bool = false;
}

impl Core for SpotMarket {
    fn reservation(&self, o: &NewOrder) -> Result<(Asset, i64), SettleError> {
        settle::reservation(o, self.fees)
    }
    fn restore(&mut self, r: Resting, qty: i64, filled: i64, held_minor: i64) {
        SpotMarket::restore(self, r, qty, filled, held_minor)
    }
    fn place(&mut self, o: NewOrder, reserved: i64, u: &mut Vec<OrderUpdate>, f: &mut Vec<FeeFill>, p: &mut Postings) -> Result<OrderUpdate, SettleError> {
        SpotMarket::place(self, o, reserved, u, f, p)
    }
    fn cancel(&mut self, id: i64, postings: &mut Postings) -> Option<OrderUpdate> {
        SpotMarket::cancel(self, id, postings)
    }
    fn book(&self) -> &Book {
        &self.book
    }
}

impl Core for PerpMarket {
    fn reservation(&self, o: &NewOrder) -> Result<(Asset, i64), SettleError> {
        PerpMarket::reservation(self, o)
    }
    fn restore(&mut self, r: Resting, qty: i64, filled: i64, held_minor: i64) {
        PerpMarket::restore(self, r, qty, filled, held_minor)
    }
    fn place(&mut self, o: NewOrder, reserved: i64, u: &mut Vec<OrderUpdate>, f: &mut Vec<FeeFill>, p: &mut Postings) -> Result<OrderUpdate, SettleError> {
        PerpMarket::place(self, o, reserved, u, f, p)
    }
    fn cancel(&mut self, id: i64, postings: &mut Postings) -> Option<OrderUpdate> {
        PerpMarket::cancel(self, id, postings)
    }
    fn book(&self) -> &Book {
        &self.book
    }
    fn take_positions(&mut self) -> Vec<(i64, Position)> {
        self.take_dirty()
    }
    fn restore_position(&mut self, user: i64, p: Position) {
        PerpMarket::restore_position(self, user, p)
    }
    const HAS_POSITIONS: bool = true;
}

const SQL_POSITIONS: &str = "INSERT INTO positions (user_id, market, size_lots, entry_cost_minor, margin_minor, realized_pnl_minor) \
     SELECT u, $1, s, e, m, r FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) AS t(u, s, e, m, r) \
     ON CONFLICT (user_id, market) DO UPDATE SET size_lots = excluded.size_lots, entry_cost_minor = excluded.entry_cost_minor, \
       margin_minor = excluded.margin_minor, realized_pnl_minor = excluded.realized_pnl_minor";

pub type SpotLogic = MarketLogic<SpotMarket>;
pub type PerpLogic = MarketLogic<PerpMarket>;

const ALL_SQL: &[&str] = &[
    SQL_INSERT_ORDERS, SQL_LOCK_BALANCES, SQL_RESERVE_GROUPS, SQL_RESERVE_ONE, SQL_REJECT, SQL_LEDGER,
    SQL_UPDATE_ORDERS, SQL_FILLS, SQL_BALANCE_ROWS, SQL_APPLY_BALANCES, SQL_POSITIONS, crate::partition::SQL_FENCE,
];

pub struct MarketLogic<C: Core> {
    pub symbol: String,
    pub base: String,
    pub quote: String,
    market: C,
    make: Box<dyn Fn() -> C + Send + Sync>,
    next_seq: i64,
}

/// Replies decided in phase 1 (rejections, duplicates to look up), by job index.
type EarlyReplies = HashMap<usize, Reply>;

/// An order that passed phase 1 and waits for matching.
struct Accepted {
    order: NewOrder,
    reserved: i64,
    client_order_id: String,
    job: Option<usize>,
}

impl SpotLogic {
    pub fn spot(symbol: &str, base: &str, quote: &str, fees: Fees, fee_account: i64) -> Self {
        MarketLogic::new(symbol, base, quote, Box::new(move || SpotMarket::new(fees, fee_account)))
    }
}

impl PerpLogic {
    pub fn perp(symbol: &str, quote: &str, fees: Fees, im_bps: u32, fee_account: i64, pool_account: i64) -> Self {
        MarketLogic::new(symbol, quote, quote, Box::new(move || PerpMarket::new(fees, im_bps, fee_account, pool_account)))
    }
}

impl<C: Core> MarketLogic<C> {
    pub fn new(symbol: &str, base: &str, quote: &str, make: Box<dyn Fn() -> C + Send + Sync>) -> Self {
        MarketLogic { symbol: symbol.into(), base: base.into(), quote: quote.into(), market: make(), make, next_seq: 1 }
    }

    fn asset_name(&self, a: Asset) -> &str {
        match a {
            Asset::Base => &self.base,
            Asset::Quote => &self.quote,
        }
    }

    /// Phase 1: returns accepted orders (by job index) and rejections / duplicates.
    async fn accept(
        &mut self,
        ctx: &mut LeaderCtx,
        places: &[(usize, PlaceReq)],
    ) -> Result<(Vec<Accepted>, EarlyReplies), LeadError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.accept_once(ctx, places).await {
                Err(LeadError::Db(e)) if crate::db::is_retryable(&e) && attempt < 5 => continue,
                r => return r,
            }
        }
    }

    async fn accept_once(
        &mut self,
        ctx: &mut LeaderCtx,
        places: &[(usize, PlaceReq)],
    ) -> Result<(Vec<Accepted>, EarlyReplies), LeadError> {
        let base_seq = self.next_seq;
        let seqs: Vec<i64> = (0..places.len() as i64).map(|i| base_seq + i).collect();
        let users: Vec<i64> = places.iter().map(|(_, p)| p.user_id).collect();
        let cids: Vec<&str> = places.iter().map(|(_, p)| p.client_order_id.as_str()).collect();
        let sides: Vec<i16> = places.iter().map(|(_, p)| p.side.as_i16()).collect();
        let kinds: Vec<i16> = places.iter().map(|(_, p)| p.kind.as_i16()).collect();
        let prices: Vec<i64> = places.iter().map(|(_, p)| p.price_ticks).collect();
        let qtys: Vec<i64> = places.iter().map(|(_, p)| p.qty_lots).collect();
        let budgets: Vec<i64> = places.iter().map(|(_, p)| p.quote_budget).collect();
        let fence = ctx.fence_params();
        let st = &ctx.stmts;
        let tx = ctx.client.transaction().await?;
        // The accept commit need not wait for the standby: nothing is acknowledged on it.
        // The match commit that follows is synchronous, and WAL is shipped in order, so by
        // the time any answer leaves, this transaction is on both copies too. If it is lost
        // with a crashed primary, its orders were never acknowledged and clients retry.
        let (_, rows, fenced) = futures::try_join!(
            async { tx.batch_execute("SET LOCAL synchronous_commit = off").await },
            async { tx.query(&st[SQL_INSERT_ORDERS], &[&self.symbol, &seqs, &users, &cids, &sides, &kinds, &prices, &qtys, &budgets]).await },
            async { tx.execute(&st[crate::partition::SQL_FENCE], &[&fence.0, &fence.1]).await },
        )?;
        if fenced != 1 {
            return Err(LeadError::Fenced(fence.0));
        }
        let mut id_of_seq: HashMap<i64, i64> = rows.iter().map(|r| (r.get::<_, i64>(1), r.get::<_, i64>(0))).collect();
        let mut accepted = Vec::new();
        let mut replies = HashMap::new();
        // Reservation demand per (user, asset), in sequence order.
        let mut demand: BTreeMap<(i64, String), Vec<(usize, i64)>> = BTreeMap::new();
        let mut candidates = Vec::new();
        for (i, (job, p)) in places.iter().enumerate() {
            let Some(order_id) = id_of_seq.remove(&seqs[i]) else {
                replies.insert(*job, Err(ApiError::new(0, "duplicate", ""))); // resolved after commit
                continue;
            };
            let o = NewOrder {
                id: order_id,
                user_id: p.user_id,
                side: p.side,
                kind: p.kind,
                price_ticks: p.price_ticks,
                qty_lots: p.qty_lots,
                quote_budget: p.quote_budget,
            };
            let (asset, amount) = self.market.reservation(&o).map_err(|e| LeadError::Invariant(e.to_string()))?;
            demand.entry((p.user_id, self.asset_name(asset).to_string())).or_default().push((candidates.len(), amount));
            candidates.push((*job, o, amount, asset, p.client_order_id.clone()));
        }
        // One statement reserves every (user, asset) group that can afford its whole batch demand.
        let (gu, ga, gamt): (Vec<i64>, Vec<String>, Vec<i64>) = {
            let mut u = Vec::new();
            let mut a = Vec::new();
            let mut m = Vec::new();
            for ((user, asset), v) in &demand {
                u.push(*user);
                a.push(asset.clone());
                m.push(v.iter().map(|x| x.1).sum::<i64>());
            }
            (u, a, m)
        };
        let (_, ok_rows) = futures::try_join!(
            async { tx.execute(&st[SQL_LOCK_BALANCES], &[&gu, &ga]).await },
            async { tx.query(&st[SQL_RESERVE_GROUPS], &[&gu, &ga, &gamt]).await },
        )?;
        let ok: std::collections::HashSet<(i64, String)> =
            ok_rows.iter().map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1))).collect();
        let mut reserved_ok = vec![false; candidates.len()];
        for (key, v) in &demand {
            if ok.contains(key) {
                v.iter().for_each(|(c, _)| reserved_ok[*c] = true);
                continue;
            }
            // Rare path: the group cannot afford all; reserve order by order, in sequence.
            for (c, amt) in v {
                let n = tx.execute(&st[SQL_RESERVE_ONE], &[&key.0, &key.1, amt]).await?;
                reserved_ok[*c] = n == 1;
            }
        }
        let mut rejected: Vec<i64> = Vec::new();
        let mut postings = Postings::default();
        for (c, (job, o, amount, asset, cid)) in candidates.into_iter().enumerate() {
            if reserved_ok[c] {
                settle::post_reserve(o.user_id, asset, amount, &mut postings, &format!("reserve:{}", o.id));
                accepted.push(Accepted { order: o, reserved: amount, client_order_id: cid, job: Some(job) });
            } else {
                rejected.push(o.id);
                replies.insert(
                    job,
                    Ok(order_json(&self.symbol, o.id, &cid, "rejected", 0, o.qty_lots, Some("insufficient_funds"))),
                );
            }
        }
        let (ledger_sql, ledger_params) = self.ledger_params(&postings, format!("accept:{}:{}", self.symbol, base_seq));
        futures::try_join!(
            async {
                if !rejected.is_empty() {
                    tx.execute(&st[SQL_REJECT], &[&rejected]).await?;
                }
                Ok::<_, tokio_postgres::Error>(())
            },
            async {
                if let Some(p) = &ledger_params {
                    tx.execute(&st[ledger_sql], &p.as_refs()).await?;
                }
                Ok(())
            },
        )?;
        tx.commit().await?;
        self.next_seq = base_seq + places.len() as i64;
        Ok((accepted, replies))
    }

    /// One ledger line per account per batch transaction (the journal entry of the batch;
    /// the per-fill detail is in `fills`). Lines sum to zero per asset like the postings.
    fn ledger_params(&self, p: &Postings, reference: String) -> (&'static str, Option<LedgerParams>) {
        let lines: Vec<_> = p.net.iter().filter(|(_, v)| v.0 != 0 || v.1 != 0).collect();
        if lines.is_empty() {
            return (SQL_LEDGER, None);
        }
        (
            SQL_LEDGER,
            Some(LedgerParams {
                refs: vec![reference; lines.len()],
                owners: lines.iter().map(|(k, _)| k.0).collect(),
                assets: lines.iter().map(|(k, _)| self.asset_name(k.1).to_string()).collect(),
                da: lines.iter().map(|(_, v)| v.0).collect(),
                dh: lines.iter().map(|(_, v)| v.1).collect(),
            }),
        )
    }

    /// Phase 2: matches in memory, then commits the outcome. Returns one update per input.
    async fn match_and_commit(
        &mut self,
        ctx: &mut LeaderCtx,
        accepted: &[Accepted],
        cancels: &[(i64, i64)],
    ) -> Result<(Vec<OrderUpdate>, Vec<Option<OrderUpdate>>), LeadError> {
        let mut updates = Vec::new();
        let mut fills: Vec<FeeFill> = Vec::new();
        let mut postings = Postings::default();
        let mut results = Vec::with_capacity(accepted.len());
        for a in accepted {
            let u = self
                .market
                .place(a.order, a.reserved, &mut updates, &mut fills, &mut postings)
                .map_err(|e| LeadError::Invariant(e.to_string()))?;
            results.push(u);
        }
        let mut cancel_results = Vec::with_capacity(cancels.len());
        for (user_id, order_id) in cancels {
            let mine = self.market.book().get(*order_id).is_some_and(|r| r.user_id == *user_id);
            let u = if mine { self.market.cancel(*order_id, &mut postings) } else { None };
            if let Some(u) = u {
                updates.push(u);
            }
            cancel_results.push(u);
        }
        // Last update per order wins.
        let mut last: BTreeMap<i64, OrderUpdate> = BTreeMap::new();
        for u in &updates {
            last.insert(u.order_id, *u);
        }
        let positions = self.market.take_positions();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.write_phase2(ctx, &last, &fills, &postings, &positions).await {
                Err(LeadError::Db(e)) if crate::db::is_retryable(&e) && attempt < 10 => continue,
                Err(e) => return Err(e),
                Ok(()) => break,
            }
        }
        Ok((results, cancel_results))
    }

    async fn write_phase2(
        &self,
        ctx: &mut LeaderCtx,
        last: &BTreeMap<i64, OrderUpdate>,
        fills: &[FeeFill],
        postings: &Postings,
        positions: &[(i64, Position)],
    ) -> Result<(), LeadError> {
        let p_u: Vec<i64> = positions.iter().map(|p| p.0).collect();
        let p_s: Vec<i64> = positions.iter().map(|p| p.1.size_lots).collect();
        let p_e: Vec<i64> = positions.iter().map(|p| p.1.entry_cost_minor).collect();
        let p_m: Vec<i64> = positions.iter().map(|p| p.1.margin_minor).collect();
        let p_r: Vec<i64> = positions.iter().map(|p| p.1.realized_pnl_minor).collect();
        let ids: Vec<i64> = last.keys().copied().collect();
        let filled: Vec<i64> = last.values().map(|u| u.filled_qty).collect();
        let held: Vec<i64> = last.values().map(|u| u.held_minor).collect();
        let status: Vec<&str> = last.values().map(|u| u.status).collect();
        let f_maker: Vec<i64> = fills.iter().map(|f| f.fill.maker_order_id).collect();
        let f_taker: Vec<i64> = fills.iter().map(|f| f.fill.taker_order_id).collect();
        let f_mu: Vec<i64> = fills.iter().map(|f| f.fill.maker_user_id).collect();
        let f_tu: Vec<i64> = fills.iter().map(|f| f.fill.taker_user_id).collect();
        let f_p: Vec<i64> = fills.iter().map(|f| f.fill.price_ticks).collect();
        let f_q: Vec<i64> = fills.iter().map(|f| f.fill.qty_lots).collect();
        let f_mf: Vec<i64> = fills.iter().map(|f| f.maker_fee).collect();
        let f_tf: Vec<i64> = fills.iter().map(|f| f.taker_fee).collect();
        let b_o: Vec<i64> = postings.net.keys().map(|k| k.0).collect();
        let b_a: Vec<&str> = postings.net.keys().map(|k| self.asset_name(k.1)).collect();
        let b_da: Vec<i64> = postings.net.values().map(|v| v.0).collect();
        let b_dh: Vec<i64> = postings.net.values().map(|v| v.1).collect();
        let (ledger_sql, ledger_params) = self.ledger_params(postings, format!("match:{}:{}:{}", self.symbol, ctx.epoch, self.next_seq));
        let fence = ctx.fence_params();
        let st = &ctx.stmts;
        let tx = ctx.client.transaction().await?;
        // Independent statements are pipelined: one round trip instead of one each.
        let (_, _, _, _, _, fenced) = futures::try_join!(
            async {
                if !p_u.is_empty() {
                    tx.execute(&st[SQL_POSITIONS], &[&self.symbol, &p_u, &p_s, &p_e, &p_m, &p_r]).await?;
                }
                Ok::<_, tokio_postgres::Error>(())
            },
            async {
                if !ids.is_empty() {
                    tx.execute(&st[SQL_UPDATE_ORDERS], &[&ids, &filled, &held, &status]).await?;
                }
                Ok::<_, tokio_postgres::Error>(())
            },
            async {
                if !fills.is_empty() {
                    tx.execute(&st[SQL_FILLS], &[&self.symbol, &f_maker, &f_taker, &f_mu, &f_tu, &f_p, &f_q, &f_mf, &f_tf]).await?;
                }
                Ok(())
            },
            async {
                if !b_o.is_empty() {
                    tx.execute(&st[SQL_BALANCE_ROWS], &[&b_o, &b_a]).await?;
                    tx.execute(&st[SQL_LOCK_BALANCES], &[&b_o, &b_a]).await?;
                    tx.execute(&st[SQL_APPLY_BALANCES], &[&b_o, &b_a, &b_da, &b_dh]).await?;
                }
                Ok(())
            },
            async {
                if let Some(p) = &ledger_params {
                    tx.execute(&st[ledger_sql], &p.as_refs()).await?;
                }
                Ok(())
            },
            async { tx.execute(&st[crate::partition::SQL_FENCE], &[&fence.0, &fence.1]).await },
        )?;
        if fenced != 1 {
            return Err(LeadError::Fenced(fence.0));
        }
        tx.commit().await?;
        Ok(())
    }

    fn book_json(&self, levels: usize) -> Value {
        json!({
            "market": self.symbol,
            "bids": self.market.book().depth(Side::Buy, levels),
            "asks": self.market.book().depth(Side::Sell, levels),
        })
    }
}

pub fn order_json(market: &str, id: i64, cid: &str, status: &str, filled: i64, qty: i64, reason: Option<&str>) -> Value {
    json!({"market": market, "order_id": id, "client_order_id": cid, "status": status,
           "filled_qty": filled, "qty_lots": qty, "reason": reason})
}

/// Reads an order's current state by client id (duplicates) or by id.
pub async fn order_by_client_id(c: &tokio_postgres::Client, user_id: i64, cid: &str) -> Result<Option<Value>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT market, order_id, client_order_id, status, filled_qty, qty_lots, reason FROM orders WHERE user_id = $1 AND client_order_id = $2",
            &[&user_id, &cid],
        )
        .await?;
    Ok(row.map(|r| row_json(&r)))
}

pub async fn order_by_id(c: &tokio_postgres::Client, user_id: i64, id: i64) -> Result<Option<Value>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT market, order_id, client_order_id, status, filled_qty, qty_lots, reason FROM orders WHERE user_id = $1 AND order_id = $2",
            &[&user_id, &id],
        )
        .await?;
    Ok(row.map(|r| row_json(&r)))
}

fn row_json(r: &tokio_postgres::Row) -> Value {
    order_json(
        r.get::<_, &str>(0),
        r.get(1),
        r.get::<_, &str>(2),
        r.get::<_, &str>(3),
        r.get(4),
        r.get(5),
        r.get::<_, Option<&str>>(6),
    )
}

impl<C: Core> Logic for MarketLogic<C> {
    type Cmd = SpotCmd;

    async fn load(&mut self, ctx: &mut LeaderCtx) -> Result<(), LeadError> {
        ctx.prepare(ALL_SQL).await?;
        self.market = (self.make)();
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
        }
        let max: Option<i64> =
            ctx.client.query_one("SELECT max(seq) FROM orders WHERE market = $1", &[&self.symbol]).await?.get(0);
        self.next_seq = max.unwrap_or(0) + 1;
        let rows = ctx
            .client
            .query(
                "SELECT order_id, user_id, side, kind, price_ticks, qty_lots, quote_budget, filled_qty, held_minor, status, client_order_id \
                 FROM orders WHERE market = $1 AND status IN ('pending', 'open') ORDER BY seq",
                &[&self.symbol],
            )
            .await?;
        let mut pending = Vec::new();
        for r in rows {
            let side = Side::from_i16(r.get(2));
            let qty: i64 = r.get(5);
            let filled: i64 = r.get(7);
            let status: &str = r.get(9);
            let order = NewOrder {
                id: r.get(0),
                user_id: r.get(1),
                side,
                kind: OrderKind::from_i16(r.get(3)),
                price_ticks: r.get(4),
                qty_lots: qty,
                quote_budget: r.get(6),
            };
            if status == "open" {
                let rest = Resting { id: order.id, user_id: order.user_id, side, price_ticks: order.price_ticks, remaining_qty: qty - filled };
                self.market.restore(rest, qty, filled, r.get(8));
            } else {
                let (_, reserved) = self.market.reservation(&order).map_err(|e| LeadError::Invariant(e.to_string()))?;
                pending.push(Accepted { order, reserved, client_order_id: r.get(10), job: None });
            }
        }
        if !pending.is_empty() {
            tracing::info!(market = %self.symbol, n = pending.len(), "replaying accepted orders of the previous leader");
            self.match_and_commit(ctx, &pending, &[]).await?;
        }
        Ok(())
    }

    async fn run_batch(&mut self, ctx: &mut LeaderCtx, jobs: Vec<Job<SpotCmd>>) -> Result<(), LeadError> {
        let mut places = Vec::new();
        let mut cancels = Vec::new();
        let mut cancel_jobs = Vec::new();
        let mut books = Vec::new();
        let mut replies: Vec<Option<oneshot_reply::Sender>> = Vec::new();
        for (i, j) in jobs.into_iter().enumerate() {
            match j.cmd {
                SpotCmd::Place(p) => places.push((i, p)),
                SpotCmd::Cancel { user_id, order_id } => {
                    cancels.push((user_id, order_id));
                    cancel_jobs.push(i);
                }
                SpotCmd::Book { levels } => books.push((i, levels)),
            }
            replies.push(Some(j.reply));
        }
        let t0 = std::time::Instant::now();
        let (accepted, mut early) = if places.is_empty() {
            (Vec::new(), HashMap::new())
        } else {
            self.accept(ctx, &places).await?
        };
        let t1 = t0.elapsed();
        let (results, cancel_results) = self.match_and_commit(ctx, &accepted, &cancels).await?;
        tracing::trace!(accept_us = t1.as_micros() as u64, match_us = (t0.elapsed() - t1).as_micros() as u64, "phases");
        for (a, u) in accepted.iter().zip(results) {
            let j = a.job.expect("live order without job");
            let reply = order_json(&self.symbol, u.order_id, &a.client_order_id, u.status, u.filled_qty, a.order.qty_lots, None);
            early.insert(j, Ok(reply));
        }
        for (i, (job, p)) in places.iter().enumerate() {
            let _ = i;
            if let Some(Err(e)) = early.get(job) {
                if e.code == "duplicate" {
                    let r = order_by_client_id(&ctx.client, p.user_id, &p.client_order_id).await?;
                    early.insert(*job, r.ok_or_else(|| ApiError::unavailable("duplicate order vanished")));
                }
            }
        }
        for ((user_id, order_id), (job, u)) in cancels.iter().zip(cancel_jobs.iter().zip(cancel_results)) {
            let reply = match u {
                Some(_) => order_by_id(&ctx.client, *user_id, *order_id).await?,
                None => order_by_id(&ctx.client, *user_id, *order_id).await?,
            };
            early.insert(*job, reply.ok_or_else(|| ApiError::not_found(format!("no order {order_id} of this user"))));
        }
        for (job, levels) in books {
            early.insert(job, Ok(self.book_json(levels)));
        }
        for (job, reply) in early {
            if let Some(tx) = replies[job].take() {
                let _ = tx.send(reply);
            }
        }
        Ok(())
    }
}

mod oneshot_reply {
    pub type Sender = tokio::sync::oneshot::Sender<crate::api::Reply>;
}

/// Owned parameters of the ledger insert.
struct LedgerParams {
    refs: Vec<String>,
    owners: Vec<i64>,
    assets: Vec<String>,
    da: Vec<i64>,
    dh: Vec<i64>,
}

impl LedgerParams {
    fn as_refs(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 5] {
        [&self.refs, &self.owners, &self.assets, &self.da, &self.dh]
    }
}
