//! Topology templates (`templates/*.toml`): which hosts a region has, what runs on each,
//! and the ports every role listens on. Validated like `regions.toml`.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use crate::config::{is_name, Config, ConfigError};
use crate::locate::locate;

/// Every module the engine has. Each must run on at least [`NODES_PER_MODULE_MIN`] nodes.
pub const MODULES: [&str; 4] = ["matching", "otc", "contract", "wallet"];
pub const NODES_PER_MODULE_MIN: u32 = 3;
pub const DB_HOSTS: u32 = 3;
pub const HOSTS_PER_GROUP_MAX: u32 = 64;
/// The lowest port a service that is not root may bind on Linux.
pub const UNPRIVILEGED_PORT_MIN: u16 = 1024;

const BUILTIN: [(&str, &str); 2] =
    [("compact", include_str!("../../templates/compact.toml")), ("standard", include_str!("../../templates/standard.toml"))];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    #[serde(default)]
    pub description: String,
    pub hosts: Vec<HostGroup>,
    pub ports: Ports,
}

/// gp3's size range, in GiB.
pub const DATA_VOLUME_GIB_MIN: u32 = 1;
pub const DATA_VOLUME_GIB_MAX: u32 = 16_384;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostGroup {
    pub role: String,
    pub count: u32,
    /// A key of the region's `instance_types`.
    pub instance_type: String,
    #[serde(default)]
    pub modules: Vec<String>,
    #[serde(default)]
    pub gateway: bool,
    #[serde(default)]
    pub database: bool,
    /// Size of each host's encrypted gp3 data volume (PostgreSQL's directory), in GiB.
    /// Required on database groups.
    #[serde(default)]
    pub data_volume_gib: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub ssh: u16,
    pub gateway_http: u16,
    /// The gateway's admin listener (`/admin/*`, `/metrics`) on the host's private
    /// address, open only to the project's VPCs.
    #[serde(default = "default_gateway_admin")]
    pub gateway_admin: u16,
    pub postgres: u16,
    pub patroni_rest: u16,
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub modules: BTreeMap<String, u16>,
}

impl Template {
    /// Loads the template the config names: `<config dir>/templates/<name>.toml` when present,
    /// else the built-in one of that name. Checks it against the config's instance types.
    pub fn load(cfg: &Config) -> Result<Template, ConfigError> {
        let path = cfg.dir.join("templates").join(format!("{}.toml", cfg.template));
        let (file, src) = if path.exists() {
            let src = std::fs::read_to_string(&path).map_err(|e| ConfigError {
                file: path.display().to_string(),
                loc: None,
                field: String::new(),
                problem: format!("cannot read: {e}"),
                fix: "make the file readable".into(),
            })?;
            (path.display().to_string(), src)
        } else if let Some((_, src)) = BUILTIN.iter().find(|(n, _)| *n == cfg.template) {
            (format!("<built-in template {}>", cfg.template), src.to_string())
        } else {
            return Err(ConfigError {
                file: cfg.file.clone(),
                loc: locate(&cfg.src, &["template"]),
                field: "template".into(),
                problem: format!("unknown template {:?}: no {} and no built-in of that name", cfg.template, path.display()),
                fix: format!("use one of: {}, or add templates/{}.toml", builtin_names().join(", "), cfg.template),
            });
        };
        let builtin = !path.exists();
        let t = Template::parse(&file, &src)?;
        t.check_instance_types(cfg, &file, &src, builtin)?;
        Ok(t)
    }

    pub fn parse(file: &str, src: &str) -> Result<Template, ConfigError> {
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        let t: Template = toml::from_str(src).map_err(|e| crate::config::describe_toml_error(file, src, &e, BUILTIN[0].1))?;
        t.validate(file, src)?;
        Ok(t)
    }

