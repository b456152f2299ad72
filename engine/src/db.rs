//! PostgreSQL access: connection settings built from the config, and migrations.
//!
//! Writers connect with `target_session_attrs=read-write` over all DB hosts, so after a
//! Patroni failover a reconnect lands on the new primary by itself.

use engine_config::DbConfig;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::{Client, Config, NoTls};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("bad DB config: {0}")]
    Config(String),
    #[error("postgres: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("no DB host answered: {0}")]
    Unreachable(String),
    #[error("DB session limit: all {0} sessions of this process are in use")]
    Limit(usize),
    #[error("DB statement timed out after {0} ms")]
    Timeout(u64),
}

/// Client-side time limits of a process's DB sessions (`engine_config::DbConfig`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect: Duration,
    pub query: Duration,
    pub commit: Duration,
    pub stall: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub tcp_user: Duration,
}

impl Limits {
    pub fn of(db: &DbConfig) -> Limits {
        let ms = Duration::from_millis;
        Limits {
            connect: ms(db.connect_timeout_ms.max(1)),
            query: ms(db.query_timeout_ms.max(1)),
            commit: ms(db.commit_timeout_ms.max(1)),
            stall: ms(db.commit_stall_ms.max(1)),
            reconnect_min: ms(db.reconnect_min_ms.max(1)),
            reconnect_max: ms(db.reconnect_max_ms.max(db.reconnect_min_ms).max(1)),
            tcp_user: ms(db.tcp_user_timeout_ms.max(1)),
        }
    }
}

/// Where and how a process connects: one single-host setting per DB host (tried starting
/// with the host of the last session, each bounded by `connect_timeout_ms`), the time
/// limits, and the process's session slots (`connections_max`), shared by every `Target`
/// of the process.
#[derive(Clone)]
pub struct Target {
    hosts: Vec<(String, Config)>,
    pub limits: Limits,
    slots: Arc<Semaphore>,
    slots_max: usize,
    /// Last liveness check per host: (when, answered as primary). One check at a time.
    checks: Arc<tokio::sync::Mutex<HashMap<String, (Instant, bool)>>>,
    /// Index of the host the last session was opened on: tried first next time, so
    /// reconnects do not open (and drop) a session on every standby listed before it.
    last_good: Arc<AtomicUsize>,
    /// Hosts that recently did not answer (connection attempt or liveness check timed out):
    /// tried last for `SILENT_FOR`, so every reconnect does not first wait on them.
    silent: Arc<std::sync::Mutex<HashMap<String, Instant>>>,
}

/// How long a host that did not answer is tried after the others.
const SILENT_FOR: Duration = Duration::from_secs(10);

/// Builds the libpq-style settings. `read_write` selects `target_session_attrs=read-write`
/// (writers); otherwise any reachable host is accepted (readers, standby regions). The
/// session slots are unlimited: processes use `targets`.
pub fn pg_config(db: &DbConfig, read_write: bool) -> Result<Target, DbError> {
    target(db, read_write, "engine", Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)), Semaphore::MAX_PERMITS)
}

/// The writer (`read-write`) and reader (any host) settings of one process, named
/// `application_name` (its node or gateway id, visible in `pg_stat_activity`), sharing at
/// most `connections_max` sessions.
pub fn targets(db: &DbConfig, application_name: &str, connections_max: usize) -> Result<(Target, Target), DbError> {
    let n = connections_max.max(1);
    let slots = Arc::new(Semaphore::new(n));
    let rw = target(db, true, application_name, slots.clone(), n)?;
    let mut any = target(db, false, application_name, slots, n)?;
    any.silent = rw.silent.clone();
    Ok((rw, any))
}

