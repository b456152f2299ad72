//! What `deploy` does on one host, over its SSH session: files, services, and the waits
//! that gate the next phase. Every wait is bounded and names what it waited for.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::render::{Paths, DB_ENGINE_USER, DB_NAME};
use super::{DeployError, HostPlanView};
use crate::config::{Config, RegionRole};
use crate::ssh::{shell_quote, Session};
use crate::template::Template;

const ETCD_WAIT_MS_MAX: u64 = 90_000;
/// A split brain or diverged timeline that lasts this long is reported, not waited out
/// (a replica's timeline lags its new leader's for a moment after every failover).
const DIVERGED_FOR_MS_MAX: u64 = 30_000;
const CLUSTER_WAIT_MS_MAX: u64 = 240_000;
const HEALTH_WAIT_MS_MAX: u64 = 180_000;
const POLL_MS: u64 = 500;

#[derive(Clone)]
pub struct Remote {
    project: String,
    etcd_client: u16,
    patroni_rest: u16,
    postgres: u16,
    gateway: super::render::GatewayCurl,
    module_ports: std::collections::BTreeMap<String, u16>,
}

/// What syncing files did on a host.
#[derive(Debug, Clone, Default)]
pub struct Changed {
    pub written: usize,
    pub unchanged: usize,
    /// Services whose files changed: restarted rather than just started.
    pub restart: Vec<String>,
}

impl Remote {
    pub fn new(cfg: &Config, tpl: &Template) -> Remote {
        Remote {
            project: cfg.project.clone(),
            etcd_client: tpl.ports.etcd_client,
            patroni_rest: tpl.ports.patroni_rest,
            postgres: tpl.ports.postgres,
            gateway: super::render::GatewayCurl::new(cfg, tpl.ports.gateway_http),
            module_ports: tpl.ports.modules.clone(),
        }
    }

    fn paths(&self) -> Paths {
        Paths::new(&self.project)
    }

    fn sudo(s: &Session) -> bool {
        s.user() != "root"
    }

    fn fail(&self, s: &mut Session, h: &HostPlanView, step: &str, message: String, log: Option<&str>) -> DeployError {
        let tail = match log {
            Some(svc) => {
                let cmd = format!("tail -n 20 /var/log/{}/{svc}.log 2>/dev/null", self.project);
                match s.exec(&cmd, Self::sudo(s)) {
                    Ok(o) if !o.stdout.trim().is_empty() => {
                        format!("\n  last lines of /var/log/{}/{svc}.log on {}:\n{}", self.project, h.name, indent(&o.stdout))
                    }
                    _ => String::new(),
                }
            }
            None => String::new(),
        };
        DeployError::Host { host: format!("{} ({}, {})", h.name, h.ssh_ip, h.region), step: step.to_string(), message, tail }
    }

    pub fn reachable(&self, s: &mut Session) -> Result<(), DeployError> {
        s.exec_ok("true", false)?;
        Ok(())
    }

