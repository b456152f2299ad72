//! One authenticated SSH session to one host: connect with bounded retry, run commands.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::known_hosts::{KnownHosts, Pin};
use super::{SshConfig, SshError, Step, Target};

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

/// Reads `r` to its end, keeping the first `bytes_max` bytes. Errors with `TimedOut` once
/// `deadline` has passed (checked between reads; a single read is bounded by the session timeout).
pub(crate) fn read_bounded(r: &mut impl Read, bytes_max: usize, deadline: Instant) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 32 * 1024];
    loop {
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline passed"));
        }
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let room = bytes_max - kept.len();
        if n > room {
            truncated = true;
        }
        kept.extend_from_slice(&buf[..n.min(room)]);
        debug_assert!(kept.len() <= bytes_max);
    }
    Ok((kept, truncated))
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

    fn attempt(cfg: &SshConfig, target: &Target) -> Result<Session, Attempt> {
        let host = target.to_string();
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

        let mut sess = ssh2::Session::new().map_err(|e| Attempt::Fatal(SshError::Step { host: host.clone(), step: Step::Handshake, message: e.to_string() }))?;
        sess.set_timeout(timeout_u32(cfg.connect_timeout_ms));
        // Prefer ed25519 host keys so the key pinned on first contact is the one offered later
        // (libssh2 drops the names it does not support).
        if let Err(e) = sess.method_pref(ssh2::MethodType::HostKey, HOST_KEY_PREFERENCE) {
            tracing::debug!(host = %host, error = %e, "host key preference not applied");
        }
        sess.set_tcp_stream(tcp);
        sess.handshake().map_err(|e| Attempt::Retry(Step::Handshake, e.to_string()))?;

        let (key_blob, _) = sess
            .host_key()
            .ok_or_else(|| Attempt::Fatal(SshError::Step { host: host.clone(), step: Step::HostKey, message: "the host sent no host key".into() }))?;
        let pin = KnownHosts::new(&cfg.known_hosts_path).check_or_pin(target, key_blob).map_err(Attempt::Fatal)?;

        let refused = |message: String| {
            Attempt::Fatal(SshError::AuthRefused {
                host: host.clone(),
                user: cfg.user.clone(),
                key_path: cfg.private_key_path.display().to_string(),
                message,
            })
        };
        match sess.userauth_pubkey_file(&cfg.user, None, &cfg.private_key_path, None) {
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
            user: cfg.user.clone(),
            sess,
            pin,
            command_timeout_ms: cfg.command_timeout_ms,
            output_bytes_max: cfg.output_bytes_max,
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
        let command = if sudo { sudo_wrap(&self.user, cmd) } else { cmd.to_string() };
        let timeout = |what: &str| SshError::Timeout { host: self.host.clone(), step: Step::Exec, what: what.to_string(), timeout_ms: self.command_timeout_ms };
        let deadline = Instant::now() + Duration::from_millis(self.command_timeout_ms);
        let mut ch = self.sess.channel_session().map_err(|e| self.step_err(Step::Exec, e))?;
        ch.exec(&command).map_err(|e| self.step_err(Step::Exec, format!("`{cmd}`: {e}")))?;
        let read = |mut r: &mut dyn Read| read_bounded(&mut r, self.output_bytes_max, deadline);
        let stdout = read(&mut ch);
        let stderr = stdout.as_ref().ok().map(|_| read(&mut ch.stderr()));
        let (stdout, stderr) = match (stdout, stderr) {
            (Ok(o), Some(Ok(e))) => (o, e),
            (Err(e), _) | (_, Some(Err(e))) => {
                let _ = ch.close();
                return Err(if Instant::now() >= deadline { timeout(cmd) } else { self.step_err(Step::Exec, format!("`{cmd}`: reading output: {e}")) });
            }
            (Ok(_), None) => unreachable!("stderr is read whenever stdout was"),
        };
        ch.wait_close().map_err(|e| if Instant::now() >= deadline { timeout(cmd) } else { self.step_err(Step::Exec, format!("`{cmd}`: {e}")) })?;
        let signal = ch.exit_signal().ok().and_then(|s| s.exit_signal);
        let exit_code = if signal.is_some() { -1 } else { ch.exit_status().map_err(|e| self.step_err(Step::Exec, e))? };
        Ok(Output {
            exit_code,
            signal,
            stdout: String::from_utf8_lossy(&stdout.0).into_owned(),
            stderr: String::from_utf8_lossy(&stderr.0).into_owned(),
            truncated: stdout.1 || stderr.1,
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

impl Drop for Session {
    fn drop(&mut self) {
        // Best effort and bounded: a dead peer must not hold up the caller.
        self.sess.set_timeout(1_000);
        let _ = self.sess.disconnect(None, "bye", None);
    }
}
