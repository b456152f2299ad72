//! `regions.toml`: parsing and validation. Everything here is checked before the first
//! API call; an error names the file, line and column, the field, and how to fix it.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::locate::{locate, Loc};

/// The shipped `regions.toml`, used when no file is given and none is in the working directory.
pub const EMBEDDED_REGIONS_TOML: &str = include_str!("../../regions.toml");

/// A configuration error: where, which field, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub loc: Option<Loc>,
    pub field: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.loc {
            Some(loc) => write!(f, "{}:{}:{}", self.file, loc.line, loc.col)?,
            None => write!(f, "{}", self.file)?,
        }
        if !self.field.is_empty() {
            write!(f, ": `{}`", self.field)?;
        }
        write!(f, ": {}", self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionRole {
    Primary,
    Dr,
}

impl RegionRole {
    pub fn as_str(self) -> &'static str {
        match self {
            RegionRole::Primary => "primary",
            RegionRole::Dr => "dr",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthTarget {
    PrivateIp,
    PublicIp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub project: String,
    pub template: String,
    pub dns: Dns,
    pub access: Access,
    pub endpoint: Option<Endpoint>,
    #[serde(default)]
    pub engine: EngineSettings,
    pub region: Vec<Region>,
}

/// Settings passed into the engine's config files (optional table `[engine]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Upper bound of operations in one group commit.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// How often a gateway probes the engine nodes; a dead node is noticed in about two probes.
    #[serde(default = "default_probe_ms")]
    pub gateway_probe_interval_ms: u64,
    /// Admin webhooks that receive the nodes' isolation events.
    #[serde(default)]
    pub webhook_urls: Vec<String>,
}

fn default_batch_max() -> usize {
    1024
}

fn default_probe_ms() -> u64 {
    200
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings { batch_max: default_batch_max(), gateway_probe_interval_ms: default_probe_ms(), webhook_urls: vec![] }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    pub zone: String,
    pub api_record: String,
    #[serde(default = "default_ttl_s")]
    pub record_ttl_s: i64,
}

fn default_ttl_s() -> i64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    pub operator_cidr: String,
    pub ssh_public_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub url: Option<String>,
    #[serde(default = "default_health_target")]
    pub health_target: HealthTarget,
}

fn default_health_target() -> HealthTarget {
    HealthTarget::PublicIp
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub role: RegionRole,
    pub name: String,
    pub vpc_cidr: String,
    pub azs: Vec<String>,
    pub ssh_user: String,
    /// Optional jump host for this region's hosts: "host" or "host:port", as `bastion_user`
    /// (default: `ssh_user`).
    #[serde(default)]
    pub bastion: Option<String>,
    #[serde(default)]
    pub bastion_user: Option<String>,
    pub ami: Ami,
    pub instance_types: std::collections::BTreeMap<String, String>,
}

/// An AMI: a fixed id, or the newest image matching a name filter from an owner.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Ami {
    Id { id: String },
    Filter { name: String, owner: String },
}

