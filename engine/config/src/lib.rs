//! Engine config types: written by `provision` as TOML, read by `engine-node` and
//! `engine-gateway`. Depends only on serde + toml. Secrets are file PATHS, never inline.
//!
//! Every struct is `deny_unknown_fields`, so a typo in a provisioned file is an error at
//! start-up rather than a silently ignored setting.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Error reading or writing a config file.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ConfigError {}

/// Which module a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    Matching,
    Wallet,
    Otc,
    Contract,
}

impl Module {
    pub fn as_str(self) -> &'static str {
        match self {
            Module::Matching => "matching",
            Module::Wallet => "wallet",
            Module::Otc => "otc",
            Module::Contract => "contract",
        }
    }
    pub const ALL: [Module; 4] = [Module::Matching, Module::Wallet, Module::Otc, Module::Contract];
}

/// `active` serves writes; `standby` stays warm on a read-only replica and rejects writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RegionMode {
    #[default]
    Active,
    Standby,
}

/// PostgreSQL connection: all hosts of the cluster; the engine connects with
/// `target_session_attrs=read-write` across them, so it follows a Patroni failover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbConfig {
    /// "host:port" entries, e.g. ["10.0.1.10:5432", "10.0.2.10:5432"].
    pub hosts: Vec<String>,
    pub dbname: String,
    pub user: String,
    /// Path of a file whose content (trimmed) is the password. Omit for trust auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Bound on opening one session to one host (TCP connect, startup, authentication and
    /// the `read-write` check); the next host is tried after it.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// `TCP_USER_TIMEOUT` of every session (client side, and asked of the server): data
    /// sent and not acknowledged for this long closes the connection, so a request in
    /// flight to a host that vanished (power-off, black-holed network) fails instead of
    /// waiting for TCP's ~15 minutes of retransmissions. Idle sessions are covered by the
    /// keepalives (2 s idle, 1 s interval, 3 probes). A commit waiting for the synchronous
    /// standby is not affected: its data was acknowledged.
    #[serde(default = "default_tcp_user_timeout_ms")]
    pub tcp_user_timeout_ms: u64,
    /// Client-side bound on a statement that is not a commit (lock attempts, reads, session
    /// settings, a leader's idle ping). Also how long a leader waits for a commit before it
    /// checks, on a fresh session to the same host, that the server still answers and is
    /// still the primary; if not, it gives up the session at once.
    #[serde(default = "default_query_timeout_ms")]
    pub query_timeout_ms: u64,
    /// Client-side bound on a write transaction up to its `COMMIT` answer (and on a
    /// leader's loading). A synchronous commit legitimately waits while Patroni replaces a
    /// lost synchronous standby (up to ~25 s), so this is longer than that. When it expires
    /// the outcome is unknown: the leader drops the session (its leadership ends), the
    /// request is answered `unavailable` (retry with the same id) and the next leader reads
    /// the result back.
    #[serde(default = "default_commit_timeout_ms")]
    pub commit_timeout_ms: u64,
    /// A commit outstanding longer than this is a stall: the gateway's `/health` answers 503
    /// ("commits stalled for N ms on <partition>").
    #[serde(default = "default_commit_stall_ms")]
    pub commit_stall_ms: u64,
    /// First delay before reconnecting after a failed connection or a lost session;
    /// doubled per failure (with jitter) up to `reconnect_max_ms`, reset by a success.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// A partition leader whose DB session has been waiting on the leader itself (the
    /// server idle, `wait_event_type = 'Client'`) for this long, seen twice in a row, is
    /// taken to be hung: a standby ends that session (`pg_terminate_backend`) and takes
    /// the partition. A healthy leader talks to its session at least every ~0.5 s (its
    /// batches, its idle ping every 250 ms); a leader waiting on the server (a slow commit)
    /// is never silent in this sense. Also how long a node that gateways probed before may
    /// go without a gateway's probe before it gives up its leaderships (cut off from them).
    #[serde(default = "default_leader_silence_ms")]
    pub leader_silence_ms: u64,
    /// Most DB sessions this process holds at once (a connection attempt waits for a free
    /// slot). Default: for a node, one per partition of its module + 3 (monitor, liveness
    /// probe, a transient one); for the gateway 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_max: Option<u32>,
}

