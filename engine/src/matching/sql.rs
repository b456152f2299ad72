//! SQL of a market leader and the rows it binds: statements, the new-order columns,
//! ledger lines, and the order JSON the API shows.

use super::Fresh;
use crate::perp::Position;
use crate::spot::{FeeFill, OrderUpdate};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

pub(super) const SQL_NEW_IDS: &str = "SELECT nextval('order_id_seq') FROM generate_series(1, $1::int)";
/// Orders already placed under the batch's (user, client id) pairs, in any market.
/// The columns `row_json` reads, then the user (at `KNOWN_USER_COL`).
pub(super) const SQL_KNOWN: &str =
    "SELECT o.market, o.order_id, o.client_order_id, o.status, o.filled_qty, o.qty_lots, o.reason, o.user_id \
     FROM orders o JOIN unnest($1::bigint[], $2::text[]) AS t(u, c) ON o.user_id = t.u AND o.client_order_id = t.c";
pub(super) const SQL_FUNDS: &str = "SELECT owner_id, asset, available FROM balances WHERE (owner_id, asset) IN \
     (SELECT * FROM unnest($1::bigint[], $2::text[]))";
pub(super) const SQL_NEW_ORDERS: &str =
    "INSERT INTO orders (order_id, market, seq, user_id, client_order_id, side, kind, price_ticks, qty_lots, \
       quote_budget, filled_qty, held_minor, status, reason) \
     SELECT i, $1, s, u, c, sd, k, p, q, b, f, h, st, r FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::int2[], \
       $7::int2[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::text[]) \
       AS t(i, s, u, c, sd, k, p, q, b, f, h, st, r)";
pub(super) const SQL_LEDGER: &str = "INSERT INTO ledger (ref, owner_id, asset, d_available, d_held) \
     SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[])";
pub(super) const SQL_UPDATE_ORDERS: &str = "UPDATE orders o SET filled_qty = t.f, held_minor = t.h, status = t.s \
     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[]) AS t(id, f, h, s) WHERE o.order_id = t.id";
pub(super) const SQL_FILLS: &str = "INSERT INTO fills (market, maker_order_id, taker_order_id, maker_user_id, taker_user_id, price_ticks, qty_lots, maker_fee, taker_fee) \
     SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])";
/// Creates missing rows first: a CHECK applies to the proposed row of an upsert.
pub(super) const SQL_BALANCE_ROWS: &str =
    "INSERT INTO balances (owner_id, asset) SELECT * FROM unnest($1::bigint[], $2::text[]) ORDER BY 1, 2 \
     ON CONFLICT (owner_id, asset) DO NOTHING";
pub(super) const SQL_APPLY_BALANCES: &str = "UPDATE balances b SET available = b.available + t.da, held = b.held + t.dh \
     FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[]) AS t(o, a, da, dh) \
     WHERE b.owner_id = t.o AND b.asset = t.a RETURNING b.owner_id, b.asset, b.available";

/// The market's last fill price, the centre of its price band (index `fills_market_id`).
pub(super) const SQL_LAST_TRADE: &str = "SELECT price_ticks FROM fills WHERE market = $1 ORDER BY id DESC LIMIT 1";

/// Records a perpetual's halt (migration 004) in the batch that halted it.
pub(super) const SQL_HALT: &str = "INSERT INTO perp_halts (market, shortfall_minor) VALUES ($1, $2) \
     ON CONFLICT (market) DO UPDATE SET shortfall_minor = excluded.shortfall_minor";
/// A perpetual's recorded halt, read at takeover.
pub(super) const SQL_HALT_READ: &str = "SELECT shortfall_minor FROM perp_halts WHERE market = $1";
/// The balances of a market's system accounts in its quote asset, read at takeover.
pub(super) const SQL_SYSTEM_BALANCES: &str = "SELECT owner_id, available FROM balances WHERE owner_id = ANY($1) AND asset = $2";

pub(super) const SQL_POSITIONS: &str =
    "INSERT INTO positions (user_id, market, size_lots, entry_cost_minor, margin_minor, realized_pnl_minor) \
     SELECT u, $1, s, e, m, r FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) AS t(u, s, e, m, r) \
     ON CONFLICT (user_id, market) DO UPDATE SET size_lots = excluded.size_lots, entry_cost_minor = excluded.entry_cost_minor, \
       margin_minor = excluded.margin_minor, realized_pnl_minor = excluded.realized_pnl_minor";

pub fn order_json(market: &str, id: i64, cid: &str, status: &str, filled: i64, qty: i64, reason: Option<&str>) -> Value {
    json!({"market": market, "order_id": id, "client_order_id": cid, "status": status,
           "filled_qty": filled, "qty_lots": qty, "reason": reason})
}

