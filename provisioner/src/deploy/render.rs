//! Everything a host gets, as files: service definitions, Patroni and etcd settings from
//! `templates/`, engine configs from the `engine-config` types. Pure.

use std::collections::BTreeMap;

use engine_config::{DbConfig, ExchangeConfig, GatewayConfig, LogConfig, Module, MonitorConfig, NodeConfig, PeerConfig, RegionMode};

use super::inventory::{Host, Inventory};
use super::prereq::SERVICE_USER;
use super::secrets::{Secrets, INTERNAL_TOKEN};
use crate::config::{Config, RegionRole};
use crate::template::Template;

const SVC_SH: &str = include_str!("../../../templates/host/svc.sh");
const BOOT_SH: &str = include_str!("../../../templates/host/boot.sh");
const SERVICE_UNIT: &str = include_str!("../../../templates/systemd/provision-service@.service");
const PATRONI_YML: &str = include_str!("../../../templates/db/patroni.yml");
const PG_FENCE_PY: &str = include_str!("../../../templates/db/pg-fence.py");
/// Patroni's leader-lock ttl (its floor: 20 s).
pub const PATRONI_TTL_S: u32 = 20;
/// pg-fence kills a primary whose lock lease has less than this left unconfirmed: after
/// Patroni's own demotion on losing etcd (retry_timeout 5 s + loop_wait 1 s after its last
/// refresh), well before anyone else can take the lock (ttl 20 s).
pub const FENCE_MARGIN_S: u32 = 8;
/// The role Patroni >= 4 reports for a standby counted in the commit quorum.
pub const QUORUM_STANDBY_ROLE: &str = "quorum_standby";

pub const DB_NAME: &str = "exchange";
pub const DB_ENGINE_USER: &str = "engine";

/// One file for one host.
#[derive(Clone)]
pub struct FileSpec {
    pub path: String,
    pub mode: i32,
    /// `user` or `user:group`; None keeps root.
    pub owner: Option<String>,
    pub content: Vec<u8>,
    pub sha256: String,
    /// Services to restart when this file changes.
    pub restarts: Vec<String>,
}

