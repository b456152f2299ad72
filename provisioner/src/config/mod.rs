//! `regions.toml`: parsing and validation. Everything here is checked before the first
//! API call; an error names the file, line and column, the field, and how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::locate::Loc;

pub mod rules;
mod toml_error;
mod validate;
mod validate_tls;

pub use rules::{is_name, shown};
pub(crate) use toml_error::describe as describe_toml_error;
use validate::Validator;

/// The shipped `regions.toml`, used when no file is given and none is in the working directory.
pub const EMBEDDED_REGIONS_TOML: &str = include_str!("../../../regions.toml");

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
    pub tls: Option<TlsRaw>,
    #[serde(default)]
    pub engine: EngineSettings,
    pub region: Vec<Region>,
}

/// `[tls]`: the public API's certificate (required on AWS; a local cloud without it gets
/// one that provision makes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsRaw {
    /// PEM certificate chain, leaf first; the leaf must cover `dns.api_record`.
    pub cert_file: String,
    /// PEM private key of the leaf (uploaded to the gateways with mode 0600; never shown).
    pub key_file: String,
    /// PEM CA certificate that provision's own calls trust for the API, when the chain does
    /// not end at a public CA.
    pub ca_file: Option<String>,
}

/// Where the gateways' certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiTls {
    /// The operator's files (checked when the config is loaded: they cover the API name,
    /// are valid now, and the key is the certificate's). Paths are absolute.
    Files { cert_file: PathBuf, key_file: PathBuf, ca_file: Option<PathBuf> },
    /// A local cloud without `[tls]`: a CA and certificate provision makes for the API name
    /// and keeps in the vault (`deploy::secrets`).
    Generated,
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

/// The engine's own defaults: its config format is defined once, in `engine-config`.
fn default_batch_max() -> usize {
    engine_config::DEFAULT_BATCH_MAX
}

fn default_probe_ms() -> u64 {
    engine_config::DEFAULT_PROBE_INTERVAL_MS
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
    /// Where clients may reach the public API port from (default: anywhere). Route53's
    /// health checkers must be among them, or every check fails.
    #[serde(default = "default_client_cidrs")]
    pub client_cidrs: Vec<String>,
    /// Which address SSH dials (default: a host's public one; hosts without one are reached
    /// through the region's bastion, or else its first gateway). Separate from `health_target`.
    #[serde(default = "default_ssh_address")]
    pub ssh_address: HealthTarget,
    /// How private hosts reach the internet (apt, PyPI): a NAT gateway per region (default),
    /// or none when the image has every package baked in.
    #[serde(default)]
    pub egress: Egress,
}

fn default_ssh_address() -> HealthTarget {
    HealthTarget::PublicIp
}

/// How the hosts in private subnets reach the internet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Egress {
    /// A NAT gateway (and its Elastic IP) in the region's first public subnet.
    #[default]
    Nat,
    /// No route to the internet: the image must carry every package.
    None,
}

fn default_client_cidrs() -> Vec<String> {
    vec!["0.0.0.0/0".into()]
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
#[serde(untagged, try_from = "RawAmi")]
pub enum Ami {
    Id { id: String },
    Filter { name: String, owner: String },
}

/// `ami` as written, so that a wrong shape is told in the file's words.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmi {
    id: Option<String>,
    name: Option<String>,
    owner: Option<String>,
}

impl TryFrom<RawAmi> for Ami {
    type Error = String;
    fn try_from(r: RawAmi) -> Result<Ami, String> {
        match r {
            RawAmi { id: Some(id), name: None, owner: None } => Ok(Ami::Id { id }),
            RawAmi { id: None, name: Some(name), owner: Some(owner) } => Ok(Ami::Filter { name, owner }),
            _ => Err(r#"ami takes one of two forms: { id = "ami-…" } or { name = "…", owner = "…" }"#.into()),
        }
    }
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
    /// `access.client_cidrs`: the public API port is open to these only.
    pub client_cidrs: Vec<Ipv4Net>,
    /// `access.ssh_address`: which address SSH dials.
    pub ssh_address: HealthTarget,
    /// `access.egress`: NAT gateways for the private subnets, or none.
    pub egress: Egress,
    pub ssh_public_key: Option<PathBuf>,
    pub endpoint_url: Option<String>,
    pub health_target: HealthTarget,
    /// The public API's certificate.
    pub tls: ApiTls,
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

    /// The index of region `name` among the file's `[[region]]` tables (for error paths:
    /// `regions` is sorted primary first, the file need not be).
    pub fn file_region_index(&self, name: &str) -> String {
        let doc = self.src.parse::<toml::Table>().ok();
        let tables = doc.as_ref().and_then(|d| d.get("region")).and_then(|r| r.as_array());
        let i = tables.and_then(|a| a.iter().position(|t| t.get("name").and_then(|n| n.as_str()) == Some(name)));
        i.or_else(|| self.regions.iter().position(|r| r.name == name)).unwrap_or(0).to_string()
    }

    /// An error found after parsing (with the template, say), located in this file.
    pub fn error_at(&self, path: &[&str], problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            loc: crate::locate::locate(&self.src, path),
            field: path.join("."),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// Loads `path`; without one, `./regions.toml`, or else the embedded default (said on
    /// stderr). A `path` that cannot be read is an error, never a fallback.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (file, src) = match path {
            Some(p) => (p.to_path_buf(), read(p)?),
            None if Path::new("regions.toml").exists() => (PathBuf::from("regions.toml"), read(Path::new("regions.toml"))?),
            None => {
                eprintln!(
                    "provision: no --config given and no ./regions.toml: using the embedded regions.toml (LocalStack on this machine)"
                );
                (PathBuf::from("<embedded regions.toml>"), EMBEDDED_REGIONS_TOML.to_string())
            }
        };
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::parse(&file.display().to_string(), &dir, &src)
    }

    /// Parses and validates `src`; `file` is used in error messages only.
    pub fn parse(file: &str, dir: &Path, src: &str) -> Result<Config, ConfigError> {
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        let raw: RawConfig = toml::from_str(src).map_err(|e| toml_error::describe_regions(file, src, &e))?;
        let v = Validator { file, src };
        v.validate(raw, dir)
    }
}

fn read(p: &Path) -> Result<String, ConfigError> {
    let err = |problem: String, fix: &str| ConfigError {
        file: p.display().to_string(),
        loc: None,
        field: String::new(),
        problem,
        fix: fix.into(),
    };
    if p.is_dir() {
        return Err(err("is a directory".into(), "pass the regions.toml file itself with --config"));
    }
    let bytes = std::fs::read(p).map_err(|e| {
        err(
            format!("cannot read the file: {e}"),
            "pass an existing, readable file with --config (without --config, ./regions.toml or the embedded default is used)",
        )
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        err(format!("is not UTF-8 text (byte {at} is not)"), "save the file as UTF-8")
    })
}
