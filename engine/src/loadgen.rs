//! End-to-end load generator: creates users, funds them, then places crossing limit
//! orders through the gateway from many concurrent clients and reports acknowledged
//! throughput and acknowledgement latency. Used by `engine-loadgen` and the bench tests.

mod wire;

use crate::protocol::{paths, ADMIN_HEADER, API_KEY_HEADER};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The gateway's public URL (orders).
    pub gateway: String,
    /// The gateway's admin listener URL (creating and funding the load users).
    pub admin: String,
    pub admin_token: String,
    pub markets: Vec<(String, String)>,
    pub users: usize,
    pub concurrency: usize,
    pub duration: Duration,
    /// First user id to create (ids must be unused).
    pub first_user_id: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub acked: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Acknowledged orders in each second of the run.
    pub per_second: Vec<u64>,
}

impl Report {
    pub fn per_sec(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} acknowledged orders in {:.1} s = {:.0} orders/s; ack latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors",
            self.acked,
            self.elapsed.as_secs_f64(),
            self.per_sec(),
            self.p50_us as f64 / 1000.0,
            self.p99_us as f64 / 1000.0,
            self.max_us as f64 / 1000.0,
            self.errors
        )
    }
}

fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(concurrency).timeout(Duration::from_secs(30)).build().expect("http client")
}

/// Creates and funds the users; returns their API keys.
pub async fn setup(cfg: &LoadConfig) -> anyhow::Result<Vec<(i64, String)>> {
    let http = client(8);
    let mut keys = Vec::new();
    for i in 0..cfg.users {
        let u = cfg.first_user_id + i as i64;
        let r = http
            .post(format!("{}{}", cfg.admin, paths::ADMIN_USERS))
            .header(ADMIN_HEADER, &cfg.admin_token)
            .json(&json!({"user_id": u}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "create user {u}: {}", r.text().await.unwrap_or_default());
        let v: serde_json::Value = r.json().await?;
        keys.push((u, v["api_key"].as_str().unwrap_or_default().to_string()));
        let mut assets: Vec<&str> = cfg.markets.iter().map(|m| m.1.as_str()).collect();
        assets.push("USD");
        for a in assets {
            let r = http
                .post(format!("{}{}", cfg.admin, paths::ADMIN_DEPOSITS))
                .header(ADMIN_HEADER, &cfg.admin_token)
                .json(&json!({"deposit_id": format!("load-{u}-{a}"), "user_id": u, "asset": a, "amount_minor": 1_000_000_000_000i64}))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "deposit for {u}: {}", r.text().await.unwrap_or_default());
        }
    }
    Ok(keys)
}

/// Runs the load for `cfg.duration` and reports.
pub async fn run(cfg: &LoadConfig, keys: &[(i64, String)]) -> Report {
    let stop = Arc::new(AtomicBool::new(false));
    let lat: Arc<Mutex<Vec<u32>>> = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seconds = cfg.duration.as_secs() as usize + 2;
    let per_second: Arc<Vec<std::sync::atomic::AtomicU64>> = Arc::new((0..seconds).map(|_| Default::default()).collect());
    // Connections are opened before the clock starts: connection set-up is not part of
    // an order's latency (a burst of hundreds of connects can take a SYN retry, 1 s).
    let conns = futures::future::join_all((0..cfg.concurrency).map(|_| async {
        let mut c = wire::Conn::new(&cfg.gateway)?;
        c.connect().await?;
        Ok::<_, std::io::Error>(c)
    }))
    .await;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (w, mut conn) in conns.into_iter().enumerate() {
        let (stop, lat, errors, per_second) = (stop.clone(), lat.clone(), errors.clone(), per_second.clone());
        let (user, key) = keys[w % keys.len()].clone();
        let market = cfg.markets[w % cfg.markets.len()].0.clone();
        let run_id = t0.elapsed().as_nanos() ^ std::process::id() as u128;
        tasks.push(tokio::spawn(async move {
            let Ok(conn) = conn.as_mut() else {
                errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut mine = Vec::with_capacity(4096);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let side = if (i + w as u64).is_multiple_of(2) { "buy" } else { "sell" };
                let price = 1000 + (i % 11) as i64 - 5;
                let body = format!(
                    r#"{{"market":"{market}","client_order_id":"L{run_id:x}-{user}-{w}-{i}","side":"{side}","type":"limit","price_ticks":{price},"qty_lots":{}}}"#,
                    1 + i % 3
                );
                let t = Instant::now();
                match conn.post_json(paths::ORDERS, &[(API_KEY_HEADER, &key)], &body).await {
                    Ok((200, _)) => {
                        mine.push(t.elapsed().as_micros() as u32);
                        let sec = (t0.elapsed().as_secs() as usize).min(per_second.len() - 1);
                        per_second[sec].fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
        }));
    }
    tokio::time::sleep(cfg.duration).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = t0.elapsed();
    let mut l = std::mem::take(&mut *lat.lock().unwrap_or_else(|e| e.into_inner()));
    l.sort_unstable();
    let p = |q: f64| if l.is_empty() { 0 } else { l[((l.len() as f64 * q) as usize).min(l.len() - 1)] as u64 };
    Report {
        acked: l.len() as u64,
        errors: errors.load(Ordering::SeqCst),
        elapsed,
        p50_us: p(0.5),
        p99_us: p(0.99),
        max_us: l.last().copied().unwrap_or(0) as u64,
        per_second: per_second.iter().map(|c| c.load(Ordering::SeqCst)).collect(),
    }
}
