//! Upload a file: skip it when the host already has the same bytes, otherwise send it to a
//! staging path by SCP, verify its sha256 on the host, and rename it into place atomically.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::session::{shell_quote, Session};
use super::{SshError, Step};

/// What an upload did. Only `Written` transferred bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Same content and mode already in place: nothing was sent or touched.
    Unchanged,
    /// Same content; only the mode was corrected.
    ModeChanged,
    /// The content was sent and renamed into place.
    Written,
}

impl Upload {
    pub fn changed(self) -> bool {
        self != Upload::Unchanged
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the probe's output: `<sha256>\n<octal mode>\n` for an existing file, empty otherwise.
pub(crate) fn parse_probe(stdout: &str) -> Option<(String, u32)> {
    let mut lines = stdout.lines();
    let sha = lines.next()?.trim();
    let mode = u32::from_str_radix(lines.next()?.trim(), 8).ok()?;
    (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| (sha.to_ascii_lowercase(), mode))
}

/// The install script's exit status when the staged file's checksum is wrong.
pub(crate) const CORRUPT_EXIT: i32 = 86;

/// The script that verifies the sent file's sha256 (exit [`CORRUPT_EXIT`] printing the sum
/// found), copies it to `staging` when `copy` (sent elsewhere, installed through sudo), sets
/// `mode` and renames it over `dest`. Whatever happens, its trap removes `sent` and `staging`
/// (after the rename `staging` no longer exists). All paths must be absolute.
pub(crate) fn install_script(sent: &str, staging: &str, dest: &str, mode: u32, sha256: &str, copy: bool) -> String {
    assert!([sent, staging, dest].iter().all(|p| p.starts_with('/')), "absolute paths only");
    assert!(sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()), "a sha256 in hex");
    assert!(mode <= 0o7777, "a permission mode");
    let (sent_q, staging_q, dest_q) = (shell_quote(sent), shell_quote(staging), shell_quote(dest));
    let trap_files = shell_quote(&format!("rm -f -- {sent_q} {staging_q}"));
    let copy = if copy {
        let dir = Path::new(dest).parent().and_then(|d| d.to_str()).filter(|d| !d.is_empty()).unwrap_or("/");
        format!("mkdir -p -- {}; cp -- {sent_q} {staging_q}; ", shell_quote(dir))
    } else {
        assert_eq!(sent, staging, "without a copy the file is sent to its staging path");
        String::new()
    };
    format!(
        "set -e; trap {trap_files} EXIT; \
         sum=$(sha256sum < {sent_q} | cut -c1-64); \
         if [ \"$sum\" != {sha256} ]; then echo \"$sum\"; exit {CORRUPT_EXIT}; fi; \
         {copy}chmod {mode:o} -- {staging_q}; mv -f -- {staging_q} {dest_q}"
    )
}

impl Session {
    /// Makes `remote_path` (absolute) hold `bytes` with permission bits `mode`, creating parent
    /// directories. With `sudo` and a non-root user, the file is staged in /tmp and installed as
    /// root. Readers of `remote_path` see the old file or the new one, never a partial one.
    pub fn upload(&mut self, bytes: &[u8], remote_path: &str, mode: u32, sudo: bool) -> Result<Upload, SshError> {
        self.upload_hashed(bytes, &sha256_hex(bytes), remote_path, mode, sudo)
    }

