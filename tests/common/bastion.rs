//! A bastion for the end-to-end tests: a private OpenSSH server on a free loopback port that
//! accepts the project's key and logs every forward it opens (LogLevel DEBUG1). Dropping it
//! ends the server (by PID) and removes its directory.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Bastion {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Bastion {
    /// Starts one that accepts the public key at `authorized_key`.
    pub fn start(authorized_key: &Path) -> Bastion {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let key = d.join("host_key");
        let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status().unwrap();
        assert!(st.success(), "ssh-keygen");
        std::fs::copy(authorized_key, d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = format!(
            "ListenAddress 127.0.0.1:{port}\nHostKey {k}\nAuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\nAllowTcpForwarding yes\n\
             LogLevel DEBUG1\nMaxStartups 100\nMaxSessions 100\n",
            k = key.display(),
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), cfg).unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let b = Bastion { dir, port, child };
        let started = Instant::now();
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut banner = [0u8; 4];
                if s.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    return b;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(10), "bastion sshd not ready: {}", b.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// How far its log has got: a mark for [`Bastion::forwarded_to_since`].
    pub fn log_mark(&self) -> usize {
        self.log().len()
    }

    /// The addresses this bastion opened a forward to on port 22, as its log says.
    pub fn forwarded_to(&self) -> std::collections::BTreeSet<String> {
        self.forwarded_to_since(0)
    }

    /// The addresses it opened a forward to on port 22 since `mark` (from [`Bastion::log_mark`]).
    pub fn forwarded_to_since(&self, mark: usize) -> std::collections::BTreeSet<String> {
        self.log()
            .get(mark..)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split("target ").nth(1))
            .filter_map(|t| t.trim_end().strip_suffix(" port 22"))
            .map(|ip| ip.trim().to_string())
            .collect()
    }
}

impl Drop for Bastion {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
