//! The tunnel through a bastion: one SSH session to the bastion, a `direct-tcpip` channel from
//! it to the target's SSH port, and a thread that copies bytes between that channel and one end
//! of a local socket pair. The other end is handed to libssh2 as the target session's socket, so
//! the target's host key is checked and pinned end to end exactly as for a direct connection.
//!
//! libssh2 sessions are not thread-safe: the pump thread owns the bastion session outright.
//!
//! The caller connects to the bastion (session.rs does, with its own retries and host-key
//! checks) and hands the connection over as a [`Bastion`]: this module never opens a session
//! itself, so it does not depend on session.rs.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::{SshConfig, SshError, Step, Target};

/// Bound on one wait for either side to become readable; short so that libssh2's own buffering
/// (data already read from the socket but not yet returned) can never stall the copy for long.
const POLL_MS: i32 = 20;
/// After the local side closed, how long the bastion gets to close the channel before we drop it.
const LINGER_MS: u64 = 2_000;

/// What the tunnel needs of an authenticated SSH connection to the bastion. The tunnel owns
/// it from then on (moved into the pump thread) and drops it when the tunnel closes.
pub(crate) trait Bastion: Send + 'static {
    /// The libssh2 session, authenticated.
    fn raw(&self) -> &ssh2::Session;
    /// The socket under [`Bastion::raw`], polled for readability.
    fn tcp_fd(&self) -> i32;
    /// An error of `step` that names the bastion.
    fn step_err(&self, step: Step, message: String) -> SshError;
}

/// Opens the tunnel to `target` through the connected `bastion`. Errors name the bastion.
pub(crate) fn open<B: Bastion>(cfg: &SshConfig, bastion: B, target: &Target) -> Result<UnixStream, SshError> {
    let tcp = bastion.tcp_fd();
    // Opening the channel is the bastion's TCP connect to the host: bounded like ours.
    bastion.raw().set_timeout(cfg.connect_timeout_ms.clamp(1, u32::MAX as u64) as u32);
    let channel = bastion
        .raw()
        .channel_direct_tcpip(&target.host, target.port, None)
        .map_err(|e| bastion.step_err(Step::Connect, format!("bastion cannot reach {target}: {e}")))?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| bastion.step_err(Step::Connect, format!("socket pair: {e}")))?;
    std::thread::Builder::new()
        .name(format!("ssh-jump-{target}"))
        .spawn(move || pump(bastion, tcp, channel, theirs))
        .map_err(|e| SshError::Step { host: target.to_string(), step: Step::Connect, message: format!("tunnel thread: {e}") })?;
    Ok(ours)
}

/// Copies both ways until both sides are closed (or either fails), then drops the bastion.
fn pump<B: Bastion>(bastion: B, tcp_fd: i32, mut ch: ssh2::Channel, mut sock: UnixStream) {
    bastion.raw().set_blocking(false);
    if sock.set_nonblocking(true).is_err() {
        return;
    }
    let mut buf = vec![0u8; 32 * 1024];
    let (mut to_ch, mut to_sock): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    let (mut sock_eof, mut ch_eof) = (false, false);
    let mut sock_closed_at: Option<Instant> = None;
    loop {
        let mut progressed = false;
        // local -> bastion channel
        if to_ch.is_empty() && !sock_eof {
            match sock.read(&mut buf) {
                Ok(0) => {
                    sock_eof = true;
                    sock_closed_at = Some(Instant::now());
                    let _ = ch.send_eof();
                }
                Ok(n) => to_ch.extend_from_slice(&buf[..n]),
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        if !to_ch.is_empty() {
            match ch.write(&to_ch) {
                Ok(n) => {
                    to_ch.drain(..n);
                    progressed |= n > 0;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        // bastion channel -> local
        if to_sock.is_empty() && !ch_eof {
            match ch.read(&mut buf) {
                Ok(0) if ch.eof() => {
                    ch_eof = true;
                    let _ = sock.shutdown(std::net::Shutdown::Write);
                }
                Ok(0) => {}
                Ok(n) => {
                    to_sock.extend_from_slice(&buf[..n]);
                    progressed = true;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        if !to_sock.is_empty() {
            match sock.write(&to_sock) {
                Ok(n) => {
                    to_sock.drain(..n);
                    progressed |= n > 0;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        let lingered = sock_closed_at.is_some_and(|t| t.elapsed() > Duration::from_millis(LINGER_MS));
        if (sock_eof && ch_eof && to_sock.is_empty()) || lingered {
            break;
        }
        if !progressed {
            wait_readable(tcp_fd, sock.as_raw_fd());
        }
    }
    let _ = ch.close();
    drop(bastion);
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

/// Waits until either descriptor is readable, at most `POLL_MS`.
fn wait_readable(a: i32, b: i32) {
    let mut fds = [libc::pollfd { fd: a, events: libc::POLLIN, revents: 0 }, libc::pollfd { fd: b, events: libc::POLLIN, revents: 0 }];
    // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
    unsafe {
        libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, POLL_MS);
    }
}