impl std::fmt::Debug for FileSpec {
    /// Contents may be secret: never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileSpec({} mode {:o}, {} bytes)", self.path, self.mode, self.content.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {template}: placeholder {{{{{name}}}}} has no value")]
pub struct RenderError {
    pub template: String,
    pub name: String,
}

/// Replaces `{{name}}`; any placeholder left without a value is an error.
pub fn render(template: &str, src: &str, vars: &BTreeMap<&str, String>) -> Result<String, RenderError> {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .map(|e| start + e)
            .ok_or_else(|| RenderError { template: template.into(), name: "<unclosed>".into() })?;
        let name = rest[start + 2..end].trim();
        let v = vars.get(name).ok_or_else(|| RenderError { template: template.into(), name: name.into() })?;
        out.push_str(v);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct Paths {
    pub etc: String,
    pub opt_bin: String,
    pub var_lib: String,
}

impl Paths {
    pub fn new(project: &str) -> Paths {
        Paths { etc: format!("/etc/{project}"), opt_bin: format!("/opt/{project}/bin"), var_lib: format!("/var/lib/{project}") }
    }
    /// The gateway's certificate chain (public: it is what every client is shown).
    pub fn api_chain(&self) -> String {
        format!("{}/api_tls_chain.pem", self.etc)
    }
    pub fn secret(&self, name: &str) -> String {
        format!("{}/secrets/{name}", self.etc)
    }
    /// The command that runs `sql` on this host's PostgreSQL as `postgres`, through the unix
    /// socket patroni.yml puts in `<var_lib>/pg`: unaligned, tuples only, columns split by `|`.
    pub fn psql(&self, port: u16, db: &str, sql: &str) -> String {
        format!(
            "runuser -u postgres -- psql -h {}/pg -p {port} -d {db} -qAtX -v ON_ERROR_STOP=1 -c {}",
            self.var_lib,
            crate::ssh::shell_quote(sql)
        )
    }
}

fn file(path: String, mode: i32, content: impl Into<Vec<u8>>) -> FileSpec {
    let content = content.into();
    let sha256 = super::embedded::sha256_hex(&content);
    FileSpec { path, mode, owner: None, content, sha256, restarts: vec![] }
}

/// An embedded binary: its hash is computed once, not once per host.
fn binary(path: String, bytes: &'static [u8]) -> FileSpec {
    FileSpec { path, mode: 0o755, owner: None, content: bytes.to_vec(), sha256: super::embedded::sha256_cached(bytes), restarts: vec![] }
}

/// A file the engines read: owned by the service user, whom they run as.
fn owned(mut f: FileSpec) -> FileSpec {
    f.owner = Some(SERVICE_USER.into());
    f
}

fn restarting(mut f: FileSpec, services: &[&str]) -> FileSpec {
    f.restarts = services.iter().map(|s| s.to_string()).collect();
    f
}

fn module_of(name: &str) -> Module {
    Module::ALL.into_iter().find(|m| m.as_str() == name).expect("template modules are validated")
}

fn service(name: &str, run_as: &str, pre: &str, cmd: &str, p: &Paths) -> FileSpec {
    let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    file(format!("{}/services/{name}.conf", p.etc), 0o600, format!("RUN_AS={}\nPRE={}\nCMD={}\n", q(run_as), q(pre), q(cmd)))
}

pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub tpl: &'a Template,
    pub inv: &'a Inventory,
    pub secrets: &'a Secrets,
    /// Mode of the DR region's engines (standby until a failover).
    pub dr_mode: RegionMode,
}

/// Files common to every host: the service manager, the boot hook (no systemd), and the
/// systemd unit template `svc` installs where systemd runs.
pub fn base_files(ctx: &Ctx) -> Result<Vec<FileSpec>, RenderError> {
    let p = Paths::new(&ctx.cfg.project);
    let vars = BTreeMap::from([("project", ctx.cfg.project.clone())]);
    Ok(vec![
        file(format!("{}/svc", p.opt_bin), 0o755, render("host/svc.sh", SVC_SH, &vars)?),
        file(format!("{}/boot.sh", p.etc), 0o755, render("host/boot.sh", BOOT_SH, &vars)?),
        file(service_unit_path(&ctx.cfg.project), 0o644, service_unit(&ctx.cfg.project)?),
    ])
}

/// Where deploy puts the systemd unit template (`svc` copies it to /etc/systemd/system).
pub fn service_unit_path(project: &str) -> String {
    format!("/opt/{project}/systemd/{project}-service@.service")
}

/// `templates/systemd/provision-service@.service`, rendered for `project`.
pub fn service_unit(project: &str) -> Result<String, RenderError> {
    render("systemd/provision-service@.service", SERVICE_UNIT, &BTreeMap::from([("project", project.to_string())]))
}

/// etcd's Raft timings (its defaults are 100 / 1000 ms). When the host that dies is also the
/// etcd leader, Patroni's leader key outlives its ttl by the re-election plus the lease
/// extension etcd grants on election (about one election timeout): a shorter election timeout
/// shortens an in-region DB failover by as much. Same-region peers answer in milliseconds.
const ETCD_HEARTBEAT_MS: u32 = 100;
const ETCD_ELECTION_TIMEOUT_MS: u32 = 500;

/// etcd + Patroni on a DB host.
pub fn db_files(ctx: &Ctx, h: &Host) -> Result<Vec<FileSpec>, RenderError> {
    let (cfg, ports) = (ctx.cfg, &ctx.tpl.ports);
    let p = Paths::new(&cfg.project);
    let peers = ctx.inv.db(&h.region);
    let initial: Vec<String> = peers.iter().map(|d| format!("{}=http://{}:{}", d.name, d.private_ip, ports.etcd_peer)).collect();
    let etcd_cmd = format!(
        "/usr/bin/etcd --name {n} --data-dir {lib}/etcd --listen-client-urls http://{ip}:{c},http://127.0.0.1:{c} --advertise-client-urls http://{ip}:{c} \
         --listen-peer-urls http://{ip}:{pp} --initial-advertise-peer-urls http://{ip}:{pp} --initial-cluster {ic} \
         --initial-cluster-state new --initial-cluster-token {proj}-{region} \
         --heartbeat-interval {hb} --election-timeout {et}",
        hb = ETCD_HEARTBEAT_MS,
        et = ETCD_ELECTION_TIMEOUT_MS,
        n = h.name,
        lib = p.var_lib,
        ip = h.private_ip,
        c = ports.etcd_client,
        pp = ports.etcd_peer,
        ic = initial.join(","),
        proj = cfg.project,
        region = h.region,
    );
    let primary_db: Vec<String> = ctx.inv.db(&cfg.active().name).iter().map(|d| d.private_ip.clone()).collect();
    let standby = match h.region_role {
        RegionRole::Primary => String::new(),
        RegionRole::Dr => format!(
            "    standby_cluster:\n      host: {}\n      port: {}\n      create_replica_methods:\n        - basebackup\n",
            primary_db.join(","),
            ports.postgres
        ),
    };
    let vars = BTreeMap::from([
        ("project", cfg.project.clone()),
        ("region", h.region.clone()),
        ("region_role", h.region_role.as_str().to_string()),
        ("scope", format!("{}-{}", cfg.project, h.region)),
        ("name", h.patroni_member()),
        ("ip", h.private_ip.clone()),
        ("patroni_port", ports.patroni_rest.to_string()),
        ("pg_port", ports.postgres.to_string()),
        ("etcd_hosts", peers.iter().map(|d| format!("{}:{}", d.private_ip, ports.etcd_client)).collect::<Vec<_>>().join(",")),
        // Quorum commit in the primary region: a commit waits for ANY 1 of the two local
        // standbys, so losing either one stalls nothing. The DR standby cluster has none.
        ("synchronous_mode", if h.region_role == RegionRole::Primary { "quorum" } else { "false" }.to_string()),
        ("synchronous_mode_strict", (h.region_role == RegionRole::Primary).to_string()),
        ("ttl_s", PATRONI_TTL_S.to_string()),
        ("patroni_version", super::prereq::PATRONI_VERSION.to_string()),
        // pg-fence.py (rendered from the same map)
        ("etcd_urls", peers.iter().map(|d| format!("http://{}:{}", d.private_ip, ports.etcd_client)).collect::<Vec<_>>().join(",")),
        ("data_dir", format!("{}/pg/data", p.var_lib)),
        ("margin_s", FENCE_MARGIN_S.to_string()),
        ("standby_cluster", standby),
        ("superuser_password", ctx.secrets.db_superuser_password.expose().to_string()),
        ("replication_password", ctx.secrets.db_replication_password.expose().to_string()),
        ("cidr_a", cfg.regions[0].vpc_cidr.to_string()),
        ("cidr_b", cfg.regions[1].vpc_cidr.to_string()),
    ]);
    let mut patroni = file(format!("{}/patroni.yml", p.etc), 0o600, render("db/patroni.yml", PATRONI_YML, &vars)?);
    patroni.owner = Some("postgres".into());
    let pg_dir = format!("{}/pg", p.var_lib);
    Ok(vec![
        restarting(patroni, &["patroni"]),
        file(p.secret("db_engine_password"), 0o600, ctx.secrets.db_engine_password.expose()),
        restarting(service("etcd", "root", &format!("mkdir -p {}/etcd", p.var_lib), &etcd_cmd, &p), &["etcd"]),
        restarting(
            service(
                "patroni",
                "postgres",
                &format!("mkdir -p {pg_dir} && chown postgres:postgres {pg_dir} && chmod 0700 {pg_dir}"),
                &format!("{} {}/patroni.yml", super::prereq::PATRONI_BIN, p.etc),
                &p,
            ),
            &["patroni"],
        ),
        restarting(file(format!("{}/pg-fence.py", p.etc), 0o700, render("db/pg-fence.py", PG_FENCE_PY, &vars)?), &["pg-fence"]),
        restarting(service("pg-fence", "root", "", &format!("/usr/bin/python3 -u {}/pg-fence.py", p.etc), &p), &["pg-fence"]),
    ])
}

fn db_config(ctx: &Ctx, region: &str) -> DbConfig {
    let p = Paths::new(&ctx.cfg.project);
    // Every limit not set here (timeouts, reconnect backoff, session bound) keeps the default
    // engine-config defines for it: a document with only the required fields gets them.
    let mut db: DbConfig =
        toml::from_str("hosts = []\ndbname = \"\"\nuser = \"\"").expect("engine-config defaults every optional DB field");
    db.hosts = ctx.inv.db(region).iter().map(|d| format!("{}:{}", d.private_ip, ctx.tpl.ports.postgres)).collect();
    db.dbname = DB_NAME.into();
    db.user = DB_ENGINE_USER.into();
    db.password_file = Some(p.secret("db_engine_password").into());
    // Same-region hosts connect in milliseconds; a powered-off one never answers, and every
    // connection attempt that lists it first waits this long before the next host.
    db.connect_timeout_ms = 500;
    db
}

/// The engine's shipped isolation thresholds, with the operator's webhooks. A cause every
/// node shares (a busy region, a slow DB) isolates none of them (the engine's monitor
/// steps aside only for a fault a healthy peer does not share), so nothing is loosened here.
fn monitor(webhook_urls: &[String]) -> MonitorConfig {
    MonitorConfig { webhook_urls: webhook_urls.to_vec(), ..MonitorConfig::default() }
}

fn peers(ctx: &Ctx, region: &str) -> Vec<PeerConfig> {
    let mut v = Vec::new();
    for h in ctx.inv.in_region(region) {
        for m in &h.modules {
            v.push(PeerConfig {
                node_id: node_id(h, m),
                module: module_of(m),
                addr: format!("{}:{}", h.private_ip, ctx.tpl.ports.modules[m]),
            });
        }
    }
    v
}

/// The gateway's private key, beside the other secrets on its host.
const TLS_KEY: &str = "api_tls_key.pem";

/// The curl arguments that reach a gateway over HTTPS as a client does: the API name
/// resolved to the gateway's address, its certificate checked against the chain the gateways
/// serve (curl accepts a chain that ends below a public root). Run on a gateway host, as any user.
#[derive(Debug, Clone)]
pub struct GatewayCurl {
    name: String,
    chain: String,
    port: u16,
}

impl GatewayCurl {
    pub fn new(cfg: &Config, port: u16) -> GatewayCurl {
        let name = cfg.dns.api_record.trim_end_matches('.').to_string();
        GatewayCurl { name, chain: Paths::new(&cfg.project).api_chain(), port }
    }
    pub fn args(&self, ip: &str, path: &str) -> String {
        let GatewayCurl { name, chain, port } = self;
        format!("--cacert {chain} --resolve {name}:{port}:{ip} https://{name}:{port}{path}")
    }
}

pub fn node_id(h: &Host, module: &str) -> String {
    format!("{}-{}-{}", h.region, module, h.name)
}

/// Engine nodes and the gateway on an application host.
pub fn app_files(ctx: &Ctx, h: &Host, node_bin: &'static [u8], gateway_bin: &'static [u8]) -> Result<Vec<FileSpec>, RenderError> {
    let p = Paths::new(&ctx.cfg.project);
    let mode = if h.region_role == RegionRole::Primary { RegionMode::Active } else { ctx.dr_mode };
    let mut all: Vec<String> = h.modules.iter().map(|m| format!("node-{m}")).collect();
    if h.gateway {
        all.push("gateway".into());
    }
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let nodes: Vec<&str> = all.iter().copied().filter(|s| *s != "gateway").collect();
    let internal =
        ctx.secrets.internal_token(&h.region).map_err(|e| RenderError { template: "engine secrets".into(), name: e.to_string() })?;
    let mut files = vec![
        restarting(owned(file(p.secret("admin_token"), 0o600, ctx.secrets.admin_token.expose())), &all),
        restarting(owned(file(p.secret(INTERNAL_TOKEN), 0o600, internal.expose())), &all),
        restarting(owned(file(p.secret("db_engine_password"), 0o600, ctx.secrets.db_engine_password.expose())), &all),
    ];
    if !h.modules.is_empty() {
        files.push(restarting(binary(format!("{}/engine-node", p.opt_bin), node_bin), &nodes));
    }
    for m in &h.modules {
        let c = NodeConfig {
            node_id: node_id(h, m),
            module: module_of(m),
            region: h.region.clone(),
            mode,
            listen: format!("{}:{}", h.private_ip, ctx.tpl.ports.modules[m]),
            advertise: None,
            peers: peers(ctx, &h.region),
            db: db_config(ctx, &h.region),
            exchange: ExchangeConfig::example(),
            admin_token_file: p.secret("admin_token").into(),
            internal_token_file: p.secret(INTERNAL_TOKEN).into(),
            monitor: monitor(&ctx.cfg.engine.webhook_urls),
            log: LogConfig::default(),
            batch_max: ctx.cfg.engine.batch_max,
        };
        let path = format!("{}/node-{m}.toml", p.etc);
        let svc = format!("node-{m}");
        let toml = c.to_toml_string().map_err(|e| RenderError { template: "engine NodeConfig".into(), name: e.to_string() })?;
        files.push(restarting(owned(file(path.clone(), 0o600, toml)), &[&svc]));
        files.push(restarting(service(&svc, SERVICE_USER, "", &format!("{}/engine-node --config {path}", p.opt_bin), &p), &[&svc]));
    }
    if h.gateway {
        files.push(restarting(binary(format!("{}/engine-gateway", p.opt_bin), gateway_bin), &["gateway"]));
        let tls = engine_config::TlsFiles { cert_file: p.api_chain().into(), key_file: p.secret(TLS_KEY).into() };
        files.push(restarting(owned(file(p.api_chain(), 0o644, ctx.secrets.api.chain_pem.as_str())), &["gateway"]));
        files.push(restarting(owned(file(p.secret(TLS_KEY), 0o600, ctx.secrets.api.key_pem.expose())), &["gateway"]));
        let c = GatewayConfig {
            gateway_id: format!("{}-gateway-{}", h.region, h.name),
            region: h.region.clone(),
            listen: format!("{}:{}", h.private_ip, ctx.tpl.ports.gateway_http),
            admin_listen: format!("{}:{}", h.private_ip, ctx.tpl.ports.gateway_admin),
            tls: Some(tls),
            nodes: peers(ctx, &h.region),
            db: db_config(ctx, &h.region),
            exchange: ExchangeConfig::example(),
            admin_token_file: p.secret("admin_token").into(),
            internal_token_file: p.secret(INTERNAL_TOKEN).into(),
            probe_interval_ms: ctx.cfg.engine.gateway_probe_interval_ms,
            retry_budget_ms: 5000,
            batch_orders_max: engine_config::DEFAULT_BATCH_ORDERS_MAX,
            batch_in_flight_max: engine_config::DEFAULT_BATCH_IN_FLIGHT_MAX,
            public_reads_per_s_max: engine_config::DEFAULT_PUBLIC_READS_PER_S_MAX,
            public_reads_burst_max: engine_config::DEFAULT_PUBLIC_READS_BURST_MAX,
            log: LogConfig::default(),
        };
        let path = format!("{}/gateway.toml", p.etc);
        let toml = c.to_toml_string().map_err(|e| RenderError { template: "engine GatewayConfig".into(), name: e.to_string() })?;
        files.push(restarting(owned(file(path.clone(), 0o600, toml)), &["gateway"]));
        files.push(restarting(
            service("gateway", SERVICE_USER, "", &format!("{}/engine-gateway --config {path}", p.opt_bin), &p),
            &["gateway"],
        ));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deployed nodes run the engine's shipped thresholds; only the webhooks are the operator's.
    #[test]
    fn deployed_monitor_is_the_shipped_default() {
        let hooks = vec!["https://ops.example/hook".to_string()];
        let m = monitor(&hooks);
        assert_eq!(m, MonitorConfig { webhook_urls: hooks, ..MonitorConfig::default() });
    }

    /// systemd cannot run here: its own checker reads the unit as systemd would, and any
    /// complaint (an unknown key, a bad value, a missing binary) fails the test.
    #[test]
    fn the_service_unit_passes_systemd_analyze_verify() {
        let dir = tempfile::tempdir().unwrap();
        let unit = service_unit("exa").unwrap();
        assert!(!unit.contains("{{"), "{unit}");
        // An instance of the template, as `svc start node-matching` would make it.
        let path = dir.path().join("exa-service@node-matching.service");
        std::fs::write(&path, &unit).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze (package systemd, installed by scripts/setup.sh)");
        let complaints = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && complaints.trim().is_empty(), "systemd-analyze verify: {complaints}");
    }

    /// Where systemd runs, `svc` drives the unit instead of its own supervisor: it installs
    /// the template once, enables and starts `exa-service@NAME`, and asks systemd for status.
    /// systemctl is a recording stand-in (systemd cannot run here).
    #[test]
    fn svc_drives_systemd_units_where_systemd_runs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let project = format!("svct{}", std::process::id());
        let vars = BTreeMap::from([("project", project.clone())]);
        let svc = render("host/svc.sh", SVC_SH, &vars).unwrap();
        let svc = svc
            .replace(&format!("/etc/{project}/services"), &d.join("services").display().to_string())
            .replace(&format!("/var/lib/{project}/run"), &d.join("run").display().to_string())
            .replace(&format!("/var/log/{project}"), &d.join("log").display().to_string())
            .replace(&service_unit_path(&project), &d.join("unit.src").display().to_string());
        std::fs::write(d.join("svc"), svc).unwrap();
        std::fs::create_dir_all(d.join("services")).unwrap();
        std::fs::create_dir_all(d.join("units")).unwrap();
        std::fs::create_dir_all(d.join("bin")).unwrap();
        std::fs::write(d.join("services/node-matching.conf"), "RUN_AS='exchange'\nPRE=''\nCMD='/bin/true'\n").unwrap();
        std::fs::write(d.join("unit.src"), service_unit(&project).unwrap()).unwrap();
        let log = d.join("systemctl.log");
        let fake = format!("#!/bin/sh\necho \"$*\" >> {}\nexit 0\n", log.display());
        std::fs::write(d.join("bin/systemctl"), fake).unwrap();
        std::process::Command::new("chmod").arg("+x").arg(d.join("bin/systemctl")).status().unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("sh")
                .arg(d.join("svc"))
                .args(args)
                .env("PATH", format!("{}:/usr/bin:/bin", d.join("bin").display()))
                .env("SVC_SYSTEMD_DIR", d)
                .env("SVC_UNIT_DIR", d.join("units"))
                .output()
                .unwrap();
            assert!(out.status.success(), "svc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&["start", "node-matching"]);
        run(&["start", "node-matching"]);
        run(&["status", "node-matching"]);
        run(&["stop", "node-matching"]);
        let calls = std::fs::read_to_string(&log).unwrap();
        let unit = format!("{project}-service@node-matching.service");
        let want = format!(
            "daemon-reload\nenable --now {unit}\nis-active --quiet {unit}\nenable --now {unit}\nis-active --quiet {unit}\n\
             is-active --quiet {unit}\nshow -p MainPID --value {unit}\nstop {unit}\n"
        );
        assert_eq!(calls, want, "the unit is installed once (daemon-reload once), then enabled, started and stopped through systemd");
        let installed = std::fs::read_to_string(d.join(format!("units/{project}-service@.service"))).unwrap();
        assert_eq!(installed, service_unit(&project).unwrap());
        assert!(!d.join("run/node-matching.pid").exists(), "no supervisor of svc's own where systemd runs");
    }
}
