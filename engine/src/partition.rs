//! Partition leadership and the leader loop shared by all modules.
//!
//! Fencing: a leader holds `pg_try_advisory_lock(7152, hashtext(key))` on ONE session and
//! commits every write of the partition on that very session. When the session dies (the
//! process is killed, the host is cut off and the server's TCP keepalive fires, the DB
//! fails over) the lock dies with it, and so does the only connection that could commit.
//! Belt and braces: each takeover bumps `partitions.epoch`, and every commit runs
//! `UPDATE partitions ... WHERE epoch = <mine>` inside its transaction, so a leader
//! whose epoch was superseded cannot commit either.
//!
//! A hung leader (its process stopped while its kernel still answers, so the session
//! lives on) is ended by a standby: see `silent`.

mod silent;
pub use silent::Elimination;

/// An order a market leader took out of its batch because deciding or matching it failed
/// an invariant (`matching::quarantine`): what the node reports (log, metric, webhook).
#[derive(Debug, Clone)]
pub struct Quarantine {
    pub partition: String,
    pub user_id: i64,
    pub client_order_id: String,
    /// The panic's message.
    pub message: String,
}

/// A leadership this node took: the partition, its new epoch, and the node that led it
/// before (None: nobody had).
#[derive(Debug, Clone)]
pub struct Takeover {
    pub partition: String,
    pub epoch: i64,
    pub previous: Option<String>,
}

/// A leadership this node lost because its epoch was superseded (its write was fenced).
#[derive(Debug, Clone)]
pub struct Fenced {
    pub partition: String,
    pub epoch: i64,
}

/// A perpetual that halted: it owed more than its margin pool and insurance fund held
/// (`perp::solvency`), and refuses new orders until an operator reopens it.
#[derive(Debug, Clone)]
pub struct MarketHalted {
    pub partition: String,
    pub shortfall_minor: i64,
}

/// What partition loops hand to the monitor to report off the trading path.
#[derive(Debug, Clone)]
pub enum Event {
    Eliminated(Elimination),
    Quarantined(Quarantine),
    Takeover(Takeover),
    Fenced(Fenced),
    Halted(MarketHalted),
}

use crate::api::{ApiError, Reply};
use crate::db;
use crate::protocol::PartitionKey;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Transaction;

#[derive(Debug, thiserror::Error)]
pub enum LeadError {
    #[error("database: {}", db::describe(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("fenced: partition {0} has a newer leader")]
    Fenced(String),
    #[error("invariant: {0}")]
    Invariant(String),
    /// The DB did not answer in time (see `guarded`); the outcome of the request in
    /// flight is unknown, so the session (and the leadership) is given up.
    #[error("DB timeout: {0}")]
    Timeout(String),
}

impl From<db::DbError> for LeadError {
    fn from(e: db::DbError) -> Self {
        match e {
            db::DbError::Pg(p) => LeadError::Db(p),
            db::DbError::Config(c) => LeadError::Invariant(c),
            e => LeadError::Timeout(e.to_string()),
        }
    }
}

/// Node-wide state every partition loop consults.
pub struct NodeState {
    pub node_id: String,
    pub addr: String,
    /// Writer settings (`target_session_attrs=read-write`), time limits, session slots.
    pub pg: db::Target,
    /// Reader settings (any host), used in standby mode.
    pub pg_any: db::Target,
    /// 0 active, 1 standby.
    pub mode: AtomicU8,
    pub isolated: AtomicBool,
    /// The monitor's latest sample crossed a threshold (shown in `/internal/status`).
    pub breaching: AtomicBool,
    pub shutting_down: AtomicBool,
    pub batch_max: usize,
    /// `db.leader_silence_ms`: how long a lock holder's session may wait on its client
    /// before a standby ends it, and how long gateways may go without probing this node.
    pub leader_silence: Duration,
    /// Leaders this node's partition loops ended (`silent`) and orders they quarantined,
    /// for the monitor to report.
    pub events: mpsc::Sender<Event>,
    /// When a gateway's status probe last arrived (None: never).
    pub gateway_heard: std::sync::Mutex<Option<Instant>>,
}