    fn validate(&self, file: &str, src: &str) -> Result<(), ConfigError> {
        let err = |path: &[&str], problem: String, fix: &str| ConfigError {
            file: file.to_string(),
            loc: locate(src, path),
            field: path.join("."),
            problem,
            fix: fix.to_string(),
        };
        self.validate_hosts(&err)?;
        self.validate_modules(&err)?;
        self.validate_ports(&err)
    }

    /// Unique role names, counts in range, known modules, database hosts carrying nothing else.
    fn validate_hosts(&self, err: &impl Fn(&[&str], String, &str) -> ConfigError) -> Result<(), ConfigError> {
        let mut roles = BTreeSet::new();
        for (i, g) in self.hosts.iter().enumerate() {
            let idx = i.to_string();
            if !is_name(&g.role) || g.role.len() > 16 || !roles.insert(g.role.as_str()) {
                return Err(err(
                    &["hosts", &idx, "role"],
                    format!("{:?} is not a unique role name", g.role),
                    "use a short unique lowercase name per host group",
                ));
            }
            if g.count == 0 || g.count > HOSTS_PER_GROUP_MAX {
                return Err(err(&["hosts", &idx, "count"], format!("{} hosts", g.count), "use 1..=64 hosts per group"));
            }
            for m in &g.modules {
                if !MODULES.contains(&m.as_str()) {
                    return Err(err(
                        &["hosts", &idx, "modules"],
                        format!("unknown module {m:?}"),
                        "modules are: matching, otc, contract, wallet",
                    ));
                }
            }
            if g.database && (!g.modules.is_empty() || g.gateway) {
                return Err(err(
                    &["hosts", &idx, "database"],
                    "database hosts carry nothing else".into(),
                    "put modules and gateways on other host groups",
                ));
            }
            match (g.database, g.data_volume_gib) {
                (true, None) => {
                    return Err(err(
                        &["hosts", &idx, "database"],
                        "a database group without data_volume_gib (its encrypted data volume)".into(),
                        "add data_volume_gib = 100 (GiB) to the group",
                    ))
                }
                (_, Some(gib)) if !(DATA_VOLUME_GIB_MIN..=DATA_VOLUME_GIB_MAX).contains(&gib) => {
                    return Err(err(
                        &["hosts", &idx, "data_volume_gib"],
                        format!("{gib} GiB"),
                        &format!("use {DATA_VOLUME_GIB_MIN}..={DATA_VOLUME_GIB_MAX} GiB (gp3's range)"),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Enough nodes of every module, a port for each, 3 DB hosts, a gateway.
    fn validate_modules(&self, err: &impl Fn(&[&str], String, &str) -> ConfigError) -> Result<(), ConfigError> {
        for m in MODULES {
            let nodes: u32 = self.hosts.iter().filter(|g| g.modules.iter().any(|x| x == m)).map(|g| g.count).sum();
            if nodes < NODES_PER_MODULE_MIN {
                let first = self.hosts.iter().position(|g| g.modules.iter().any(|x| x == m)).map(|i| i.to_string());
                let path: Vec<&str> = match &first {
                    Some(i) => vec!["hosts", i, "count"],
                    None => vec!["hosts"],
                };
                return Err(err(
                    &path,
                    format!("module {m:?} has {nodes} node(s) per region; at least {NODES_PER_MODULE_MIN} are needed"),
                    "raise `count` of the host groups that carry it, or add it to another group",
                ));
            }
            if !self.ports.modules.contains_key(m) {
                return Err(err(&["ports", "modules"], format!("no port for module {m:?}"), "add it under [ports.modules]"));
            }
        }
        let db: u32 = self.hosts.iter().filter(|g| g.database).map(|g| g.count).sum();
        if db != DB_HOSTS {
            return Err(err(
                &["hosts"],
                format!("{db} database host(s) per region; exactly {DB_HOSTS} are needed (Patroni + etcd quorum)"),
                "have one host group with database = true and count = 3",
            ));
        }
        if !self.hosts.iter().any(|g| g.gateway) {
            return Err(err(&["hosts"], "no gateway host".into(), "set gateway = true on at least one host group"));
        }
        Ok(())
    }

    /// Known module names, distinct ports, none below 1024 but SSH's.
    fn validate_ports(&self, err: &impl Fn(&[&str], String, &str) -> ConfigError) -> Result<(), ConfigError> {
        let mut ports: Vec<(String, u16)> = vec![
            ("ssh".into(), self.ports.ssh),
            ("gateway_http".into(), self.ports.gateway_http),
            ("gateway_admin".into(), self.ports.gateway_admin),
            ("postgres".into(), self.ports.postgres),
            ("patroni_rest".into(), self.ports.patroni_rest),
            ("etcd_client".into(), self.ports.etcd_client),
            ("etcd_peer".into(), self.ports.etcd_peer),
        ];
        for k in self.ports.modules.keys() {
            if !MODULES.contains(&k.as_str()) {
                return Err(err(
                    &["ports", "modules", k],
                    format!("{} is not a module", crate::config::shown(k)),
                    "the modules are matching, otc, contract and wallet: correct the key's spelling",
                ));
            }
        }
        ports.extend(self.ports.modules.iter().map(|(k, v)| (format!("modules.{k}"), *v)));
        let mut seen = BTreeMap::new();
        for (name, port) in &ports {
            if *port == 0 {
                return Err(err(&["ports"], format!("port {name} is 0"), "use a port in 1..=65535"));
            }
            // Only sshd runs as root; the engines, PostgreSQL, Patroni and etcd run as users.
            if name != "ssh" && *port < UNPRIVILEGED_PORT_MIN {
                let path: Vec<&str> = name.split('.').collect();
                let path: Vec<&str> = ["ports"].into_iter().chain(path).collect();
                return Err(err(
                    &path,
                    format!("port {port} is below {UNPRIVILEGED_PORT_MIN}: its service runs as an unprivileged user and cannot bind it"),
                    "use a port from 1024 to 65535",
                ));
            }
            if let Some(other) = seen.insert(*port, name.clone()) {
                return Err(err(&["ports"], format!("ports {other} and {name} are both {port}"), "give every role its own port"));
            }
        }
        Ok(())
    }

    /// Every host group's `instance_type` is a key of each region's `instance_types`. The
    /// error points at the user's file: the template when it is theirs, else regions.toml.
    fn check_instance_types(&self, cfg: &Config, file: &str, src: &str, builtin: bool) -> Result<(), ConfigError> {
        for (i, g) in self.hosts.iter().enumerate() {
            for r in &cfg.regions {
                if r.instance_types.contains_key(&g.instance_type) {
                    continue;
                }
                let keys: Vec<&str> = r.instance_types.keys().map(String::as_str).collect();
                let problem = format!(
                    "region {} has no instance type for the host group {} (instance_type = {}); it has {}",
                    r.name,
                    crate::config::shown(&g.role),
                    crate::config::shown(&g.instance_type),
                    keys.join(", ")
                );
                let fix = format!("add {} = \"<type>\" to that region's instance_types, or correct a misspelt key", g.instance_type);
                if builtin {
                    return Err(cfg.error_at(&["region", &cfg.file_region_index(&r.name), "instance_types"], problem, fix));
                }
                let path = ["hosts".to_string(), i.to_string(), "instance_type".to_string()];
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                return Err(ConfigError { file: file.to_string(), loc: locate(src, &path), field: path.join("."), problem, fix });
            }
        }
        Ok(())
    }

    /// Nodes per module in one region.
    pub fn nodes(&self, module: &str) -> u32 {
        self.hosts.iter().filter(|g| g.modules.iter().any(|m| m == module)).map(|g| g.count).sum()
    }
}

/// Default of `ports.gateway_admin` (a template written before it existed).
pub const DEFAULT_GATEWAY_ADMIN_PORT: u16 = 8081;

fn default_gateway_admin() -> u16 {
    DEFAULT_GATEWAY_ADMIN_PORT
}

pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}
