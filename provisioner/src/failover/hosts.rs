//! What a failover does on the hosts, over SSH: Patroni's state and dynamic config, WAL
//! positions, the engines' region mode and the gateways' health. Every wait is bounded.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config::Config;
use crate::deploy::inventory::Host;
use crate::deploy::render::{GatewayCurl, Paths, DB_NAME};
use crate::ssh::{shell_quote, sudo_wrap, Fleet, Session, SshConfig, SshError, Target};
use crate::template::Template;

const POLL_MS: u64 = 250;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("{region}: {what} not reached within {waited_ms} ms (last seen: {last})")]
    Timeout { region: String, what: String, waited_ms: u64, last: String },
    #[error("{region}: no host answered ({detail})")]
    NoHost { region: String, detail: String },
    #[error("{host}: {what}: {detail}")]
    Refused { host: String, what: String, detail: String },
}

/// A WAL position, compared as a number (`pg_lsn` text is `HI/LO` in hex).
pub fn lsn_bytes(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// One region's hosts and how to act on them.
#[derive(Clone)]
pub struct RegionHosts {
    pub region: String,
    pub db: Vec<Host>,
    pub gateways: Vec<Host>,
    fleet: Fleet,
    paths: Paths,
    patroni_port: u16,
    pg_port: u16,
    /// How a gateway's public `/health` is asked for over HTTPS, on its host.
    gateway_curl: GatewayCurl,
    /// The gateways' admin listener (on their private address).
    gw_admin_port: u16,
}

/// Patroni's view of a cluster: its members with role, state and lag.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClusterView {
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Member {
    pub name: String,
    pub host: String,
    pub role: String,
    pub state: String,
}

impl ClusterView {
    fn parse(body: &str) -> Option<ClusterView> {
        let v: Value = serde_json::from_str(body).ok()?;
        let members = v.get("members")?.as_array()?.iter().map(|m| Member {
            name: m["name"].as_str().unwrap_or_default().into(),
            host: m["host"].as_str().unwrap_or_default().into(),
            role: m["role"].as_str().unwrap_or_default().into(),
            state: m["state"].as_str().unwrap_or_default().into(),
        });
        Some(ClusterView { members: members.collect() })
    }
    pub fn with_role(&self, role: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.role == role && matches!(m.state.as_str(), "running" | "streaming"))
    }
    pub fn summary(&self) -> String {
        self.members.iter().map(|m| format!("{}={}/{}", m.name, m.role, m.state)).collect::<Vec<_>>().join(" ")
    }
}

pub fn fleet(cfg: &Config, user: &str, attempts_max: u32) -> Fleet {
    let ssh = SshConfig {
        attempts_max,
        connect_timeout_ms: 3_000,
        command_timeout_ms: 120_000,
        ..SshConfig::new(user, crate::keys::private_key_path(cfg), crate::keys::key_dir(cfg).join("known_hosts"))
    };
    Fleet::new(ssh, 16)
}

impl RegionHosts {
    pub fn new(cfg: &Config, tpl: &Template, region: &str, hosts: &[Host], fleet: Fleet) -> RegionHosts {
        RegionHosts {
            region: region.to_string(),
            db: hosts.iter().filter(|h| h.region == region && h.database).cloned().collect(),
            gateways: hosts.iter().filter(|h| h.region == region && h.gateway).cloned().collect(),
            fleet,
            paths: Paths::new(&cfg.project),
            patroni_port: tpl.ports.patroni_rest,
            pg_port: tpl.ports.postgres,
            gateway_curl: GatewayCurl::new(cfg, tpl.ports.gateway_http),
            gw_admin_port: tpl.ports.gateway_admin,
        }
    }

    pub fn pg_port(&self) -> u16 {
        self.pg_port
    }

