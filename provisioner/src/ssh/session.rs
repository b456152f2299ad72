//! One authenticated SSH session to one host: connect with bounded retry, run commands.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::jump::Bastion;
use super::known_hosts::{KnownHosts, Pin};
use super::{Jump, SshConfig, SshError, Step, Target};

/// libssh2 error codes that mean "the server said no to this key" (not worth retrying).
const LIBSSH2_ERROR_FILE: i32 = -16;
const LIBSSH2_ERROR_AUTHENTICATION_FAILED: i32 = -18;
const LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED: i32 = -19;

const HOST_KEY_PREFERENCE: &str =
    "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,ssh-rsa";

/// What a command did. `stdout`/`stderr` hold at most `output_bytes_max` bytes each
/// (decoded lossily as UTF-8); `truncated` says whether anything was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit status; -1 when the command was killed by a signal (see `signal`).
    pub exit_code: i32,
    pub signal: Option<String>,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.exit_code == 0 && self.signal.is_none()
    }
}

/// `s` as one POSIX shell word: single-quoted, with each `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The command line that runs `cmd` as root: `cmd` itself for root, otherwise through
/// non-interactive sudo (`sudo -n sh -c '<cmd>'`, which fails instead of prompting).
pub fn sudo_wrap(user: &str, cmd: &str) -> String {
    if user == "root" {
        cmd.to_string()
    } else {
        format!("sudo -n sh -c {}", shell_quote(cmd))
    }
}

/// One failed connection attempt: worth retrying (host booting) or final.
enum Attempt {
    Retry(Step, String),
    Fatal(SshError),
}

/// Keeps the first `bytes_max` bytes pushed into it and whether any were dropped.
#[derive(Debug)]
pub(crate) struct BoundedBuf {
    pub kept: Vec<u8>,
    pub truncated: bool,
    bytes_max: usize,
}

impl BoundedBuf {
    pub fn new(bytes_max: usize) -> Self {
        BoundedBuf { kept: Vec::new(), truncated: false, bytes_max }
    }

    pub fn push(&mut self, data: &[u8]) {
        let room = self.bytes_max - self.kept.len();
        self.truncated |= data.len() > room;
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
        debug_assert!(self.kept.len() <= self.bytes_max);
    }
}

/// Reads two non-blocking readers (a command's stdout and stderr) to their ends, alternating so
/// that neither can fill the channel window while we wait on the other. Sleeps 1..10 ms when
/// neither has data. Errors with `TimedOut` once `deadline` has passed.
pub(crate) fn drain_both(
    a: &mut impl Read,
    b: &mut impl Read,
    bytes_max: usize,
    deadline: Instant,
) -> std::io::Result<(BoundedBuf, BoundedBuf)> {
    const IDLE_SLEEP_MAX_US: u64 = 10_000;
    let mut bufs = [BoundedBuf::new(bytes_max), BoundedBuf::new(bytes_max)];
    let mut done = [false, false];
    let mut chunk = vec![0u8; 32 * 1024];
    let mut idle_us = 0u64;
    while !(done[0] && done[1]) {
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline passed"));
        }
        let mut progressed = false;
        for i in 0..2 {
            if done[i] {
                continue;
            }
            let r: &mut dyn Read = if i == 0 { a } else { b };
            match r.read(&mut chunk) {
                Ok(0) => done[i] = true,
                Ok(n) => {
                    bufs[i].push(&chunk[..n]);
                    progressed = true;
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {}
                Err(e) => return Err(e),
            }
        }
        if progressed {
            idle_us = 0;
        } else if !(done[0] && done[1]) {
            idle_us = (idle_us * 2).clamp(1_000, IDLE_SLEEP_MAX_US);
            std::thread::sleep(Duration::from_micros(idle_us));
        }
    }
    let [out, err] = bufs;
    Ok((out, err))
}

fn timeout_u32(ms: u64) -> u32 {
    // libssh2 treats 0 as "no timeout": keep at least 1 ms.
    ms.clamp(1, u32::MAX as u64) as u32
}

pub struct Session {
    target: Target,
    host: String,
    user: String,
    sess: ssh2::Session,
    /// The socket under `sess` (TCP, or the local end of a bastion tunnel); owned by `sess`.
    tcp_fd: i32,
    pin: Pin,
    command_timeout_ms: u64,
    output_bytes_max: usize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("host", &self.host).field("user", &self.user).field("pin", &self.pin).finish()
    }
}