    /// Installs what the host lacks (see `prereq`); returns the packages installed.
    pub fn prerequisites(&self, s: &mut Session, h: &HostPlanView) -> Result<Vec<String>, DeployError> {
        let req = super::prereq::required(h.database);
        // First boot's cloud-init (packages, runcmd) finishes before deploy touches the host:
        // its runcmd would otherwise redo, after deploy, what deploy set (modes of /etc/<project>).
        let boot = s.exec_bounded(&super::prereq::cloud_init_wait_command(), false, super::prereq::cloud_init_ssh_timeout_ms())?;
        if !boot.success() {
            return Err(self.fail(
                s,
                h,
                "first boot",
                format!(
                    "cloud-init is still running after {} s (see /var/log/cloud-init-output.log on the host)",
                    super::prereq::CLOUD_INIT_WAIT_S
                ),
                None,
            ));
        }
        let user = s.exec(&super::prereq::service_user_command(), Self::sudo(s))?;
        if !user.success() {
            return Err(self.fail(
                s,
                h,
                "service user",
                format!("cannot create the service user {}: {}", super::prereq::SERVICE_USER, user.stderr.trim()),
                None,
            ));
        }
        // Through sudo: root's PATH (runuser is in /usr/sbin, not on a login user's PATH).
        let out = s.exec(&super::prereq::check_command(&req), Self::sudo(s))?;
        let missing: Vec<&str> = out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let mut installed = Vec::new();
        // Packages first: their install refreshes apt's lists, which a fresh image lacks and
        // Patroni's venv (python3-venv) needs.
        if !missing.is_empty() {
            let pkgs = super::prereq::packages_for(&req, &missing);
            let r = s.exec_bounded(&super::prereq::install_command(&pkgs), Self::sudo(s), super::prereq::install_ssh_timeout_ms())?;
            if !r.success() {
                let tail: String = r.stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                return Err(self.fail(
                    s,
                    h,
                    "install prerequisites",
                    format!("missing {} and `apt-get install {}` failed: {tail}", missing.join(", "), pkgs.join(" ")),
                    None,
                ));
            }
            installed.extend(pkgs.into_iter().map(str::to_string));
        }
        if h.database {
            let have = s.exec(&format!("[ -x {} ]", super::prereq::PATRONI_BIN), false)?.success();
            if !have {
                let r = s.exec(&format!("sh -c {}", shell_quote(super::prereq::INSTALL_PATRONI_SH)), Self::sudo(s))?;
                if !r.success() {
                    return Err(self.fail(
                        s,
                        h,
                        "install Patroni",
                        format!("templates/db/install-patroni.sh failed: {}", r.stderr.trim()),
                        None,
                    ));
                }
                installed.push(format!("patroni=={}", super::prereq::PATRONI_VERSION));
            }
        }
        Ok(installed)
    }

    pub fn sync_files(&self, s: &mut Session, h: &HostPlanView) -> Result<Changed, DeployError> {
        let p = self.paths();
        let sudo = Self::sudo(s);
        let dirs = format!(
            // The service user may pass through secrets/ (not list it) to the files it owns.
            "mkdir -p {opt} {etc}/services {etc}/secrets {lib}/run /var/log/{proj} && chmod 0755 {etc} && chown root:{user} {etc}/secrets && chmod 0710 {etc}/secrets",
            user = super::prereq::SERVICE_USER,
            opt = p.opt_bin,
            etc = p.etc,
            lib = p.var_lib,
            proj = self.project
        );
        s.exec_ok(&dirs, sudo)?;
        let mut c = Changed::default();
        // One round trip learns what is in place (sha256 and mode of every file); only
        // files that differ go through `upload`, which checks again and renames atomically.
        let paths: Vec<String> = h.files.iter().map(|f| shell_quote(&f.path)).collect();
        let probe = format!("for f in {}; do [ -f \"$f\" ] && printf '%s %s ' \"$(stat -c '%a %U' \"$f\")\" \"$f\" && sha256sum \"$f\" | cut -d' ' -f1; done; true", paths.join(" "));
        let have: std::collections::BTreeMap<String, (String, String, String)> = s
            .exec(&probe, sudo)?
            .stdout
            .lines()
            .filter_map(|l| {
                let mut it = l.split(' ');
                let (mode, owner, path, sha) = (it.next()?, it.next()?, it.next()?, it.next()?);
                Some((path.to_string(), (mode.to_string(), owner.to_string(), sha.to_string())))
            })
            .collect();
        for f in h.files {
            let owner = f.owner.clone().unwrap_or_else(|| "root".into());
            let want = (format!("{:o}", f.mode), owner, f.sha256.clone());
            if have.get(&f.path) == Some(&want) {
                c.unchanged += 1;
                continue;
            }
            let up = s.upload_hashed(&f.content, &f.sha256, &f.path, f.mode as u32, sudo)?;
            if up.changed() {
                c.written += 1;
                c.restart.extend(f.restarts.iter().cloned());
            } else {
                c.unchanged += 1;
            }
            if let Some(owner) = &f.owner {
                s.exec_ok(&format!("chown {} {}", shell_quote(owner), shell_quote(&f.path)), sudo)?;
            }
        }
        c.restart.sort();
        c.restart.dedup();
        Ok(c)
    }

