//! The SSH layer against a real OpenSSH server: each test starts its own private sshd on a free
//! loopback port (host key, authorized_keys and config in a temp dir) and checks outcomes from
//! outside: the local filesystem (the sshd is local), the known_hosts file, exec results.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use provisioner::ssh::{Fleet, Jump, Pin, Session, SshConfig, SshError, Step, Target, Upload};

const SSHD: &str = "/usr/sbin/sshd";
const READY_TIMEOUT_MS: u64 = 10_000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// ssh-keygen an ed25519 key pair at `path` (+ `.pub`), replacing any old one.
fn keygen(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path));
}

/// A private sshd. Dropping it kills the server (by PID) and removes its directory.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// Host keys besides `host_key` (file names in `dir`).
    extra_host_keys: Vec<String>,
}

impl Sshd {
    /// Host key, a user key made like `provision` makes one (ssh-key's `to_openssh`), authorized
    /// for login; not started yet.
    fn prepare(port: u16) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("host_key"));
        let key = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let user_key = dir.path().join("id_ed25519");
        std::fs::write(&user_key, key.to_openssh(ssh_key::LineEnding::LF).unwrap().as_bytes()).unwrap();
        std::fs::set_permissions(&user_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(dir.path().join("authorized_keys"), format!("{}\n", key.public_key().to_openssh().unwrap())).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        Sshd { dir, port, child: None, extra_host_keys: Vec::new() }
    }

    fn started() -> Sshd {
        let mut s = Sshd::prepare(free_port());
        s.start();
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn target(&self) -> Target {
        Target::new("127.0.0.1", self.port)
    }

    fn config(&self) -> SshConfig {
        let mut c = SshConfig::new("root", self.path("id_ed25519"), self.path(".provision/test/known_hosts"));
        c.connect_timeout_ms = 2_000;
        c.attempts_max = 3;
        c.backoff_initial_ms = 50;
        c.backoff_max_ms = 200;
        c.command_timeout_ms = 30_000;
        c
    }

    fn host_key_line(&self) -> String {
        std::fs::read_to_string(self.path("host_key.pub")).unwrap().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    fn start(&mut self) {
        self.start_with("");
    }

    /// Starts with `extra` lines appended to the sshd config.
    fn start_with(&mut self, extra_config: &str) {
        assert!(self.child.is_none(), "already running");
        let d = self.dir.path().display();
        let cfg = format!(
            "ListenAddress 127.0.0.1:{port}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
             StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n",
            port = self.port
        );
        let extra: String = self.extra_host_keys.iter().map(|k| format!("HostKey {d}/{k}\n")).collect();
        std::fs::write(self.path("sshd_config"), cfg + &extra + extra_config).unwrap();
        let log = std::fs::File::create(self.path("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready when it answers with an SSH banner.
        let started = Instant::now();
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut banner = [0u8; 4];
                if s.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sshd exited with {status}: {}", std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default());
            }
            assert!(
                started.elapsed() < Duration::from_millis(READY_TIMEOUT_MS),
                "sshd not ready: {}",
                std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn connect(sshd: &Sshd) -> Session {
    Session::connect(&sshd.config(), &sshd.target())
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", std::fs::read_to_string(sshd.path("sshd.log")).unwrap_or_default()))
}

#[test]
fn connect_and_exec() {
    let sshd = Sshd::started();
    let mut s = connect(&sshd);
    assert_eq!(s.pin(), Pin::Pinned);
    let out = s.exec("echo hello; echo oops >&2; exit 3", false).unwrap();
    assert_eq!((out.exit_code, out.stdout.as_str(), out.stderr.as_str(), out.truncated), (3, "hello\n", "oops\n", false));
    let out = s.exec("id -un; printf '%s' \"$SSH_CONNECTION\"", true).unwrap();
    assert!(out.success());
    assert!(out.stdout.starts_with("root\n") && out.stdout.ends_with(&format!(" {}", sshd.port)), "{out:?}");

    let err = s.exec_ok("echo bad >&2; false", false).unwrap_err();
    assert!(matches!(&err, SshError::CommandFailed { exit_code: 1, stderr, .. } if stderr == "bad"), "{err:?}");
    assert!(err.to_string().starts_with(&format!("127.0.0.1:{}: ", sshd.port)), "{err}");

    let out = s.exec("kill -9 $$", false).unwrap();
    assert_eq!((out.exit_code, out.signal.as_deref()), (-1, Some("KILL")), "{out:?}");
    drop(s);

    // Output beyond the bound is read and dropped, and the exit status still arrives. A large
    // stderr written before stdout (beyond libssh2's 2 MiB window) does not stall the command.
    let mut cfg = sshd.config();
    cfg.output_bytes_max = 1000;
    let mut s = Session::connect(&cfg, &sshd.target()).unwrap();
    assert_eq!(s.pin(), Pin::Matched);
    let out = s.exec("head -c 5000000 /dev/zero >&2; head -c 3000000 /dev/zero; exit 4", false).unwrap();
    assert_eq!((out.exit_code, out.stdout.len(), out.stderr.len(), out.truncated), (4, 1000, 1000, true));

    // A command over its time bound is a typed timeout.
    let mut cfg = sshd.config();
    cfg.command_timeout_ms = 300;
    let mut s = Session::connect(&cfg, &sshd.target()).unwrap();
    let started = Instant::now();
    let err = s.exec("sleep 20", false).unwrap_err();
    assert!(matches!(err, SshError::Timeout { step: Step::Exec, timeout_ms: 300, .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

/// Each region has its own `ssh_user`: a target's user wins over the fleet's default.
#[test]
fn a_targets_own_user_is_the_one_logged_in_as() {
    let sshd = Sshd::started();
    let mut cfg = sshd.config();
    cfg.user = "no-such-user".into();
    let err = Session::connect(&cfg, &sshd.target()).unwrap_err();
    assert!(matches!(&err, SshError::AuthRefused { user, .. } if user == "no-such-user"), "{err:?}");
    let mut s = Session::connect(&cfg, &sshd.target().as_user("root")).unwrap();
    assert_eq!(s.user(), "root");
    assert_eq!(s.exec("id -un", false).unwrap().stdout, "root\n");
}

#[test]
fn wrong_user_key_is_refused() {
    let sshd = Sshd::started();
    keygen(&sshd.path("other_key"));
    let mut cfg = sshd.config();
    cfg.private_key_path = sshd.path("other_key");
    cfg.attempts_max = 5;
    cfg.backoff_initial_ms = 5_000;
    let started = Instant::now();
    let err = Session::connect(&cfg, &sshd.target()).unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(4_000), "a refused key is not retried: {:?}", started.elapsed());
    assert!(matches!(&err, SshError::AuthRefused { user, .. } if user == "root"), "{err:?}");
    let msg = err.to_string();
    let host = format!("127.0.0.1:{}", sshd.port);
    for needle in [host.as_str(), "authentication as root", sshd.path("other_key").to_str().unwrap(), "refused"] {
        assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
    }
    let secret = std::fs::read_to_string(sshd.path("other_key")).unwrap();
    let secret_body = secret.lines().nth(1).unwrap();
    assert!(!msg.contains(secret_body) && !format!("{err:?}").contains(secret_body), "no key material in errors");

    cfg.private_key_path = sshd.path("missing_key");
    let err = Session::connect(&cfg, &sshd.target()).unwrap_err();
    assert!(matches!(err, SshError::Invalid { .. }) && err.to_string().contains("missing_key"), "{err}");
}

#[test]
fn host_key_is_pinned_and_a_changed_key_is_refused() {
    let mut sshd = Sshd::started();
    let kh = sshd.path(".provision/test/known_hosts");
    assert!(!kh.exists());
    assert_eq!(connect(&sshd).pin(), Pin::Pinned);
    let pinned = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(pinned, format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.host_key_line()), "the server's own public host key");
    assert_eq!(std::fs::metadata(&kh).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(connect(&sshd).pin(), Pin::Matched);

    // Rebuilt host: same address and port, new host key.
    sshd.stop();
    keygen(&sshd.path("host_key"));
    sshd.start();
    let err = Session::connect(&sshd.config(), &sshd.target()).unwrap_err();
    assert!(matches!(err, SshError::HostKeyChanged { .. }), "{err:?}");
    let msg = err.to_string();
    let name = format!("[127.0.0.1]:{}", sshd.port);
    for needle in [
        format!("127.0.0.1:{}", sshd.port),
        "HOST KEY CHANGED".into(),
        kh.display().to_string(),
        format!("ssh-keygen -R '{name}' -f {}", kh.display()),
    ] {
        assert!(msg.contains(&needle), "{needle:?} missing from: {msg}");
    }
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), pinned, "the pin is not replaced");

    // The reset the message advertises works.
    run(Command::new("ssh-keygen").arg("-R").arg(&name).arg("-f").arg(&kh));
    assert_eq!(connect(&sshd).pin(), Pin::Pinned);
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), format!("{name} {}\n", sshd.host_key_line()));
}

fn staging_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".tmp-")).collect()
}

#[test]
fn upload_skips_unchanged_and_replaces_atomically() {
    let sshd = Sshd::started();
    let mut s = connect(&sshd);
    let dest = sshd.path("remote/etc/app/config.toml");
    let dest_s = dest.to_str().unwrap();
    let v1 = b"name = 'one'\n".repeat(1000);

    assert_eq!(s.upload(&v1, dest_s, 0o640, true).unwrap(), Upload::Written);
    assert_eq!(std::fs::read(&dest).unwrap(), v1, "content read from the filesystem");
    let meta1 = std::fs::metadata(&dest).unwrap();
    assert_eq!(meta1.permissions().mode() & 0o7777, 0o640);
    let out = s.exec_ok(&format!("stat -c %a {dest_s}; sha256sum {dest_s}"), false).unwrap();
    let local_sha = Command::new("sha256sum").arg(&dest).output().unwrap();
    assert_eq!(out.stdout, format!("640\n{}", String::from_utf8(local_sha.stdout).unwrap()));

    // Unchanged: nothing is rewritten.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(s.upload(&v1, dest_s, 0o640, true).unwrap(), Upload::Unchanged);
    let meta = std::fs::metadata(&dest).unwrap();
    assert_eq!(
        (meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.ctime_nsec()),
        (meta1.ino(), meta1.mtime(), meta1.mtime_nsec(), meta1.ctime_nsec())
    );

    // Same content, new mode: chmod only.
    assert_eq!(s.upload(&v1, dest_s, 0o600, false).unwrap(), Upload::ModeChanged);
    let meta = std::fs::metadata(&dest).unwrap();
    assert_eq!((meta.ino(), meta.permissions().mode() & 0o7777), (meta1.ino(), 0o600));

    // Changed content: a new file renamed over the old one (new inode), no staging files left.
    let v2 = b"name = 'two'\n".repeat(500);
    let keep_old_open = std::fs::File::open(&dest).unwrap();
    assert_eq!(s.upload(&v2, dest_s, 0o644, false).unwrap(), Upload::Written);
    assert_eq!(std::fs::read(&dest).unwrap(), v2);
    let meta2 = std::fs::metadata(&dest).unwrap();
    assert_ne!(meta2.ino(), meta1.ino(), "replaced by rename, not rewritten in place");
    assert_eq!(meta2.permissions().mode() & 0o7777, 0o644);
    let mut old = Vec::new();
    (&keep_old_open).read_to_end(&mut old).unwrap();
    assert_eq!(old, v1, "a reader of the old file still sees the whole old file");
    assert_eq!(staging_leftovers(dest.parent().unwrap()), Vec::<String>::new());

    // A larger file, and an empty one.
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let big_path = sshd.path("remote/big.bin");
    let started = Instant::now();
    assert_eq!(s.upload(&big, big_path.to_str().unwrap(), 0o600, false).unwrap(), Upload::Written);
    eprintln!("8 MiB upload took {:?}", started.elapsed());
    assert!(std::fs::read(&big_path).unwrap() == big);
    let empty = sshd.path("remote/empty");
    assert_eq!(s.upload(b"", empty.to_str().unwrap(), 0o644, false).unwrap(), Upload::Written);
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    assert_eq!(s.upload(b"", empty.to_str().unwrap(), 0o644, false).unwrap(), Upload::Unchanged);

    // Names that need quoting.
    let odd = sshd.path("remote/it's a $file");
    assert_eq!(s.upload(b"x", odd.to_str().unwrap(), 0o600, false).unwrap(), Upload::Written);
    assert_eq!(std::fs::read(&odd).unwrap(), b"x");

    let err = s.upload(b"x", "relative/path", 0o644, false).unwrap_err();
    assert!(matches!(err, SshError::Invalid { .. }), "{err:?}");
    assert_eq!(staging_leftovers(&sshd.path("remote")), Vec::<String>::new());
}

#[test]
fn connect_retries_while_the_host_boots() {
    let port = free_port();
    let mut sshd = Sshd::prepare(port);
    let mut cfg = sshd.config();
    // Up to ~12 s of waiting: the machine may be busy, sshd slow to start.
    cfg.attempts_max = 30;
    cfg.backoff_initial_ms = 100;
    cfg.backoff_max_ms = 400;
    let target = sshd.target();
    let started = Instant::now();
    let booted = std::thread::scope(|scope| {
        let client = scope.spawn(|| Session::connect(&cfg, &target).map(|s| s.pin()));
        std::thread::sleep(Duration::from_millis(1_000));
        sshd.start();
        client.join().unwrap()
    });
    let elapsed = started.elapsed();
    assert_eq!(booted.unwrap(), Pin::Pinned);
    assert!(elapsed >= Duration::from_millis(1_000) && elapsed < Duration::from_secs(20), "{elapsed:?}");
}

#[test]
fn connect_gives_up_after_the_bounded_attempts() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "not used").unwrap();
    let mut cfg = SshConfig::new("root", dir.path().join("key"), dir.path().join("known_hosts"));
    cfg.attempts_max = 4;
    cfg.backoff_initial_ms = 50;
    cfg.backoff_max_ms = 100;
    let started = Instant::now();
    let err = Session::connect(&cfg, &Target::new("127.0.0.1", port)).unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, SshError::Unreachable { attempts: 4, step: Step::Connect, .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("127.0.0.1:{port}: unreachable: 4 attempts")), "{err}");
    // Waits of 50 + 100 + 100 ms between the attempts.
    assert!(elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(!dir.path().join("known_hosts").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_runs_hosts_in_parallel_and_reports_each() {
    let servers: Vec<Sshd> = (0..3).map(|_| Sshd::started()).collect();
    // One key and one known_hosts for the whole fleet, as in a deployment.
    let mut cfg = servers[0].config();
    for s in &servers[1..] {
        std::fs::copy(servers[0].path("authorized_keys"), s.path("authorized_keys")).unwrap();
    }
    cfg.attempts_max = 2;
    let dead = Target::new("127.0.0.1", free_port());
    let mut targets: Vec<Target> = servers.iter().map(|s| s.target()).collect();
    targets.insert(1, dead.clone());

    let running = Arc::new(AtomicUsize::new(0));
    let running_max = Arc::new(AtomicUsize::new(0));
    let (r, rm) = (running.clone(), running_max.clone());
    let fleet = Fleet::new(cfg.clone(), 2);
    let started = Instant::now();
    let results = fleet
        .run(&targets, move |s| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            rm.fetch_max(now, Ordering::SeqCst);
            let out = s.exec_ok("sleep 0.4; printf '%s' \"$SSH_CONNECTION\"", true);
            r.fetch_sub(1, Ordering::SeqCst);
            Ok(out?.stdout)
        })
        .await;
    let elapsed = started.elapsed();

    assert_eq!(results.iter().map(|r| r.target.clone()).collect::<Vec<_>>(), targets, "one result per host, in order");
    for (res, t) in results.iter().zip(&targets) {
        if *t == dead {
            let err = res.result.as_ref().unwrap_err();
            assert!(matches!(err, SshError::Unreachable { .. }) && err.host() == dead.to_string(), "{err:?}");
        } else {
            let out = res.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
            assert!(out.ends_with(&format!(" {}", t.port)), "{t}: {out}");
        }
    }
    assert_eq!(running_max.load(Ordering::SeqCst), 2, "bounded at 2 and actually parallel");
    // Parallelism is proven by `running_max`; the time bound only catches a hang (the
    // machine may be busy with other builds).
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    let kh = std::fs::read_to_string(&cfg.known_hosts_path).unwrap();
    assert_eq!(kh.lines().count(), 3, "each live host pinned once:\n{kh}");

    // Per-host input; a panic on one host is reported under that host only.
    let bad_port = servers[2].port;
    let jobs: Vec<(Target, String)> = servers.iter().enumerate().map(|(i, s)| (s.target(), format!("host {i}"))).collect();
    let results = fleet
        .run_with(jobs, move |s, word| {
            assert_ne!(s.target().port, bad_port, "boom");
            Ok(s.exec_ok(&format!("echo {word}"), false)?.stdout)
        })
        .await;
    let outs: Vec<Option<&str>> = results.iter().map(|r| r.result.as_ref().ok().map(|s| s.as_str())).collect();
    assert_eq!(outs, [Some("host 0\n"), Some("host 1\n"), None]);
    let err = results[2].result.as_ref().unwrap_err();
    assert!(
        matches!(err, SshError::Panicked { .. }) && err.to_string().contains("boom") && err.host() == servers[2].target().to_string(),
        "{err}"
    );
}

#[test]
fn the_ed25519_host_key_is_pinned_when_the_host_has_several() {
    // The preference is set explicitly (the vendored libssh2 happens to prefer ed25519 too).
    let mut sshd = Sshd::prepare(free_port());
    run(Command::new("ssh-keygen").args(["-q", "-t", "ecdsa", "-N", "", "-f"]).arg(sshd.path("host_key_ecdsa")));
    sshd.extra_host_keys.push("host_key_ecdsa".into());
    sshd.start();
    assert_eq!(connect(&sshd).pin(), Pin::Pinned);
    let kh = std::fs::read_to_string(sshd.path(".provision/test/known_hosts")).unwrap();
    assert_eq!(kh, format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.host_key_line()));
    assert_eq!(connect(&sshd).pin(), Pin::Matched);
}

