//! `labhost run`: set up the bridges and chains, poll EC2, reconcile hosts, tear down on SIGTERM.

use crate::clean::{self, CleanError};
use crate::config::Config;
use crate::ec2::Ec2;
use crate::faults::FaultStore;
use crate::host::HostEnv;
use crate::model::{HostSpec, Instance};
use crate::names::{self, Names};
use crate::net::{self, NetError};
use crate::plan::{self, gateway, Skipped, Step};
use crate::status::{HostStatus, RegionStatus, SkippedStatus, StateDir, Status, StatusError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("an emulator (pid {0}) already runs with this state dir")]
    AlreadyRunning(i32),
    #[error(transparent)]
    Owner(#[from] crate::owner::OwnerError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Clean(#[from] CleanError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

const FAST_POLL_INTERVAL_MS: u64 = 200;
const FAST_POLL_WINDOW_MS: u64 = 10_000;

/// Result of one host's steps, run as its own task.
struct HostDone {
    id: String,
    steps: Vec<&'static str>,
    /// The spec reached on success (`None`: the host was destroyed).
    target: Option<HostSpec>,
    result: Result<(), crate::host::HostError>,
    elapsed_ms: u64,
}

pub struct RunOptions {
    pub config: Config,
    pub state_dir: PathBuf,
    pub names: Names,
    pub poll_interval_ms: u64,
    /// Hosts that boot from a fresh image (`--image`).
    pub image: Option<crate::image::Image>,
}

struct Daemon {
    config: Config,
    names: Names,
    state: StateDir,
    env: Arc<HostEnv>,
    ec2: Ec2,
    faults_store: FaultStore,
    current: BTreeMap<String, HostSpec>,
    keys: HashMap<(usize, String), Option<String>>,
    applied_generation: u64,
    seen_generation: u64,
    chains_partitions: Option<BTreeSet<(String, String)>>,
    latency_applied_ms: u32,
    inflight: JoinSet<HostDone>,
    busy: BTreeSet<String>,
    skipped: Vec<Skipped>,
    pruned_files: bool,
    latency_supported: bool,
    last_error: Option<String>,
    poll_interval_ms: u64,
    /// Last time hosts or faults changed (drives the fast poll rate).
    last_change: std::time::Instant,
}

pub async fn run(opts: RunOptions) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&opts.state_dir)?;
    let state = StateDir::new(&opts.state_dir);
    if let Some(pid) = state.live_pid() {
        return Err(DaemonError::AlreadyRunning(pid));
    }
    let _prefix_lock = crate::owner::acquire(&opts.names)?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let _ = std::fs::remove_file(state.status_file());
    std::fs::write(state.pid_file(), format!("{}\n", std::process::id()))?;
    let state_root = state.root.clone();
    let result = async {
        let mut d = Daemon::start(opts, state).await?;
        loop {
            let started = tokio::time::Instant::now();
            tokio::select! {
                _ = d.tick() => {}
                _ = sigterm.recv() => break,
                _ = sigint.recv() => break,
            }
            let pause = tokio::time::sleep_until(started + Duration::from_millis(d.next_poll_ms()));
            tokio::select! {
                _ = pause => {}
                _ = sigterm.recv() => break,
                _ = sigint.recv() => break,
            }
        }
        tracing::info!("signal received: tearing down");
        d.teardown().await
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(StateDir::new(&state_root).pid_file());
    }
    result
}

/// The region of a host about to be created from the image (its UserData is then needed).
fn first_boot_region(env: &HostEnv, steps: &[Step]) -> Option<usize> {
    steps.iter().find_map(|s| match s {
        Step::Create(spec) if env.image_for(spec.region_index).is_some() => Some(spec.region_index),
        _ => None,
    })
}

impl Daemon {
    /// Every `poll_interval_ms`, or every `FAST_POLL_INTERVAL_MS` while hosts are changing:
    /// LocalStack pays for each DescribeInstances, so an idle emulator polls at the slower rate.
    fn next_poll_ms(&self) -> u64 {
        let recent = self.last_change.elapsed() < Duration::from_millis(FAST_POLL_WINDOW_MS);
        if recent {
            self.poll_interval_ms.min(FAST_POLL_INTERVAL_MS)
        } else {
            self.poll_interval_ms
        }
    }

