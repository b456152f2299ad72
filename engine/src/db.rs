//! PostgreSQL access: connection settings built from the config, and migrations.
//!
//! Writers connect with `target_session_attrs=read-write` over all DB hosts, so after a
//! Patroni failover a reconnect lands on the new primary by itself.

use engine_config::DbConfig;
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("bad DB config: {0}")]
    Config(String),
    #[error("postgres: {0}")]
    Pg(#[from] tokio_postgres::Error),
}

/// Builds the libpq-style settings. `read_write` selects `target_session_attrs=read-write`
/// (writers); otherwise any reachable host is accepted (readers, standby regions).
pub fn pg_config(db: &DbConfig, read_write: bool) -> Result<Config, DbError> {
    let mut c = Config::new();
    if db.hosts.is_empty() {
        return Err(DbError::Config("db.hosts is empty".into()));
    }
    for h in &db.hosts {
        let (host, port) = h.rsplit_once(':').ok_or_else(|| DbError::Config(format!("db host {h:?} is not host:port")))?;
        let port: u16 = port.parse().map_err(|_| DbError::Config(format!("bad port in {h:?}")))?;
        c.host(host);
        c.port(port);
    }
    c.dbname(&db.dbname).user(&db.user).application_name("engine");
    if let Some(p) = &db.password_file {
        let pw = engine_config::read_secret(p).map_err(|e| DbError::Config(e.to_string()))?;
        c.password(pw);
    }
    c.connect_timeout(Duration::from_millis(db.connect_timeout_ms));
    c.keepalives(true)
        .keepalives_idle(Duration::from_secs(2))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(3);
    c.target_session_attrs(if read_write {
        tokio_postgres::config::TargetSessionAttrs::ReadWrite
    } else {
        tokio_postgres::config::TargetSessionAttrs::Any
    });
    Ok(c)
}

/// Connects and drives the connection in a background task. The session asks the server
/// to detect a vanished client within a few seconds (so its advisory locks are freed).
/// Statements are planned per execution (`plan_cache_mode = force_custom_plan`): a
/// generic plan made while `orders` was small (hash join over a sequential scan of it,
/// for the batch `UPDATE ... FROM unnest(...)`) would otherwise be kept while the table
/// grows, and scanning it took most of the database's CPU under load. Market leaders
/// switch to `LEADER_PLANS` instead (see docs/benchmarks.md).
pub async fn connect(cfg: &Config) -> Result<Client, DbError> {
    let (client, conn) = cfg.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "db connection closed");
        }
    });
    client
        .batch_execute(
            "SET tcp_keepalives_idle = 2; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3; \
             SET synchronous_commit = on; SET plan_cache_mode = force_custom_plan",
        )
        .await?;
    Ok(client)
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

const MIGRATIONS: &[(i32, &str)] =
    &[(1, include_str!("migrations/001_init.sql")), (2, include_str!("migrations/002_fence.sql"))];

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
