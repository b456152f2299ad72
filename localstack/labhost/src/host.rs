//! Executor for one host: namespace, veth, per-host files, power, isolation, removal.

use crate::cmd::{self, CmdError};
use crate::config::RegionConfig;
use crate::hostfiles::{self, backing_name};
use crate::image::{self, Image};
use crate::model::HostSpec;
use crate::names::Names;
use crate::plan::{gateway, Step};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Cmd(#[from] CmdError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("processes of {0} still alive after repeated SIGKILL")]
    Unkillable(String),
    #[error("{0}")]
    Seed(String),
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> HostError + '_ {
    move |source| HostError::Io { path: p.display().to_string(), source }
}

const SSH_READY_TIMEOUT_MS: u64 = 5000;
const KILL_ROUNDS_MAX: usize = 100;

/// Everything the executor needs to know about the emulator's setup.
#[derive(Debug, Clone)]
pub struct HostEnv {
    pub names: Names,
    pub regions: Vec<RegionConfig>,
    pub hosts_dir: PathBuf,
    pub private_dirs: Vec<String>,
    pub boot_hook: String,
    pub boot_log: String,
    /// Hosts that boot from a fresh image instead of this machine's root (`run --image`).
    pub image: Option<Image>,
}

impl HostEnv {
    pub fn host_dir(&self, id: &str) -> PathBuf {
        self.hosts_dir.join(id)
    }

    /// The image a host of region `region_index` boots from, if it is an image host.
    pub fn image_for(&self, region_index: usize) -> Option<&Image> {
        self.image.as_ref().filter(|i| i.applies_to(&self.regions[region_index].name))
    }

    /// Runs the steps of one host in order. `user_data` is the instance's, for an image host's
    /// first boot.
    pub async fn run_steps(&self, id: &str, steps: &[Step], user_data: Option<&str>) -> Result<(), HostError> {
        for step in steps {
            match step {
                Step::Create(spec) => self.create(spec, user_data).await?,
                Step::PowerOn(spec) => self.power_on(spec).await?,
                Step::PowerOff => self.power_off(id).await?,
                Step::SetIsolated(on) => self.set_isolated(id, *on).await?,
                Step::WriteKey(key) => self.write_key(id, key.as_deref())?,
                Step::Destroy => self.destroy(id).await?,
            }
        }
        Ok(())
    }

    /// Files (kept if they survive from an earlier run), then the namespace with eth0 down.
    pub async fn create(&self, spec: &HostSpec, user_data: Option<&str>) -> Result<(), HostError> {
        let dir = self.host_dir(&spec.id);
        let image = self.image_for(spec.region_index);
        let private_dirs: &[String] = if image.is_some() { &[] } else { &self.private_dirs };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for d in private_dirs {
            let backing = dir.join("root").join(backing_name(d));
            if !backing.exists() {
                std::fs::create_dir_all(&backing).map_err(io(&backing))?;
                copy_owner_and_mode(Path::new(d), &backing)?;
            }
        }
        let key = dir.join("ssh_host_ed25519_key");
        if !key.exists() {
            // CPU-bound (unoptimized crypto in debug builds): keep it off the async workers.
            let (path, comment) = (key.clone(), spec.id.clone());
            tokio::task::spawn_blocking(move || write_host_key(&path, &comment))
                .await
                .map_err(|e| HostError::Io { path: key.display().to_string(), source: std::io::Error::other(e) })??;
        }
        let write = |name: &str, body: String| {
            let p = dir.join(name);
            std::fs::write(&p, body).map_err(io(&p))
        };
        if let Some(image) = image {
            let gw = gateway(&self.regions[spec.region_index].vpc_cidr);
            self.create_disk(&dir, spec, user_data.unwrap_or_default(), gw)?;
            write("sshd_config", image::sshd_config(spec.ip))?;
            write("init.sh", image::init_script(&self.boot_hook, &self.boot_log))?;
            write("enter.sh", image::enter_script(&dir, &image.rootfs))?;
        } else {
            write("sshd_config", hostfiles::sshd_config(spec.ip))?;
            write("init.sh", hostfiles::init_script(&self.boot_hook, &self.boot_log))?;
        }
        write("authorized_keys", String::new())?;

        let ns = self.names.netns(&spec.id);
        let veth = self.names.veth(&spec.id);
        let region = &self.regions[spec.region_index];
        let bridge = self.names.bridge(spec.region_index);
        let root_batch =
            format!("netns add {ns}\nlink add {veth} type veth peer name eth0 netns {ns}\nlink set {veth} master {bridge} up\n");
        cmd::run_with_stdin("ip", &["-batch", "-"], Some(&root_batch)).await?;
        let batch = format!("addr add {}/{} dev eth0\nlink set lo up\n", spec.ip, region.vpc_cidr.prefix_len());
        cmd::run_with_stdin("ip", &["-n", &ns, "-batch", "-"], Some(&batch)).await?;
        Ok(())
    }