/// Reads a user's order by client id.
pub async fn order_by_client_id(c: &tokio_postgres::Client, user_id: i64, cid: &str) -> Result<Option<Value>, tokio_postgres::Error> {
    let sql = "SELECT market, order_id, client_order_id, status, filled_qty, qty_lots, reason FROM orders WHERE user_id = $1 AND client_order_id = $2";
    Ok(c.query_opt(sql, &[&user_id, &cid]).await?.map(|r| row_json(&r)))
}

/// Reads a user's order by id.
pub async fn order_by_id(c: &tokio_postgres::Client, user_id: i64, id: i64) -> Result<Option<Value>, tokio_postgres::Error> {
    let sql =
        "SELECT market, order_id, client_order_id, status, filled_qty, qty_lots, reason FROM orders WHERE user_id = $1 AND order_id = $2";
    Ok(c.query_opt(sql, &[&user_id, &id]).await?.map(|r| row_json(&r)))
}

/// An order row (market, order_id, client_order_id, status, filled_qty, qty_lots, reason
/// first) as the API shows it.
pub(super) fn row_json(r: &tokio_postgres::Row) -> Value {
    order_json(r.get::<_, &str>(0), r.get(1), r.get::<_, &str>(2), r.get::<_, &str>(3), r.get(4), r.get(5), r.get::<_, Option<&str>>(6))
}

pub(super) const KNOWN_USER_COL: usize = 7;

/// Columns of `SQL_NEW_ORDERS`: the batch's new orders in their final state.
pub(super) struct NewRows<'a> {
    pub(super) ids: Vec<i64>,
    pub(super) seqs: Vec<i64>,
    pub(super) users: Vec<i64>,
    pub(super) cids: Vec<&'a str>,
    pub(super) sides: Vec<i16>,
    pub(super) kinds: Vec<i16>,
    pub(super) prices: Vec<i64>,
    pub(super) qtys: Vec<i64>,
    pub(super) budgets: Vec<i64>,
    pub(super) filled: Vec<i64>,
    pub(super) held: Vec<i64>,
    pub(super) status: Vec<&'static str>,
    pub(super) reasons: Vec<Option<&'static str>>,
}