#[test]
fn a_port_that_accepts_but_never_speaks_ssh_times_out_per_attempt() {
    // Like a host whose port is open but whose sshd hangs: each attempt is bounded by
    // connect_timeout_ms during the handshake.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        // Accept (and hold open, silently) exactly the attempts made below.
        (0..2).map(|_| listener.accept().unwrap().0).collect::<Vec<_>>()
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "not used").unwrap();
    let mut cfg = SshConfig::new("root", dir.path().join("key"), dir.path().join("known_hosts"));
    cfg.connect_timeout_ms = 300;
    cfg.attempts_max = 2;
    cfg.backoff_initial_ms = 50;
    let started = Instant::now();
    let err = Session::connect(&cfg, &Target::new("127.0.0.1", port)).unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, SshError::Unreachable { attempts: 2, step: Step::Handshake, .. }), "{err:?}");
    assert!(elapsed >= Duration::from_millis(600) && elapsed < Duration::from_secs(10), "{elapsed:?}");
    drop(holder.join().unwrap());
}

#[test]
fn a_bastion_carries_the_connection_and_both_host_keys_are_pinned() {
    let target_sshd = Sshd::started();
    let mut bastion = Sshd::prepare(free_port());
    // One operator key for both, as in regions.toml; the bastion logs each forward it opens.
    std::fs::copy(target_sshd.path("authorized_keys"), bastion.path("authorized_keys")).unwrap();
    bastion.start_with("LogLevel DEBUG1\nAllowTcpForwarding yes\n");
    let cfg = target_sshd.config();
    let jump = Jump { host: "127.0.0.1".into(), port: bastion.port, user: "root".into() };
    let target = target_sshd.target().via(Some(jump));

    let mut s = Session::connect(&cfg, &target)
        .unwrap_or_else(|e| panic!("{e}\nbastion log:\n{}", std::fs::read_to_string(bastion.path("sshd.log")).unwrap_or_default()));
    assert_eq!(s.pin(), Pin::Pinned);
    let out = s.exec("printf '%s' \"$SSH_CONNECTION\"; head -c 3000000 /dev/zero | wc -c", false).unwrap();
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains(&format!(" {}3000000", target_sshd.port)), "{out:?}");
    // Large transfers both ways go through the tunnel intact.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let dest = target_sshd.path("via-bastion.bin");
    assert_eq!(s.upload(&big, dest.to_str().unwrap(), 0o600, false).unwrap(), Upload::Written);
    assert_eq!(std::fs::read(&dest).unwrap(), big);
    drop(s);

    // The bastion opened a channel to the target's port: seen in its own log.
    let log = std::fs::read_to_string(bastion.path("sshd.log")).unwrap();
    let forward = format!("target 127.0.0.1 port {}", target_sshd.port);
    assert!(log.contains(&forward), "no forward to the target in the bastion's log:\n{log}");
    // Both host keys are pinned, each under its own name.
    let known = std::fs::read_to_string(&cfg.known_hosts_path).unwrap();
    for (port, key) in [(bastion.port, bastion.host_key_line()), (target_sshd.port, target_sshd.host_key_line())] {
        assert!(known.contains(&format!("[127.0.0.1]:{port} {key}")), "{known}");
    }

    // Without the bastion the host is not reached that way: the error names the bastion.
    bastion.stop();
    let err = Session::connect(&cfg, &target).unwrap_err();
    assert!(matches!(err, SshError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("bastion 127.0.0.1:{}", bastion.port)), "{err}");
}

#[test]
fn a_bastion_with_a_changed_host_key_is_refused() {
    let target_sshd = Sshd::started();
    let mut bastion = Sshd::prepare(free_port());
    std::fs::copy(target_sshd.path("authorized_keys"), bastion.path("authorized_keys")).unwrap();
    bastion.start();
    let cfg = target_sshd.config();
    let target = target_sshd.target().via(Some(Jump { host: "127.0.0.1".into(), port: bastion.port, user: "root".into() }));
    Session::connect(&cfg, &target).unwrap();
    // The bastion is rebuilt with a new host key.
    bastion.stop();
    keygen(&bastion.path("host_key"));
    bastion.start();
    let err = Session::connect(&cfg, &target).unwrap_err();
    assert!(matches!(&err, SshError::HostKeyChanged { name, .. } if *name == format!("[127.0.0.1]:{}", bastion.port)), "{err:?}");
}
