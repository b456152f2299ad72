//! The drill's client: places orders at a steady rate against whatever the API name's
//! PRIMARY record answers (re-read from Route53 twice a second), and remembers every order
//! that was acknowledged. Retries nothing: an order either has an ack or counts as an error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cloud::Cloud;
use crate::config::Config;
use crate::failover::hosts::RegionHosts;

const REQUEST_TIMEOUT_MS: u64 = 2_000;
const TARGETS_REFRESH_MS: u64 = 500;
pub const MARKET: &str = "BTC-USD";

/// A user made for the drill, with funds for every order it will place.
pub struct DrillUser {
    pub user_id: i64,
    pub api_key: String,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LoadStats {
    pub sent: u64,
    pub acked: u64,
    /// Error kind (HTTP status or "connect"/"timeout") -> count.
    pub errors: BTreeMap<String, u64>,
    /// Milliseconds since the load started, of the first ack after a mark (see [`Load::mark`]).
    pub first_ack_after_mark_ms: Option<u64>,
    pub mark_ms: Option<u64>,
    /// The longest time without any acknowledged order (the outage clients saw), and when it began.
    pub longest_ack_gap_ms: u64,
    pub longest_ack_gap_from_ms: u64,
}

#[derive(Default)]
struct Shared {
    targets: Vec<String>,
    acked: Vec<String>,
    ack_ms: Vec<u64>,
    stats: LoadStats,
    stop: bool,
}

pub struct Load {
    shared: Arc<Mutex<Shared>>,
    t0: Instant,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// One HTTPS client per address the API name answered: each resolves the API name to its
/// address only and verifies the certificate for that name, as a client of the exchange does.
struct Clients {
    name: String,
    port: u16,
    ca: Option<String>,
    by_ip: BTreeMap<String, reqwest::Client>,
}

impl Clients {
    fn new(cfg: &Config, port: u16) -> Clients {
        let name = cfg.dns.api_record.trim_end_matches('.').to_string();
        Clients { name, port, ca: crate::deploy::secrets::api_ca(cfg), by_ip: BTreeMap::new() }
    }