    /// An image host's disk: overlay dirs, and on first creation the files its first boot
    /// needs (kept when the host is recreated after a failed step, as a disk would be).
    fn create_disk(&self, dir: &Path, spec: &HostSpec, user_data: &str, gw: std::net::Ipv4Addr) -> Result<(), HostError> {
        let disk = image::disk_dir(dir);
        let upper = disk.join("upper");
        let first = !upper.exists();
        for d in ["upper", "work", "merged"] {
            let p = disk.join(d);
            std::fs::create_dir_all(&p).map_err(io(&p))?;
        }
        if first {
            for (rel, body) in image::first_boot_files(&spec.id, &spec.hostname, user_data, gw) {
                let p = upper.join(rel);
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                std::fs::write(&p, body).map_err(io(&p))?;
            }
        }
        Ok(())
    }

    /// eth0 up, default route, and the host's init (sshd, then the boot hook).
    pub async fn power_on(&self, spec: &HostSpec) -> Result<(), HostError> {
        let ns = self.names.netns(&spec.id);
        let gw = gateway(&self.regions[spec.region_index].vpc_cidr).to_string();
        let batch = format!("link set eth0 up\nroute replace default via {gw} dev eth0\n");
        cmd::run_with_stdin("ip", &["-n", &ns, "-batch", "-"], Some(&batch)).await?;
        let dir = self.host_dir(&spec.id);
        let log_path = dir.join("init.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io(&log_path))?;
        let log2 = log.try_clone().map_err(io(&log_path))?;
        let netns_path = PathBuf::from(format!("/run/netns/{ns}"));
        let netns_file = std::fs::File::open(&netns_path).map_err(io(&netns_path))?;
        let resolv = dir.join("resolv.conf");
        std::fs::write(&resolv, hostfiles::resolv_conf(gateway(&self.regions[spec.region_index].vpc_cidr))).map_err(io(&resolv))?;
        let image = self.image_for(spec.region_index).is_some();
        // An image host's root is its own disk: no bind mounts of this machine's directories.
        let private_dirs: &[String] = if image { &[] } else { &self.private_dirs };
        let setup = NamespaceSetup::new(netns_file, &dir, private_dirs, &spec.hostname, image)?;
        let mut command = std::process::Command::new("/bin/sh");
        let script = if image { dir.join("enter.sh").display().to_string() } else { format!("{}/init.sh", hostfiles::IN_HOST_DIR) };
        command.arg(script).stdin(Stdio::null()).stdout(log).stderr(log2).process_group(0);
        // SAFETY: the closure only makes raw syscalls on data prepared before fork (no allocation).
        unsafe { command.pre_exec(move || setup.enter()) };
        let mut child = tokio::process::Command::from(command)
            .spawn()
            .map_err(|source| HostError::Io { path: format!("start init of {}", spec.id), source })?;
        // The boot script exits once sshd and the hook are started; they stay in the host.
        let _ = tokio::time::timeout(Duration::from_millis(SSH_READY_TIMEOUT_MS), child.wait()).await;
        wait_tcp(spec.ip, 22, SSH_READY_TIMEOUT_MS).await;
        Ok(())
    }

    /// Kills every process in the host's namespaces and takes eth0 down.
    pub async fn power_off(&self, id: &str) -> Result<(), HostError> {
        let ns = self.names.netns(id);
        kill_netns_processes(&ns).await?;
        cmd::run("ip", &["-n", &ns, "link", "set", "eth0", "down"]).await?;
        Ok(())
    }

    pub async fn set_isolated(&self, id: &str, on: bool) -> Result<(), HostError> {
        let ns = self.names.netns(id);
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            let rule = [chain, "!", dir, "lo", "-j", "DROP"];
            let base = ["netns", "exec", ns.as_str(), "iptables", "-w"];
            let present = {
                let args: Vec<&str> = base.iter().copied().chain(["-C"]).chain(rule).collect();
                cmd::succeeds("ip", &args).await
            };
            if present != on {
                let op = if on { "-A" } else { "-D" };
                let args: Vec<&str> = base.iter().copied().chain([op]).chain(rule).collect();
                cmd::run("ip", &args).await?;
            }
        }
        Ok(())
    }