/// A validated configuration. Constructed only by [`Config::parse`].
#[derive(Debug, Clone)]
pub struct Config {
    pub file: String,
    /// The TOML source, kept to point errors found later at a line.
    pub src: String,
    /// Directory of the config file; templates are looked up in `<dir>/templates/`.
    pub dir: PathBuf,
    pub project: String,
    pub template: String,
    pub dns: Dns,
    pub operator_cidr: Ipv4Net,
    pub ssh_public_key: Option<PathBuf>,
    pub endpoint_url: Option<String>,
    pub health_target: HealthTarget,
    pub engine: EngineSettings,
    /// Exactly two: `regions[0]` is the primary, `regions[1]` the DR region, as configured
    /// (the "home" layout: names, peering direction).
    pub regions: Vec<RegionConfig>,
    /// The region that holds the primary role now, when a failover moved it away from
    /// `regions[0]`. Read from the cloud (tags), never from the file: see [`crate::roles`].
    pub active: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RegionConfig {
    pub role: RegionRole,
    pub name: String,
    pub vpc_cidr: Ipv4Net,
    pub azs: Vec<String>,
    pub ssh_user: String,
    /// Every SSH connection to this region's hosts goes through this bastion when set.
    pub bastion: Option<crate::ssh::Jump>,
    pub ami: Ami,
    pub instance_types: std::collections::BTreeMap<String, String>,
}

impl Config {
    pub fn primary(&self) -> &RegionConfig {
        &self.regions[0]
    }
    pub fn dr(&self) -> &RegionConfig {
        &self.regions[1]
    }
    /// The region that serves writes now (the configured primary unless a failover moved it).
    pub fn active(&self) -> &RegionConfig {
        self.active.as_deref().and_then(|n| self.region(n)).unwrap_or(self.primary())
    }
    /// The region that is the standby now.
    pub fn passive(&self) -> &RegionConfig {
        let a = &self.active().name;
        self.regions.iter().find(|r| &r.name != a).expect("two regions")
    }
    /// The role `region` plays now.
    pub fn role_now(&self, region: &str) -> RegionRole {
        if self.active().name == region {
            RegionRole::Primary
        } else {
            RegionRole::Dr
        }
    }
    /// This config with the primary role placed on `region` (as the cloud's tags say).
    pub fn with_active(&self, region: &str) -> Config {
        let mut c = self.clone();
        c.active = (region != self.primary().name && self.region(region).is_some()).then(|| region.to_string());
        c
    }
    pub fn region(&self, name: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// Loads `path`, or the embedded default when `path` is None and `regions.toml` is absent.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (file, src) = match path {
            Some(p) => (p.to_path_buf(), read(p)?),
            None if Path::new("regions.toml").exists() => (PathBuf::from("regions.toml"), read(Path::new("regions.toml"))?),
            None => (PathBuf::from("<embedded regions.toml>"), EMBEDDED_REGIONS_TOML.to_string()),
        };
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::parse(&file.display().to_string(), &dir, &src)
    }

    /// Parses and validates `src`; `file` is used in error messages only.
    pub fn parse(file: &str, dir: &Path, src: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(src).map_err(|e| ConfigError {
            file: file.to_string(),
            loc: e.span().map(|s| Loc::of_offset(src, s.start)),
            field: String::new(),
            problem: e.message().trim().to_string(),
            fix: "correct the TOML at that position (see the shipped regions.toml for every field)".into(),
        })?;
        let v = Validator { file, src };
        v.validate(raw, dir)
    }
}

fn read(p: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(p).map_err(|e| ConfigError {
        file: p.display().to_string(),
        loc: None,
        field: String::new(),
        problem: format!("cannot read the file: {e}"),
        fix: "pass an existing file with --config".into(),
    })
}

struct Validator<'a> {
    file: &'a str,
    src: &'a str,
}