fn target(db: &DbConfig, read_write: bool, app: &str, slots: Arc<Semaphore>, slots_max: usize) -> Result<Target, DbError> {
    if db.hosts.is_empty() {
        return Err(DbError::Config("db.hosts is empty".into()));
    }
    let password = match &db.password_file {
        Some(p) => Some(engine_config::read_secret(p).map_err(|e| DbError::Config(e.to_string()))?),
        None => None,
    };
    let mut hosts = Vec::new();
    for h in &db.hosts {
        let (host, port) = h.rsplit_once(':').ok_or_else(|| DbError::Config(format!("db host {h:?} is not host:port")))?;
        let port: u16 = port.parse().map_err(|_| DbError::Config(format!("bad port in {h:?}")))?;
        let mut c = Config::new();
        c.host(host).port(port).dbname(&db.dbname).user(&db.user).application_name(app);
        if let Some(pw) = &password {
            c.password(pw.as_str());
        }
        c.connect_timeout(Duration::from_millis(db.connect_timeout_ms.max(1)));
        c.keepalives(true)
            .keepalives_idle(Duration::from_secs(2))
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_millis(db.tcp_user_timeout_ms.max(1)));
        c.target_session_attrs(if read_write { TargetSessionAttrs::ReadWrite } else { TargetSessionAttrs::Any });
        hosts.push((h.clone(), c));
    }
    Ok(Target {
        hosts,
        limits: Limits::of(db),
        slots,
        slots_max,
        checks: Default::default(),
        last_good: Default::default(),
        silent: Default::default(),
    })
}

impl Target {
    /// Sessions of this process open right now (slots in use).
    pub fn sessions_open(&self) -> usize {
        self.slots_max.saturating_sub(self.slots.available_permits())
    }

    /// Is `host` answering as a writable primary? Asked on a fresh session to that host
    /// alone, bounded by `query_timeout_ms`; results are shared for a second and one check
    /// runs at a time. `None`: no free session slot to ask with (unknown).
    pub async fn primary_answers(&self, host: &str) -> Option<bool> {
        let mut g = self.checks.lock().await;
        if let Some((at, ok)) = g.get(host) {
            if at.elapsed() < Duration::from_secs(1) {
                return Some(*ok);
            }
        }
        let mut one = self.clone();
        one.hosts.retain(|(h, _)| h == host);
        one.last_good = Default::default();
        for (_, c) in &mut one.hosts {
            c.target_session_attrs(TargetSessionAttrs::Any);
        }
        let q = self.limits.query;
        let ok = match tokio::time::timeout(q, one.connect_with(q)).await {
            Ok(Err(DbError::Limit(_))) => return None,
            Ok(Ok(s)) => matches!(
                tokio::time::timeout(q, s.query_one("SELECT pg_is_in_recovery()", &[])).await,
                Ok(Ok(r)) if !r.get::<_, bool>(0)
            ),
            _ => false,
        };
        g.insert(host.to_string(), (Instant::now(), ok));
        if !ok {
            self.mark_silent(host, true);
        }
        Some(ok)
    }

    fn mark_silent(&self, host: &str, silent: bool) {
        let mut m = self.silent.lock().unwrap_or_else(|e| e.into_inner());
        if silent {
            m.insert(host.to_string(), Instant::now());
        } else {
            m.remove(host);
        }
    }

    async fn connect_with(&self, slot_wait: Duration) -> Result<Session, DbError> {
        let permit = match tokio::time::timeout(slot_wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => return Err(DbError::Limit(self.slots_max)),
        };
        if self.hosts.is_empty() {
            return Err(DbError::Config("no DB host".into()));
        }
        let mut errors = Vec::new();
        let first = self.last_good.load(Ordering::Relaxed) % self.hosts.len();
        let mut order: Vec<usize> = (0..self.hosts.len()).map(|k| (first + k) % self.hosts.len()).collect();
        {
            let silent = self.silent.lock().unwrap_or_else(|e| e.into_inner());
            order.sort_by_key(|i| silent.get(&self.hosts[*i].0).is_some_and(|t| t.elapsed() < SILENT_FOR));
        }
        for i in order {
            let (label, cfg) = &self.hosts[i];
            // `connect_timeout` of tokio-postgres bounds the TCP connect only; a host that
            // accepts TCP but never answers (a frozen server) must not hang the attempt.
            match tokio::time::timeout(self.limits.connect, cfg.connect(NoTls)).await {
                Ok(Ok((client, conn))) => {
                    let (close, closed) = oneshot::channel::<()>();
                    let cancel = client.cancel_token();
                    let grace = self.limits.query;
                    tokio::spawn(async move {
                        let _slot = permit; // freed when the socket is closed
                        let mut conn = std::pin::pin!(conn);
                        tokio::select! {
                            r = &mut conn => {
                                if let Err(e) = r {
                                    tracing::debug!(error = %e, "db connection closed");
                                }
                                return;
                            }
                            _ = closed => {}
                        }
                        // The session was dropped. A statement still outstanding (timed out
                        // by the caller) would keep the connection (and the server's
                        // backend, e.g. waiting for the synchronous standby) open: cancel
                        // it on the server, then close the socket whatever happens.
                        if tokio::time::timeout(Duration::from_millis(100), &mut conn).await.is_ok() {
                            return;
                        }
                        let _ = tokio::time::timeout(grace, cancel.cancel_query(NoTls)).await;
                        let _ = tokio::time::timeout(Duration::from_millis(500), &mut conn).await;
                    });
                    self.last_good.store(i, Ordering::Relaxed);
                    self.mark_silent(label, false);
                    let s = Session { client, host: label.clone(), _close: close };
                    match tokio::time::timeout(self.limits.query, s.batch_execute(&session_settings(&self.limits))).await {
                        Ok(Ok(())) => return Ok(s),
                        Ok(Err(e)) => return Err(e.into()),
                        Err(_) => return Err(DbError::Timeout(self.limits.query.as_millis() as u64)),
                    }
                }
                Ok(Err(e)) => errors.push(format!("{label}: {e}")),
                Err(_) => {
                    self.mark_silent(label, true);
                    errors.push(format!("{label}: no answer in {} ms", self.limits.connect.as_millis()))
                }
            }
        }
        Err(DbError::Unreachable(errors.join("; ")))
    }
}

