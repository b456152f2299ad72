//! Unit tests of the pure parts of the SSH layer, checked against the real tools where one
//! exists (`sh` for quoting, `ssh-keygen` for fingerprints and known_hosts lookups).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;

use super::known_hosts::key_type_of_blob;
use super::session::drain_both;
use super::upload::{install_script, parse_probe, sha256_hex, CORRUPT_EXIT};
use super::*;

const TRICKY: &[&str] = &["plain", "", "it's", "a'b'c", "$HOME `id` $(id) \"q\"", "back\\slash", "new\nline", "  spaces  ", "*?[x]", "'"];

fn sh(script: &str, path_prefix: Option<&std::path::Path>) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    if let Some(p) = path_prefix {
        cmd.env("PATH", format!("{}:{}", p.display(), std::env::var("PATH").unwrap_or_default()));
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "sh failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn shell_quote_survives_sh_unchanged() {
    for s in TRICKY {
        assert_eq!(sh(&format!("printf %s {}", shell_quote(s)), None), *s, "quoting {s:?}");
    }
}

#[test]
fn sudo_wrap_is_identity_for_root_and_quotes_through_sudo_otherwise() {
    assert_eq!(sudo_wrap("root", "echo hi"), "echo hi");
    assert_eq!(sudo_wrap("admin", "echo 'hi'"), r"sudo -n sh -c 'echo '\''hi'\'''");
    // A stand-in `sudo` that checks for -n and runs the rest: the wrapped command must reach
    // `sh -c` byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("sudo");
    std::fs::write(&fake, "#!/bin/sh\n[ \"$1\" = -n ] || exit 99\nshift\nexec \"$@\"\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    for s in TRICKY {
        let inner = format!("printf %s {}", shell_quote(s));
        assert_eq!(sh(&sudo_wrap("admin", &inner), Some(dir.path())), *s, "through sudo: {s:?}");
    }
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let mut cfg = SshConfig::new("root", "/k", "/kh");
    cfg.backoff_initial_ms = 100;
    cfg.backoff_max_ms = 1_000;
    let waits: Vec<u64> = (1..=7).map(|a| cfg.backoff_ms(a)).collect();
    assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000]);
    assert_eq!(cfg.backoff_ms(200), 1000, "no overflow for large attempt numbers");
}

#[test]
fn target_names_follow_openssh() {
    assert_eq!(Target::new("10.10.0.5", 22).known_hosts_name(), "10.10.0.5");
    assert_eq!(Target::new("10.10.0.5", 2222).known_hosts_name(), "[10.10.0.5]:2222");
    assert_eq!(Target::new("10.10.0.5", 2222).to_string(), "10.10.0.5:2222");
}

/// A fresh ed25519 public key from ssh-keygen: (blob, the .pub path).
fn keygen(dir: &std::path::Path, name: &str) -> (Vec<u8>, std::path::PathBuf) {
    let path = dir.join(name);
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&path).status().unwrap();
    assert!(st.success());
    let pubpath = path.with_extension("pub");
    let text = std::fs::read_to_string(&pubpath).unwrap();
    let b64 = text.split_whitespace().nth(1).unwrap();
    (base64::engine::general_purpose::STANDARD.decode(b64).unwrap(), pubpath)
}

#[test]
fn fingerprint_and_key_type_match_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let (blob, pubpath) = keygen(dir.path(), "k");
    let out = Command::new("ssh-keygen").arg("-lf").arg(&pubpath).output().unwrap();
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listed.split_whitespace().nth(1).unwrap(), fingerprint_sha256(&blob));
    assert_eq!(key_type_of_blob(&blob), Some("ssh-ed25519"));
    assert_eq!(key_type_of_blob(&[0, 0, 0, 200, b'x']), None, "length past the end");
    assert_eq!(key_type_of_blob(&[]), None);
}