impl NodeState {
    pub fn is_active(&self) -> bool {
        self.mode.load(Ordering::SeqCst) == 0
    }
    /// May this node hold leaderships right now?
    pub fn can_lead(&self) -> bool {
        self.is_active() && !self.isolated.load(Ordering::SeqCst) && !self.shutting_down.load(Ordering::SeqCst) && !self.unreached()
    }
    /// A gateway's status probe arrived.
    pub fn heard_gateway(&self) {
        *self.gateway_heard.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
    /// Gateways probed this node before, and none has for `leader_silence`: they cannot
    /// reach it (its listener hangs, or the network between them is cut) while the DB
    /// still can, so it must not lead; a standby the gateways reach takes over.
    pub fn unreached(&self) -> bool {
        matches!(*self.gateway_heard.lock().unwrap_or_else(|e| e.into_inner()), Some(t) if t.elapsed() > self.leader_silence)
    }
    /// Hands an event to the monitor (never waits: dropped if 64 are queued).
    pub fn report(&self, e: Event) {
        report(&self.events, e)
    }
}

/// Hands `e` to the monitor's queue without waiting (dropped, and logged, when it is full).
pub fn report(events: &mpsc::Sender<Event>, e: Event) {
    if let Err(e) = events.try_send(e) {
        tracing::warn!(error = %e, "event report dropped");
    }
}

pub struct Job<C> {
    pub cmd: C,
    pub reply: oneshot::Sender<Reply>,
}

/// The leader's handle on its partition: the locked session and its epoch.
pub struct LeaderCtx {
    pub client: db::Session,
    pub key: String,
    pub epoch: i64,
    /// Statements prepared on the leader session (saves a round trip per statement).
    pub stmts: std::collections::HashMap<&'static str, tokio_postgres::Statement>,
    /// The monitor's queue of events (`NodeState::events`).
    pub events: mpsc::Sender<Event>,
}

/// The epoch check every write transaction runs (params: key, epoch): `fence_or_raise`
/// (migration 002) raises `db::FENCED_SQLSTATE` when the epoch was superseded, so the
/// transaction aborts, also when statements are pipelined behind it.
pub const SQL_FENCE: &str = "SELECT fence_or_raise($1, $2)";

impl LeaderCtx {
    pub fn fence_params(&self) -> (String, i64) {
        (self.key.clone(), self.epoch)
    }

    pub async fn prepare(&mut self, sqls: &[&'static str]) -> Result<(), LeadError> {
        for s in sqls {
            if !self.stmts.contains_key(s) {
                let st = self.client.prepare(s).await?;
                self.stmts.insert(s, st);
            }
        }
        Ok(())
    }

    pub fn fencer(&self) -> Fencer {
        Fencer { key: self.key.clone(), epoch: self.epoch }
    }
}

/// Checks the leader's epoch inside a write transaction.
pub struct Fencer {
    key: String,
    epoch: i64,
}

impl Fencer {
    /// Must run inside every write transaction of the partition.
    pub async fn fence(&self, tx: &Transaction<'_>) -> Result<(), LeadError> {
        match tx.execute(SQL_FENCE, &[&self.key, &self.epoch]).await {
            Ok(_) => Ok(()),
            Err(e) if crate::db::is_fenced(&e) => Err(LeadError::Fenced(self.key.clone())),
            Err(e) => Err(e.into()),
        }
    }
}

/// What a module does as leader of one partition.
pub trait Logic: Send + 'static {
    type Cmd: Send + 'static;
    /// Rebuilds in-memory state from the DB right after taking the partition.
    fn load(&mut self, ctx: &mut LeaderCtx) -> impl Future<Output = Result<(), LeadError>> + Send;
    /// Executes a batch; must answer every job it commits. An error steps down.
    fn run_batch(&mut self, ctx: &mut LeaderCtx, jobs: Vec<Job<Self::Cmd>>) -> impl Future<Output = Result<(), LeadError>> + Send;
    /// Called about once a second while leading.
    fn tick(&mut self, _ctx: &mut LeaderCtx) -> impl Future<Output = Result<(), LeadError>> + Send {
        async { Ok(()) }
    }
}

/// Leader logic that runs each request in a write transaction of its own (wallet, OTC).
pub trait TxLogic: Send + Sync + 'static {
    type Cmd: Send + Sync + 'static;
    /// One request inside `tx`; `run_each` fences and commits it. `Ok(Err(_))` is an
    /// answer (committed like any other).
    fn exec(&self, tx: &Transaction<'_>, cmd: &Self::Cmd) -> impl Future<Output = Result<Reply, LeadError>> + Send;
}

/// Runs the jobs one at a time, each in its own fenced transaction: a deadlock or
/// serialization failure is tried again (5 attempts in all); a SQL error of the request
/// itself (e.g. a CHECK) is answered `rejected` and the leader keeps leading; any other
/// error steps down.
pub async fn run_each<L: TxLogic>(logic: &L, ctx: &mut LeaderCtx, jobs: Vec<Job<L::Cmd>>) -> Result<(), LeadError> {
    for j in jobs {
        let mut attempt = 0;
        let reply = loop {
            attempt += 1;
            match exec_fenced(logic, ctx, &j.cmd).await {
                Err(LeadError::Db(e)) if crate::db::is_retryable(&e) && attempt < 5 => continue,
                Err(LeadError::Db(e)) if e.code().is_some() && !crate::db::is_connection_error(&e) => {
                    break Err(ApiError::conflict(crate::api::ErrorCode::Rejected, e.to_string()));
                }
                r => break r?,
            }
        };
        let _ = j.reply.send(reply);
    }
    Ok(())
}

async fn exec_fenced<L: TxLogic>(logic: &L, ctx: &mut LeaderCtx, cmd: &L::Cmd) -> Result<Reply, LeadError> {
    let fencer = ctx.fencer();
    let tx = ctx.client.transaction().await?;
    let reply = logic.exec(&tx, cmd).await?;
    fencer.fence(&tx).await?;
    tx.commit().await?;
    Ok(reply)
}

/// Shared view of one partition, used by the HTTP layer and status reports.
pub struct PartitionState {
    pub key: PartitionKey,
    pub leading: AtomicBool,
    pub epoch: AtomicI64,
    /// Since when the leader has been waiting for the DB (a batch, usually its commit, or
    /// a tick); reported in `/internal/status` so the gateway's `/health` sees a stall.
    pub in_flight: std::sync::Mutex<Option<Instant>>,
    /// Batches this node ran as the partition's leader (metric `engine_partition_batches_total`).
    pub batches: AtomicU64,
}

impl PartitionState {
    /// How long the leader's current DB work has been outstanding, if any.
    pub fn in_flight_age(&self) -> Option<Duration> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).map(|t| t.elapsed())
    }
    fn set_in_flight(&self, v: Option<Instant>) {
        *self.in_flight.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }
}

