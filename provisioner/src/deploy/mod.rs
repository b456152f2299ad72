//! From running instances to a live exchange, over SSH, in order: hosts reachable -> files
//! -> DB in the primary region -> DB standby cluster in the DR region -> engines -> gateways
//! -> `/health` green. Stops at the first host that fails, naming host, step and log tail.

pub mod embedded;
pub mod inventory;
pub mod live;
pub mod prereq;
pub mod remote;
pub mod render;
pub mod secrets;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use self::inventory::{Host, Inventory};
use self::remote::Remote;
use self::render::{Ctx, FileSpec};
use crate::config::Config;
use crate::progress::Progress;
use crate::ssh::{Fleet, SshConfig, SshError};
use crate::template::Template;

pub const SSH_CONCURRENCY_DEFAULT: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{host}: {step} failed: {message}{tail}")]
    Host { host: String, step: String, message: String, tail: String },
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error(transparent)]
    Missing(#[from] inventory::MissingHost),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
}

#[derive(Debug, Default, Serialize)]
pub struct DeployReport {
    pub phases: Vec<Phase>,
    pub files_written: usize,
    pub files_unchanged: usize,
    /// `host:service` whose files changed in this run (restarted, or reloaded for Patroni).
    pub services_changed: Vec<String>,
    pub duration_ms: u128,
    /// E.g. a region whose vault could not be updated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Phase {
    pub name: String,
    pub hosts: usize,
    pub duration_ms: u128,
}

/// What one host should have, and what changed there in this run.
struct HostPlan {
    host: Host,
    files: Vec<FileSpec>,
}

pub struct Deployer {
    fleet: Fleet,
    inv: Inventory,
    plans: Arc<BTreeMap<String, HostPlan>>,
    remote: Remote,
    report: DeployReport,
    progress: Progress,
}

impl Deployer {
    pub fn new(cfg: &Config, tpl: &Template, inv: Inventory, quiet: bool) -> Result<Deployer, DeployError> {
        let secrets = secrets::ensure(cfg)?;
        let ctx = Ctx { cfg, tpl, inv: &inv, secrets: &secrets, dr_mode: engine_config::RegionMode::Standby };
        let base = render::base_files(&ctx)?;
        let mut plans = BTreeMap::new();
        for h in &inv.hosts {
            let mut files = base.clone();
            if h.database {
                files.extend(render::db_files(&ctx, h)?);
            }
            files.extend(render::app_files(&ctx, h, embedded::ENGINE_NODE, embedded::ENGINE_GATEWAY)?);
            plans.insert(h.ssh_ip.clone(), HostPlan { host: h.clone(), files });
        }
        let user = inv.hosts.first().map(|h| h.ssh_user.clone()).unwrap_or_else(|| "root".into());
        let ssh = SshConfig::new(user, crate::keys::private_key_path(cfg), crate::keys::key_dir(cfg).join("known_hosts"));
        Ok(Deployer {
            fleet: Fleet::new(ssh, SSH_CONCURRENCY_DEFAULT).keep_sessions(),
            remote: Remote::new(cfg, tpl),
            inv,
            plans: Arc::new(plans),
            report: DeployReport::default(),
            progress: Progress::new("deploy", quiet),
        })
    }

