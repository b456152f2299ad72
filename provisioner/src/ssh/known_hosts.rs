//! Host-key pinning in a project known_hosts file (OpenSSH format: `name keytype base64`).
//!
//! First contact appends the host's key; later contacts must offer the same key. A host with a
//! line in the file whose keys all differ from the offered one is refused. Lines that are not
//! ours to interpret (comments, `@` markers, hashed names) are kept and ignored.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::{SshError, Target};

/// Serialises read-check-append within this process; `File::lock` does it across processes.
static FILE_GUARD: Mutex<()> = Mutex::new(());

/// The outcome of a successful check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// The offered key is the pinned one.
    Matched,
    /// First contact: the key was appended to the file.
    Pinned,
}

#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
}

/// OpenSSH's fingerprint of a public key blob: `SHA256:<base64 without padding>`.
pub fn fingerprint_sha256(key_blob: &[u8]) -> String {
    let digest = Sha256::digest(key_blob);
    format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
}

/// The key type named inside an SSH public key blob (`string keytype` comes first).
pub(crate) fn key_type_of_blob(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(0..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4usize.checked_add(len)?)?;
    let name = std::str::from_utf8(name).ok()?;
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic())).then_some(name)
}

/// One parsed `names keytype base64` line.
struct Entry<'a> {
    names: &'a str,
    key_type: &'a str,
    key_b64: &'a str,
}

fn parse_line(line: &str) -> Option<Entry<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with('@') || line.starts_with('|') {
        return None;
    }
    let mut fields = line.split_whitespace();
    Some(Entry { names: fields.next()?, key_type: fields.next()?, key_b64: fields.next()? })
}

impl KnownHosts {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KnownHosts { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts `key_blob` for `target` if it is the pinned key, pins it if the host has no line,
    /// and refuses it with [`SshError::HostKeyChanged`] otherwise.
    pub fn check_or_pin(&self, target: &Target, key_blob: &[u8]) -> Result<Pin, SshError> {
        let host = target.to_string();
        let name = target.known_hosts_name();
        let path_str = self.path.display().to_string();
        let io = |e: &dyn std::fmt::Display| SshError::KnownHosts { host: host.clone(), path: path_str.clone(), message: e.to_string() };
        let key_type = key_type_of_blob(key_blob).ok_or_else(|| io(&"the host sent a malformed public key"))?;
        let key_b64 = base64::engine::general_purpose::STANDARD.encode(key_blob);

        let _guard = FILE_GUARD.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(&e))?;
        }
        let mut file = std::fs::OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(&self.path).map_err(|e| io(&e))?;
        file.lock().map_err(|e| io(&e))?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|e| io(&e))?;

        let mut pinned_other: Option<String> = None;
        for entry in text.lines().filter_map(parse_line) {
            if !entry.names.split(',').any(|n| n == name) {
                continue;
            }
            if entry.key_type == key_type && entry.key_b64 == key_b64 {
                return Ok(Pin::Matched);
            }
            if pinned_other.is_none() {
                let blob = base64::engine::general_purpose::STANDARD.decode(entry.key_b64).unwrap_or_default();
                pinned_other = Some(format!("{} {}", entry.key_type, fingerprint_sha256(&blob)));
            }
        }
        if let Some(pinned) = pinned_other {
            return Err(SshError::HostKeyChanged {
                host,
                name,
                known_hosts: path_str,
                pinned_fingerprint: pinned,
                offered_fingerprint: format!("{key_type} {}", fingerprint_sha256(key_blob)),
            });
        }

        let separator = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
        let line = format!("{separator}{name} {key_type} {key_b64}\n");
        file.seek(SeekFrom::End(0)).map_err(|e| io(&e))?;
        file.write_all(line.as_bytes()).map_err(|e| io(&e))?;
        file.sync_data().map_err(|e| io(&e))?;
        tracing::info!(host = %host, file = %path_str, fingerprint = %fingerprint_sha256(key_blob), "pinned host key on first contact");
        Ok(Pin::Pinned)
    }

    /// Drops the pins of `targets` (hosts that were terminated and are rebuilt at the same
    /// addresses, e.g. by `failback`). Other lines are kept as they are.
    pub fn forget(&self, targets: &[Target]) -> std::io::Result<usize> {
        let _guard = FILE_GUARD.lock().unwrap_or_else(|p| p.into_inner());
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let names: Vec<String> = targets.iter().map(Target::known_hosts_name).collect();
        let drop = |l: &str| parse_line(l).is_some_and(|e| e.names.split(',').any(|n| names.iter().any(|x| x == n)));
        let kept: Vec<&str> = text.lines().filter(|l| !drop(l)).collect();
        let removed = text.lines().count() - kept.len();
        if removed > 0 {
            let tmp = self.path.with_extension("tmp");
            std::fs::write(&tmp, kept.iter().map(|l| format!("{l}\n")).collect::<String>())?;
            std::fs::rename(&tmp, &self.path)?;
        }
        Ok(removed)
    }
}