fn default_connect_timeout_ms() -> u64 {
    2000
}
fn default_tcp_user_timeout_ms() -> u64 {
    5000
}
fn default_query_timeout_ms() -> u64 {
    2000
}
fn default_commit_timeout_ms() -> u64 {
    30_000
}
/// Default of `DbConfig::commit_stall_ms`.
pub const DEFAULT_COMMIT_STALL_MS: u64 = 3000;
fn default_commit_stall_ms() -> u64 {
    DEFAULT_COMMIT_STALL_MS
}
fn default_reconnect_min_ms() -> u64 {
    100
}
fn default_reconnect_max_ms() -> u64 {
    2000
}
/// Default of `DbConfig::leader_silence_ms`: three times a healthy leader's longest quiet
/// spell (~0.5 s), and short enough that a standby serves within 3 s of a hang.
pub const DEFAULT_LEADER_SILENCE_MS: u64 = 1500;
fn default_leader_silence_ms() -> u64 {
    DEFAULT_LEADER_SILENCE_MS
}

impl Default for DbConfig {
    /// Every setting at its default; `hosts`, `dbname` and `user` empty (to be filled in).
    fn default() -> Self {
        DbConfig {
            hosts: Vec::new(),
            dbname: String::new(),
            user: String::new(),
            password_file: None,
            connect_timeout_ms: default_connect_timeout_ms(),
            tcp_user_timeout_ms: default_tcp_user_timeout_ms(),
            query_timeout_ms: default_query_timeout_ms(),
            commit_timeout_ms: default_commit_timeout_ms(),
            commit_stall_ms: default_commit_stall_ms(),
            reconnect_min_ms: default_reconnect_min_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
            leader_silence_ms: default_leader_silence_ms(),
            connections_max: None,
        }
    }
}

/// A spot market or a perpetual contract; each one is a partition of its module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketConfig {
    /// e.g. "BTC-USD" (spot) or "BTC-PERP" (contract).
    pub symbol: String,
    /// Asset code of the traded quantity (spot only; contracts settle in `quote`).
    pub base: String,
    /// Asset code prices are quoted in; fees and contract margin are paid in it.
    pub quote: String,
    #[serde(default)]
    pub maker_fee_bps: u32,
    #[serde(default)]
    pub taker_fee_bps: u32,
    /// Contracts only: initial margin in basis points of notional (e.g. 1000 = 10x).
    #[serde(default = "default_im_bps")]
    pub initial_margin_bps: u32,
    /// Contracts only: maintenance margin in basis points of notional at the mark (the last
    /// trade). A position whose margin + unrealized PnL falls below it is liquidated. At
    /// most `initial_margin_bps`.
    #[serde(default = "default_mm_bps")]
    pub maintenance_margin_bps: u32,
    /// Half-width of the price band around the last trade, in basis points of it: a limit
    /// outside it is rejected (`price_band`), a market order sweeps no further than its edge.
    /// No band before the market's first trade; 0 turns it off.
    #[serde(default = "default_price_band_bps")]
    pub price_band_bps: u32,
}

fn default_im_bps() -> u32 {
    1000
}
fn default_mm_bps() -> u32 {
    500
}
fn default_price_band_bps() -> u32 {
    1000
}

/// What the exchange trades and how work is split into partitions. Must be identical in
/// every node and gateway config of a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// Spot markets (module `matching`, one partition per market).
    pub spot_markets: Vec<MarketConfig>,
    /// Perpetual contracts (module `contract`, one partition per contract).
    #[serde(default)]
    pub perp_markets: Vec<MarketConfig>,
    /// Number of user shards of module `wallet`.
    #[serde(default = "default_shards")]
    pub wallet_shards: u32,
    /// Number of user shards of module `otc`.
    #[serde(default = "default_shards")]
    pub otc_shards: u32,
    /// User id of the OTC dealer account that quotes against users.
    #[serde(default = "default_otc_dealer")]
    pub otc_dealer_user_id: i64,
    /// Lifetime of an OTC quote.
    #[serde(default = "default_quote_ttl_ms")]
    pub otc_quote_ttl_ms: u64,
    /// Spread the dealer adds around the admin-set reference price, in basis points.
    #[serde(default = "default_otc_spread")]
    pub otc_spread_bps: u32,
}