    async fn start(opts: RunOptions, state: StateDir) -> Result<Self, DaemonError> {
        let poll_interval_ms = opts.poll_interval_ms;
        let names = opts.names;
        let config = opts.config;
        let leftovers = clean::clean(&names).await?;
        if !leftovers.removed.is_empty() {
            tracing::warn!(removed = ?leftovers.removed, "removed leftovers of an earlier run");
        }
        let setup = async {
            net::check_no_overlap(&config.regions, &net::machine_addresses().await?)?;
            for d in config.private_dirs() {
                std::fs::create_dir_all(&d)?;
            }
            std::fs::create_dir_all(state.hosts_dir())?;
            net::create_bridges(&names, &config.regions).await?;
            net::enable_ip_forward(&names)?;
            Ok::<_, DaemonError>(())
        };
        if let Err(e) = setup.await {
            let _ = clean::clean(&names).await;
            return Err(e);
        }
        let latency_supported = net::netem_supported(&names.bridge(0)).await;
        let env = HostEnv {
            names: names.clone(),
            regions: config.regions.clone(),
            hosts_dir: state.hosts_dir(),
            private_dirs: config.private_dirs(),
            boot_hook: config.boot_hook_path(),
            boot_log: config.boot_log_path(),
            image: opts.image,
        };
        let ec2 = Ec2::new(&config.endpoint_url, &config.regions).await;
        let faults_store = FaultStore::new(&state.root);
        // A fresh run starts without faults (the kernel rules of an earlier run are gone).
        match faults_store.update(|f| f.heal_all()) {
            Ok((_, true)) => {
                let _ = faults_store.log("run start: faults of an earlier run cleared");
                tracing::warn!("faults of an earlier run cleared");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot reset faults"),
        }
        tracing::info!(
            prefix = names.prefix(),
            regions = ?config.regions.iter().map(|r| format!("{}={}", r.name, r.vpc_cidr)).collect::<Vec<_>>(),
            endpoint = %config.endpoint_url,
            latency_supported,
            "lab hosts ready"
        );
        let d = Daemon {
            config,
            names,
            state,
            env: Arc::new(env),
            ec2,
            faults_store,
            current: BTreeMap::new(),
            keys: HashMap::new(),
            applied_generation: 0,
            seen_generation: 0,
            chains_partitions: None,
            latency_applied_ms: 0,
            inflight: JoinSet::new(),
            busy: BTreeSet::new(),
            skipped: Vec::new(),
            pruned_files: false,
            latency_supported,
            last_error: None,
            poll_interval_ms,
            last_change: std::time::Instant::now(),
        };
        d.write_status("running");
        Ok(d)
    }

    /// Applies finished host tasks to `current`; a failed host is reset so the next poll
    /// recreates it from scratch.
    async fn collect_finished(&mut self) -> Option<String> {
        let mut error = None;
        while let Some(joined) = self.inflight.try_join_next() {
            let Ok(done) = joined else { continue }; // aborted only at teardown
            self.busy.remove(&done.id);
            match done.result {
                Ok(()) => {
                    tracing::info!(id = %done.id, steps = ?done.steps, ms = done.elapsed_ms, "host updated");
                    match done.target {
                        Some(spec) => self.current.insert(done.id.clone(), spec),
                        None => self.current.remove(&done.id),
                    };
                }
                Err(e) => {
                    tracing::error!(id = %done.id, error = %e, "host update failed; resetting its namespace");
                    error = Some(format!("{}: {e}", done.id));
                    self.reset_kernel_state(&done.id).await;
                }
            }
        }
        error
    }

    /// One poll: list instances, compute desired hosts, start a task for every host that must
    /// change and is not already being changed. Listing never waits for host work.
    async fn tick(&mut self) {
        let mut error = self.collect_finished().await;
        let faults = match self.faults_store.load() {
            Ok(f) => f,
            Err(e) => {
                self.note_error(e.to_string());
                return;
            }
        };
        if faults.generation != self.seen_generation {
            tracing::info!(
                generation = faults.generation,
                powered_off = ?faults.powered_off,
                blackout = ?faults.blackout,
                partitions = ?faults.partitions,
                isolated = ?faults.isolated,
                latency_ms = faults.latency_ms,
                "faults changed"
            );
            self.seen_generation = faults.generation;
        }
        let list_start = std::time::Instant::now();
        let listings = futures::future::join_all((0..self.config.regions.len()).map(|i| self.ec2.instances(i))).await;
        let mut listed = BTreeSet::new();
        let mut instances: Vec<Instance> = Vec::new();
        for (i, l) in listings.into_iter().enumerate() {
            match l {
                Ok(mut v) => {
                    listed.insert(i);
                    instances.append(&mut v);
                }
                Err(e) => error = Some(e.to_string()),
            }
        }
        self.refresh_keys(&instances).await;
        let (desired, skipped) = plan::desired_hosts(&self.config.regions, &instances, &faults, &self.keys);
        for s in &skipped {
            if !self.skipped.contains(s) {
                tracing::debug!(id = %s.id, reason = %s.reason, "instance not emulated");
            }
        }
        self.skipped = skipped;
        let mut net_ok = true;
        if self.chains_partitions.as_ref() != Some(&faults.partitions) {
            match net::apply_chains(&self.names, &self.config.regions, &faults.partitions).await {
                Ok(()) => self.chains_partitions = Some(faults.partitions.clone()),
                Err(e) => {
                    net_ok = false;
                    error = Some(e.to_string());
                }
            }
        }
        if self.latency_supported && faults.latency_ms != self.latency_applied_ms {
            match net::apply_latency(&self.names, &self.config.regions, faults.latency_ms).await {
                Ok(()) => self.latency_applied_ms = faults.latency_ms,
                Err(e) => {
                    net_ok = false;
                    error = Some(e.to_string());
                }
            }
        }
        let plans = plan::reconcile(&desired, &self.current, &listed);
        let converged = plans.is_empty() && self.busy.is_empty();
        if !converged || faults.generation != self.applied_generation {
            self.last_change = std::time::Instant::now();
        }
        let by_id: HashMap<&str, &HostSpec> = desired.iter().map(|h| (h.id.as_str(), h)).collect();
        for p in plans {
            if !self.current.contains_key(&p.id) && !self.busy.contains(&p.id) {
                tracing::debug!(id = %p.id, list_ms = list_start.elapsed().as_millis() as u64, "new instance seen");
            }
            if !self.busy.insert(p.id.clone()) {
                continue; // its previous change is still running; re-planned next poll
            }
            let env = Arc::clone(&self.env);
            let ec2 = self.ec2.clone();
            let target = by_id.get(p.id.as_str()).map(|h| (*h).clone());
            self.inflight.spawn(async move {
                let start = std::time::Instant::now();
                let result = async {
                    let user_data = match first_boot_region(&env, &p.steps) {
                        Some(i) => Some(ec2.user_data(i, &p.id).await.map_err(|e| crate::host::HostError::Seed(e.to_string()))?),
                        None => None,
                    };
                    env.run_steps(&p.id, &p.steps, user_data.as_deref()).await
                }
                .await;
                HostDone { id: p.id, steps: step_names(&p.steps), target, result, elapsed_ms: start.elapsed().as_millis() as u64 }
            });
        }
        if converged && net_ok && listed.len() == self.config.regions.len() {
            self.applied_generation = faults.generation;
            if !self.pruned_files {
                self.prune_files(&desired);
                self.pruned_files = true;
            }
        }
        if let Some(e) = error {
            self.note_error(e);
        } else {
            self.last_error = None;
        }
        self.write_status("running");
    }

    /// Fetches the public key for every key pair named by an instance not yet hosted, or
    /// hosted without its key yet.
    async fn refresh_keys(&mut self, instances: &[Instance]) {
        let mut wanted = BTreeSet::new();
        for inst in instances {
            if let Some(k) = &inst.key_name {
                let hosted = self.current.contains_key(&inst.id) || self.busy.contains(&inst.id);
                // A key pair EC2 did not show yet (a young one answers NotFound) is asked again
                // on every poll: cached as missing, the host would refuse its key forever.
                let known = hosted && matches!(self.keys.get(&(inst.region_index, k.clone())), Some(Some(_)));
                if !known {
                    wanted.insert((inst.region_index, k.clone()));
                }
            }
        }
        let ec2 = &self.ec2;
        let fetched = futures::future::join_all(wanted.into_iter().map(|(i, k)| async move {
            let r = ec2.public_key(i, &k).await;
            ((i, k), r)
        }))
        .await;
        for (key, r) in fetched {
            match r {
                Ok(pk) => {
                    self.keys.insert(key, pk);
                }
                Err(e) => tracing::warn!(error = %e, "key pair lookup failed"),
            }
        }
    }

    /// After a failed step: kill the host's processes and drop its namespace, keeping its
    /// files, so the next poll recreates it from scratch.
    async fn reset_kernel_state(&mut self, id: &str) {
        let ns = self.names.netns(id);
        let _ = crate::host::kill_netns_processes(&ns).await;
        let _ = crate::cmd::run("ip", &["netns", "del", &ns]).await;
        let _ = crate::cmd::run("ip", &["link", "del", &self.names.veth(id)]).await;
        self.current.remove(id);
    }

    /// Removes host directories left by an earlier run for instances that no longer exist.
    fn prune_files(&self, desired: &[HostSpec]) {
        let keep: BTreeSet<&str> = desired.iter().map(|h| h.id.as_str()).collect();
        let Ok(entries) = std::fs::read_dir(self.state.hosts_dir()) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if names::is_instance_id(&name) && !keep.contains(name.as_str()) {
                tracing::info!(id = %name, "removing files of a gone instance");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    fn note_error(&mut self, e: String) {
        if self.last_error.as_deref() != Some(e.as_str()) {
            tracing::warn!(error = %e, "poll incomplete");
        }
        self.last_error = Some(e);
    }

    fn write_status(&self, state: &str) {
        let regions = self
            .config
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| RegionStatus {
                name: r.name.clone(),
                vpc_cidr: r.vpc_cidr.to_string(),
                bridge: self.names.bridge(i),
                gateway: gateway(&r.vpc_cidr).to_string(),
            })
            .collect();
        let hosts = self
            .current
            .values()
            .map(|h| HostStatus {
                id: h.id.clone(),
                region: self.config.regions[h.region_index].name.clone(),
                ip: h.ip.to_string(),
                hostname: h.hostname.clone(),
                netns: self.names.netns(&h.id),
                powered: h.powered,
                isolated: h.isolated,
                has_key: h.authorized_key.is_some(),
            })
            .collect();
        let status = Status {
            pid: std::process::id(),
            prefix: self.names.prefix().to_string(),
            state: state.to_string(),
            applied_generation: self.applied_generation,
            latency_supported: self.latency_supported,
            regions,
            hosts,
            skipped: self.skipped.iter().map(|s| SkippedStatus { id: s.id.clone(), reason: s.reason.clone() }).collect(),
            last_error: self.last_error.clone(),
        };
        if let Err(e) = self.state.write_status(&status) {
            tracing::warn!(error = %e, "cannot write status");
        }
    }

    /// Kills every host, removes every namespace, veth, bridge and chain, restores ip_forward.
    async fn teardown(mut self) -> Result<(), DaemonError> {
        self.write_status("stopping");
        self.inflight.shutdown().await;
        let report = clean::clean(&self.names).await?;
        tracing::info!(removed = report.removed.len(), processes_killed = report.processes_killed, "torn down");
        self.current.clear();
        self.write_status("stopped");
        let _ = std::fs::remove_file(self.state.pid_file());
        Ok(())
    }
}

fn step_names(steps: &[Step]) -> Vec<&'static str> {
    steps
        .iter()
        .map(|s| match s {
            Step::Create(_) => "create",
            Step::PowerOn(_) => "power-on",
            Step::PowerOff => "power-off",
            Step::SetIsolated(true) => "isolate",
            Step::SetIsolated(false) => "unisolate",
            Step::WriteKey(_) => "write-key",
            Step::Destroy => "destroy",
        })
        .collect()
}