    /// [`Session::upload`] with the bytes' sha256 (lowercase hex) already known: large files
    /// sent to many hosts are hashed once, not once per host.
    pub fn upload_hashed(&mut self, bytes: &[u8], sha256: &str, remote_path: &str, mode: u32, sudo: bool) -> Result<Upload, SshError> {
        debug_assert!(sha256.len() == 64, "sha256 must be 64 hex digits");
        let invalid = |message: String| SshError::Invalid { host: self.host().to_string(), message };
        if !remote_path.starts_with('/') || remote_path.ends_with('/') || remote_path.contains(['\0', '\n']) {
            return Err(invalid(format!("upload: remote path {remote_path:?} must be an absolute file path")));
        }
        if mode > 0o7777 {
            return Err(invalid(format!("upload {remote_path}: mode {mode:o} is not a permission mode")));
        }
        let local_sha = sha256.to_ascii_lowercase();
        let path_q = shell_quote(remote_path);

        let suffix = format!("{:016x}", rand::random::<u64>());
        let staging = format!("{remote_path}.tmp-{suffix}");
        let dir = Path::new(remote_path).parent().and_then(|d| d.to_str()).filter(|d| !d.is_empty()).unwrap_or("/");
        let dir_q = shell_quote(dir);
        // As root (or writing as ourselves) we send straight to the staging path; through sudo we
        // send to a private file in /tmp first and copy it to the staging path as root.
        let via_sudo = sudo && self.user() != "root";
        let sent_path = if via_sudo { format!("/tmp/provision-upload-{suffix}") } else { staging.clone() };
        let sent_q = shell_quote(&sent_path);

        // One round trip: the current checksum and mode (nothing for a missing file), and the
        // parent directory for a direct send.
        let mkdir = if via_sudo { String::new() } else { format!("mkdir -p -- {dir_q} && ") };
        let probe = format!("{mkdir}if [ -f {path_q} ]; then sha256sum -- {path_q} | cut -c1-64 && stat -c %a -- {path_q}; fi");
        let existing = parse_probe(&self.exec_ok(&probe, sudo)?.stdout);
        if let Some((remote_sha, remote_mode)) = existing {
            if remote_sha == local_sha {
                if remote_mode == mode {
                    return Ok(Upload::Unchanged);
                }
                self.exec_ok(&format!("chmod {mode:o} -- {path_q}"), sudo)?;
                return Ok(Upload::ModeChanged);
            }
        }

        if let Err(e) = self.scp(bytes, &sent_path) {
            let _ = self.exec(&format!("rm -f -- {sent_q}"), false);
            return Err(e);
        }

        let install = install_script(&sent_path, &staging, remote_path, mode, &local_sha, via_sudo);
        let out = self.exec(&install, via_sudo)?;
        if out.exit_code == CORRUPT_EXIT {
            return Err(SshError::UploadCorrupt {
                host: self.host().to_string(),
                remote_path: sent_path,
                local_sha256: local_sha,
                remote_sha256: out.stdout.trim().to_string(),
            });
        }
        if !out.success() {
            return Err(SshError::CommandFailed {
                host: self.host().to_string(),
                command: format!("install {remote_path}"),
                exit_code: out.exit_code,
                stderr: out.stderr.trim().to_string(),
            });
        }
        Ok(Upload::Written)
    }

    /// Sends `bytes` to `remote_path` (mode 0600) over SCP within the command timeout.
    fn scp(&mut self, bytes: &[u8], remote_path: &str) -> Result<(), SshError> {
        let deadline = Instant::now() + Duration::from_millis(self.command_timeout_ms());
        let err = |s: &Session, what: &str, e: &dyn std::fmt::Display| {
            if Instant::now() >= deadline {
                SshError::Timeout {
                    host: s.host().to_string(),
                    step: Step::Upload,
                    what: format!("scp {remote_path}"),
                    timeout_ms: s.command_timeout_ms(),
                }
            } else {
                s.step_err(Step::Upload, format!("scp {remote_path}: {what}: {e}"))
            }
        };
        let mut ch = self.raw().scp_send(Path::new(remote_path), 0o600, bytes.len() as u64, None).map_err(|e| err(self, "open", &e))?;
        for chunk in bytes.chunks(256 * 1024) {
            if Instant::now() >= deadline {
                return Err(err(self, "write", &"deadline passed"));
            }
            ch.write_all(chunk).map_err(|e| err(self, "write", &e))?;
        }
        ch.send_eof().map_err(|e| err(self, "eof", &e))?;
        ch.wait_eof().map_err(|e| err(self, "eof", &e))?;
        ch.close().map_err(|e| err(self, "close", &e))?;
        ch.wait_close().map_err(|e| err(self, "close", &e))?;
        Ok(())
    }
}
