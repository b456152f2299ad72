//! Test harness: a real PostgreSQL primary + synchronous standby on loopback, engine
//! processes started from the built binaries, and HTTP helpers. Every process started
//! here is stopped by PID in Drop, and temp dirs are removed, also when a test fails.
#![allow(dead_code)]

pub mod cpu;
pub mod load;
pub mod proxy;

use engine_config::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The region's internal token of the test processes (gateway -> node user calls).
pub const INTERNAL_TOKEN: &str = "test-internal-token";

/// Admin listener URL of each gateway started here, by its public URL.
static ADMIN_URLS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// The admin listener (`/admin/*`, `/metrics`) of the gateway whose public URL is `gw`, as
/// `spawn_gateway` registered it; `gw` itself if it is not a gateway started here.
pub fn admin_url(gw: &str) -> String {
    let urls = ADMIN_URLS.lock().unwrap_or_else(|e| e.into_inner());
    urls.iter().rev().find(|(p, _)| p == gw).map(|(_, a)| a.clone()).unwrap_or_else(|| gw.to_string())
}

/// Ports handed to test processes come from below the kernel's ephemeral range (32768-60999
/// here): a port taken with `bind(0)` is an ephemeral one, which any outgoing connection (a
/// node's DB sessions) may take as its source port before the process meant to listen on it
/// binds it. Each port is handed out once per test binary.
const TEST_PORT_LOW: u32 = 20_000;
const TEST_PORT_SPAN: u32 = 12_000;

