//! `.provision/<project>/` is a cache of the project's vault in AWS (`cloud::vault`): the
//! operator key, the pinned host keys and the deployment secrets, kept in both regions'
//! Parameter Store. Every look fills what is missing here from the vault ([`pull`]), so a
//! second machine with the same `regions.toml` and AWS credentials can run `status`,
//! `failover` and `failback`, and `up` never generates fresh secrets for a project that has
//! them. `up`, `deploy` and `failback` put what they generated or pinned back ([`push`]).
//! The pinned host keys follow the vault: a host another machine rebuilt has a new key there.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::cloud::{Cloud, CloudError};
use crate::config::Config;
use crate::keys::key_dir;

/// Pinned host keys change as hosts come and go: the newest local copy replaces the vault's.
const KNOWN_HOSTS: &str = "known_hosts";

/// Items that change by design (the pinned host keys; the generated API certificate, remade
/// for a new API name or before it expires): a pull takes the vault's copy, a push the local one.
/// Every other item is made once, and a copy that differs is refused.
fn replaceable(item: &str) -> bool {
    item == KNOWN_HOSTS || item.strip_prefix("secrets/").is_some_and(|n| crate::tls::GENERATED_FILES.contains(&n))
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(
        "{path} differs from the project's vault in AWS (`/provision/{project}/vault/{item}` in {region}): this machine's `.provision/{project}/` belongs to another deployment with the same project name\n  \
         fix: move `.provision/{project}/` aside (the vault's copy is then used), or give this deployment its own `project` name"
    )]
    Differs { path: String, project: String, item: String, region: String },
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// The files under `.provision/<project>/` (and its `secrets/`) as vault items: relative
/// paths. Whatever `keys` and `deploy::secrets` keep there is kept, with no list to drift.
fn local_items(cfg: &Config) -> Result<BTreeMap<String, String>, VaultError> {
    let dir = key_dir(cfg);
    let mut items = BTreeMap::new();
    for sub in ["", "secrets"] {
        let d = dir.join(sub);
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&d, e)),
        };
        for e in entries {
            let path = e.map_err(|e| io(&d, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !path.is_file() || !is_item_name(name) {
                continue;
            }
            let value = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            if !value.trim().is_empty() {
                items.insert(if sub.is_empty() { name.to_string() } else { format!("{sub}/{name}") }, value);
            }
        }
    }
    Ok(items)
}

/// Names SSM takes in a parameter path, and no temporary file of ours (dot names; the
/// suffix of an older release's).
fn is_item_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with(TMP_SUFFIX)
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// A vault item names a file under `.provision/<project>/` and nothing outside it.
fn item_path(cfg: &Config, item: &str) -> Option<std::path::PathBuf> {
    let parts: Vec<&str> = item.split('/').collect();
    let ok = match parts.as_slice() {
        [name] => is_item_name(name),
        ["secrets", name] => is_item_name(name),
        _ => false,
    };
    ok.then(|| key_dir(cfg).join(item))
}

const TMP_SUFFIX: &str = ".vault-tmp";

/// Fills the missing local items from the vault of the first region that answers (both are
/// read; a region that does not answer is skipped, so this works with one region down).
/// A local key or secret that differs from the vault's is refused. Returns the items written.
pub async fn pull(cfg: &Config, cloud: &Cloud) -> Result<Vec<String>, VaultError> {
    let reads =
        futures::future::join_all(cfg.regions.iter().map(|r| async move { (r.name.clone(), cloud.vault_items(&r.name).await) })).await;
    let mut vault: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (region, items) in reads.into_iter().filter_map(|(r, v)| v.ok().map(|v| (r, v))) {
        for (item, value) in items {
            vault.entry(item).or_insert((region.clone(), value));
        }
    }
    let mut written = Vec::new();
    for (item, (region, value)) in vault {
        let Some(path) = item_path(cfg, &item) else { continue };
        match std::fs::read_to_string(&path) {
            Ok(local) if local.trim() == value.trim() => {}
            Ok(_) if replaceable(&item) => {
                replace_private(&path, &value)?;
                written.push(item);
            }
            Ok(_) => return Err(VaultError::Differs { path: shown(&path), project: cfg.project.clone(), item, region }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_private(&path, &value)?;
                written.push(item);
            }
            Err(e) => return Err(io(&path, e)),
        }
    }
    Ok(written)
}

/// Makes every region's vault hold every local item: keys and secrets are created once (a
/// different value there is refused), pinned host keys are replaced by the local copy.
/// Returns the regions it could not write, with why (the next `up` retries them).
pub async fn push(cfg: &Config, cloud: &Cloud) -> Result<Vec<String>, VaultError> {
    let local = local_items(cfg)?;
    let mut failed = Vec::new();
    for r in &cfg.regions {
        if let Err(e) = push_region(cfg, cloud, &r.name, &local).await {
            match e {
                VaultError::Cloud(e) => failed.push(format!("{}: {e}", r.name)),
                other => return Err(other),
            }
        }
    }
    Ok(failed)
}

async fn push_region(cfg: &Config, cloud: &Cloud, region: &str, local: &BTreeMap<String, String>) -> Result<(), VaultError> {
    let there = cloud.vault_items(region).await?;
    for (item, value) in local {
        match there.get(item) {
            Some(v) if v.trim() == value.trim() => {}
            Some(_) if replaceable(item) => {
                cloud.vault_put(region, item, value, true).await?;
            }
            Some(_) => {
                let path = shown(&key_dir(cfg).join(item));
                return Err(VaultError::Differs { path, project: cfg.project.clone(), item: item.clone(), region: region.into() });
            }
            None => {
                cloud.vault_put(region, item, value, false).await?;
            }
        }
    }
    Ok(())
}

fn write_private(path: &Path, value: &str) -> Result<(), VaultError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| io(path, e))?;
    f.write_all(value.as_bytes()).map_err(|e| io(path, e))
}

fn replace_private(path: &Path, value: &str) -> Result<(), VaultError> {
    crate::keys::replace_private(path, value).map_err(|e| io(path, e))
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

fn io(p: &Path, e: std::io::Error) -> VaultError {
    VaultError::Io { path: shown(p), message: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_names_a_file_in_the_project_dir_and_nothing_outside_it() {
        let cfg = crate::config::Config::parse("regions.toml", Path::new("."), crate::config::EMBEDDED_REGIONS_TOML).unwrap();
        assert!(item_path(&cfg, "id_ed25519").is_some());
        assert!(item_path(&cfg, "secrets/internal_token.eu-west-1").is_some());
        for bad in ["../x", "secrets/../../x", "a/b", "", ".hidden", "secrets/", "known_hosts.vault-tmp"] {
            assert_eq!(item_path(&cfg, bad), None, "{bad:?}");
        }
    }
}