impl Validator<'_> {
    fn err(&self, path: &[&str], problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            loc: locate(self.src, path),
            field: path.join("."),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    fn validate(&self, raw: RawConfig, dir: &Path) -> Result<Config, ConfigError> {
        if !is_name(&raw.project) || raw.project.len() > 24 {
            return Err(self.err(
                &["project"],
                format!("{:?} is not a valid project name", raw.project),
                "use 1-24 lowercase letters, digits and '-', starting with a letter",
            ));
        }
        if !is_name(&raw.template) {
            return Err(self.err(&["template"], "not a template name", "use e.g. \"compact\" or \"standard\""));
        }
        self.validate_dns(&raw.dns)?;
        let operator_cidr = self.cidr(&["access", "operator_cidr"], &raw.access.operator_cidr)?;
        let ssh_public_key = raw.access.ssh_public_key.as_deref().map(expand_home);
        if let Some(p) = &ssh_public_key {
            if !p.exists() {
                return Err(self.err(
                    &["access", "ssh_public_key"],
                    format!("{} does not exist", p.display()),
                    "point it at an existing OpenSSH public key, or remove it to let provision generate one",
                ));
            }
        }
        let (endpoint_url, health_target) = match &raw.endpoint {
            Some(e) => {
                if let Some(u) = &e.url {
                    if !(u.starts_with("http://") || u.starts_with("https://")) {
                        return Err(self.err(
                            &["endpoint", "url"],
                            format!("{u:?} is not an http(s) URL"),
                            "use e.g. \"http://127.0.0.1:4566\"",
                        ));
                    }
                }
                (e.url.clone(), e.health_target)
            }
            None => (None, HealthTarget::PublicIp),
        };
        let regions = self.validate_regions(&raw.region)?;
        if !(1..=65_536).contains(&raw.engine.batch_max) {
            return Err(self.err(&["engine", "batch_max"], "must be 1..=65536", "use e.g. 1024"));
        }
        if !(50..=10_000).contains(&raw.engine.gateway_probe_interval_ms) {
            return Err(self.err(&["engine", "gateway_probe_interval_ms"], "must be 50..=10000 ms", "use e.g. 200"));
        }
        if let Some(u) = raw.engine.webhook_urls.iter().find(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(self.err(
                &["engine", "webhook_urls"],
                format!("{u:?} is not an http(s) URL"),
                "use e.g. \"https://ops.example/hook\"",
            ));
        }
        Ok(Config {
            file: self.file.to_string(),
            src: self.src.to_string(),
            dir: dir.to_path_buf(),
            project: raw.project,
            template: raw.template,
            dns: raw.dns,
            operator_cidr,
            ssh_public_key,
            endpoint_url,
            health_target,
            engine: raw.engine,
            regions,
            active: None,
        })
    }

    fn validate_dns(&self, dns: &Dns) -> Result<(), ConfigError> {
        let zone = dns.zone.trim_end_matches('.');
        if !is_dns_name(zone) {
            return Err(self.err(&["dns", "zone"], format!("{:?} is not a DNS name", dns.zone), "use e.g. \"example.com\""));
        }
        let rec = dns.api_record.trim_end_matches('.');
        if !is_dns_name(rec) || !(rec.ends_with(&format!(".{zone}"))) {
            return Err(self.err(
                &["dns", "api_record"],
                format!("{:?} is not a name inside the zone {zone:?}", dns.api_record),
                format!("use a name ending in .{zone}, e.g. \"api.{zone}\""),
            ));
        }
        if !(1..=86_400).contains(&dns.record_ttl_s) {
            return Err(self.err(&["dns", "record_ttl_s"], "must be 1..=86400 seconds", "failover wants a short TTL: 10-60"));
        }
        Ok(())
    }

    fn validate_regions(&self, raw: &[Region]) -> Result<Vec<RegionConfig>, ConfigError> {
        if raw.len() != 2 {
            return Err(self.err(
                &["region"],
                format!("{} [[region]] tables; exactly two are needed", raw.len()),
                "declare one region with role = \"primary\" and one with role = \"dr\"",
            ));
        }
        let primaries = raw.iter().filter(|r| r.role == RegionRole::Primary).count();
        if primaries != 1 {
            return Err(self.err(
                &["region", "1", "role"],
                format!("{primaries} regions have role = \"primary\"; exactly one must"),
                "set role = \"primary\" on one region and role = \"dr\" on the other",
            ));
        }
        if raw[0].name == raw[1].name {
            return Err(self.err(&["region", "1", "name"], "both regions have the same name", "use two different AWS regions"));
        }
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            out.push(self.validate_region(i, r)?);
        }
        if out[0].vpc_cidr.contains(&out[1].vpc_cidr.network()) || out[1].vpc_cidr.contains(&out[0].vpc_cidr.network()) {
            return Err(self.err(
                &["region", "1", "vpc_cidr"],
                format!("{} overlaps the other region's {}", out[1].vpc_cidr, out[0].vpc_cidr),
                "peered VPCs need disjoint CIDRs, e.g. 10.10.0.0/16 and 10.20.0.0/16",
            ));
        }
        out.sort_by_key(|r| r.role);
        Ok(out)
    }

    fn validate_region(&self, i: usize, r: &Region) -> Result<RegionConfig, ConfigError> {
        let idx = i.to_string();
        let at = |f: &'static str| -> Vec<&str> { vec!["region", &idx, f] };
        if !is_region_name(&r.name) {
            return Err(self.err(&at("name"), format!("{:?} is not an AWS region name", r.name), "use e.g. \"us-east-1\""));
        }
        let vpc_cidr = self.cidr(&at("vpc_cidr"), &r.vpc_cidr)?;
        if !(16..=24).contains(&vpc_cidr.prefix_len()) {
            return Err(self.err(
                &at("vpc_cidr"),
                format!("/{} does not fit one subnet per availability zone", vpc_cidr.prefix_len()),
                "use a VPC between /16 and /24 (subnets are the VPC split in 4)",
            ));
        }
        if r.azs.len() < 2 {
            return Err(self.err(
                &at("azs"),
                format!("{} availability zone(s); at least 2 are needed", r.azs.len()),
                "list 2-4 zones, e.g. [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"]",
            ));
        }
        if r.azs.len() > 4 {
            return Err(self.err(&at("azs"), "more than 4 availability zones: subnets would not fit the VPC", "list at most 4 zones"));
        }
        let mut seen = BTreeSet::new();
        for az in &r.azs {
            let suffix = az.strip_prefix(r.name.as_str());
            let ok = matches!(suffix, Some(s) if s.len() == 1 && s.chars().all(|c| c.is_ascii_lowercase()));
            if !ok {
                return Err(self.err(
                    &at("azs"),
                    format!("{az:?} is not an availability zone of {}", r.name),
                    format!("use zones of that region, e.g. \"{}a\"", r.name),
                ));
            }
            if !seen.insert(az) {
                return Err(self.err(&at("azs"), format!("{az:?} is listed twice"), "list each zone once"));
            }
        }
        if r.ssh_user.is_empty() || !r.ssh_user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(self.err(&at("ssh_user"), "not a user name", "use e.g. \"ubuntu\" or \"root\""));
        }
        let bastion = self.bastion(&idx, r)?;
        match &r.ami {
            Ami::Id { id } if !id.starts_with("ami-") => {
                return Err(self.err(
                    &at("ami"),
                    format!("{id:?} is not an AMI id"),
                    "use ami = { id = \"ami-...\" } or ami = { name = \"...*\", owner = \"...\" }",
                ));
            }
            Ami::Filter { name, owner } if name.is_empty() || owner.is_empty() => {
                return Err(self.err(
                    &at("ami"),
                    "empty name filter or owner",
                    "give both, e.g. ami = { name = \"ubuntu/images/*\", owner = \"099720109477\" }",
                ));
            }
            _ => {}
        }
        Ok(RegionConfig {
            role: r.role,
            name: r.name.clone(),
            vpc_cidr,
            azs: r.azs.clone(),
            ssh_user: r.ssh_user.clone(),
            bastion,
            ami: r.ami.clone(),
            instance_types: r.instance_types.clone(),
        })
    }

    /// `bastion = "host"` or `"host:port"` (port 22 by default), with `bastion_user`.
    fn bastion(&self, idx: &str, r: &Region) -> Result<Option<crate::ssh::Jump>, ConfigError> {
        let at = |f: &'static str| -> Vec<&str> { vec!["region", idx, f] };
        let user = r.bastion_user.clone().unwrap_or_else(|| r.ssh_user.clone());
        let Some(b) = &r.bastion else {
            if r.bastion_user.is_some() {
                return Err(self.err(&at("bastion_user"), "set without a bastion", "add bastion = \"host[:port]\" or remove bastion_user"));
            }
            return Ok(None);
        };
        let (host, port) = match b.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p > 0)),
            None => (b.as_str(), Some(22)),
        };
        let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        let Some(port) = port.filter(|_| host_ok) else {
            return Err(self.err(
                &at("bastion"),
                format!("{b:?} is not host or host:port"),
                "write e.g. bastion = \"bastion.example.com\" or \"203.0.113.10:2222\"",
            ));
        };
        if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(self.err(&at("bastion_user"), "not a user name", "use e.g. \"ec2-user\""));
        }
        Ok(Some(crate::ssh::Jump { host: host.to_string(), port, user }))
    }

    fn cidr(&self, path: &[&str], s: &str) -> Result<Ipv4Net, ConfigError> {
        let net: Ipv4Net =
            s.parse().map_err(|_| self.err(path, format!("{s:?} is not an IPv4 CIDR"), "write it as a.b.c.d/n, e.g. \"10.10.0.0/16\""))?;
        if net.trunc() != net {
            return Err(self.err(path, format!("{s:?} has host bits set"), format!("use the network address: \"{}\"", net.trunc())));
        }
        Ok(net)
    }
}

/// Lowercase letters, digits and '-', starting with a letter.
pub fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_lowercase()) && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

fn is_dns_name(s: &str) -> bool {
    s.contains('.')
        && s.split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !l.starts_with('-'))
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}
