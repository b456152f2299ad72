//! Route53's health checkers, for real: `count` simulated checkers probe every health check
//! LocalStack holds, each at the check's RequestInterval (staggered), and Route53's rules turn
//! their verdicts into a check's health. Answers `GetHealthCheckStatus`.

pub mod config;
pub mod probe;
pub mod status;
pub mod verdict;

use config::CheckConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use verdict::{Observation, Verdict};

/// How often LocalStack's health checks are listed.
pub const LIST_INTERVAL_MS: u64 = 1000;
/// Bound on the checks followed at once.
pub const CHECKS_MAX: usize = 10_000;
/// How long (x 10 ms) a call waits for `run` to hand the checkers LocalStack's client.
const BACKEND_WAIT_ROUNDS: usize = 100;
/// AWS's answer for GetHealthCheckStatus on a calculated check (wording from the API reference).
pub const CALCULATED_MESSAGE: &str = "You can't use GetHealthCheckStatus to get the status of a calculated health check.";

/// One followed check: its config, each checker's verdict, and the checkers' probe tasks.
struct Followed {
    config: CheckConfig,
    verdicts: Vec<Verdict>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Followed {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// Shared with the probe tasks.
struct Shared {
    checks: Mutex<HashMap<String, Followed>>,
    blind: AtomicUsize,
    client: reqwest::Client,
}

impl Shared {
    fn checks(&self) -> MutexGuard<'_, HashMap<String, Followed>> {
        self.checks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Checkers {
    pub count: usize,
    shared: Arc<Shared>,
    backend: OnceLock<crate::backend::Backend>,
    sync_lock: tokio::sync::Mutex<()>,
}

impl Checkers {
    pub fn new(count: usize) -> Checkers {
        let shared = Shared { checks: Mutex::new(HashMap::new()), blind: AtomicUsize::new(0), client: probe::client() };
        Checkers { count: count.max(1), shared: Arc::new(shared), backend: OnceLock::new(), sync_lock: tokio::sync::Mutex::new(()) }
    }

    /// Makes the first `n` checkers see every target as failing, as if their network were cut.
    pub fn set_blind(&self, n: usize) {
        self.shared.blind.store(n, Ordering::Relaxed);
    }

    pub fn blind(&self) -> usize {
        self.shared.blind.load(Ordering::Relaxed)
    }

    /// A check's health as Route53 judges it (threshold, 18 % rule, Inverted, Disabled, calculated);
    /// None for an id the checkers do not know.
    pub fn healthy(&self, id: &str) -> Option<bool> {
        let checks = self.shared.checks();
        verdict::judge(id, &|id: &str| checks.get(id).map(|f| (&f.config, f.verdicts.as_slice())))
    }

    /// Answers `GetHealthCheckStatus` from the checkers' observations; None for every other call.
    pub async fn intercept(&self, call: &crate::aws::Call) -> Option<crate::aws::Reply> {
        if call.service != "route53" || call.action != "GetHealthCheckStatus" {
            return None;
        }
        let id = call.path.trim_matches('/').split('/').nth(2).unwrap_or_default().to_string();
        if !self.knows(&id) {
            if let Err(e) = self.sync().await {
                tracing::warn!(error = %e, "re-listing health checks");
            }
        }
        Some(self.status_reply(&id))
    }

    fn knows(&self, id: &str) -> bool {
        self.shared.checks().contains_key(id)
    }

    fn status_reply(&self, id: &str) -> crate::aws::Reply {
        let checks = self.shared.checks();
        let Some(f) = checks.get(id) else {
            return crate::aws::error("route53", 404, "NoSuchHealthCheck", &format!("No health check exists with the specified ID {id}"));
        };
        if f.config.kind == config::Kind::Calculated {
            return crate::aws::error("route53", 400, "InvalidInput", CALCULATED_MESSAGE);
        }
        let observations: Vec<(usize, Observation)> =
            f.verdicts.iter().enumerate().filter_map(|(i, v)| Some((i, v.last.clone()?))).collect();
        crate::aws::Reply { status: 200, content_type: "text/xml", body: status::body(&observations) }
    }

    /// Lists LocalStack's checks and follows exactly those: new ones start healthy with their
    /// checkers probing, deleted ones are dropped, updated ones take their new config.
    async fn sync(&self) -> Result<(), config::ListError> {
        let Some(backend) = self.backend().await else { return Ok(()) };
        let _one_at_a_time = self.sync_lock.lock().await;
        let listed = config::list(&backend.route53).await?;
        let mut checks = self.shared.checks();
        checks.retain(|id, _| listed.iter().any(|c| &c.id == id));
        for c in listed {
            if let Some(f) = checks.get_mut(&c.id) {
                f.config = c;
            } else if checks.len() < CHECKS_MAX {
                let tasks = if c.probed() { (0..self.count).map(|i| self.spawn_checker(&c, i)).collect() } else { vec![] };
                checks.insert(c.id.clone(), Followed { verdicts: vec![Verdict::default(); self.count], config: c, tasks });
            }
        }
        Ok(())
    }

    /// The backend `run` was given; waits a little for `run` to start.
    async fn backend(&self) -> Option<&crate::backend::Backend> {
        for _ in 0..BACKEND_WAIT_ROUNDS {
            if let Some(b) = self.backend.get() {
                return Some(b);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.backend.get()
    }

    fn spawn_checker(&self, c: &CheckConfig, index: usize) -> tokio::task::JoinHandle<()> {
        tokio::spawn(checker_loop(self.shared.clone(), c.id.clone(), index, self.count))
    }
}

/// One checker on one check: a first probe at once, then every RequestInterval, starting at an
/// offset of index/count of the interval so that together the checkers look more often.
async fn checker_loop(shared: Arc<Shared>, id: String, index: usize, count: usize) {
    let mut first = true;
    loop {
        let Some(c) = shared.checks().get(&id).map(|f| f.config.clone()) else { return };
        let obs = if index < shared.blind.load(Ordering::Relaxed) { probe::blind() } else { probe::probe(&shared.client, &c).await };
        if let Some(v) = shared.checks().get_mut(&id).and_then(|f| f.verdicts.get_mut(index)) {
            tracing::debug!(check = %id, checker = index, ok = obs.ok, status = %obs.status, "probe");
            v.record(obs, c.failure_threshold);
        }
        let interval_ms = c.interval_s * 1000;
        let wait_ms = if first && index > 0 { interval_ms * index as u64 / count as u64 } else { interval_ms };
        first = false;
        tokio::time::sleep(Duration::from_millis(wait_ms.max(1))).await;
    }
}

/// Follows LocalStack's health checks forever (every second).
pub async fn run(checkers: Arc<Checkers>, backend: crate::backend::Backend) {
    let _ = checkers.backend.set(backend);
    let mut tick = tokio::time::interval(Duration::from_millis(LIST_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = checkers.sync().await {
            tracing::warn!(error = %e, "listing health checks from LocalStack");
        }
    }
}