/// Asked of the server for every session: it detects a vanished client within a few
/// seconds (keepalives for an idle session, `tcp_user_timeout` for unacknowledged data),
/// so its advisory locks are freed. Statements are planned per execution
/// (`plan_cache_mode = force_custom_plan`): a generic plan made while `orders` was small
/// (hash join over a sequential scan of it, for the batch `UPDATE ... FROM unnest(...)`)
/// would otherwise be kept while the table grows, and scanning it took most of the
/// database's CPU under load. Market leaders switch to `LEADER_PLANS` instead (see
/// docs/benchmarks.md).
fn session_settings(l: &Limits) -> String {
    format!(
        "SET tcp_keepalives_idle = 2; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3; \
         SET tcp_user_timeout = {}; SET synchronous_commit = on; SET plan_cache_mode = force_custom_plan",
        l.tcp_user.as_millis()
    )
}

/// One DB session: the client, the host it is on, and its slot of the process's
/// `connections_max`. Dropping it closes the connection (cancelling on the server a
/// statement still outstanding) and frees the slot.
pub struct Session {
    client: Client,
    /// The `host:port` of `db.hosts` this session is on.
    pub host: String,
    _close: oneshot::Sender<()>,
}

impl std::ops::Deref for Session {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Connects to the first host that accepts (and, for a writer target, is read-write),
/// waiting at most `query_timeout_ms` for a free session slot.
pub async fn connect(t: &Target) -> Result<Session, DbError> {
    t.connect_with(t.limits.query).await
}

/// `f` bounded by `query_timeout_ms`.
pub async fn bounded<T, E: Into<DbError>>(t: &Target, f: impl Future<Output = Result<T, E>>) -> Result<T, DbError> {
    match tokio::time::timeout(t.limits.query, f).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(DbError::Timeout(t.limits.query.as_millis() as u64)),
    }
}

/// Waits for `f`, a write on a session to `host`, as long as that server still answers as
/// the primary: after `query_timeout_ms` without an answer, and again every
/// `query_timeout_ms`, a fresh session asks it (`Target::primary_answers`). `Err(Gone)`
/// when it does not (frozen, unreachable, demoted); `Err(Timeout)` after
/// `commit_timeout_ms` in any case. A commit waiting for the synchronous standby on a
/// primary that answers (Patroni replacing the standby) is waited for.
pub async fn await_commit<T>(t: &Target, host: &str, f: impl Future<Output = T>) -> Result<T, Unanswered> {
    let t0 = Instant::now();
    let mut f = std::pin::pin!(f);
    loop {
        tokio::select! {
            r = &mut f => return Ok(r),
            _ = tokio::time::sleep(t.limits.query) => {
                let waited = t0.elapsed();
                if waited >= t.limits.commit {
                    return Err(Unanswered::Timeout(waited));
                }
                if t.primary_answers(host).await == Some(false) {
                    return Err(Unanswered::Gone(t0.elapsed()));
                }
                tracing::info!(host, waited_ms = t0.elapsed().as_millis() as u64, "DB slow to answer, server alive: waiting");
            }
        }
    }
}