    /// Starts a service, or restarts it when its files changed in this run.
    pub fn start(
        &self,
        s: &mut Session,
        h: &HostPlanView,
        svc: &str,
        restart: &Arc<BTreeMap<String, Vec<String>>>,
    ) -> Result<(), DeployError> {
        let again = restart.get(&h.ssh_ip).is_some_and(|v| v.iter().any(|x| x == svc));
        let running = s.exec(&format!("{}/svc status {svc}", self.paths().opt_bin), Self::sudo(s))?.success();
        if again && running && svc == "patroni" {
            // Restarting Patroni on every DB host at once would stop the cluster: Patroni
            // re-reads its file on /reload and applies what it can without a restart.
            let out = s.exec(&format!("curl -s -XPOST --max-time 5 http://{}:{}/reload", h.private_ip, self.patroni_rest), false)?;
            if !out.success() {
                return Err(self.fail(s, h, "reload patroni", out.stderr.trim().to_string(), Some(svc)));
            }
            return Ok(());
        }
        let verb = if again { "restart" } else { "start" };
        let out = s.exec(&format!("{}/svc {verb} {svc}", self.paths().opt_bin), Self::sudo(s))?;
        if !out.success() {
            let msg = format!("`svc {verb} {svc}` exited {}: {}", out.exit_code, out.stderr.trim());
            return Err(self.fail(s, h, &format!("start {svc}"), msg, Some(svc)));
        }
        Ok(())
    }

    pub fn wait_etcd(&self, s: &mut Session, h: &HostPlanView) -> Result<(), DeployError> {
        let cmd =
            format!("ETCDCTL_API=3 etcdctl --command-timeout=2s --endpoints=http://{}:{} endpoint health", h.private_ip, self.etcd_client);
        self.wait(s, h, "etcd healthy", ETCD_WAIT_MS_MAX, "etcd", |s| Ok(s.exec(&cmd, false)?.success()))
    }

    /// Primary region: a leader and a quorum standby. DR: a running standby leader.
    pub fn wait_cluster(&self, s: &mut Session, h: &HostPlanView, members_min: usize) -> Result<(), DeployError> {
        let cmd = format!("curl -s --max-time 2 http://{}:{}/cluster", h.private_ip, self.patroni_rest);
        let want: &[&str] = match h.region_role {
            RegionRole::Primary => &["leader", super::render::QUORUM_STANDBY_ROLE],
            RegionRole::Dr => &["standby_leader"],
        };
        let what = format!("Patroni cluster with {} and all {members_min} members running", want.join(" and "));
        let mut diverged_since: Option<Instant> = None;
        self.wait(s, h, &what, CLUSTER_WAIT_MS_MAX, "patroni", |s| {
            let body: serde_json::Value = serde_json::from_str(&s.exec(&cmd, false)?.stdout).unwrap_or_default();
            // A diverged cluster is not waited out, and not repaired here: rewinding or
            // re-cloning a member can throw away acknowledged writes (issue 13).
            let bad: Vec<String> = super::live::cluster_alerts(&body).into_iter().filter(|a| a.is_divergence()).map(|a| a.text).collect();
            if bad.is_empty() {
                diverged_since = None;
            } else if diverged_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_millis(DIVERGED_FOR_MS_MAX) {
                let msg = format!(
                    "the database cluster of {} diverged ({}); deploy will not rewind, re-clone or restart any member, \
                     because that can discard acknowledged writes. Find the member with the newest acknowledged writes \
                     (compare the orders tables), make it the leader (`patronictl failover`), then re-clone the others \
                     (`patronictl reinit`); `provision status` shows the cluster",
                    h.region,
                    bad.join("; ")
                );
                return Err(self.fail(s, h, "database cluster", msg, Some("patroni")));
            }
            let members = body.get("members").and_then(|m| m.as_array()).cloned().unwrap_or_default();
            let running = |role: &str| {
                members.iter().any(|m| {
                    m.get("role").and_then(|r| r.as_str()) == Some(role)
                        && matches!(m.get("state").and_then(|x| x.as_str()), Some("running" | "streaming"))
                })
            };
            // Every member running, not just the roles: clients read from any of them.
            let all_running = members.len() == members_min
                && members.iter().all(|m| matches!(m.get("state").and_then(|x| x.as_str()), Some("running" | "streaming")));
            Ok(want.iter().all(|r| running(r)) && all_running)
        })
    }

