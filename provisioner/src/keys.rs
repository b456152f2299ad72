//! The operator's SSH key: the configured public key, or an ed25519 key generated once under
//! `<config dir>/.provision/<project>/` with mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

pub fn key_dir(cfg: &Config) -> PathBuf {
    cfg.dir.join(".provision").join(&cfg.project)
}

pub fn private_key_path(cfg: &Config) -> PathBuf {
    key_dir(cfg).join("id_ed25519")
}

/// The public key to import, if it exists already (no side effects: used by `plan`).
pub fn existing_public_key(cfg: &Config) -> Result<Option<String>, KeyError> {
    let path = match &cfg.ssh_public_key {
        Some(p) => p.clone(),
        None => private_key_path(cfg).with_extension("pub"),
    };
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && cfg.ssh_public_key.is_none() => Ok(None),
        Err(e) => Err(KeyError::Io { path: path.display().to_string(), message: e.to_string() }),
    }
}

/// The public key to import, generating the project key first when none is configured.
pub fn ensure_public_key(cfg: &Config) -> Result<String, KeyError> {
    if let Some(k) = existing_public_key(cfg)? {
        return Ok(k);
    }
    let io = |p: &PathBuf, e: &dyn std::fmt::Display| KeyError::Io { path: p.display().to_string(), message: e.to_string() };
    let path = private_key_path(cfg);
    let pubpath = path.with_extension("pub");
    // Interrupted after writing the private key: derive the public half from it.
    if path.exists() {
        let key = ssh_key::PrivateKey::read_openssh_file(&path).map_err(|e| io(&path, &e))?;
        let public = key.public_key().to_openssh().map_err(|e| io(&path, &e))?;
        std::fs::write(&pubpath, format!("{public}\n")).map_err(|e| io(&pubpath, &e))?;
        return Ok(public);
    }
    let dir = key_dir(cfg);
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, &e))?;
    let key = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).map_err(|e| io(&dir, &e))?;
    let private = key.to_openssh(ssh_key::LineEnding::LF).map_err(|e| io(&dir, &e))?;
    let public = key.public_key().to_openssh().map_err(|e| io(&dir, &e))?;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(|e| io(&path, &e))?;
    f.write_all(private.as_bytes()).map_err(|e| io(&path, &e))?;
    std::fs::write(&pubpath, format!("{public}\n")).map_err(|e| io(&pubpath, &e))?;
    Ok(public)
}