fn default_shards() -> u32 {
    3
}
fn default_otc_dealer() -> i64 {
    1
}
fn default_quote_ttl_ms() -> u64 {
    10_000
}
fn default_otc_spread() -> u32 {
    20
}

/// Another engine process this one talks to (peers for RTT probes, nodes for the gateway).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub node_id: String,
    pub module: Module,
    /// "host:port" of its HTTP listener.
    pub addr: String,
}

/// Per-second health thresholds of a node. A threshold crossed for `breach_seconds`
/// consecutive samples isolates the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_cpu_max")]
    pub cpu_max_percent: f64,
    #[serde(default = "default_mem_max")]
    pub mem_max_percent: f64,
    /// A peer that does not answer a ping within this is out of reach: reported (metric,
    /// webhook), never a reason to step aside, unless more than half of the peers are (then
    /// this node is the one cut off, and it isolates itself).
    #[serde(default = "default_peer_rtt_max")]
    pub peer_rtt_max_ms: u64,
    #[serde(default = "default_db_latency_max")]
    pub db_latency_max_ms: u64,
    /// Wallet nodes only: maximum age of the wallet heartbeat row.
    #[serde(default = "default_heartbeat_max")]
    pub heartbeat_max_age_ms: u64,
    #[serde(default = "default_breach_seconds")]
    pub breach_seconds: u32,
    /// Admin webhook URLs that receive isolation events as JSON POSTs.
    #[serde(default)]
    pub webhook_urls: Vec<String>,
    #[serde(default = "default_webhook_retries")]
    pub webhook_retries: u32,
    #[serde(default = "default_webhook_timeout_ms")]
    pub webhook_timeout_ms: u64,
    /// How often the region's conservation check runs (on the one node holding the
    /// reconciliation lock): per asset, users' available + held + fee accounts + margin
    /// pools = deposits - completed withdrawals, and every balance = the sum of its ledger
    /// lines. A break is posted to `webhook_urls` (`conservation_broken`). At least 1000.
    #[serde(default = "default_reconcile_interval_ms")]
    pub reconcile_interval_ms: u64,
    /// Server-side bound (`statement_timeout`) on one conservation check; a check that
    /// takes longer is cancelled and counted as an error, never left running.
    #[serde(default = "default_reconcile_timeout_ms")]
    pub reconcile_timeout_ms: u64,
}

fn default_interval_ms() -> u64 {
    1000
}
fn default_cpu_max() -> f64 {
    98.0
}
fn default_mem_max() -> f64 {
    95.0
}
fn default_peer_rtt_max() -> u64 {
    250
}
fn default_db_latency_max() -> u64 {
    500
}
fn default_heartbeat_max() -> u64 {
    5000
}
fn default_breach_seconds() -> u32 {
    5
}
fn default_webhook_retries() -> u32 {
    5
}
fn default_webhook_timeout_ms() -> u64 {
    2000
}
/// Default of `MonitorConfig::reconcile_interval_ms`: a minute. The check scans every
/// balance and ledger line in one snapshot, so it is far too heavy for the per-second
/// monitor, and a minute bounds how long a break goes unreported.
pub const DEFAULT_RECONCILE_INTERVAL_MS: u64 = 60_000;
fn default_reconcile_interval_ms() -> u64 {
    DEFAULT_RECONCILE_INTERVAL_MS
}
/// Default of `MonitorConfig::reconcile_timeout_ms`.
pub const DEFAULT_RECONCILE_TIMEOUT_MS: u64 = 30_000;
fn default_reconcile_timeout_ms() -> u64 {
    DEFAULT_RECONCILE_TIMEOUT_MS
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval_ms: default_interval_ms(),
            cpu_max_percent: default_cpu_max(),
            mem_max_percent: default_mem_max(),
            peer_rtt_max_ms: default_peer_rtt_max(),
            db_latency_max_ms: default_db_latency_max(),
            heartbeat_max_age_ms: default_heartbeat_max(),
            breach_seconds: default_breach_seconds(),
            webhook_urls: Vec::new(),
            webhook_retries: default_webhook_retries(),
            webhook_timeout_ms: default_webhook_timeout_ms(),
            reconcile_interval_ms: default_reconcile_interval_ms(),
            reconcile_timeout_ms: default_reconcile_timeout_ms(),
        }
    }
}

