//! The SSH layer: connect to a host with the operator's key, pin its host key on first contact,
//! run commands and upload files, and drive many hosts in parallel.
//!
//! Built on libssh2 (`ssh2`), which is blocking and whose sessions are not thread-safe: a
//! [`Session`] belongs to one host and is driven from one thread. [`Fleet`] runs one session per
//! host on tokio's blocking pool with a concurrency bound.
//!
//! Files: `known_hosts.rs` (pinning), `session.rs` (connect with retry, exec),
//! `upload.rs` (checksum-skipping atomic upload), `fleet.rs` (parallel hosts), `jump.rs` (the
//! tunnel through a bastion).
//! The operator's private key is only ever passed to libssh2 by path: it is never read, logged
//! or printed here.
//!
//! ```text
//! let cfg = SshConfig::new("admin", key_dir.join("id_ed25519"), key_dir.join("known_hosts"));
//! let fleet = Fleet::new(cfg, 8);
//! let results = fleet.run(&targets, |s| {
//!     let written = s.upload(&unit_file, "/etc/systemd/system/engine.service", 0o644, true)?;
//!     if written.changed() {
//!         s.exec_ok("systemctl daemon-reload && systemctl restart engine", true)?;
//!     }
//!     Ok(written)
//! }).await;   // Vec<HostResult<Upload>>, one per target, in order
//! ```

mod fleet;
mod jump;
mod known_hosts;
mod session;
mod upload;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use fleet::{Fleet, HostResult};
pub use known_hosts::{fingerprint_sha256, KnownHosts, Pin};
pub use session::{shell_quote, sudo_wrap, Output, Session};
pub use upload::Upload;

/// Where to connect: a host name or IP address and a TCP port, reached directly or through a
/// bastion (jump host).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// When set, the TCP connection is a `direct-tcpip` channel opened on this bastion.
    pub jump: Option<Box<Jump>>,
    /// The user to log in as on this host, when it is not [`SshConfig::user`] (each region
    /// has its own `ssh_user`: images differ).
    pub user: Option<String>,
}

/// A bastion: where it listens and the user to log in as (with the same key and known_hosts
/// as the hosts behind it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Jump {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl Target {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Target { host: host.into(), port, jump: None, user: None }
    }

    /// The same target, logged into as `user`.
    pub fn as_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The same target, reached through `jump` when one is given.
    pub fn via(mut self, jump: Option<Jump>) -> Self {
        self.jump = jump.map(Box::new);
        self
    }

    /// The name used in errors, logs and known_hosts: `host` on port 22, `[host]:port` otherwise
    /// (the OpenSSH known_hosts convention, so `ssh-keygen -R` accepts it).
    pub fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.port == 22 {
            write!(f, "{}", self.host)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How to connect and the bounds on every operation. One value serves a whole fleet.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// Remote user to log in as (commands run through `sudo -n` when it is not `root` and the
    /// caller asks for sudo).
    pub user: String,
    /// OpenSSH-format private key file (e.g. `.provision/<project>/id_ed25519`).
    pub private_key_path: PathBuf,
    /// The project's known_hosts file; created with mode 0600 on first contact.
    pub known_hosts_path: PathBuf,
    /// Bound on one TCP connect, and on each blocking step of the handshake and authentication.
    pub connect_timeout_ms: u64,
    /// Connection attempts before giving up (>= 1).
    pub attempts_max: u32,
    /// Wait after the first failed attempt; doubles per attempt up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Bound on one command (exec) or one transfer (upload), wall clock.
    pub command_timeout_ms: u64,
    /// Bytes kept of each of stdout and stderr; the rest is read and dropped (`Output::truncated`).
    pub output_bytes_max: usize,
}