pub struct PartitionHandle<C> {
    pub state: Arc<PartitionState>,
    pub tx: mpsc::Sender<Job<C>>,
}

impl<C> Clone for PartitionHandle<C> {
    fn clone(&self) -> Self {
        PartitionHandle { state: self.state.clone(), tx: self.tx.clone() }
    }
}

impl<C: Send + 'static> PartitionHandle<C> {
    /// Sends a command to the leader loop and waits for its answer.
    pub async fn call(&self, node: &NodeState, cmd: C) -> Reply {
        if !node.is_active() {
            return Err(ApiError::standby());
        }
        if !self.state.leading.load(Ordering::SeqCst) {
            return Err(ApiError::not_leader(&self.state.key));
        }
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Job { cmd, reply }).await.is_err() {
            return Err(ApiError::not_leader(&self.state.key));
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(ApiError::unavailable("leadership lost before the outcome was known; retry with the same id")),
        }
    }
}

/// A new leadership of partition $1 by node $2 (address $3): the next epoch, and who led before.
const SQL_TAKE: &str = "WITH prev AS (SELECT leader_node FROM partitions WHERE partition_key = $1) \
     INSERT INTO partitions (partition_key, epoch, leader_node, leader_addr, since) VALUES ($1, 1, $2, $3, now()) \
     ON CONFLICT (partition_key) DO UPDATE SET epoch = partitions.epoch + 1, leader_node = $2, leader_addr = $3, since = now() \
     RETURNING epoch, (SELECT leader_node FROM prev)";

fn lock_sql() -> &'static str {
    "SELECT pg_try_advisory_lock(7152, hashtext($1))"
}

