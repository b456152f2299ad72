//! The gateway's DB sessions (readers on the primary or any host, the admin writer, with
//! reconnect backoff) and the SQL it answers itself: orders, balances, withdrawals,
//! positions, and user creation.

use super::{lock, Gateway};
use crate::api::{ApiError, Reply};
use crate::db;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::{Mutex, MutexGuard};

type Slot = Mutex<Option<db::Session>>;

impl Gateway {
    /// A session for reads: on the primary while the DB is writable (read-your-writes:
    /// a synchronous standby has flushed but maybe not yet applied a commit), else any host.
    async fn reader(&self) -> Result<MutexGuard<'_, Option<db::Session>>, ApiError> {
        let primary = self.db_writable.load(Ordering::SeqCst);
        let (slot, cfg) = if primary { (&self.reader, &self.pg_rw) } else { (&self.reader_any, &self.pg_any) };
        self.session(slot, cfg).await
    }

    /// The session in `slot`, (re)connected if needed. After a failed attempt no new one is
    /// made before the backoff has passed (requests meanwhile get 503 at once), so a burst
    /// of requests cannot turn into a burst of connection attempts.
    async fn session<'a>(&self, slot: &'a Slot, cfg: &db::Target) -> Result<MutexGuard<'a, Option<db::Session>>, ApiError> {
        let mut g = slot.lock().await;
        if g.as_ref().is_none_or(|c| c.is_closed()) {
            if lock(&self.reconnect).0.is_some_and(|t| Instant::now() < t) {
                return Err(ApiError::unavailable("database unreachable (reconnecting)"));
            }
            match db::connect(cfg).await {
                Ok(c) => {
                    let mut r = lock(&self.reconnect);
                    r.0 = None;
                    r.1.reset();
                    *g = Some(c);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "DB connection failed");
                    let mut r = lock(&self.reconnect);
                    let delay = r.1.next_delay();
                    r.0 = Some(Instant::now() + delay);
                    return Err(ApiError::unavailable("database unreachable"));
                }
            }
        }
        Ok(g)
    }

    pub(super) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, ApiError> {
        let mut g = self.reader().await?;
        let c = g.as_ref().expect("reader connected");
        db::bounded(&self.pg_rw, c.query(sql, params)).await.map_err(|e| {
            tracing::warn!(error = %e, "read failed");
            *g = None; // reconnect next time (the host may have changed role)
            ApiError::unavailable("database read failed")
        })
    }

    /// User `u`'s order by its id (`Ok`) or its client id (`Err`).
    pub(super) async fn order(&self, u: i64, which: Result<i64, &str>) -> Reply {
        let g2 = self.reader().await?;
        let c = g2.as_ref().expect("reader");
        let r = match which {
            Ok(id) => db::bounded(&self.pg_rw, crate::matching::order_by_id(c, u, id)).await,
            Err(cid) => db::bounded(&self.pg_rw, crate::matching::order_by_client_id(c, u, cid)).await,
        };
        r.map_err(|_| ApiError::unavailable("database read failed"))?.ok_or_else(|| match which {
            Ok(id) => ApiError::not_found(format!("no order {id}")),
            Err(cid) => ApiError::not_found(format!("no order {cid:?}")),
        })
    }

    pub(super) async fn balances(&self, u: i64) -> Reply {
        let rows = self.query("SELECT asset, available, held FROM balances WHERE owner_id = $1 ORDER BY asset", &[&u]).await?;
        let b: Vec<Value> = rows
            .iter()
            .map(|r| json!({"asset": r.get::<_, &str>(0), "available_minor": r.get::<_, i64>(1), "held_minor": r.get::<_, i64>(2)}))
            .collect();
        Ok(json!({"user_id": u, "balances": b}))
    }

    pub(super) async fn withdrawal(&self, u: i64, id: i64) -> Reply {
        let rows = self
            .query(
                "SELECT withdrawal_id, client_id, asset, amount_minor, status, reason FROM withdrawals WHERE withdrawal_id = $1 AND user_id = $2",
                &[&id, &u],
            )
            .await?;
        let r = rows.first().ok_or_else(|| ApiError::not_found(format!("no withdrawal {id}")))?;
        Ok(json!({"withdrawal_id": r.get::<_, i64>(0), "user_id": u, "client_id": r.get::<_, &str>(1), "asset": r.get::<_, &str>(2),
                  "amount_minor": r.get::<_, i64>(3), "status": r.get::<_, &str>(4), "reason": r.get::<_, Option<&str>>(5)}))
    }

    pub(super) async fn positions(&self, u: i64) -> Reply {
        let rows = self
            .query(
                "SELECT market, size_lots, entry_cost_minor, margin_minor, realized_pnl_minor FROM positions WHERE user_id = $1 ORDER BY market",
                &[&u],
            )
            .await?;
        let p: Vec<Value> = rows
            .iter()
            .map(|r| {
                let size: i64 = r.get(1);
                let cost: i64 = r.get(2);
                json!({"market": r.get::<_, &str>(0), "size_lots": size,
                       "entry_price_ticks": if size == 0 { 0 } else { cost / size.abs() },
                       "entry_cost_minor": cost, "margin_minor": r.get::<_, i64>(3),
                       "realized_pnl_minor": r.get::<_, i64>(4)})
            })
            .collect();
        Ok(json!({"user_id": u, "positions": p}))
    }

    /// Creates a user with a new API key (stored as its SHA-256), committed synchronously.
    pub(super) async fn create_user(&self, user_id: i64) -> Reply {
        let key: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let hash = crate::sha256_hex(&key);
        let mut w = self.session(&self.writer, &self.pg_rw).await?;
        let client = w.as_ref().expect("writer connected");
        let sql = "INSERT INTO users (user_id, api_key_sha256) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING";
        let n = match db::await_commit(&self.pg_rw, &client.host, client.execute(sql, &[&user_id, &hash])).await {
            Ok(Ok(n)) => n,
            _ => {
                *w = None;
                return Err(ApiError::unavailable("database write failed; retry"));
            }
        };
        if n == 0 {
            return Err(ApiError::conflict(crate::protocol::ErrorCode::UserExists, format!("user {user_id} already exists")));
        }
        Ok(json!({"user_id": user_id, "api_key": key}))
    }
}