#[test]
fn known_hosts_pins_then_matches_then_refuses_a_changed_key() {
    let dir = tempfile::tempdir().unwrap();
    let (key_a, _) = keygen(dir.path(), "a");
    let (key_b, _) = keygen(dir.path(), "b");
    let path = dir.path().join(".provision/proj/known_hosts");
    let kh = KnownHosts::new(&path);
    let t = Target::new("10.10.0.5", 22);
    let t2 = Target::new("10.10.0.5", 2222);

    assert_eq!(kh.check_or_pin(&t, &key_a).unwrap(), Pin::Pinned);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(kh.check_or_pin(&t, &key_a).unwrap(), Pin::Matched);
    // The same address on another port is another host.
    assert_eq!(kh.check_or_pin(&t2, &key_b).unwrap(), Pin::Pinned);
    assert_eq!(kh.check_or_pin(&t2, &key_b).unwrap(), Pin::Matched);

    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2, "one line per host:\n{text}");
    // ssh-keygen finds our lines under the names we use.
    for name in ["10.10.0.5", "[10.10.0.5]:2222"] {
        let out = Command::new("ssh-keygen").args(["-F", name, "-f"]).arg(&path).output().unwrap();
        assert!(out.status.success(), "ssh-keygen -F {name} found nothing in:\n{text}");
    }

    let err = kh.check_or_pin(&t, &key_b).unwrap_err();
    assert!(matches!(err, SshError::HostKeyChanged { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in [
        "10.10.0.5",
        "HOST KEY CHANGED",
        path.to_str().unwrap(),
        "ssh-keygen -R '10.10.0.5' -f",
        &fingerprint_sha256(&key_a),
        &fingerprint_sha256(&key_b),
    ] {
        assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "a refused key is not written");

    // The advertised reset works: after ssh-keygen -R the new key is pinned.
    let st = Command::new("ssh-keygen").args(["-R", "10.10.0.5", "-f"]).arg(&path).output().unwrap();
    assert!(st.status.success());
    assert_eq!(kh.check_or_pin(&t, &key_b).unwrap(), Pin::Pinned);
    assert_eq!(kh.check_or_pin(&t2, &key_b).unwrap(), Pin::Matched, "other hosts kept");
}

#[test]
fn known_hosts_keeps_foreign_lines_and_handles_a_missing_final_newline() {
    let dir = tempfile::tempdir().unwrap();
    let (key_a, _) = keygen(dir.path(), "a");
    let path = dir.path().join("known_hosts");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&key_a);
    std::fs::write(&path, format!("# comment\n|1|hashed|x ssh-ed25519 AAAA\nother,10.0.0.9 ssh-ed25519 {b64}")).unwrap();
    let kh = KnownHosts::new(&path);
    assert_eq!(kh.check_or_pin(&Target::new("10.0.0.9", 22), &key_a).unwrap(), Pin::Matched, "comma-separated names");
    assert_eq!(kh.check_or_pin(&Target::new("10.0.0.7", 22), &key_a).unwrap(), Pin::Pinned);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# comment\n|1|hashed|x"), "{text}");
    assert!(text.ends_with(&format!("other,10.0.0.9 ssh-ed25519 {b64}\n10.0.0.7 ssh-ed25519 {b64}\n")), "{text}");
}

#[test]
fn known_hosts_pins_each_host_once_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<Vec<u8>> = (0..4).map(|i| keygen(dir.path(), &format!("k{i}")).0).collect();
    let path = dir.path().join("known_hosts");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for (i, k) in keys.iter().enumerate() {
                    KnownHosts::new(&path).check_or_pin(&Target::new(format!("127.0.0.{}", i + 1), 22), k).unwrap();
                }
            });
        }
    });
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
}

/// A reader that yields its chunks in order, with `WouldBlock` between them.
struct Trickle {
    chunks: Vec<Vec<u8>>,
    blocked_next: bool,
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.blocked_next = !self.blocked_next;
        if !self.blocked_next {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        if self.chunks.is_empty() {
            return Ok(0);
        }
        let c = &mut self.chunks[0];
        let n = c.len().min(buf.len());
        buf[..n].copy_from_slice(&c[..n]);
        c.drain(..n);
        if c.is_empty() {
            self.chunks.remove(0);
        }
        Ok(n)
    }
}