/// Spawns the leadership loop of one partition. `rank` is this node's preference order
/// for the partition (0 = preferred); lower ranks try first, which spreads leaderships.
pub fn spawn<L: Logic>(
    node: Arc<NodeState>,
    key: PartitionKey,
    rank: u32,
    mut make: impl FnMut() -> L + Send + 'static,
) -> PartitionHandle<L::Cmd> {
    let (tx, mut rx) = mpsc::channel::<Job<L::Cmd>>(node.batch_max * 8);
    let state = Arc::new(PartitionState {
        key: key.clone(),
        leading: AtomicBool::new(false),
        epoch: AtomicI64::new(0),
        in_flight: Default::default(),
        batches: AtomicU64::new(0),
    });
    let st = state.clone();
    tokio::spawn(async move {
        // At start-up the preferred node goes first; later whoever notices first wins.
        tokio::time::sleep(Duration::from_millis(400 * rank as u64)).await;
        let mut candidate: Option<db::Session> = None;
        let mut watch = silent::Watch::default();
        // Reconnects and lost sessions back off (jittered, capped); never a tight loop.
        let mut backoff = db::Backoff::new(&node.pg.limits);
        loop {
            drain(&mut rx, &key);
            if node.shutting_down.load(Ordering::SeqCst) {
                break;
            }
            if !node.can_lead() {
                candidate = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let Some(client) = take_lock(&node, &key, &mut candidate, &mut backoff, &mut watch).await else { continue };
            let started = std::time::Instant::now();
            let r = lead(&node, &st, key.as_str(), client, &mut rx, make()).await;
            st.leading.store(false, Ordering::SeqCst);
            st.set_in_flight(None);
            match r {
                Ok(()) => {
                    tracing::info!(partition = %key, "gave up leadership");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    tracing::warn!(partition = %key, error = %e, "lost leadership");
                    if let LeadError::Fenced(p) = &e {
                        node.report(Event::Fenced(Fenced { partition: p.clone(), epoch: st.epoch.load(Ordering::SeqCst) }));
                    }
                    backoff.wait().await;
                }
            }
            tracing::info!(partition = %key, led_ms = started.elapsed().as_millis() as u64, "leadership ended");
        }
    });
    PartitionHandle { state, tx }
}

/// One attempt at the partition's advisory lock, on the kept `candidate` session or a new
/// one: the session that holds it, or `None` after waiting as the outcome calls for
/// (backoff after a failure, 100-200 ms while another session holds the lock, none when
/// the holder was silent and `watch` just ended its session).
async fn take_lock(
    node: &NodeState,
    key: &PartitionKey,
    candidate: &mut Option<db::Session>,
    backoff: &mut db::Backoff,
    watch: &mut silent::Watch,
) -> Option<db::Session> {
    let client = match candidate.take() {
        Some(c) if !c.is_closed() => c,
        _ => match db::connect(&node.pg).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(partition = %key, error = %e, "cannot connect for leadership");
                backoff.wait().await;
                return None;
            }
        },
    };
    let got: bool = match db::bounded(&node.pg, client.query_one(lock_sql(), &[&key.as_str()])).await {
        Ok(r) => r.get(0),
        Err(e) => {
            tracing::debug!(partition = %key, error = %e, "lock attempt failed; reconnecting");
            drop(client);
            backoff.wait().await;
            return None;
        }
    };
    backoff.reset();
    if !got {
        // The session works: only the lock is taken. Keep the session, retry soon (at once
        // if its holder was silent and is gone now).
        let ended = watch.end_silent_holder(node, key.as_str(), &client).await;
        *candidate = Some(client);
        if ended {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100 + rand::random::<u64>() % 100)).await;
        return None;
    }
    Some(client)
}

fn drain_into<C>(rx: &mut mpsc::Receiver<Job<C>>, jobs: &mut Vec<Job<C>>, max: usize) {
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
}

fn drain<C>(rx: &mut mpsc::Receiver<Job<C>>, key: &PartitionKey) {
    while let Ok(j) = rx.try_recv() {
        let _ = j.reply.send(Err(ApiError::not_leader(key)));
    }
}

/// The leader lingers for requests in flight only after a batch of at least this many:
/// at 64 clients (batches of about 11) lingering lowered throughput by 15 % and added 2 ms
/// at p50; at 384 (batches of about 60) it saves CPU per order (`docs/benchmarks.md`).
const LINGER_FROM_BATCH: usize = 32;

/// An idle leader pings its session when it has had no answer for this long, so a healthy
/// leader's session never waits on it for more than ~2x this (`silent`).
const PING_EVERY: Duration = Duration::from_millis(250);

