//! Many hosts at once: one session per host on tokio's blocking pool, a bounded number at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::session::Session;
use super::{SshConfig, SshError, Target};

/// One host's outcome of a [`Fleet::run`].
#[derive(Debug)]
pub struct HostResult<T> {
    pub target: Target,
    pub result: Result<T, SshError>,
}

#[derive(Debug, Clone)]
pub struct Fleet {
    cfg: Arc<SshConfig>,
    concurrency_max: usize,
    /// With [`Fleet::keep_sessions`]: sessions left open by one run for the next one.
    pool: Option<Arc<Mutex<HashMap<Target, Session>>>>,
}

impl Fleet {
    /// `concurrency_max` bounds how many hosts are connected and worked on at once (>= 1).
    pub fn new(cfg: SshConfig, concurrency_max: usize) -> Self {
        assert!(concurrency_max >= 1, "concurrency_max must be at least 1");
        Fleet { cfg: Arc::new(cfg), concurrency_max, pool: None }
    }

    /// Keeps each host's session open between runs (a deploy's many short phases), instead of
    /// a new handshake per run. A session whose work failed is dropped, not kept. Not for
    /// callers whose hosts may die between runs (failover): a dead host's kept session would
    /// fail its next command instead of its next connect.
    pub fn keep_sessions(mut self) -> Self {
        self.pool = Some(Arc::new(Mutex::new(HashMap::new())));
        self
    }

    pub fn config(&self) -> &SshConfig {
        &self.cfg
    }

    /// Connects to each target and runs `f` on its session, at most `concurrency_max` at a time.
    /// Returns one result per target, in the order given; one host's failure (including a panic
    /// in `f`) is reported under that host and does not stop the others.
    pub async fn run<T, F>(&self, targets: &[Target], f: F) -> Vec<HostResult<T>>
    where
        T: Send + 'static,
        F: Fn(&mut Session) -> Result<T, SshError> + Send + Sync + 'static,
    {
        self.run_with(targets.iter().map(|t| (t.clone(), ())).collect(), move |s, ()| f(s)).await
    }

    /// [`Fleet::run`] with a value per host (e.g. that host's files), moved into its call of `f`.
    pub async fn run_with<I, T, F>(&self, jobs: Vec<(Target, I)>, f: F) -> Vec<HostResult<T>>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(&mut Session, I) -> Result<T, SshError> + Send + Sync + 'static,
    {
        let count = jobs.len();
        let semaphore = Arc::new(Semaphore::new(self.concurrency_max));
        let f = Arc::new(f);
        let jobs = jobs.into_iter().map(|(target, input)| {
            let (semaphore, f, cfg, pool) = (semaphore.clone(), f.clone(), self.cfg.clone(), self.pool.clone());
            async move {
                let permit = semaphore.acquire_owned().await.expect("the semaphore is never closed");
                let t = target.clone();
                let joined = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let kept = pool.as_ref().and_then(|p| p.lock().expect("pool lock").remove(&t));
                    let mut session = match kept {
                        Some(s) => s,
                        None => Session::connect(&cfg, &t)?,
                    };
                    let r = f(&mut session, input);
                    if let (Some(p), Ok(_)) = (&pool, &r) {
                        p.lock().expect("pool lock").insert(t, session);
                    }
                    r
                })
                .await;
                let result = joined.unwrap_or_else(|e| {
                    let message = match e.try_into_panic() {
                        Ok(p) => p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "panic".into()),
                        Err(e) => e.to_string(),
                    };
                    Err(SshError::Panicked { host: target.to_string(), message })
                });
                HostResult { target, result }
            }
        });
        let results = futures::future::join_all(jobs).await;
        assert_eq!(results.len(), count, "one result per target");
        results
    }
}