    /// The client for `ip` (None: not an address, or no client can be built: counted as "connect").
    fn get(&mut self, ip: &str) -> Option<reqwest::Client> {
        if !self.by_ip.contains_key(ip) {
            let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
            let c = crate::tls::api_client(&self.name, ip.parse().ok()?, self.port, self.ca.as_deref(), timeout).ok()?;
            self.by_ip.insert(ip.to_string(), c);
        }
        self.by_ip.get(ip).cloned()
    }
}

/// The addresses the API name answers now: the PRIMARY record (Route53 serves it while its
/// health check passes; LocalStack's always do).
pub async fn api_answer(cloud: &Cloud, cfg: &Config) -> Vec<String> {
    cloud.primary_answer(cfg).await.unwrap_or_default()
}

/// Creates the drill's user and funds it through admin calls made on a gateway host of
/// `hosts` (its admin listener answers on the private address only).
pub async fn make_user(hosts: &RegionHosts, user_id: i64) -> Result<DrillUser, String> {
    let created = hosts.admin_post("/admin/users", &json!({ "user_id": user_id }).to_string()).await.map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&created).unwrap_or_default();
    let api_key = v["api_key"].as_str().ok_or("POST /admin/users: the answer has no api_key")?.to_string();
    let deposit =
        json!({ "deposit_id": format!("drill-{user_id}"), "user_id": user_id, "asset": "USD", "amount_minor": 1_000_000_000_000i64 });
    hosts.admin_post("/admin/deposits", &deposit.to_string()).await.map_err(|e| e.to_string())?;
    Ok(DrillUser { user_id, api_key })
}

impl Load {
    /// Starts placing `orders_per_s` orders a second (ids `<prefix>-<n>`).
    pub fn start(cloud: Arc<Cloud>, cfg: Config, port: u16, user: &DrillUser, prefix: String, orders_per_s: u32) -> Load {
        assert!(orders_per_s > 0, "orders_per_s must be positive");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let t0 = Instant::now();
        let mut clients = Clients::new(&cfg, port);
        let refresh = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    let t = api_answer(&cloud, &cfg).await;
                    {
                        let mut s = shared.lock().expect("load state");
                        if s.stop {
                            return;
                        }
                        if !t.is_empty() {
                            s.targets = t;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(TARGETS_REFRESH_MS)).await;
                }
            })
        };
        let place = {
            let (shared, key) = (shared.clone(), user.api_key.clone());
            tokio::spawn(async move {
                let url = crate::tls::api_url(&clients.name, port, "/v1/orders");
                let gap = Duration::from_micros(1_000_000 / orders_per_s as u64);
                let mut n: u64 = 0;
                let mut tick = tokio::time::interval(gap);
                loop {
                    tick.tick().await;
                    let target = {
                        let s = shared.lock().expect("load state");
                        if s.stop {
                            return;
                        }
                        if s.targets.is_empty() {
                            continue;
                        }
                        s.targets[n as usize % s.targets.len()].clone()
                    };
                    n += 1;
                    let cid = format!("{prefix}-{n}");
                    // IOC: each order is committed and acknowledged like any other, but none rests in the book, so
                    // drills do not grow the state a new partition leader has to load.
                    let body =
                        json!({"market": MARKET, "client_order_id": cid, "side": "buy", "type": "ioc", "price_ticks": 100, "qty_lots": 1});
                    let (shared, c, key, url) = (shared.clone(), clients.get(&target), key.clone(), url.clone());
                    tokio::spawn(async move {
                        let r = match c {
                            Some(c) => Some(c.post(url).header("X-API-Key", key).json(&body).send().await),
                            None => None,
                        };
                        let mut s = shared.lock().expect("load state");
                        s.stats.sent += 1;
                        let Some(r) = r else {
                            *s.stats.errors.entry("connect".into()).or_default() += 1;
                            return;
                        };
                        match r {
                            Ok(r) if r.status().is_success() => {
                                s.stats.acked += 1;
                                s.acked.push(cid);
                                s.ack_ms.push(t0.elapsed().as_millis() as u64);
                                if s.stats.mark_ms.is_some() && s.stats.first_ack_after_mark_ms.is_none() {
                                    s.stats.first_ack_after_mark_ms = Some(t0.elapsed().as_millis() as u64);
                                }
                            }
                            Ok(r) => *s.stats.errors.entry(format!("HTTP {}", r.status().as_u16())).or_default() += 1,
                            Err(e) => {
                                *s.stats.errors.entry(if e.is_timeout() { "timeout".into() } else { "connect".into() }).or_default() += 1
                            }
                        }
                    });
                }
            })
        };
        Load { shared, t0, tasks: vec![refresh, place] }
    }

    /// Marks "now" (a fault or a failover start): the next ack after it is the client-visible recovery.
    pub fn mark(&self) {
        let mut s = self.shared.lock().expect("load state");
        s.stats.mark_ms = Some(self.t0.elapsed().as_millis() as u64);
        s.stats.first_ack_after_mark_ms = None;
    }

    pub fn stats(&self) -> LoadStats {
        self.shared.lock().expect("load state").stats.clone()
    }

    /// Stops placing, lets requests in flight finish, and returns the acknowledged ids.
    pub async fn stop(self) -> (Vec<String>, LoadStats) {
        self.shared.lock().expect("load state").stop = true;
        for t in self.tasks {
            let _ = t.await;
        }
        tokio::time::sleep(Duration::from_millis(REQUEST_TIMEOUT_MS + 200)).await;
        let mut s = self.shared.lock().expect("load state");
        let mut at = s.ack_ms.clone();
        at.sort_unstable();
        if let Some((from, gap)) = at.windows(2).map(|w| (w[0], w[1] - w[0])).max_by_key(|x| x.1) {
            s.stats.longest_ack_gap_ms = gap;
            s.stats.longest_ack_gap_from_ms = from;
        }
        (s.acked.clone(), s.stats.clone())
    }
}