    pub fn write_key(&self, id: &str, key: Option<&str>) -> Result<(), HostError> {
        let p = self.host_dir(id).join("authorized_keys");
        let body = key.map(|k| format!("{}\n", k.trim())).unwrap_or_default();
        std::fs::write(&p, body).map_err(io(&p))
    }

    /// Power off, delete the namespace (and with it the veth), delete the host's files.
    pub async fn destroy(&self, id: &str) -> Result<(), HostError> {
        let ns = self.names.netns(id);
        kill_netns_processes(&ns).await?;
        let _ = cmd::run("ip", &["netns", "del", &ns]).await;
        let dir = self.host_dir(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        // The veth normally goes with its namespace; remove it if it lingers.
        let veth = self.names.veth(id);
        if cmd::succeeds("ip", &["link", "show", "dev", &veth]).await {
            let _ = cmd::run("ip", &["link", "del", &veth]).await;
        }
        Ok(())
    }
}

/// SIGKILLs everything in the network namespace until nothing is left (bounded).
pub async fn kill_netns_processes(ns: &str) -> Result<usize, HostError> {
    let mut killed = 0;
    for _ in 0..KILL_ROUNDS_MAX {
        let out = match cmd::run("ip", &["netns", "pids", ns]).await {
            Ok(o) => o,
            Err(_) => return Ok(killed), // namespace gone
        };
        let pids: Vec<i32> = out.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        if pids.is_empty() {
            return Ok(killed);
        }
        for pid in pids {
            // SAFETY: plain kill(2) on a pid that `ip netns pids` reported in our namespace.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(HostError::Unkillable(ns.to_string()))
}

/// Waits until ip:port accepts a TCP connection; false after `timeout_ms`.
pub async fn wait_tcp(ip: std::net::Ipv4Addr, port: u16, timeout_ms: u64) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    while tokio::time::Instant::now() < deadline {
        let attempt = tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect((ip, port)));
        if let Ok(Ok(_)) = attempt.await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// What the forked child does before exec'ing the host's boot script: join the host's network
/// namespace, get its own mount, UTS and PID namespaces (the PID one for its children), a private /run, the host dir at
/// /run/labhost, the per-host bind mounts, its own /etc/resolv.conf and the hostname. Raw syscalls only.
struct NamespaceSetup {
    netns: std::fs::File,
    /// An image host: only the network, mount and UTS namespaces here (its `enter.sh` mounts
    /// its root and starts its own pid namespace).
    image: bool,
    host_dir: CString,
    binds: Vec<(CString, CString)>,
    /// /etc/resolv.conf (or where its symlinks lead); created first when it lies in the fresh /run.
    resolv: Option<ResolvMount>,
    hostname: Vec<u8>,
}

/// The host's resolv.conf bind mount: the directories and file to create in the private /run
/// first (when /etc/resolv.conf leads there), then the target.
struct ResolvMount {
    dirs: Vec<CString>,
    create: bool,
    target: CString,
}

impl ResolvMount {
    fn new(c: &impl Fn(&str) -> Result<CString, HostError>) -> Result<Option<ResolvMount>, HostError> {
        let target = hostfiles::resolv_target(Path::new("/etc/resolv.conf"));
        let in_run = target.starts_with("/run/") && !target.starts_with(hostfiles::IN_HOST_DIR);
        if !in_run && !target.exists() {
            return Ok(None); // nothing to mount over, and /etc is the machine's own
        }
        let mut dirs: Vec<CString> = Vec::new();
        if in_run {
            for d in target.ancestors().skip(1).take_while(|d| *d != Path::new("/run")) {
                dirs.insert(0, c(&d.to_string_lossy())?);
            }
        }
        Ok(Some(ResolvMount { dirs, create: in_run, target: c(&target.to_string_lossy())? }))
    }

    /// SAFETY (caller): runs between fork and exec; raw syscalls on owned NUL-terminated strings.
    unsafe fn mount(&self) -> std::io::Result<()> {
        for d in &self.dirs {
            if libc::mkdir(d.as_ptr(), 0o755) != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                return Err(std::io::Error::last_os_error());
            }
        }
        if self.create {
            let fd = libc::open(self.target.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
        }
        let src = c"/run/labhost/resolv.conf";
        if libc::mount(src.as_ptr(), self.target.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl NamespaceSetup {
    fn new(netns: std::fs::File, host_dir: &Path, private_dirs: &[String], hostname: &str, image: bool) -> Result<Self, HostError> {
        let c = |s: &str| CString::new(s).map_err(|e| HostError::Io { path: s.to_string(), source: std::io::Error::other(e) });
        let binds = hostfiles::bind_mounts(private_dirs)
            .into_iter()
            .map(|(src, dst)| Ok((c(&src)?, c(&dst)?)))
            .collect::<Result<Vec<_>, HostError>>()?;
        let resolv = ResolvMount::new(&c)?;
        Ok(NamespaceSetup {
            netns,
            image,
            host_dir: c(&host_dir.to_string_lossy())?,
            binds,
            resolv,
            hostname: hostname.as_bytes().to_vec(),
        })
    }

    fn enter(&self) -> std::io::Result<()> {
        fn check(rc: libc::c_int) -> std::io::Result<()> {
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
        let null = std::ptr::null::<libc::c_char>();
        let in_host = c"/run/labhost";
        // SAFETY: plain syscalls with valid NUL-terminated strings owned by self.
        unsafe {
            check(libc::setns(self.netns.as_raw_fd(), libc::CLONE_NEWNET))?;
            if self.image {
                check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS))?;
                check(libc::mount(null, c"/".as_ptr(), null, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))?;
                check(libc::sethostname(self.hostname.as_ptr().cast(), self.hostname.len()))?;
                return Ok(());
            }
            check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWPID))?;
            check(libc::mount(null, c"/".as_ptr(), null, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))?;
            check(libc::mount(c"labhost-run".as_ptr(), c"/run".as_ptr(), c"tmpfs".as_ptr(), 0, c"mode=0755,size=64m".as_ptr().cast()))?;
            check(libc::mkdir(in_host.as_ptr(), 0o755))?;
            check(libc::mkdir(c"/run/sshd".as_ptr(), 0o755))?;
            check(libc::mount(self.host_dir.as_ptr(), in_host.as_ptr(), null, libc::MS_BIND, std::ptr::null()))?;
            for (src, dst) in &self.binds {
                check(libc::mount(src.as_ptr(), dst.as_ptr(), null, libc::MS_BIND, std::ptr::null()))?;
            }
            if let Some(r) = &self.resolv {
                r.mount()?;
            }
            check(libc::sethostname(self.hostname.as_ptr().cast(), self.hostname.len()))?;
        }
        Ok(())
    }
}

/// A fresh ed25519 host key in OpenSSH format (private 0600, public next to it).
fn write_host_key(path: &Path, comment: &str) -> Result<(), HostError> {
    let fail = |e: ssh_key::Error| HostError::Io { path: path.display().to_string(), source: std::io::Error::other(e) };
    let mut key = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).map_err(fail)?;
    key.set_comment(comment);
    let private = key.to_openssh(ssh_key::LineEnding::LF).map_err(fail)?;
    let public = key.public_key().to_openssh().map_err(fail)?;
    let mut opts = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.write(true).create(true).truncate(true).open(path).map_err(io(path))?;
    std::io::Write::write_all(&mut f, private.as_bytes()).map_err(io(path))?;
    let pub_path = path.with_extension("pub");
    std::fs::write(&pub_path, format!("{public}\n")).map_err(io(&pub_path))
}

fn copy_owner_and_mode(from: &Path, to: &Path) -> Result<(), HostError> {
    let Ok(meta) = std::fs::metadata(from) else { return Ok(()) };
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid())).map_err(io(to))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(io(to))
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_key_is_openssh_ed25519() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        let t = std::time::Instant::now();
        super::write_host_key(&p, "i-1").unwrap();
        eprintln!("keygen took {:?}", t.elapsed());
        let private = std::fs::read_to_string(&p).unwrap();
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(std::fs::read_to_string(p.with_extension("pub")).unwrap().starts_with("ssh-ed25519 "));
    }
}