    /// Runs `f` on the first of `hosts` that answers; errors name the region.
    async fn on_any<T: Send + 'static>(
        &self,
        hosts: &[Host],
        f: impl Fn(&mut Session, &Host) -> Result<T, HostError> + Send + Sync + Clone + 'static,
    ) -> Result<T, HostError> {
        let mut last = String::from("no hosts");
        for h in hosts {
            let (f, host) = (f.clone(), h.clone());
            let mut r = self.fleet.run(&[h.ssh_target()], move |s| Ok(f(s, &host))).await;
            match r.pop().map(|x| x.result) {
                Some(Ok(Ok(v))) => return Ok(v),
                Some(Ok(Err(e))) => last = e.to_string(),
                Some(Err(e)) => last = e.to_string(),
                None => {}
            }
        }
        Err(HostError::NoHost { region: self.region.clone(), detail: last })
    }

    /// Patroni's `/cluster`, read from the first DB host that answers.
    pub async fn cluster(&self) -> Result<ClusterView, HostError> {
        let port = self.patroni_port;
        self.on_any(&self.db, move |s, h| {
            let out = s.exec(&format!("curl -s --max-time 2 http://{}:{port}/cluster", h.private_ip), false)?;
            ClusterView::parse(&out.stdout).ok_or_else(|| HostError::Refused {
                host: h.name.clone(),
                what: "read Patroni /cluster".into(),
                detail: out.stdout.chars().take(200).collect(),
            })
        })
        .await
    }

    /// Changes the cluster's dynamic configuration (kept in this region's etcd).
    pub async fn patch_config(&self, patch: Value) -> Result<(), HostError> {
        let port = self.patroni_port;
        let body = patch.to_string();
        self.on_any(&self.db, move |s, h| {
            let cmd = format!(
                "curl -s --max-time 5 -o /dev/null -w '%{{http_code}}' -X PATCH -H 'Content-Type: application/json' -d {} http://{}:{port}/config",
                shell_quote(&body),
                h.private_ip
            );
            let code = s.exec(&cmd, false)?.stdout;
            if code.trim() == "200" {
                Ok(())
            } else {
                Err(HostError::Refused { host: h.name.clone(), what: "PATCH Patroni /config".into(), detail: format!("HTTP {}", code.trim()) })
            }
        })
        .await
    }

    /// Runs one SQL query on the member called `member` (through its local socket, as
    /// postgres) and returns its single-line answer.
    pub async fn sql_on(&self, member: &str, sql: &str) -> Result<String, HostError> {
        let hosts: Vec<Host> = self.db.iter().filter(|h| h.patroni_member() == member).cloned().collect();
        let cmd = self.paths.psql(self.pg_port, DB_NAME, sql);
        self.on_any(&hosts, move |s, h| {
            let out = s.exec(&sudo_wrap(s.user(), &cmd), false)?;
            if out.success() {
                Ok(out.stdout.trim().to_string())
            } else {
                Err(HostError::Refused { host: h.name.clone(), what: "SQL".into(), detail: out.stderr.trim().chars().take(300).collect() })
            }
        })
        .await
    }

    /// The leading member: `leader` in a normal cluster, `standby_leader` in a standby one.
    pub async fn leader(&self) -> Result<Member, HostError> {
        let c = self.cluster().await?;
        c.with_role("leader")
            .or_else(|| c.with_role("standby_leader"))
            .cloned()
            .ok_or_else(|| HostError::NoHost { region: self.region.clone(), detail: format!("no running leader: {}", c.summary()) })
    }

    /// The leader's WAL position: written (primary) or replayed (standby).
    pub async fn leader_lsn(&self) -> Result<(Member, u64, String), HostError> {
        let m = self.leader().await?;
        let text = self
            .sql_on(&m.name, "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END")
            .await?;
        let n = lsn_bytes(&text).ok_or_else(|| HostError::Refused {
            host: m.name.clone(),
            what: "read WAL position".into(),
            detail: text.clone(),
        })?;
        Ok((m, n, text))
    }

    /// Waits until the region's leader runs as a standby (in recovery) and returns its
    /// replayed WAL position: a demoted primary restarts once or twice on the way.
    pub async fn settled_standby_lsn(&self, wait_ms_max: u64) -> Result<(u64, String), HostError> {
        let t0 = Instant::now();
        loop {
            let last = match self.cluster().await.map(|c| c.with_role("standby_leader").cloned().ok_or(c.summary())) {
                Ok(Ok(m)) => match self.sql_on(&m.name, "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()").await {
                    Ok(row) => match row.split_once('|') {
                        Some(("t", lsn)) if lsn_bytes(lsn).is_some() => return Ok((lsn_bytes(lsn).unwrap_or(0), lsn.to_string())),
                        _ => row,
                    },
                    Err(e) => e.to_string(),
                },
                Ok(Err(summary)) => summary,
                Err(e) => e.to_string(),
            };
            if t0.elapsed() > Duration::from_millis(wait_ms_max) {
                return Err(HostError::Timeout {
                    region: self.region.clone(),
                    what: "a running standby leader in recovery".into(),
                    waited_ms: wait_ms_max,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Waits until Patroni shows `roles` all running, polling `/cluster`.
    pub async fn wait_roles(&self, roles: &[&str], wait_ms_max: u64) -> Result<ClusterView, HostError> {
        let t0 = Instant::now();
        loop {
            let last = match self.cluster().await {
                Ok(c) if roles.iter().all(|r| c.with_role(r).is_some()) => return Ok(c),
                Ok(c) => c.summary(),
                Err(e) => e.to_string(),
            };
            if t0.elapsed() > Duration::from_millis(wait_ms_max) {
                return Err(HostError::Timeout {
                    region: self.region.clone(),
                    what: format!("Patroni roles {}", roles.join(" + ")),
                    waited_ms: wait_ms_max,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Switches every engine node of the region through each gateway's `/admin/mode` (its
    /// admin listener, on the private address). The admin token is read from the host's
    /// secret file there, never sent from here.
    pub async fn set_mode(&self, mode: &str) -> Result<(), HostError> {
        let body = json!({ "mode": mode }).to_string();
        let secret = self.paths.secret("admin_token");
        let port = self.gw_admin_port;
        let mut ok = 0;
        let mut last = String::from("no gateway");
        for g in &self.gateways {
            let cmd = format!(
                "curl -s --max-time 5 -o /dev/null -w '%{{http_code}}' -X POST -H \"X-Admin-Token: $(cat {secret})\" -H 'Content-Type: application/json' -d {} http://{}:{port}/admin/mode",
                shell_quote(&body),
                g.private_ip
            );
            let r = self.on_any(std::slice::from_ref(g), move |s, _| Ok(s.exec(&sudo_wrap(s.user(), &cmd), false)?.stdout)).await;
            match r {
                Ok(code) if code.trim() == "200" => ok += 1,
                Ok(code) => last = format!("{}: HTTP {}", g.name, code.trim()),
                Err(e) => last = e.to_string(),
            }
        }
        if ok == 0 {
            return Err(HostError::NoHost { region: self.region.clone(), detail: format!("no gateway took mode {mode}: {last}") });
        }
        Ok(())
    }

    /// POSTs `body` (JSON) to `path` of a gateway's admin listener, from that gateway host
    /// (the admin listener answers on the private address only; the admin token is read
    /// from the host's secret file there): the answer's body when it is 200.
    pub async fn admin_post(&self, path: &str, body: &str) -> Result<String, HostError> {
        let (secret, port) = (self.paths.secret("admin_token"), self.gw_admin_port);
        let (path, body) = (path.to_string(), shell_quote(body));
        self.on_any(&self.gateways, move |s, g| {
            let cmd = format!(
                "curl -s --max-time 10 -w '\\n%{{http_code}}' -X POST -H \"X-Admin-Token: $(cat {secret})\" -H 'Content-Type: application/json' -d {body} http://{}:{port}{path}",
                g.private_ip
            );
            let out = s.exec(&sudo_wrap(s.user(), &cmd), false)?.stdout;
            match out.trim_end().rsplit_once('\n') {
                Some((answer, "200")) => Ok(answer.to_string()),
                other => {
                    let code = other.map(|(_, c)| c).unwrap_or("none");
                    Err(HostError::Refused { host: g.name.clone(), what: format!("POST {path}"), detail: format!("HTTP {code}") })
                }
            }
        })
        .await
    }

    /// HTTP status of each gateway's `/health` (0 when it does not answer).
    pub async fn health(&self) -> Vec<(String, u16)> {
        let curl = self.gateway_curl.clone();
        let targets: Vec<Target> = self.gateways.iter().map(|g| g.ssh_target()).collect();
        let ips: Vec<String> = self.gateways.iter().map(|g| g.private_ip.clone()).collect();
        let jobs: Vec<(Target, String)> = targets.into_iter().zip(ips).collect();
        let res = self
            .fleet
            .run_with(jobs, move |s, ip| {
                Ok(s.exec(&format!("curl -s -o /dev/null --max-time 2 -w '%{{http_code}}' {}", curl.args(&ip, "/health")), false)?.stdout)
            })
            .await;
        self.gateways
            .iter()
            .zip(res)
            .map(|(g, r)| (g.name.clone(), r.result.ok().and_then(|c| c.trim().parse().ok()).unwrap_or(0)))
            .collect()
    }

    /// Waits until every gateway of the region answers `/health` 200.
    pub async fn wait_healthy(&self, wait_ms_max: u64) -> Result<(), HostError> {
        let t0 = Instant::now();
        loop {
            let h = self.health().await;
            if !h.is_empty() && h.iter().all(|(_, c)| *c == 200) {
                return Ok(());
            }
            if t0.elapsed() > Duration::from_millis(wait_ms_max) {
                let last = h.iter().map(|(n, c)| format!("{n}: {c}")).collect::<Vec<_>>().join(", ");
                return Err(HostError::Timeout {
                    region: self.region.clone(),
                    what: "every gateway /health 200".into(),
                    waited_ms: wait_ms_max,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// The standby leader's upstream: the host its WAL receiver streams from, if streaming.
    pub async fn upstream(&self) -> Result<Option<String>, HostError> {
        let m = self.leader().await?;
        let s = self.sql_on(&m.name, "SELECT coalesce(max(sender_host), '') FROM pg_stat_wal_receiver WHERE status = 'streaming'").await?;
        Ok(Some(s).filter(|s| !s.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_compares_as_a_number() {
        assert_eq!(lsn_bytes("0/3000060"), Some(0x3000060));
        assert_eq!(lsn_bytes("1/0"), Some(1 << 32));
        assert!(lsn_bytes("1/0").unwrap() > lsn_bytes("0/FFFFFFFF").unwrap());
        assert_eq!(lsn_bytes("garbage"), None);
    }

    #[test]
    fn cluster_roles_need_a_running_member() {
        let c = ClusterView::parse(r#"{"members":[{"name":"db-0","host":"10.0.0.4","role":"standby_leader","state":"stopped"},{"name":"db-1","role":"replica","state":"streaming"}]}"#).unwrap();
        assert!(c.with_role("standby_leader").is_none(), "a stopped leader does not count");
        assert_eq!(c.with_role("replica").map(|m| m.name.as_str()), Some("db-1"));
    }
}