pub fn free_port() -> u16 {
    static NEXT: std::sync::OnceLock<std::sync::atomic::AtomicU32> = std::sync::OnceLock::new();
    // Test binaries run one after another; each starts at its own offset all the same.
    let next = NEXT.get_or_init(|| std::sync::atomic::AtomicU32::new(std::process::id() % TEST_PORT_SPAN));
    loop {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = u16::try_from(TEST_PORT_LOW + n % TEST_PORT_SPAN).expect("below 65536");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn run_as_postgres(args: &[&str]) {
    let out = Command::new("runuser").arg("-u").arg("postgres").arg("--").args(args).output().expect("runuser");
    assert!(out.status.success(), "{:?} failed: {}{}", args, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// A primary with a synchronous standby (`synchronous_standby_names = '*'`).
pub struct Pg {
    pub dir: tempfile::TempDir,
    pub primary_port: u16,
    pub standby_port: u16,
    pids: Vec<u32>,
    /// Processes stopped by `freeze_primary` (killed on drop: a stopped orphan would stay).
    frozen: Vec<u32>,
}

impl Pg {
    pub fn start() -> Pg {
        let dir = tempfile::Builder::new().prefix("engine-pg-").tempdir_in("/tmp").expect("tempdir");
        Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir.path()).status().expect("chown");
        let primary = dir.path().join("primary");
        let standby = dir.path().join("standby");
        let (pp, sp) = (free_port(), free_port());
        let sock = dir.path().to_str().unwrap().to_string();
        run_as_postgres(&[&format!("{PG_BIN}/initdb"), "-D", primary.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-N"]);
        let conf = format!(
            "port = {pp}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{sock}'\n\
             wal_level = replica\nmax_wal_senders = 5\nsynchronous_standby_names = '*'\nsynchronous_commit = on\n\
             max_connections = 300\nshared_buffers = 128MB\nfsync = on\nlogging_collector = off\n"
        );
        append(&primary.join("postgresql.conf"), &conf);
        // Diagnostics for benchmarks, e.g. "shared_preload_libraries = 'pg_stat_statements'".
        if let Ok(extra) = std::env::var("PG_EXTRA_CONF") {
            append(&primary.join("postgresql.conf"), &format!("{extra}\n"));
        }
        append(&primary.join("pg_hba.conf"), "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n");
        let mut pg = Pg { dir, primary_port: pp, standby_port: sp, pids: Vec::new(), frozen: Vec::new() };
        pg.start_server(&primary, "primary");
        run_as_postgres(&[
            &format!("{PG_BIN}/pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            &pp.to_string(),
            "-U",
            "postgres",
            "-D",
            standby.to_str().unwrap(),
            "-R",
            "-X",
            "stream",
        ]);
        append(&standby.join("postgresql.conf"), &format!("port = {sp}\nhot_standby = on\n"));
        pg.start_server(&standby, "standby");
        // Wait until the standby is attached synchronously.
        let t = Instant::now();
        loop {
            let s = pg.psql(pp, "postgres", "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'");
            if s.trim() == "1" {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "standby never became synchronous");
            std::thread::sleep(Duration::from_millis(100));
        }
        pg.psql(pp, "postgres", "CREATE DATABASE exchange");
        pg
    }

    fn start_server(&mut self, data: &Path, name: &str) {
        let log = self.dir.path().join(format!("{name}.log"));
        let child = Command::new("runuser")
            .arg("-u")
            .arg("postgres")
            .arg("--")
            .arg(format!("{PG_BIN}/postgres"))
            .arg("-D")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start postgres");
        // runuser execs? It forks: record its pid; the postmaster pid comes from postmaster.pid.
        self.pids.push(child.id());
        std::mem::forget(child);
        let t = Instant::now();
        let port = if name == "primary" { self.primary_port } else { self.standby_port };
        loop {
            let ok = Command::new(format!("{PG_BIN}/pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{name} postgres did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Ok(s) = std::fs::read_to_string(data.join("postmaster.pid")) {
            if let Some(pid) = s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()) {
                self.pids.push(pid);
            }
        }
    }

    /// Postmaster pids: (primary, standby).
    pub fn postmasters(&self) -> (u32, u32) {
        (self.pids[1], self.pids[3])
    }

    /// kill -9 the primary's postmaster (its backends exit when they notice).
    pub fn kill_primary(&mut self) {
        if let Some(pid) = self.pids.get(1) {
            kill(*pid, "-KILL");
        }
    }

    /// Freezes the primary (SIGSTOP to its postmaster and every backend): the kernel still
    /// accepts and acknowledges TCP, but nothing ever answers, like a hung or silently
    /// unreachable host. Returns the frozen pids (killed on drop too).
    pub fn freeze_primary(&mut self) -> Vec<u32> {
        let pm = self.pids[1];
        let mut pids = vec![pm];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // "pid (comm) state ppid ...": the fields after the last ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pm) {
                pids.push(pid);
            }
        }
        for p in &pids {
            kill(*p, "-STOP");
        }
        self.frozen.extend(pids.iter().copied());
        pids
    }

    /// The server log of the primary (`primary.log`) or standby.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Promotes the standby and drops the synchronous requirement it inherited (it has no
    /// standby of its own), as Patroni would reconfigure it.
    pub fn promote_standby(&self) {
        let standby = self.dir.path().join("standby");
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{PG_BIN}/pg_ctl"), "promote", "-w", "-D", standby.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "promote: {}", String::from_utf8_lossy(&out.stderr));
        self.psql(self.standby_port, "exchange", "ALTER SYSTEM SET synchronous_standby_names = ''");
        self.psql(self.standby_port, "exchange", "SELECT pg_reload_conf()");
    }

    pub fn psql(&self, port: u16, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", db, "-At", "-c", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Like `sql`, but None on an error (e.g. before the schema exists).
    pub fn try_sql(&self, sql: &str) -> Option<String> {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.primary_port.to_string(), "-U", "postgres", "-d", "exchange", "-At", "-c", sql])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn sql(&self, sql: &str) -> String {
        self.psql(self.primary_port, "exchange", sql).trim().to_string()
    }

    pub fn db_config(&self) -> DbConfig {
        DbConfig {
            hosts: vec![format!("127.0.0.1:{}", self.standby_port), format!("127.0.0.1:{}", self.primary_port)],
            dbname: "exchange".into(),
            user: "postgres".into(),
            password_file: None,
            ..DbConfig::default()
        }
    }

    pub fn standby_only_db_config(&self) -> DbConfig {
        DbConfig { hosts: vec![format!("127.0.0.1:{}", self.standby_port)], ..self.db_config() }
    }
}

pub fn kill(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(sig).arg(pid.to_string()).stderr(Stdio::null()).status();
}

impl Drop for Pg {
    fn drop(&mut self) {
        for pid in &self.frozen {
            kill(*pid, "-KILL");
        }
        // postmasters first (immediate shutdown), then the runuser wrappers.
        for pid in self.pids.iter().rev() {
            kill(*pid, "-QUIT");
        }
        std::thread::sleep(Duration::from_millis(300));
        for pid in self.pids.iter().rev() {
            kill(*pid, "-KILL");
        }
        if let Ok(d) = std::env::var("ENGINE_TEST_KEEP_LOGS") {
            let _ = std::fs::create_dir_all(&d);
            for f in ["primary.log", "standby.log"] {
                let _ = std::fs::copy(self.dir.path().join(f), Path::new(&d).join(f));
            }
        }
    }
}

fn append(p: &Path, s: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(p).expect("open conf");
    f.write_all(s.as_bytes()).unwrap();
}

/// An engine process (node or gateway), killed by PID on drop.
pub struct Proc {
    pub name: String,
    pub child: Option<Child>,
    pub addr: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    pub fn sigterm(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        kill(c.id(), "-TERM");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub pg: Pg,
    pub token_file: PathBuf,
    pub internal_token_file: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let pg = Pg::start();
        let dir = tempfile::Builder::new().prefix("engine-test-").tempdir_in("/tmp").unwrap();
        let token_file = dir.path().join("admin_token");
        std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
        let internal_token_file = dir.path().join("internal_token");
        std::fs::write(&internal_token_file, INTERNAL_TOKEN).unwrap();
        Env { dir, pg, token_file, internal_token_file }
    }

    pub fn node_config(&self, id: &str, module: Module, port: u16, peers: &[PeerConfig]) -> NodeConfig {
        NodeConfig {
            node_id: id.into(),
            module,
            region: "test-1".into(),
            mode: RegionMode::Active,
            listen: format!("127.0.0.1:{port}"),
            advertise: None,
            peers: peers.to_vec(),
            db: self.pg.db_config(),
            exchange: ExchangeConfig::example(),
            admin_token_file: self.token_file.clone(),
            internal_token_file: self.internal_token_file.clone(),
            monitor: MonitorConfig::default(),
            log: LogConfig { format: "json".into(), level: "info".into() },
            batch_max: 1024,
        }
    }

    pub fn spawn_node(&self, cfg: &NodeConfig) -> Proc {
        let path = self.dir.path().join(format!("{}.toml", cfg.node_id));
        std::fs::write(&path, cfg.to_toml_string().unwrap()).unwrap();
        spawn(env!("CARGO_BIN_EXE_engine-node"), &cfg.node_id, &path, &cfg.listen, self.dir.path())
    }

    pub fn gateway_config(&self, port: u16, nodes: &[PeerConfig]) -> GatewayConfig {
        GatewayConfig {
            gateway_id: "gw1".into(),
            region: "test-1".into(),
            listen: format!("127.0.0.1:{port}"),
            admin_listen: format!("127.0.0.1:{}", free_port()),
            tls: None,
            nodes: nodes.to_vec(),
            db: self.pg.db_config(),
            exchange: ExchangeConfig::example(),
            admin_token_file: self.token_file.clone(),
            internal_token_file: self.internal_token_file.clone(),
            probe_interval_ms: DEFAULT_PROBE_INTERVAL_MS,
            retry_budget_ms: DEFAULT_RETRY_BUDGET_MS,
            batch_orders_max: DEFAULT_BATCH_ORDERS_MAX,
            batch_in_flight_max: DEFAULT_BATCH_IN_FLIGHT_MAX,
            public_reads_per_s_max: DEFAULT_PUBLIC_READS_PER_S_MAX,
            public_reads_burst_max: DEFAULT_PUBLIC_READS_BURST_MAX,
            // GATEWAY_LOG: a tracing filter for diagnostics, e.g. "info,engine::gateway::route=debug".
            log: LogConfig { format: "json".into(), level: std::env::var("GATEWAY_LOG").unwrap_or_else(|_| "info".into()) },
        }
    }

    pub fn spawn_gateway(&self, cfg: &GatewayConfig) -> Proc {
        let path = self.dir.path().join(format!("{}.toml", cfg.gateway_id));
        std::fs::write(&path, cfg.to_toml_string().unwrap()).unwrap();
        let urls = (format!("http://{}", cfg.listen), format!("http://{}", cfg.admin_listen));
        ADMIN_URLS.lock().unwrap_or_else(|e| e.into_inner()).push(urls);
        spawn(env!("CARGO_BIN_EXE_engine-gateway"), &cfg.gateway_id, &path, &cfg.listen, self.dir.path())
    }
}

fn spawn(bin: &str, name: &str, config: &Path, addr: &str, dir: &Path) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
        .spawn()
        .expect("spawn engine binary");
    Proc { name: name.into(), child: Some(child), addr: addr.into(), log }
}

/// A 3-node-per-module cluster (matching, wallet, otc) and a gateway.
pub struct Cluster {
    pub env: Env,
    pub nodes: Vec<Proc>,
    pub node_cfgs: Vec<NodeConfig>,
    pub gateway: Proc,
    pub gw: String,
}

impl Cluster {
    pub fn start(per_module: usize, tweak: impl Fn(&mut NodeConfig)) -> Cluster {
        Cluster::start_with_gateway(per_module, tweak, |_| {})
    }

    /// Like `start`, with the gateway's config changed by `gw_tweak` (e.g. node addresses
    /// through a proxy).
    pub fn start_with_gateway(per_module: usize, tweak: impl Fn(&mut NodeConfig), gw_tweak: impl Fn(&mut GatewayConfig)) -> Cluster {
        let env = Env::new();
        let mut peers = Vec::new();
        for m in [Module::Matching, Module::Wallet, Module::Otc, Module::Contract] {
            for i in 0..per_module {
                peers.push(PeerConfig {
                    node_id: format!("{}-{}", m.as_str(), i + 1),
                    module: m,
                    addr: format!("127.0.0.1:{}", free_port()),
                });
            }
        }
        let mut nodes = Vec::new();
        let mut node_cfgs = Vec::new();
        for p in &peers {
            let port: u16 = p.addr.rsplit(':').next().unwrap().parse().unwrap();
            let mut c = env.node_config(&p.node_id, p.module, port, &peers);
            tweak(&mut c);
            nodes.push(env.spawn_node(&c));
            node_cfgs.push(c);
        }
        let mut gcfg = env.gateway_config(free_port(), &peers);
        gw_tweak(&mut gcfg);
        let gateway = env.spawn_gateway(&gcfg);
        let gw = format!("http://{}", gcfg.listen);
        Cluster { env, nodes, node_cfgs, gateway, gw }
    }

    /// `per_module` nodes of each module with the shipped defaults, their monitors posting
    /// to `hooks`, and the gateway healthy (a panic otherwise; the logs are dumped on drop).
    pub async fn healthy(per_module: usize, hooks: &Webhooks) -> Cluster {
        let c = Cluster::start(per_module, |n| n.monitor.webhook_urls = vec![hooks.url.clone()]);
        if let Err(e) = wait_healthy(&c.gw, Duration::from_secs(60)).await {
            panic!("cluster never healthy: {e}");
        }
        c
    }

    pub fn dump_logs(&self) {
        for p in self.nodes.iter().chain(std::iter::once(&self.gateway)) {
            let s = std::fs::read_to_string(&p.log).unwrap_or_default();
            // Whole logs for a closer look, e.g. BENCH_LOG_DIR=/tmp/engine-logs.
            if let Ok(dir) = std::env::var("BENCH_LOG_DIR") {
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(std::path::Path::new(&dir).join(format!("{}.log", p.name)), &s);
            }
            let warns: Vec<&str> = s.lines().filter(|l| l.contains("WARN") || l.contains("took leadership")).take(8).collect();
            eprintln!("---- {} (first warnings) ----\n{}", p.name, warns.join("\n"));
            let tail: Vec<&str> = s.lines().filter(|l| !l.contains("NOTICE")).rev().take(10).collect();
            eprintln!("---- {} ----\n{}", p.name, tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

pub async fn wait_healthy(gw: &str, limit: Duration) -> Result<Duration, String> {
    let c = http();
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < limit {
        if let Ok(r) = c.get(format!("{gw}/health")).send().await {
            let ok = r.status().is_success();
            last = r.text().await.unwrap_or_default();
            if ok {
                return Ok(t.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

pub async fn post(gw: &str, path: &str, headers: &[(&str, &str)], body: serde_json::Value) -> (u16, serde_json::Value) {
    send(http().post(format!("{gw}{path}")).json(&body), headers).await
}

pub async fn get(gw: &str, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    send(http().get(format!("{gw}{path}")), headers).await
}

/// Status and JSON body of a request (0 and null when it got no answer).
async fn send(mut r: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    match r.send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(serde_json::Value::Null))
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

pub async fn create_user(gw: &str, user_id: i64) -> String {
    let (s, v) = post(&admin_url(gw), "/admin/users", &[("x-admin-token", ADMIN_TOKEN)], serde_json::json!({"user_id": user_id})).await;
    assert_eq!(s, 200, "create user: {v}");
    v["api_key"].as_str().unwrap().to_string()
}

pub async fn deposit(gw: &str, id: &str, user_id: i64, asset: &str, amount: i64) {
    let (s, v) = post(
        &admin_url(gw),
        "/admin/deposits",
        &[("x-admin-token", ADMIN_TOKEN)],
        serde_json::json!({"deposit_id": id, "user_id": user_id, "asset": asset, "amount_minor": amount}),
    )
    .await;
    assert_eq!(s, 200, "deposit: {v}");
}

/// Orders whose stored state disagrees with the fills: `filled_qty` must be the sum of
/// the order's fills, and an `open` order must have quantity left. Empty when consistent.
pub fn order_fill_violations(pg: &Pg) -> String {
    pg.sql(
        "WITH f AS (SELECT id, sum(q) AS q FROM (SELECT maker_order_id AS id, qty_lots AS q FROM fills \
                    UNION ALL SELECT taker_order_id, qty_lots FROM fills) x GROUP BY id) \
         SELECT coalesce(string_agg(o.order_id || ':' || o.status || ':' || o.filled_qty || '/' || coalesce(f.q, 0), ','), '') \
         FROM orders o LEFT JOIN f ON f.id = o.order_id \
         WHERE o.filled_qty <> coalesce(f.q, 0) OR (o.status = 'open' AND o.filled_qty >= o.qty_lots)",
    )
}

/// Sum of all balances per asset, and the world account (deposits - withdrawals, negated).
pub fn conservation_violations(pg: &Pg) -> String {
    pg.sql(
        "SELECT coalesce(string_agg(asset || ':' || total, ','), '') FROM \
         (SELECT asset, sum(available + held) AS total FROM balances GROUP BY asset HAVING sum(available + held) <> 0) t",
    )
}

/// An admin webhook receiver on loopback: its URL, and every JSON body posted to it so far.
pub struct Webhooks {
    pub url: String,
    pub events: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Webhooks {
    pub async fn start() -> Webhooks {
        let events: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
        let ev = events.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                let ev = ev.clone();
                async move {
                    ev.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        Webhooks { url, events, server }
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        self.events.lock().unwrap().clone()
    }

    /// The first posted event named `event`, waited for up to 10 s.
    pub async fn wait_event(&self, event: &str) -> serde_json::Value {
        let t = std::time::Instant::now();
        loop {
            if let Some(e) = self.events().into_iter().find(|e| e["event"] == event) {
                return e;
            }
            assert!(t.elapsed() < std::time::Duration::from_secs(10), "no {event} webhook: {:?}", self.events());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    /// A failing test shows what the engine processes logged.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
    }
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        self.server.abort();
    }
}
