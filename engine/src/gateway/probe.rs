//! The gateway's DB probe: whether the region's DB takes writes, by a synchronous commit
//! of the gateway's own heartbeat row every 500 ms (`/health` says why not).

use super::{lock, Gateway};
use crate::db;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Gateway {
    /// Runs forever: (re)connects to the writable host, checks it is not in recovery, and
    /// commits the heartbeat.
    pub(super) async fn probe_db(&self) {
        let mut rw: Option<db::Session> = None;
        let mut backoff = db::Backoff::new(&self.pg_rw.limits);
        let heartbeat_id = format!("gateway:{}", self.cfg.gateway_id);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if rw.as_ref().is_none_or(|c| c.is_closed()) {
                match db::connect(&self.pg_rw).await {
                    Ok(c) => {
                        backoff.reset();
                        rw = Some(c);
                    }
                    Err(e) => {
                        self.set_db(false, format!("no writable DB host: {e}"));
                        backoff.wait().await;
                        continue;
                    }
                }
            }
            let Some(c) = &rw else { continue };
            let keep = match db::bounded(&self.pg_rw, c.query_one("SELECT pg_is_in_recovery()", &[])).await {
                Ok(r) if !r.get::<_, bool>(0) => self.probe_commit(c, &heartbeat_id).await,
                Ok(_) => {
                    self.set_db(false, "DB is in recovery (read-only)".into());
                    false
                }
                Err(_) => {
                    self.set_db(false, "DB primary does not answer".into());
                    false
                }
            };
            if !keep {
                rw = None;
            }
        }
    }

    /// A synchronous commit of the gateway's own (its heartbeat row): the region takes no
    /// writes while it waits, and `/health` says so (`commit_stall_ms`), also when no order
    /// is in flight. Bounded like a leader's commit (`db::await_commit`): given up at once
    /// if the server stops answering as the primary, else after `commit_timeout_ms`; the
    /// session is kept meanwhile (a new one would just wait as well). False: drop the
    /// session.
    async fn probe_commit(&self, c: &db::Session, heartbeat_id: &str) -> bool {
        *lock(&self.probe_in_flight) = Some(Instant::now());
        let w = db::await_commit(
            &self.pg_rw,
            &c.host,
            c.execute(
                "INSERT INTO node_heartbeats (node_id, at) VALUES ($1, now()) ON CONFLICT (node_id) DO UPDATE SET at = now()",
                &[&heartbeat_id],
            ),
        )
        .await;
        *lock(&self.probe_in_flight) = None;
        match w {
            Ok(Ok(_)) => self.set_db(true, String::new()),
            // Not migrated yet: the nodes create the schema.
            Ok(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => self.set_db(true, String::new()),
            Ok(Err(e)) => {
                self.set_db(false, format!("DB write failed: {}", db::describe(&e)));
                return false;
            }
            Err(e) => {
                self.set_db(false, format!("DB commit: {e}"));
                return false;
            }
        }
        true
    }

    fn set_db(&self, ok: bool, reason: String) {
        self.db_writable.store(ok, Ordering::SeqCst);
        *lock(&self.db_reason) = reason;
    }
}