impl<'a> NewRows<'a> {
    pub(super) fn of(rows: &[(&'a Fresh, OrderUpdate)]) -> Self {
        NewRows {
            ids: rows.iter().map(|(f, _)| f.order.id).collect(),
            seqs: rows.iter().map(|(f, _)| f.seq).collect(),
            users: rows.iter().map(|(f, _)| f.order.user_id).collect(),
            cids: rows.iter().map(|(f, _)| f.client_order_id.as_str()).collect(),
            sides: rows.iter().map(|(f, _)| f.order.side.as_i16()).collect(),
            kinds: rows.iter().map(|(f, _)| f.order.kind.as_i16()).collect(),
            prices: rows.iter().map(|(f, _)| f.order.price_ticks).collect(),
            qtys: rows.iter().map(|(f, _)| f.order.qty_lots).collect(),
            budgets: rows.iter().map(|(f, _)| f.order.quote_budget).collect(),
            filled: rows.iter().map(|(_, u)| u.filled_qty).collect(),
            held: rows.iter().map(|(_, u)| u.held_minor).collect(),
            status: rows.iter().map(|(_, u)| u.status).collect(),
            reasons: rows.iter().map(|(_, u)| u.reason.map(|c| c.as_str())).collect(),
        }
    }

    pub(super) fn params<'s>(&'s self, market: &'s String) -> [&'s (dyn tokio_postgres::types::ToSql + Sync); 14] {
        [
            market,
            &self.ids,
            &self.seqs,
            &self.users,
            &self.cids,
            &self.sides,
            &self.kinds,
            &self.prices,
            &self.qtys,
            &self.budgets,
            &self.filled,
            &self.held,
            &self.status,
            &self.reasons,
        ]
    }
}

/// Owned parameters of the ledger insert.
pub(super) struct LedgerParams {
    pub(super) reference: String,
    pub(super) owners: Vec<i64>,
    pub(super) assets: Vec<String>,
    pub(super) da: Vec<i64>,
    pub(super) dh: Vec<i64>,
}

impl LedgerParams {
    pub(super) fn as_refs(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 5] {
        [&self.reference, &self.owners, &self.assets, &self.da, &self.dh]
    }
}

type Param<'s> = &'s (dyn ToSql + Sync);

/// Runs `st` if the batch has rows for it (`run`); part of the batch's pipeline.
pub(super) async fn exec_if(c: &Client, st: &Statement, run: bool, params: &[Param<'_>]) -> Result<(), tokio_postgres::Error> {
    if run {
        c.execute(st, params).await?;
    }
    Ok(())
}

/// Columns of `SQL_POSITIONS`: the positions the batch changed.
pub(super) struct PositionRows {
    pub(super) users: Vec<i64>,
    sizes: Vec<i64>,
    costs: Vec<i64>,
    margins: Vec<i64>,
    pnls: Vec<i64>,
}

impl PositionRows {
    pub(super) fn of(p: &[(i64, Position)]) -> Self {
        PositionRows {
            users: p.iter().map(|p| p.0).collect(),
            sizes: p.iter().map(|p| p.1.size_lots).collect(),
            costs: p.iter().map(|p| p.1.entry_cost_minor).collect(),
            margins: p.iter().map(|p| p.1.margin_minor).collect(),
            pnls: p.iter().map(|p| p.1.realized_pnl_minor).collect(),
        }
    }
    pub(super) fn params<'s>(&'s self, market: &'s String) -> [Param<'s>; 6] {
        [market, &self.users, &self.sizes, &self.costs, &self.margins, &self.pnls]
    }
}

/// Columns of `SQL_UPDATE_ORDERS`: older orders the batch changed, in their last state.
pub(super) struct ChangedRows {
    pub(super) ids: Vec<i64>,
    filled: Vec<i64>,
    held: Vec<i64>,
    status: Vec<&'static str>,
}

impl ChangedRows {
    pub(super) fn of(changed: &BTreeMap<i64, OrderUpdate>) -> Self {
        ChangedRows {
            ids: changed.keys().copied().collect(),
            filled: changed.values().map(|u| u.filled_qty).collect(),
            held: changed.values().map(|u| u.held_minor).collect(),
            status: changed.values().map(|u| u.status).collect(),
        }
    }
    pub(super) fn params(&self) -> [Param<'_>; 4] {
        [&self.ids, &self.filled, &self.held, &self.status]
    }
}

/// Columns of `SQL_FILLS`.
pub(super) struct FillRows {
    makers: Vec<i64>,
    takers: Vec<i64>,
    maker_users: Vec<i64>,
    taker_users: Vec<i64>,
    prices: Vec<i64>,
    qtys: Vec<i64>,
    maker_fees: Vec<i64>,
    taker_fees: Vec<i64>,
}

impl FillRows {
    pub(super) fn of(fills: &[FeeFill]) -> Self {
        FillRows {
            makers: fills.iter().map(|f| f.fill.maker_order_id).collect(),
            takers: fills.iter().map(|f| f.fill.taker_order_id).collect(),
            maker_users: fills.iter().map(|f| f.fill.maker_user_id).collect(),
            taker_users: fills.iter().map(|f| f.fill.taker_user_id).collect(),
            prices: fills.iter().map(|f| f.fill.price_ticks).collect(),
            qtys: fills.iter().map(|f| f.fill.qty_lots).collect(),
            maker_fees: fills.iter().map(|f| f.maker_fee).collect(),
            taker_fees: fills.iter().map(|f| f.taker_fee).collect(),
        }
    }
    pub(super) fn params<'s>(&'s self, market: &'s String) -> [Param<'s>; 9] {
        [
            market,
            &self.makers,
            &self.takers,
            &self.maker_users,
            &self.taker_users,
            &self.prices,
            &self.qtys,
            &self.maker_fees,
            &self.taker_fees,
        ]
    }
}

/// Balance deltas (owner, asset name, available, held), columns of `SQL_APPLY_BALANCES`;
/// the first two of rows that may not exist yet are those of `SQL_BALANCE_ROWS`.
pub(super) struct BalanceRows<'a> {
    pub(super) owners: Vec<i64>,
    assets: Vec<&'a str>,
    da: Vec<i64>,
    dh: Vec<i64>,
}

impl<'a> BalanceRows<'a> {
    pub(super) fn of<'r>(rows: impl Iterator<Item = &'r (i64, &'a str, i64, i64)>) -> Self
    where
        'a: 'r,
    {
        let mut b = BalanceRows { owners: Vec::new(), assets: Vec::new(), da: Vec::new(), dh: Vec::new() };
        for r in rows {
            b.owners.push(r.0);
            b.assets.push(r.1);
            b.da.push(r.2);
            b.dh.push(r.3);
        }
        b
    }
    pub(super) fn params(&self) -> [Param<'_>; 4] {
        [&self.owners, &self.assets, &self.da, &self.dh]
    }
    pub(super) fn keys(&self) -> [Param<'_>; 2] {
        [&self.owners, &self.assets]
    }
}