/// Why `await_commit` gave up, after how long.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum Unanswered {
    #[error("no answer within commit_timeout_ms ({} ms)", .0.as_millis())]
    Timeout(Duration),
    #[error("the server stopped answering as the primary; gave up after {} ms", .0.as_millis())]
    Gone(Duration),
}

/// Exponential backoff with jitter between reconnection attempts: the n-th consecutive
/// failure waits a random time in [d/2, d], d = min(min * 2^n, max). Never a tight loop.
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(l: &Limits) -> Backoff {
        Backoff { next: l.reconnect_min, min: l.reconnect_min, max: l.reconnect_max }
    }
    /// Sleeps before the next attempt and lengthens the one after.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
    /// The delay before the next attempt (jittered); lengthens the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        let half = d / 2;
        self.next = (d * 2).min(self.max);
        half + Duration::from_micros(rand::random::<u64>() % (half.as_micros() as u64 + 1))
    }
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Settings of a market leader's session. Its statements touch a few rows each, by key,
/// in batches (`... FROM unnest($n)`): index lookups under nested loops are always the
/// right plan, whatever the tables' sizes. So plans are made once per session (planning
/// every execution was a quarter of the leaders' DB time) and the planner is steered off
/// sequential scans, hash and merge joins, which it would otherwise pick for a generic
/// plan made while a table is small and keep as it grows.
pub const LEADER_PLANS: &str = "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; \
     SET enable_hashjoin = off; SET enable_mergejoin = off";

/// Back to the connection's settings (`connect`), for a leader's loading queries.
pub const LOAD_PLANS: &str = "SET plan_cache_mode = force_custom_plan; RESET enable_seqscan; RESET enable_hashjoin; \
     RESET enable_mergejoin";

const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/001_init.sql")),
    (2, include_str!("migrations/002_fence.sql")),
    (3, include_str!("migrations/003_fills_market.sql")),
    (4, include_str!("migrations/004_insurance.sql")),
];

/// SQLSTATE raised by `fence_or_raise` when the caller's epoch was superseded.
pub const FENCED_SQLSTATE: &str = "EF001";

/// Did this statement fail because the leader was fenced off?
pub fn is_fenced(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == FENCED_SQLSTATE)
}

/// Applies missing migrations, each once, under a transaction-scoped advisory lock so
/// concurrent starters do not race. Safe to run on every start.
pub async fn migrate(client: &mut Client) -> Result<(), DbError> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7152, 1); \
         CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    for (version, sql) in MIGRATIONS {
        let done = tx.query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[version]).await?;
        if done.is_none() {
            tx.batch_execute(sql).await?;
            tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version]).await?;
            tracing::info!(version, "applied migration");
        }
    }
    tx.commit().await?;
    Ok(())
}

/// True if the error means the session or server is gone (as opposed to a SQL error).
pub fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    e.is_closed() || e.code().is_none()
}

/// True for errors a transaction may simply be retried after (deadlock, serialization).
pub fn is_retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

/// A write that lost a race with another partition's transaction: a deadlock or
/// serialization failure, funds spent meanwhile (`balances_non_negative`), or a client id
/// taken meanwhile in another market. Deciding again on fresh reads resolves it.
pub fn is_conflict(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    is_retryable(e) || matches!(e.code(), Some(c) if *c == SqlState::CHECK_VIOLATION || *c == SqlState::UNIQUE_VIOLATION)
}

/// The server's message for SQL errors (tokio-postgres' Display only says "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}{}", d.code().code(), d.message(), d.detail().map(|x| format!(" ({x})")).unwrap_or_default()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap_and_resets() {
        let l = Limits::of(&DbConfig { reconnect_min_ms: 100, reconnect_max_ms: 2000, ..DbConfig::default() });
        let mut b = Backoff::new(&l);
        let ms = |d: Duration| d.as_millis() as u64;
        for (lo, hi) in [(50, 100), (100, 200), (200, 400), (400, 800), (800, 1600), (1000, 2000), (1000, 2000)] {
            let d = ms(b.next_delay());
            assert!((lo..=hi).contains(&d), "{d} ms not in [{lo}, {hi}]");
        }
        b.reset();
        assert!(ms(b.next_delay()) <= 100);
    }
}
