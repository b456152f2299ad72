//! OTC leader logic (one partition per user shard): request for quote -> quote with an
//! expiry -> accept, which settles both legs against the dealer account atomically.

use crate::api::{ApiError, ErrorCode, Reply};
use crate::book::Side;
use crate::ledger;
use crate::partition::{self, Job, LeadError, LeaderCtx, Logic, TxLogic};
use engine_config::MarketConfig;
use serde_json::{json, Value};
use tokio_postgres::Transaction;

#[derive(Debug)]
pub enum OtcCmd {
    Quote { user_id: i64, client_id: String, market: String, side: Side, qty_lots: i64 },
    Accept { user_id: i64, quote_id: i64 },
    SetReference { market: String, price_ticks: i64 },
}

pub struct OtcLogic {
    pub markets: Vec<MarketConfig>,
    pub dealer: i64,
    pub ttl_ms: u64,
    pub spread_bps: u32,
}

fn quote_json(r: &tokio_postgres::Row) -> Value {
    json!({"quote_id": r.get::<_, i64>(0), "user_id": r.get::<_, i64>(1), "client_id": r.get::<_, &str>(2),
           "market": r.get::<_, &str>(3), "side": if r.get::<_, i16>(4) == 0 { "buy" } else { "sell" },
           "qty_lots": r.get::<_, i64>(5), "price_ticks": r.get::<_, i64>(6),
           "expires_at_ms": r.get::<_, f64>(7) as i64, "status": r.get::<_, &str>(8)})
}

const QUOTE_COLS: &str = "quote_id, user_id, client_id, market, side, qty_lots, price_ticks, \
    (extract(epoch from expires_at) * 1000)::float8, status";

impl TxLogic for OtcLogic {
    type Cmd = OtcCmd;

    async fn exec(&self, tx: &Transaction<'_>, cmd: &OtcCmd) -> Result<Reply, LeadError> {
        match cmd {
            OtcCmd::SetReference { market, price_ticks } => {
                tx.execute(
                    "INSERT INTO otc_reference (market, price_ticks) VALUES ($1, $2) \
                     ON CONFLICT (market) DO UPDATE SET price_ticks = $2, at = now()",
                    &[market, price_ticks],
                )
                .await?;
                Ok(Ok(json!({"market": market, "price_ticks": price_ticks})))
            }
            OtcCmd::Quote { user_id, client_id, market, side, qty_lots } => {
                self.quote(tx, *user_id, client_id, market, *side, *qty_lots).await
            }
            OtcCmd::Accept { user_id, quote_id } => self.accept(tx, *user_id, *quote_id).await,
        }
    }
}

impl OtcLogic {
    /// A quote for the request, or the one given before under its client id.
    async fn quote(
        &self,
        tx: &Transaction<'_>,
        user_id: i64,
        client_id: &str,
        market: &str,
        side: Side,
        qty_lots: i64,
    ) -> Result<Reply, LeadError> {
        let sql = format!("SELECT {QUOTE_COLS} FROM otc_quotes WHERE user_id = $1 AND client_id = $2");
        if let Some(r) = tx.query_opt(&sql, &[&user_id, &client_id]).await? {
            return Ok(Ok(quote_json(&r)));
        }
        let reference: Option<i64> =
            tx.query_opt("SELECT price_ticks FROM otc_reference WHERE market = $1", &[&market]).await?.map(|r| r.get(0));
        let Some(p) = reference else {
            return Ok(Err(ApiError::conflict(ErrorCode::NoReferencePrice, format!("no OTC price for {market}"))));
        };
        let spread = (p as i128 * self.spread_bps as i128 / 10_000) as i64;
        let price = if side == Side::Buy { p + spread } else { (p - spread).max(1) };
        let ttl = self.ttl_ms as f64 / 1000.0;
        let sql = format!(
            "INSERT INTO otc_quotes (user_id, client_id, market, side, qty_lots, price_ticks, expires_at, status) \
             VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), 'open') RETURNING {QUOTE_COLS}"
        );
        let r = tx.query_one(&sql, &[&user_id, &client_id, &market, &side.as_i16(), &qty_lots, &price, &ttl]).await?;
        Ok(Ok(quote_json(&r)))
    }

    async fn accept(&self, tx: &Transaction<'_>, user_id: i64, quote_id: i64) -> Result<Reply, LeadError> {
        let sql = format!("SELECT {QUOTE_COLS}, expires_at < now() FROM otc_quotes WHERE quote_id = $1 AND user_id = $2 FOR UPDATE");
        let Some(r) = tx.query_opt(&sql, &[&quote_id, &user_id]).await? else {
            return Ok(Err(ApiError::not_found(format!("no quote {quote_id} of this user"))));
        };
        let status: &str = r.get(8);
        if status == "accepted" {
            return Ok(Ok(quote_json(&r)));
        }
        if r.get::<_, bool>(9) {
            return Ok(Err(ApiError::conflict(ErrorCode::QuoteExpired, "the quote has expired")));
        }
        let market: &str = r.get(3);
        let Some(m) = self.markets.iter().find(|m| m.symbol == market) else {
            return Ok(Err(ApiError::conflict(ErrorCode::UnknownMarket, market.to_string())));
        };
        let side = Side::from_i16(r.get(4));
        let qty: i64 = r.get(5);
        let price: i64 = r.get(6);
        let Some(n) = price.checked_mul(qty) else {
            return Ok(Err(ApiError::bad_request("notional overflows")));
        };
        // (payer, asset, amount) of both legs
        let (buyer, seller) = if side == Side::Buy { (user_id, self.dealer) } else { (self.dealer, user_id) };
        let mut legs = [(buyer, m.quote.as_str(), n), (seller, m.base.as_str(), qty)];
        legs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for (who, asset, amt) in legs {
            if !ledger::has_available(tx, who, asset, amt).await? {
                let code = if who == user_id { ErrorCode::InsufficientFunds } else { ErrorCode::DealerInsufficientFunds };
                return Ok(Err(ApiError::conflict(code, format!("not enough {asset}"))));
            }
        }
        let reference = format!("otc:{quote_id}");
        ledger::post(
            tx,
            &reference,
            &[(buyer, &m.quote, -n, 0), (seller, &m.quote, n, 0), (seller, &m.base, -qty, 0), (buyer, &m.base, qty, 0)],
        )
        .await?;
        tx.execute("UPDATE otc_quotes SET status = 'accepted' WHERE quote_id = $1", &[&quote_id]).await?;
        let sql = format!("SELECT {QUOTE_COLS} FROM otc_quotes WHERE quote_id = $1");
        Ok(Ok(quote_json(&tx.query_one(&sql, &[&quote_id]).await?)))
    }
}

impl Logic for OtcLogic {
    type Cmd = OtcCmd;

    async fn load(&mut self, _ctx: &mut LeaderCtx) -> Result<(), LeadError> {
        Ok(())
    }

    async fn run_batch(&mut self, ctx: &mut LeaderCtx, jobs: Vec<Job<OtcCmd>>) -> Result<(), LeadError> {
        partition::run_each(self, ctx, jobs).await
    }
}