impl SshConfig {
    /// Defaults suited to hosts that are still booting: 10 attempts, 0.5 s doubling to 8 s
    /// (about 45 s of waiting in all), 10 s per connect, 10 min per command, 1 MiB of output.
    pub fn new(user: impl Into<String>, private_key_path: impl Into<PathBuf>, known_hosts_path: impl Into<PathBuf>) -> Self {
        SshConfig {
            user: user.into(),
            private_key_path: private_key_path.into(),
            known_hosts_path: known_hosts_path.into(),
            connect_timeout_ms: 10_000,
            attempts_max: 10,
            backoff_initial_ms: 500,
            backoff_max_ms: 8_000,
            command_timeout_ms: 600_000,
            output_bytes_max: 1 << 20,
        }
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 1).
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        assert!(attempt >= 1, "attempts count from 1");
        let shift = (attempt - 1).min(32);
        self.backoff_initial_ms.saturating_mul(1u64 << shift).min(self.backoff_max_ms)
    }
}

/// A step of talking to a host, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Connect,
    Handshake,
    HostKey,
    Auth,
    Exec,
    Upload,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Connect => "tcp connect",
            Step::Handshake => "ssh handshake",
            Step::HostKey => "host key check",
            Step::Auth => "authentication",
            Step::Exec => "exec",
            Step::Upload => "upload",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// Connect or handshake kept failing (host down, still booting, wrong address or port).
    #[error("{host}: unreachable: {attempts} attempts over {elapsed_ms} ms failed; last at {step}: {message}")]
    Unreachable { host: String, attempts: u32, elapsed_ms: u64, step: Step, message: String },

    /// The host offers a different key than the one pinned in known_hosts.
    #[error(
        "{host}: HOST KEY CHANGED: the host offers {offered_fingerprint} but {known_hosts} pins {pinned_fingerprint}; \
         refusing to connect (possible man-in-the-middle). If the host was legitimately rebuilt, remove the line for \
         {name} from {known_hosts} (ssh-keygen -R '{name}' -f {known_hosts}) and connect again"
    )]
    HostKeyChanged { host: String, name: String, known_hosts: String, pinned_fingerprint: String, offered_fingerprint: String },

    /// The host refused the operator's key.
    #[error("{host}: authentication as {user} with key {key_path} refused: {message}")]
    AuthRefused { host: String, user: String, key_path: String, message: String },

    /// The known_hosts file could not be read or written.
    #[error("{host}: known_hosts {path}: {message}")]
    KnownHosts { host: String, path: String, message: String },

    /// An SSH-level failure of one step after the connection was up.
    #[error("{host}: {step}: {message}")]
    Step { host: String, step: Step, message: String },

    /// A command exceeded `command_timeout_ms`.
    #[error("{host}: {step}: `{what}` did not finish within {timeout_ms} ms")]
    Timeout { host: String, step: Step, what: String, timeout_ms: u64 },

    /// A command that had to succeed exited non-zero.
    #[error("{host}: `{command}` exited with {exit_code}: {stderr}")]
    CommandFailed { host: String, command: String, exit_code: i32, stderr: String },

    /// The file on the host does not have the checksum of the bytes sent.
    #[error("{host}: upload {remote_path}: sha256 on the host is {remote_sha256}, expected {local_sha256}")]
    UploadCorrupt { host: String, remote_path: String, local_sha256: String, remote_sha256: String },

    /// A caller error (e.g. a relative remote path), named with the host.
    #[error("{host}: {message}")]
    Invalid { host: String, message: String },

    /// The per-host closure of a [`Fleet`] run panicked.
    #[error("{host}: task panicked: {message}")]
    Panicked { host: String, message: String },
}

impl SshError {
    /// The host this error is about (every variant names one).
    pub fn host(&self) -> &str {
        match self {
            SshError::Unreachable { host, .. }
            | SshError::HostKeyChanged { host, .. }
            | SshError::AuthRefused { host, .. }
            | SshError::KnownHosts { host, .. }
            | SshError::Step { host, .. }
            | SshError::Timeout { host, .. }
            | SshError::CommandFailed { host, .. }
            | SshError::UploadCorrupt { host, .. }
            | SshError::Invalid { host, .. }
            | SshError::Panicked { host, .. } => host,
        }
    }
}
