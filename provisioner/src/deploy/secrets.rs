//! Deployment secrets: generated once, kept under `<config dir>/.provision/<project>/secrets/`
//! with mode 0600, uploaded to hosts with mode 0600. Never printed, logged or serialized:
//! [`Secret`] has no `Serialize` and its `Debug` is redacted. The internal token (gateway ->
//! node user calls) is one per region: `internal_token.<region>` here, `internal_token` on
//! the region's hosts.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::config::{ApiTls, Config};
use crate::keys::{key_dir, KeyError};
use crate::tls;

pub const NAMES: [&str; 4] = ["db_superuser_password", "db_replication_password", "db_engine_password", "admin_token"];
/// Name of the internal token on a host (and, with `.<region>`, here).
pub const INTERNAL_TOKEN: &str = "internal_token";
const SECRET_BYTES: usize = 24;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct Secrets {
    pub db_superuser_password: Secret,
    pub db_replication_password: Secret,
    pub db_engine_password: Secret,
    pub admin_token: Secret,
    /// The internal token of each region, by region name.
    pub internal_tokens: BTreeMap<String, Secret>,
    /// The gateways' certificate and key for the public API.
    pub api: ApiIdentity,
}

impl Secrets {
    /// The internal token of `region` (`ensure` made one for every configured region).
    pub fn internal_token(&self, region: &str) -> Result<&Secret, KeyError> {
        self.internal_tokens.get(region).ok_or_else(|| KeyError::Io {
            path: format!("{INTERNAL_TOKEN}.{region}"),
            message: "no internal token for this region (not in the config when secrets were loaded)".into(),
        })
    }
}

pub fn dir(cfg: &Config) -> PathBuf {
    key_dir(cfg).join("secrets")
}

/// Loads the project's secrets, generating the missing ones (once).
pub fn ensure(cfg: &Config) -> Result<Secrets, KeyError> {
    let d = dir(cfg);
    std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
    let get = |name: &str| load_or_make(&d.join(name));
    Ok(Secrets {
        db_superuser_password: get(NAMES[0])?,
        db_replication_password: get(NAMES[1])?,
        db_engine_password: get(NAMES[2])?,
        admin_token: get(NAMES[3])?,
        internal_tokens: cfg
            .regions
            .iter()
            .map(|r| Ok((r.name.clone(), get(&format!("{INTERNAL_TOKEN}.{}", r.name))?)))
            .collect::<Result<_, KeyError>>()?,
        api: api_identity(cfg)?,
    })
}

fn load_or_make(path: &Path) -> Result<Secret, KeyError> {
    if let Ok(s) = std::fs::read_to_string(path) {
        if !s.trim().is_empty() {
            return Ok(Secret(s.trim().to_string()));
        }
    }
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(|e| io(path, e))?;
    f.write_all(value.as_bytes()).map_err(|e| io(path, e))?;
    Ok(Secret(value))
}

fn io(p: &Path, e: std::io::Error) -> KeyError {
    KeyError::Io { path: p.display().to_string(), message: e.to_string() }
}

/// What the gateways serve on the public port: the certificate chain and its key.
#[derive(Debug, Clone)]
pub struct ApiIdentity {
    pub chain_pem: String,
    pub key_pem: Secret,
}

/// The gateways' identity: the operator's `[tls]` files, or on a local cloud the generated
/// one, made once (and anew when it no longer covers the API name or expires within
/// `RENEW_BEFORE_DAYS`), kept in `secrets/` and so in the vault.
pub fn api_identity(cfg: &Config) -> Result<ApiIdentity, KeyError> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| io(p, e));
    if let ApiTls::Files { cert_file, key_file, .. } = &cfg.tls {
        return Ok(ApiIdentity { chain_pem: read(cert_file)?, key_pem: Secret(read(key_file)?) });
    }
    let d = dir(cfg);
    let name = cfg.dns.api_record.trim_end_matches('.');
    let (chain, key) = (read(&d.join(tls::CHAIN_PEM)).unwrap_or_default(), read(&d.join(tls::KEY_PEM)).unwrap_or_default());
    let soon = std::time::SystemTime::now() + std::time::Duration::from_secs(tls::RENEW_BEFORE_DAYS * 86_400);
    if tls::identity_problem(chain.as_bytes(), key.as_bytes(), name, soon).is_none() && d.join(tls::CA_PEM).exists() {
        return Ok(ApiIdentity { chain_pem: chain, key_pem: Secret(key) });
    }
    std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
    let g = tls::generate(&cfg.project, name)
        .map_err(|e| KeyError::Io { path: d.join(tls::CHAIN_PEM).display().to_string(), message: e.to_string() })?;
    for (file, value) in [(tls::CA_PEM, &g.ca_pem), (tls::CHAIN_PEM, &g.chain_pem), (tls::KEY_PEM, &g.key_pem)] {
        write_private(&d.join(file), value)?;
    }
    Ok(ApiIdentity { chain_pem: g.chain_pem, key_pem: Secret(g.key_pem) })
}

/// The CA that provision's own calls to the public API trust: `[tls] ca_file`, the generated
/// CA (made by `deploy`, or pulled from the vault), or None: the public roots.
pub fn api_ca(cfg: &Config) -> Option<String> {
    match &cfg.tls {
        ApiTls::Files { ca_file, .. } => ca_file.as_ref().and_then(|p| std::fs::read_to_string(p).ok()),
        ApiTls::Generated => std::fs::read_to_string(dir(cfg).join(tls::CA_PEM)).ok(),
    }
}

fn write_private(path: &Path, value: &str) -> Result<(), KeyError> {
    crate::keys::replace_private(path, value).map_err(|e| io(path, e))
}