/// Log output of a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `json` (default) or `text`.
    #[serde(default = "default_log_format")]
    pub format: String,
    /// A tracing env-filter, e.g. "info" or "engine=debug".
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_format() -> String {
    "json".into()
}
fn default_log_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: default_log_format(), level: default_log_level() }
    }
}

/// Config of one `engine-node` process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node_id: String,
    pub module: Module,
    pub region: String,
    #[serde(default)]
    pub mode: RegionMode,
    /// "ip:port" the node's HTTP API listens on.
    pub listen: String,
    /// "host:port" other processes reach this node at (defaults to `listen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Nodes of all modules in this region (this node may be listed too; it is skipped).
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    pub db: DbConfig,
    pub exchange: ExchangeConfig,
    /// Path of a file holding the admin token: authenticates the gateway's admin calls
    /// (deposits, withdrawal actions, mode, reconcile, OTC reference), never a user's call.
    pub admin_token_file: PathBuf,
    /// Path of a file holding the region's internal token: the only credential of the
    /// gateway's forwarded user calls (those carrying `x-user-id`) and book reads.
    pub internal_token_file: PathBuf,
    #[serde(default)]
    pub monitor: MonitorConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Upper bound of operations committed in one group commit.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
}

/// Default of `NodeConfig::batch_max`.
pub const DEFAULT_BATCH_MAX: usize = 1024;
/// Default of `GatewayConfig::probe_interval_ms`.
pub const DEFAULT_PROBE_INTERVAL_MS: u64 = 200;

fn default_batch_max() -> usize {
    DEFAULT_BATCH_MAX
}

/// Config of one `engine-gateway` process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub gateway_id: String,
    pub region: String,
    /// "ip:port" of the public REST API: `/v1/*` and `/health` only.
    pub listen: String,
    /// "ip:port" of the admin listener (`/admin/*` and `/metrics`): a private address.
    pub admin_listen: String,
    /// HTTPS on `listen` (every deployed gateway has it); None serves plain HTTP, which only
    /// the engine's own tests on loopback use.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Every engine node of the region.
    pub nodes: Vec<PeerConfig>,
    pub db: DbConfig,
    pub exchange: ExchangeConfig,
    /// Path of a file holding the admin token (admin calls, on `admin_listen` only).
    pub admin_token_file: PathBuf,
    /// Path of a file holding the region's internal token, sent on user calls to nodes.
    pub internal_token_file: PathBuf,
    /// How often nodes are probed; a dead node is noticed within about 2 probes.
    #[serde(default = "default_probe_ms")]
    pub probe_interval_ms: u64,
    /// How long one client request may be retried across failovers.
    #[serde(default = "default_retry_budget_ms")]
    pub retry_budget_ms: u64,
    /// Concurrent order placements for one market travel to its leader in one call of at
    /// most this many orders (0: one call per order).
    #[serde(default = "default_batch_orders_max")]
    pub batch_orders_max: usize,
    /// Such calls in flight per market at once; more requests wait and join the next call.
    #[serde(default = "default_batch_in_flight_max")]
    pub batch_in_flight_max: usize,
    /// Unauthenticated reads (the books) one client address may make per second, on
    /// average; over it the gateway answers 429 with `Retry-After`. 0: no limit.
    #[serde(default = "default_public_reads_per_s_max")]
    pub public_reads_per_s_max: u32,
    /// Such reads one client address may make at once after a quiet spell (the burst).
    #[serde(default = "default_public_reads_burst_max")]
    pub public_reads_burst_max: u32,
    #[serde(default)]
    pub log: LogConfig,
}