    /// The engine's role and database, created on the primary's leader (idempotent).
    pub fn ensure_engine_role(&self, s: &mut Session, h: &HostPlanView) -> Result<(), DeployError> {
        let is_leader = s.exec(
            &format!("curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 http://{}:{}/primary", h.private_ip, self.patroni_rest),
            false,
        )?;
        if is_leader.stdout.trim() != "200" {
            return Ok(());
        }
        let p = self.paths();
        let sql = format!(
            "SELECT 'CREATE ROLE {u} LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{u}')\\gexec\n\
             ALTER ROLE {u} WITH LOGIN PASSWORD :'pw';\n\
             SELECT 'CREATE DATABASE {d} OWNER {u}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{d}')\\gexec\n",
            u = DB_ENGINE_USER,
            d = DB_NAME
        );
        let cmd = format!(
            "pw=$(cat {secret}) && printf '%s' {sql} | runuser -u postgres -- psql -h {lib}/pg -p {port} -d postgres -v ON_ERROR_STOP=1 -v pw=\"$pw\" -qAt",
            secret = p.secret("db_engine_password"),
            sql = shell_quote(&sql),
            lib = p.var_lib,
            port = self.postgres
        );
        let out = s.exec(&cmd, Self::sudo(s))?;
        if !out.success() {
            return Err(self.fail(s, h, "create the engine's database role", out.stderr.trim().to_string(), Some("patroni")));
        }
        Ok(())
    }

    /// Whether every engine node of the host is running now (before this run touches it).
    pub fn engines_running(&self, s: &mut Session, h: &HostPlanView) -> Result<bool, DeployError> {
        for m in &h.modules {
            if !s.exec(&format!("{}/svc status node-{m}", self.paths().opt_bin), Self::sudo(s))?.success() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Waits until each engine node of the host answers on its port.
    pub fn wait_nodes(&self, s: &mut Session, h: &HostPlanView) -> Result<(), DeployError> {
        for m in &h.modules {
            let port = self.module_ports.get(m).copied().unwrap_or_default();
            let cmd = format!("curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 http://{}:{port}/internal/ping", h.private_ip);
            self.wait(s, h, &format!("node-{m} answering"), HEALTH_WAIT_MS_MAX, &format!("node-{m}"), |s| {
                Ok(s.exec(&cmd, false)?.stdout.trim() == "200")
            })?;
        }
        Ok(())
    }

    pub fn wait_health(&self, s: &mut Session, h: &HostPlanView) -> Result<(), DeployError> {
        let cmd = format!("curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 {}", self.gateway.args(&h.private_ip, "/health"));
        self.wait(s, h, "gateway /health 200", HEALTH_WAIT_MS_MAX, "gateway", |s| Ok(s.exec(&cmd, false)?.stdout.trim() == "200"))
    }

    fn wait(
        &self,
        s: &mut Session,
        h: &HostPlanView,
        what: &str,
        wait_ms_max: u64,
        log: &str,
        mut ok: impl FnMut(&mut Session) -> Result<bool, DeployError>,
    ) -> Result<(), DeployError> {
        let deadline = Instant::now() + Duration::from_millis(wait_ms_max);
        let alive = format!("{}/svc status {log}", self.paths().opt_bin);
        loop {
            if ok(s)? {
                return Ok(());
            }
            if !s.exec(&alive, Self::sudo(s))?.success() {
                return Err(self.fail(s, h, &format!("wait for {what}"), format!("service {log} is not running"), Some(log)));
            }
            if Instant::now() > deadline {
                return Err(self.fail(s, h, &format!("wait for {what}"), format!("not reached after {} s", wait_ms_max / 1000), Some(log)));
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}
