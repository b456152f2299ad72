//! A health check as the checkers use it, read from LocalStack's ListHealthChecks.

use aws_sdk_route53::types::{HealthCheck, HealthCheckType};

/// Bounds on one listing.
const PAGES_MAX: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Https,
    Tcp,
    Calculated,
    /// CloudWatch alarms, recovery controls: not probed, healthy.
    Unprobed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    pub id: String,
    pub kind: Kind,
    pub ip: Option<String>,
    pub fqdn: Option<String>,
    pub port: u16,
    pub path: String,
    /// HTTP_STR_MATCH / HTTPS_STR_MATCH only.
    pub search: Option<String>,
    pub interval_s: u64,
    pub failure_threshold: u32,
    pub inverted: bool,
    pub disabled: bool,
    pub children: Vec<String>,
    pub health_threshold: u32,
}

impl CheckConfig {
    pub fn from_sdk(h: &HealthCheck) -> Option<CheckConfig> {
        let c = h.health_check_config()?;
        let (kind, search) = match c.r#type() {
            HealthCheckType::Http => (Kind::Http, None),
            HealthCheckType::Https => (Kind::Https, None),
            HealthCheckType::HttpStrMatch => (Kind::Http, Some(c.search_string().unwrap_or_default().to_string())),
            HealthCheckType::HttpsStrMatch => (Kind::Https, Some(c.search_string().unwrap_or_default().to_string())),
            HealthCheckType::Tcp => (Kind::Tcp, None),
            HealthCheckType::Calculated => (Kind::Calculated, None),
            _ => (Kind::Unprobed, None),
        };
        let default_port = if kind == Kind::Https { 443 } else { 80 };
        let path = c.resource_path().unwrap_or("/");
        Some(CheckConfig {
            id: h.id().to_string(),
            kind,
            ip: c.ip_address().filter(|s| !s.is_empty()).map(str::to_string),
            fqdn: c.fully_qualified_domain_name().filter(|s| !s.is_empty()).map(str::to_string),
            port: c.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(default_port),
            path: if path.starts_with('/') { path.to_string() } else { format!("/{path}") },
            search,
            interval_s: c.request_interval().and_then(|i| u64::try_from(i).ok()).filter(|i| *i > 0).unwrap_or(30),
            failure_threshold: c.failure_threshold().and_then(|t| u32::try_from(t).ok()).filter(|t| *t > 0).unwrap_or(3),
            inverted: c.inverted().unwrap_or(false),
            disabled: c.disabled().unwrap_or(false),
            children: c.child_health_checks().to_vec(),
            health_threshold: c.health_threshold().and_then(|t| u32::try_from(t).ok()).unwrap_or(0),
        })
    }

    pub fn probed(&self) -> bool {
        matches!(self.kind, Kind::Http | Kind::Https | Kind::Tcp)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("ListHealthChecks: {0}")]
pub struct ListError(String);

/// Every health check LocalStack holds (paginated).
pub async fn list(r53: &aws_sdk_route53::Client) -> Result<Vec<CheckConfig>, ListError> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..PAGES_MAX {
        let page = r53.list_health_checks().set_marker(marker.take()).send().await.map_err(|e| ListError(e.to_string()))?;
        out.extend(page.health_checks().iter().filter_map(CheckConfig::from_sdk));
        match (page.is_truncated(), page.next_marker()) {
            (true, Some(m)) => marker = Some(m.to_string()),
            _ => break,
        }
    }
    Ok(out)
}