/// Runs one DB step of the leader with client-side bounds. After `query_timeout_ms`
/// without an answer, and then every `query_timeout_ms`, it asks on a fresh session
/// whether the leader's host still answers as the primary: if not (a frozen, vanished or
/// demoted server) it gives up at once; if so (e.g. a commit waiting for the synchronous
/// standby while Patroni replaces it) it keeps waiting, up to `commit_timeout_ms`. Either
/// way a timeout drops the future and with it the leadership: the session is closed
/// (its statement cancelled on the server), so its advisory lock goes, and the outcome of
/// the commit in flight is unknown; the requests are answered `unavailable` and retried
/// by client id, and the next leadership reads the result back (its epoch bump is itself
/// a synchronous commit, so whatever it reads was on the standby too). With `track` the
/// step is reported as in flight (`PartitionState::in_flight`).
async fn guarded<T>(
    node: &NodeState,
    st: &PartitionState,
    host: &str,
    track: bool,
    f: impl Future<Output = Result<T, LeadError>>,
) -> Result<T, LeadError> {
    if track {
        st.set_in_flight(Some(Instant::now()));
    }
    let r = match db::await_commit(&node.pg, host, f).await {
        Ok(r) => r,
        Err(e) => Err(LeadError::Timeout(format!("{host}: {e}"))),
    };
    if track {
        st.set_in_flight(None);
    }
    r
}

/// The next batch: `first` and what is queued behind it, up to `max`. Group commit: a
/// batch costs about the same for 2 or 200 requests (two synchronous commits), so when far
/// fewer requests are queued than the last batch had, the rest are likely in flight: wait
/// a few ms for them rather than making them queue behind a tiny batch. Only under load
/// (a large last batch): with small batches the CPU is not short and the wait is all delay.
async fn gather<C>(rx: &mut mpsc::Receiver<Job<C>>, first: Job<C>, max: usize, last_batch: usize) -> Vec<Job<C>> {
    let mut jobs = vec![first];
    drain_into(rx, &mut jobs, max);
    let mut waits = 0;
    while last_batch >= LINGER_FROM_BATCH && jobs.len() < max && jobs.len() * 2 < last_batch && waits < 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        drain_into(rx, &mut jobs, max);
        waits += 1;
    }
    jobs
}

async fn lead<L: Logic>(
    node: &NodeState,
    st: &PartitionState,
    key: &str,
    client: db::Session,
    rx: &mut mpsc::Receiver<Job<L::Cmd>>,
    mut logic: L,
) -> Result<(), LeadError> {
    let t0 = std::time::Instant::now();
    let host = client.host.clone();
    let (epoch, previous): (i64, Option<String>) = guarded(node, st, &host, false, async {
        let r = client.query_one(SQL_TAKE, &[&key, &node.node_id, &node.addr]).await?;
        Ok((r.get(0), r.get(1)))
    })
    .await?;
    let mut ctx = LeaderCtx { client, key: key.to_string(), epoch, stmts: Default::default(), events: node.events.clone() };
    guarded(node, st, &host, false, logic.load(&mut ctx)).await?;
    st.epoch.store(epoch, Ordering::SeqCst);
    st.leading.store(true, Ordering::SeqCst);
    tracing::info!(partition = %key, epoch, load_ms = t0.elapsed().as_millis() as u64, "took leadership");
    node.report(Event::Takeover(Takeover { partition: key.to_string(), epoch, previous }));
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_batch = 0usize;
    // Last answer from the DB: an idle leader pings it every `PING_EVERY`, so a server that
    // froze or vanished is noticed without waiting for the next request, and standbys see
    // a live leader's session talking (`silent`).
    let mut last_answer = Instant::now();
    loop {
        tokio::select! {
            job = rx.recv() => {
                let Some(first) = job else { return Ok(()) };
                let jobs = gather(rx, first, node.batch_max, last_batch).await;
                last_batch = jobs.len();
                let (n, t) = (jobs.len(), std::time::Instant::now());
                guarded(node, st, &host, true, logic.run_batch(&mut ctx, jobs)).await?;
                st.batches.fetch_add(1, Ordering::Relaxed);
                last_answer = Instant::now();
                tracing::debug!(partition = %key, n, us = t.elapsed().as_micros() as u64, "batch");
            }
            _ = tick.tick() => {
                if !node.can_lead() {
                    return Ok(());
                }
                if ctx.client.is_closed() {
                    return Err(LeadError::Invariant("leader session closed".into()));
                }
                guarded(node, st, &host, true, logic.tick(&mut ctx)).await?;
            }
            _ = ping.tick() => {
                if last_answer.elapsed() >= PING_EVERY {
                    let c = &ctx.client;
                    guarded(node, st, &host, true, async { c.simple_query("SELECT 1").await.map(drop).map_err(LeadError::from) })
                        .await?;
                    last_answer = Instant::now();
                }
            }
        }
    }
}