/// The public listener's certificate: PEM files, the key readable by the service user only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Default of `GatewayConfig::batch_orders_max`.
pub const DEFAULT_BATCH_ORDERS_MAX: usize = 256;
/// Default of `GatewayConfig::batch_in_flight_max`.
pub const DEFAULT_BATCH_IN_FLIGHT_MAX: usize = 4;

/// Default of `GatewayConfig::public_reads_per_s_max`.
pub const DEFAULT_PUBLIC_READS_PER_S_MAX: u32 = 20;
/// Default of `GatewayConfig::public_reads_burst_max`.
pub const DEFAULT_PUBLIC_READS_BURST_MAX: u32 = 40;

fn default_public_reads_per_s_max() -> u32 {
    DEFAULT_PUBLIC_READS_PER_S_MAX
}
fn default_public_reads_burst_max() -> u32 {
    DEFAULT_PUBLIC_READS_BURST_MAX
}
fn default_batch_orders_max() -> usize {
    DEFAULT_BATCH_ORDERS_MAX
}
fn default_batch_in_flight_max() -> usize {
    DEFAULT_BATCH_IN_FLIGHT_MAX
}
fn default_probe_ms() -> u64 {
    DEFAULT_PROBE_INTERVAL_MS
}
/// Default of `GatewayConfig::retry_budget_ms`.
pub const DEFAULT_RETRY_BUDGET_MS: u64 = 5000;

fn default_retry_budget_ms() -> u64 {
    DEFAULT_RETRY_BUDGET_MS
}

macro_rules! toml_io {
    ($t:ty) => {
        impl $t {
            pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
                toml::from_str(s).map_err(|e| ConfigError(format!("invalid config: {e}")))
            }
            pub fn to_toml_string(&self) -> Result<String, ConfigError> {
                toml::to_string(self).map_err(|e| ConfigError(format!("cannot serialize config: {e}")))
            }
            pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
                let s = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
                Self::from_toml_str(&s)
            }
        }
    };
}
toml_io!(NodeConfig);
toml_io!(GatewayConfig);

/// Shortest token accepted (admin or internal), in characters.
pub const MIN_TOKEN_LEN: usize = 16;

/// Reads a token file (`what`: its name in errors): present, at least `MIN_TOKEN_LEN`
/// characters once trimmed. The error names the file, never its content.
pub fn read_token(path: &std::path::Path, what: &str) -> Result<String, ConfigError> {
    let t = read_secret(path)?;
    if t.len() < MIN_TOKEN_LEN {
        return Err(ConfigError(format!(
            "{what} file {} holds {} characters; at least {MIN_TOKEN_LEN} are needed",
            path.display(),
            t.len()
        )));
    }
    Ok(t)
}

/// The admin and internal tokens of a process: both valid, and distinct (one credential
/// must not both act as any user and call admin endpoints).
pub fn read_tokens(admin: &std::path::Path, internal: &std::path::Path) -> Result<(String, String), ConfigError> {
    let a = read_token(admin, "admin token")?;
    let i = read_token(internal, "internal token")?;
    if a == i {
        return Err(ConfigError(format!("internal token file {} holds the admin token; they must differ", internal.display())));
    }
    Ok((a, i))
}

/// Reads a secret file (content trimmed of surrounding whitespace).
pub fn read_secret(path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| ConfigError(format!("cannot read secret file {}: {e}", path.display())))
}