impl Session {
    /// Connects, checks or pins the host key, and authenticates. Connect and handshake failures
    /// are retried with exponential backoff (`attempts_max`, `backoff_*_ms`); a changed host key
    /// or a refused key is final.
    pub fn connect(cfg: &SshConfig, target: &Target) -> Result<Session, SshError> {
        assert!(cfg.attempts_max >= 1, "attempts_max must be at least 1");
        assert!(cfg.output_bytes_max >= 1, "output_bytes_max must be at least 1");
        let host = target.to_string();
        if let Err(e) = std::fs::metadata(&cfg.private_key_path) {
            return Err(SshError::Invalid { host, message: format!("private key {}: {e}", cfg.private_key_path.display()) });
        }
        let started = Instant::now();
        let mut last = (Step::Connect, String::new());
        for attempt in 1..=cfg.attempts_max {
            match Self::attempt(cfg, target) {
                Ok(s) => return Ok(s),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(step, message)) => {
                    tracing::debug!(host = %host, attempt, step = %step, %message, "ssh connect attempt failed");
                    last = (step, message);
                }
            }
            if attempt < cfg.attempts_max {
                std::thread::sleep(Duration::from_millis(cfg.backoff_ms(attempt)));
            }
        }
        Err(SshError::Unreachable {
            host,
            attempts: cfg.attempts_max,
            elapsed_ms: started.elapsed().as_millis() as u64,
            step: last.0,
            message: last.1,
        })
    }

    /// A TCP connection to the target itself, trying each resolved address.
    fn tcp(cfg: &SshConfig, target: &Target) -> Result<TcpStream, Attempt> {
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
        let addrs: Vec<_> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| Attempt::Retry(Step::Connect, format!("resolve: {e}")))?
            .collect();
        let mut tcp = Err(Attempt::Retry(Step::Connect, "no address".into()));
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, connect_timeout) {
                Ok(s) => {
                    tcp = Ok(s);
                    break;
                }
                Err(e) => tcp = Err(Attempt::Retry(Step::Connect, format!("{addr}: {e}"))),
            }
        }
        let tcp = tcp?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    fn attempt(cfg: &SshConfig, target: &Target) -> Result<Session, Attempt> {
        let host = target.to_string();
        let user = target.user.as_deref().unwrap_or(&cfg.user);
        let mut sess = ssh2::Session::new()
            .map_err(|e| Attempt::Fatal(SshError::Step { host: host.clone(), step: Step::Handshake, message: e.to_string() }))?;
        sess.set_timeout(timeout_u32(cfg.connect_timeout_ms));
        // Prefer ed25519 host keys so the key pinned on first contact is the one offered later
        // (libssh2 drops the names it does not support).
        if let Err(e) = sess.method_pref(ssh2::MethodType::HostKey, HOST_KEY_PREFERENCE) {
            tracing::debug!(host = %host, error = %e, "host key preference not applied");
        }
        let tcp_fd = match &target.jump {
            None => {
                let tcp = Self::tcp(cfg, target)?;
                let fd = tcp.as_raw_fd();
                sess.set_tcp_stream(tcp);
                fd
            }
            Some(jump) => {
                // A bastion that is down or cannot reach the host yet is worth retrying; its
                // changed host key or a refused key is not.
                let tunnel = Self::bastion(cfg, jump).and_then(|b| super::jump::open(cfg, b, target)).map_err(|e| match e {
                    SshError::Step { .. } | SshError::Timeout { .. } => Attempt::Retry(Step::Connect, e.to_string()),
                    other => Attempt::Fatal(other),
                })?;
                let fd = tunnel.as_raw_fd();
                sess.set_tcp_stream(tunnel);
                fd
            }
        };
        sess.handshake().map_err(|e| Attempt::Retry(Step::Handshake, e.to_string()))?;

        let (key_blob, _) = sess.host_key().ok_or_else(|| {
            Attempt::Fatal(SshError::Step { host: host.clone(), step: Step::HostKey, message: "the host sent no host key".into() })
        })?;
        let pin = KnownHosts::new(&cfg.known_hosts_path).check_or_pin(target, key_blob).map_err(Attempt::Fatal)?;

        let refused = |message: String| {
            Attempt::Fatal(SshError::AuthRefused {
                host: host.clone(),
                user: user.to_string(),
                key_path: cfg.private_key_path.display().to_string(),
                message,
            })
        };
        match sess.userauth_pubkey_file(user, None, &cfg.private_key_path, None) {
            Ok(()) => {}
            Err(e) => match e.code() {
                ssh2::ErrorCode::Session(LIBSSH2_ERROR_AUTHENTICATION_FAILED | LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED | LIBSSH2_ERROR_FILE) => {
                    return Err(refused(e.message().to_string()))
                }
                _ => return Err(Attempt::Retry(Step::Auth, e.to_string())),
            },
        }
        if !sess.authenticated() {
            return Err(refused("the server did not accept the key".into()));
        }
        sess.set_timeout(timeout_u32(cfg.command_timeout_ms));
        Ok(Session {
            target: target.clone(),
            host,
            user: user.to_string(),
            sess,
            tcp_fd,
            pin,
            command_timeout_ms: cfg.command_timeout_ms,
            output_bytes_max: cfg.output_bytes_max,
        })
    }

    /// The connection to `jump` that a tunnel runs over: one attempt (the caller retries the
    /// whole tunnel), as `jump.user`. Errors name the bastion.
    fn bastion(cfg: &SshConfig, jump: &Jump) -> Result<Session, SshError> {
        let bastion_cfg = SshConfig { user: jump.user.clone(), attempts_max: 1, ..cfg.clone() };
        Session::connect(&bastion_cfg, &Target::new(jump.host.clone(), jump.port)).map_err(|e| match e {
            SshError::Unreachable { host, step, message, .. } => SshError::Step { host: format!("bastion {host}"), step, message },
            other => other,
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The host as named in errors (`host` or `host:port`).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether this connection pinned the host key (first contact) or matched the pinned one.
    pub fn pin(&self) -> Pin {
        self.pin
    }

    pub(crate) fn raw(&self) -> &ssh2::Session {
        &self.sess
    }

    pub(crate) fn command_timeout_ms(&self) -> u64 {
        self.command_timeout_ms
    }

    pub(crate) fn step_err(&self, step: Step, e: impl std::fmt::Display) -> SshError {
        SshError::Step { host: self.host.clone(), step, message: e.to_string() }
    }

    /// Runs `cmd` through the login shell; with `sudo` and a non-root user, as root via
    /// `sudo -n sh -c '<cmd>'`. A non-zero exit is not an error here (see [`Session::exec_ok`]).
    pub fn exec(&mut self, cmd: &str, sudo: bool) -> Result<Output, SshError> {
        self.exec_bounded(cmd, sudo, self.command_timeout_ms)
    }

    /// [`Session::exec`] with its own bound, for a command that bounds itself on the host and
    /// must be given longer than the session's default (first boot, package installs).
    pub fn exec_bounded(&mut self, cmd: &str, sudo: bool, timeout_ms: u64) -> Result<Output, SshError> {
        let command = if sudo { sudo_wrap(&self.user, cmd) } else { cmd.to_string() };
        let timeout = |what: &str| SshError::Timeout { host: self.host.clone(), step: Step::Exec, what: what.to_string(), timeout_ms };
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let mut ch = self.sess.channel_session().map_err(|e| self.step_err(Step::Exec, e))?;
        ch.exec(&command).map_err(|e| self.step_err(Step::Exec, format!("`{cmd}`: {e}")))?;
        // Both streams at once, non-blocking: reading one to its end first can deadlock once the
        // other has filled the channel window.
        self.sess.set_blocking(false);
        let drained = drain_both(&mut ch.stream(0), &mut ch.stderr(), self.output_bytes_max, deadline);
        self.sess.set_blocking(true);
        let (stdout, stderr) = match drained {
            Ok(both) => both,
            Err(e) => {
                let _ = ch.close();
                return Err(if Instant::now() >= deadline {
                    timeout(cmd)
                } else {
                    self.step_err(Step::Exec, format!("`{cmd}`: reading output: {e}"))
                });
            }
        };
        ch.wait_close().map_err(|e| {
            if Instant::now() >= deadline {
                timeout(cmd)
            } else {
                self.step_err(Step::Exec, format!("`{cmd}`: {e}"))
            }
        })?;
        let signal = ch.exit_signal().ok().and_then(|s| s.exit_signal);
        let exit_code = if signal.is_some() { -1 } else { ch.exit_status().map_err(|e| self.step_err(Step::Exec, e))? };
        Ok(Output {
            exit_code,
            signal,
            stdout: String::from_utf8_lossy(&stdout.kept).into_owned(),
            stderr: String::from_utf8_lossy(&stderr.kept).into_owned(),
            truncated: stdout.truncated || stderr.truncated,
        })
    }

    /// [`Session::exec`], with a non-zero exit turned into [`SshError::CommandFailed`].
    pub fn exec_ok(&mut self, cmd: &str, sudo: bool) -> Result<Output, SshError> {
        let out = self.exec(cmd, sudo)?;
        if !out.success() {
            return Err(SshError::CommandFailed {
                host: self.host.clone(),
                command: cmd.to_string(),
                exit_code: out.exit_code,
                stderr: out.stderr.trim().to_string(),
            });
        }
        Ok(out)
    }
}

impl Bastion for Session {
    fn raw(&self) -> &ssh2::Session {
        &self.sess
    }

    fn tcp_fd(&self) -> i32 {
        self.tcp_fd
    }

    fn step_err(&self, step: Step, message: String) -> SshError {
        Session::step_err(self, step, message)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Best effort and bounded: a dead peer must not hold up the caller.
        self.sess.set_timeout(1_000);
        let _ = self.sess.disconnect(None, "bye", None);
    }
}