#[test]
fn drain_both_reads_two_streams_keeps_the_first_bytes_and_honours_the_deadline() {
    let trickle = |chunks: Vec<Vec<u8>>| Trickle { chunks, blocked_next: false };
    let far = Instant::now() + Duration::from_secs(60);
    let (out, err) =
        drain_both(&mut trickle(vec![b"hello ".to_vec(), b"world".to_vec()]), &mut trickle(vec![vec![7u8; 100_000]]), 1000, far).unwrap();
    assert_eq!((out.kept.as_slice(), out.truncated), (&b"hello world"[..], false));
    assert_eq!((err.kept.len(), err.truncated), (1000, true));
    let (out, err) = drain_both(&mut trickle(vec![]), &mut trickle(vec![vec![1u8; 1000]]), 1000, far).unwrap();
    assert_eq!((out.kept.len(), err.kept.len(), err.truncated), (0, 1000, false));

    struct Never;
    impl std::io::Read for Never {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::WouldBlock.into())
        }
    }
    let started = Instant::now();
    let err = drain_both(&mut Never, &mut Never, 10, Instant::now() + Duration::from_millis(100)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn upload_probe_parsing() {
    let sha = sha256_hex(b"hello\n");
    assert_eq!(sha, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
    assert_eq!(parse_probe(&format!("{sha}\n644\n")), Some((sha.clone(), 0o644)));
    assert_eq!(parse_probe(&format!("{sha}\n4755\n")), Some((sha.clone(), 0o4755)));
    assert_eq!(parse_probe(""), None, "missing file");
    assert_eq!(parse_probe("\n644\n"), None, "unreadable file");
    assert_eq!(parse_probe(&format!("{sha}\n")), None);
}

#[test]
fn errors_name_the_host() {
    let e =
        SshError::Unreachable { host: "127.0.0.1:1".into(), attempts: 3, elapsed_ms: 10, step: Step::Connect, message: "refused".into() };
    assert_eq!(e.host(), "127.0.0.1:1");
    assert_eq!(e.to_string(), "127.0.0.1:1: unreachable: 3 attempts over 10 ms failed; last at tcp connect: refused");
}

/// Runs an install script with the local `sh`, as the host would: (exit code, stdout).
fn run_install(script: &str) -> (i32, String) {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn install_script_verifies_then_renames_into_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("it's a dir");
    std::fs::create_dir(&d).unwrap();
    let dest = d.join("app $x.conf");
    std::fs::write(&dest, b"old").unwrap();
    let staging = d.join("app $x.conf.tmp-1");
    std::fs::write(&staging, b"new").unwrap();
    let (code, _) = run_install(&install_script(
        staging.to_str().unwrap(),
        staging.to_str().unwrap(),
        dest.to_str().unwrap(),
        0o640,
        &sha256_hex(b"new"),
        false,
    ));
    assert_eq!(code, 0);
    assert_eq!(std::fs::read(&dest).unwrap(), b"new");
    assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777, 0o640);
    assert_eq!(names_in(&d), ["app $x.conf"], "staging removed");
}

#[test]
fn install_script_copies_when_sent_elsewhere_and_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let sent = dir.path().join("provision-upload-1");
    std::fs::write(&sent, b"payload").unwrap();
    let dest = dir.path().join("etc/app/f");
    let staging = dir.path().join("etc/app/f.tmp-1");
    let (code, _) = run_install(&install_script(
        sent.to_str().unwrap(),
        staging.to_str().unwrap(),
        dest.to_str().unwrap(),
        0o755,
        &sha256_hex(b"payload"),
        true,
    ));
    assert_eq!(code, 0);
    assert_eq!(std::fs::read(&dest).unwrap(), b"payload");
    assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777, 0o755);
    assert!(!sent.exists(), "the sent copy is removed");
    assert_eq!(names_in(&dir.path().join("etc/app")), ["f"]);
}

#[test]
fn install_script_refuses_a_corrupt_file_and_leaves_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f");
    std::fs::write(&dest, b"old").unwrap();
    let staging = dir.path().join("f.tmp-1");
    std::fs::write(&staging, b"garbled").unwrap();
    let (code, stdout) = run_install(&install_script(
        staging.to_str().unwrap(),
        staging.to_str().unwrap(),
        dest.to_str().unwrap(),
        0o644,
        &sha256_hex(b"intended"),
        false,
    ));
    assert_eq!((code, stdout.trim()), (CORRUPT_EXIT, sha256_hex(b"garbled").as_str()));
    assert_eq!(std::fs::read(&dest).unwrap(), b"old");
    assert_eq!(names_in(dir.path()), ["f"], "staging removed");
}