impl ExchangeConfig {
    /// A small default exchange, used by tests and examples.
    pub fn example() -> Self {
        let m = |s: &str, b: &str| MarketConfig {
            symbol: s.into(),
            base: b.into(),
            quote: "USD".into(),
            maker_fee_bps: 10,
            taker_fee_bps: 20,
            initial_margin_bps: 1000,
            maintenance_margin_bps: 500,
            price_band_bps: 1000,
        };
        ExchangeConfig {
            spot_markets: vec![m("BTC-USD", "BTC"), m("ETH-USD", "ETH"), m("SOL-USD", "SOL")],
            perp_markets: vec![m("BTC-PERP", "BTC")],
            wallet_shards: 3,
            otc_shards: 3,
            otc_dealer_user_id: 1,
            otc_quote_ttl_ms: 10_000,
            otc_spread_bps: 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeConfig {
        NodeConfig {
            node_id: "m1".into(),
            module: Module::Matching,
            region: "eu-west-1".into(),
            mode: RegionMode::Active,
            listen: "127.0.0.1:7001".into(),
            advertise: None,
            peers: vec![PeerConfig { node_id: "m2".into(), module: Module::Matching, addr: "127.0.0.1:7002".into() }],
            db: DbConfig {
                hosts: vec!["127.0.0.1:5432".into(), "127.0.0.2:5432".into()],
                dbname: "exchange".into(),
                user: "engine".into(),
                password_file: Some("/etc/engine/db_password".into()),
                connect_timeout_ms: 2000,
                connections_max: Some(8),
                ..DbConfig::default()
            },
            exchange: ExchangeConfig::example(),
            admin_token_file: "/etc/engine/admin_token".into(),
            internal_token_file: "/etc/engine/internal_token".into(),
            monitor: MonitorConfig::default(),
            log: LogConfig::default(),
            batch_max: 1024,
        }
    }

    #[test]
    fn node_config_round_trips() {
        let c = node();
        let s = c.to_toml_string().unwrap();
        assert_eq!(NodeConfig::from_toml_str(&s).unwrap(), c);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let s = node().to_toml_string().unwrap() + "\nbogus = 1\n";
        assert!(NodeConfig::from_toml_str(&s).is_err());
    }

    #[test]
    fn gateway_config_round_trips() {
        let c = GatewayConfig {
            gateway_id: "gw1".into(),
            region: "eu-west-1".into(),
            listen: "0.0.0.0:8080".into(),
            admin_listen: "10.0.0.5:8081".into(),
            tls: None,
            nodes: node().peers,
            db: node().db,
            exchange: ExchangeConfig::example(),
            admin_token_file: "/etc/engine/admin_token".into(),
            internal_token_file: "/etc/engine/internal_token".into(),
            probe_interval_ms: 200,
            retry_budget_ms: 5000,
            batch_orders_max: DEFAULT_BATCH_ORDERS_MAX,
            batch_in_flight_max: DEFAULT_BATCH_IN_FLIGHT_MAX,
            public_reads_per_s_max: DEFAULT_PUBLIC_READS_PER_S_MAX,
            public_reads_burst_max: DEFAULT_PUBLIC_READS_BURST_MAX,
            log: LogConfig::default(),
        };
        let s = c.to_toml_string().unwrap();
        assert_eq!(GatewayConfig::from_toml_str(&s).unwrap(), c);
    }

    fn token_files(admin: &str, internal: &str) -> (tempdir::Dir, PathBuf, PathBuf) {
        let d = tempdir::Dir::new();
        let (a, i) = (d.0.join("admin"), d.0.join("internal"));
        std::fs::write(&a, admin).unwrap();
        std::fs::write(&i, internal).unwrap();
        (d, a, i)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let p = std::env::temp_dir().join(format!("engine-config-test-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn tokens_must_be_long_enough_and_distinct() {
        let (_d, a, i) = token_files("an-admin-token-of-length", "an-internal-token-long\n");
        assert_eq!(read_tokens(&a, &i).unwrap().1, "an-internal-token-long");
        let (_d, a, i) = token_files("an-admin-token-of-length", "short");
        let e = read_tokens(&a, &i).unwrap_err().0;
        assert!(e.contains("internal token file") && e.contains("at least 16") && !e.contains("short"), "{e}");
        let (_d, a, i) = token_files("same-token-in-both-files", "same-token-in-both-files");
        assert!(read_tokens(&a, &i).unwrap_err().0.contains("must differ"));
        let e = read_tokens(&a, std::path::Path::new("/nonexistent/internal_token")).unwrap_err().0;
        assert!(e.contains("cannot read secret file /nonexistent/internal_token"), "{e}");
    }

    #[test]
    fn missing_internal_token_file_is_named() {
        let s = node().to_toml_string().unwrap().replace("internal_token_file", "# internal_token_file");
        let e = NodeConfig::from_toml_str(&s).unwrap_err().0;
        assert!(e.contains("missing field `internal_token_file`"), "{e}");
    }
}