    pub async fn run(mut self, cfg: &Config) -> Result<DeployReport, DeployError> {
        let t0 = Instant::now();
        let all: Vec<Host> = self.inv.hosts.clone();
        if cfg.endpoint_url.is_some() {
            for h in &all {
                local_route_guard(h)?;
            }
        }
        self.phase("hosts reachable", &all, |r, s, _h| r.reachable(s)).await?;
        self.phase("prerequisites", &all, |r, s, h| r.prerequisites(s, h)).await?;
        let changed = self.phase("files", &all, |r, s, h| r.sync_files(s, h)).await?;
        let mut restart: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (ip, c) in &changed {
            self.report.files_written += c.written;
            self.report.files_unchanged += c.unchanged;
            restart.insert(ip.clone(), c.restart.clone());
        }
        let restart = Arc::new(restart);

        for region in [cfg.active().name.clone(), cfg.passive().name.clone()] {
            let db: Vec<Host> = self.inv.db(&region).into_iter().cloned().collect();
            let rs = restart.clone();
            self.phase(&format!("etcd in {region}"), &db, move |r, s, h| r.start(s, h, "etcd", &rs)).await?;
            self.phase(&format!("etcd quorum in {region}"), &db, |r, s, h| r.wait_etcd(s, h)).await?;
            let rs = restart.clone();
            self.phase(&format!("patroni in {region}"), &db, move |r, s, h| r.start(s, h, "patroni", &rs)).await?;
            let rs = restart.clone();
            self.phase(&format!("pg-fence in {region}"), &db, move |r, s, h| r.start(s, h, "pg-fence", &rs)).await?;
            let members = db.len();
            self.phase(&format!("database cluster in {region}"), &db[..1], move |r, s, h| r.wait_cluster(s, h, members)).await?;
            if region == cfg.active().name {
                self.phase("engine database role", &db, |r, s, h| r.ensure_engine_role(s, h)).await?;
            }
        }
        let apps: Vec<Host> = all.iter().filter(|h| !h.modules.is_empty()).cloned().collect();
        let rs = restart.clone();
        // Hosts whose engine files changed restart one at a time, each waiting until its nodes
        // answer again: never more than one node of a module down. The rest start in parallel.
        let changed_nodes = |h: &Host| restart.get(&h.ssh_ip).is_some_and(|v| v.iter().any(|s| s.starts_with("node-")));
        let running_before = self.phase("engines running?", &apps, |r, s, h| r.engines_running(s, h)).await?;
        let (rolling, fresh): (Vec<Host>, Vec<Host>) =
            apps.iter().cloned().partition(|h| changed_nodes(h) && running_before.get(&h.ssh_ip).copied().unwrap_or(false));
        let start_nodes = move |r: &Remote, s: &mut crate::ssh::Session, h: &HostPlanView| {
            for m in &h.modules {
                r.start(s, h, &format!("node-{m}"), &rs)?;
            }
            r.wait_nodes(s, h)
        };
        let start_nodes = Arc::new(start_nodes);
        let f = start_nodes.clone();
        self.phase("engines", &fresh, move |r, s, h| f(r, s, h)).await?;
        for h in rolling {
            let f = start_nodes.clone();
            self.phase(&format!("engines: roll {} ({})", h.name, h.region), std::slice::from_ref(&h), move |r, s, h| f(r, s, h)).await?;
        }
        let gws: Vec<Host> = all.iter().filter(|h| h.gateway).cloned().collect();
        let rs = restart.clone();
        self.phase("gateways", &gws, move |r, s, h| r.start(s, h, "gateway", &rs)).await?;
        let primary_gw: Vec<Host> = self.inv.gateways(&cfg.active().name).into_iter().cloned().collect();
        self.phase("primary /health green", &primary_gw, |r, s, h| r.wait_health(s, h)).await?;
        for (ip, services) in restart.iter() {
            for s in services {
                self.report.services_changed.push(format!("{ip}:{s}"));
            }
        }
        self.report.duration_ms = t0.elapsed().as_millis();
        Ok(self.report)
    }

    /// Runs `f` on each of `hosts` (in parallel, bounded) and stops at the first failure.
    async fn phase<T, F>(&mut self, name: &str, hosts: &[Host], f: F) -> Result<BTreeMap<String, T>, DeployError>
    where
        T: Send + 'static,
        F: Fn(&Remote, &mut crate::ssh::Session, &HostPlanView) -> Result<T, DeployError> + Send + Sync + 'static,
    {
        let t0 = Instant::now();
        self.progress.note(&format!("deploy: {name} ({} host(s))", hosts.len()));
        let targets: Vec<crate::ssh::Target> = hosts.iter().map(|h| h.ssh_target()).collect();
        let plans = self.plans.clone();
        let remote = self.remote.clone();
        // The outer Result is the connection; the inner one is this phase's work on the host.
        let results = self
            .fleet
            .run(&targets, move |s| {
                let plan = &plans[s.host()];
                Ok(f(&remote, s, &HostPlanView { host: &plan.host, files: &plan.files }))
            })
            .await;
        let mut out = BTreeMap::new();
        for r in results {
            out.insert(r.target.host.clone(), r.result??);
        }
        self.report.phases.push(Phase { name: name.to_string(), hosts: hosts.len(), duration_ms: t0.elapsed().as_millis() });
        Ok(out)
    }
}

/// A host and its files, as seen by one phase's work on that host.
pub struct HostPlanView<'a> {
    pub host: &'a Host,
    pub files: &'a [FileSpec],
}

impl std::ops::Deref for HostPlanView<'_> {
    type Target = Host;
    fn deref(&self) -> &Host {
        self.host
    }
}

/// On a local cloud, instance addresses exist only as lab hosts on this machine. If the lab
/// is not running, the kernel would send packets for them out of the machine's default
/// route: refuse instead of connecting anywhere.
pub(crate) fn local_route_guard(h: &Host) -> Result<(), DeployError> {
    // Through a bastion, only the bastion is connected to from here.
    let first_hop = h.bastion.as_ref().map_or(h.ssh_ip.as_str(), |b| b.host.as_str());
    lab_route(first_hop).map_err(|message| DeployError::Host {
        host: format!("{} ({}, {})", h.name, h.ssh_ip, h.region),
        step: "route check".into(),
        message,
        tail: String::new(),
    })
}

/// The route check for one address: Ok when `ip` is reached on this machine (a lab bridge).
pub(crate) fn lab_route(ip: &str) -> Result<(), String> {
    let out = std::process::Command::new("ip").args(["route", "get", ip]).output();
    let route = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    if route.is_empty() || route.contains(" via ") {
        return Err(format!(
            "no lab host answers for {ip} on this machine (route: {:?}); start the lab hosts first: localstack/labhost.sh start",
            route.trim()
        ));
    }
    Ok(())
}
