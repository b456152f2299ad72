//! The part of the project's `regions.toml` the emulator needs. Unknown fields are ignored.

use ipnet::Ipv4Net;
use serde::Deserialize;
use std::path::Path;

/// The lab's API front (localstack/front), before LocalStack.
pub const DEFAULT_ENDPOINT_URL: &str = "http://127.0.0.1:4567";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot parse {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
struct RawConfig {
    project: String,
    #[serde(default)]
    endpoint: Option<RawEndpoint>,
    #[serde(default, rename = "region")]
    regions: Vec<RawRegion>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawEndpoint {
    url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawRegion {
    name: String,
    vpc_cidr: Ipv4Net,
}

/// One watched region: its AWS name and the VPC CIDR whose instances become hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionConfig {
    pub name: String,
    pub vpc_cidr: Ipv4Net,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub project: String,
    pub endpoint_url: String,
    pub regions: Vec<RegionConfig>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse { path: path.display().to_string(), source },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse { path: "<string>".into(), source })?;
        let valid_project =
            !raw.project.is_empty() && raw.project.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_project {
            return Err(ConfigError::Invalid(format!("project {:?} must be lowercase letters, digits, '-'", raw.project)));
        }
        if raw.regions.is_empty() {
            return Err(ConfigError::Invalid("no [[region]]".into()));
        }
        let regions: Vec<RegionConfig> =
            raw.regions.into_iter().map(|r| RegionConfig { name: r.name, vpc_cidr: r.vpc_cidr.trunc() }).collect();
        for (i, a) in regions.iter().enumerate() {
            if a.vpc_cidr.prefix_len() > 28 {
                return Err(ConfigError::Invalid(format!("{} is too small", a.vpc_cidr)));
            }
            for b in &regions[i + 1..] {
                if a.vpc_cidr.contains(&b.vpc_cidr) || b.vpc_cidr.contains(&a.vpc_cidr) {
                    return Err(ConfigError::Invalid(format!(
                        "VPC CIDRs overlap: {} ({}) and {} ({})",
                        a.vpc_cidr, a.name, b.vpc_cidr, b.name
                    )));
                }
            }
        }
        let endpoint_url = raw.endpoint.and_then(|e| e.url).unwrap_or_else(|| DEFAULT_ENDPOINT_URL.to_string());
        Ok(Config { project: raw.project, endpoint_url, regions })
    }

    /// Directories each host sees as its own (bind mounts onto a per-host tree). `/root` too:
    /// root's home on a fresh image is empty, and the machine's own dotfiles (which may run
    /// slow shell init on every SSH command) must not leak into the hosts.
    pub fn private_dirs(&self) -> Vec<String> {
        vec![
            "/opt".into(),
            format!("/etc/{}", self.project),
            format!("/var/lib/{}", self.project),
            format!("/var/log/{}", self.project),
            "/var/lib/postgresql".into(),
            "/var/lib/etcd".into(),
            "/etc/patroni".into(),
            "/root".into(),
            "/tmp".into(),
        ]
    }

    pub fn boot_hook_path(&self) -> String {
        format!("/etc/{}/boot.sh", self.project)
    }

    pub fn boot_log_path(&self) -> String {
        format!("/var/log/{}/boot.log", self.project)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = r#"
project = "exa"
template = "compact"
[dns]
zone = "exa.example.internal"
[endpoint]
url = "http://127.0.0.1:4567"
health_target = "private_ip"
[[region]]
role = "primary"
name = "us-east-1"
vpc_cidr = "10.10.0.0/16"
azs = ["us-east-1a"]
ami = { name = "x", owner = "1" }
[[region]]
role = "dr"
name = "us-west-2"
vpc_cidr = "10.20.0.0/16"
"#;

    #[test]
    fn parses_shipped_shape_ignoring_unknown_fields() {
        let c = Config::parse(SHIPPED).unwrap();
        assert_eq!(c.project, "exa");
        assert_eq!(c.regions.len(), 2);
        assert_eq!(c.regions[1].name, "us-west-2");
        assert_eq!(c.regions[1].vpc_cidr.to_string(), "10.20.0.0/16");
        assert_eq!(c.boot_hook_path(), "/etc/exa/boot.sh");
    }

    #[test]
    fn refuses_overlapping_cidrs() {
        let t = SHIPPED.replace("10.20.0.0/16", "10.10.128.0/17");
        assert!(matches!(Config::parse(&t), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn endpoint_defaults() {
        let t = SHIPPED.replace("url = \"http://127.0.0.1:4567\"", "");
        assert_eq!(Config::parse(&t).unwrap().endpoint_url, DEFAULT_ENDPOINT_URL);
    }
}
