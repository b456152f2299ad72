//! Image mode (`labhost run --image`): a host boots from the fresh Debian 12 root filesystem
//! that `localstack/image.sh` builds, on an overlay of its own (its disk, kept across power
//! off and on, gone with the instance), instead of sharing this machine's root. At boot the
//! image's own cloud-init runs the instance's UserData (a NoCloud seed written from EC2's
//! DescribeInstanceAttribute), with its per-instance modules once per instance as on EC2; the
//! login user is the AMI's `admin`; apt and pip go out through the lab's apt cache
//! (`localstack/aptcache.sh`) on the VPC bridge address, which stands in for a NAT gateway.
//!
//! The host sees a /dev of its own (null, zero, full, random, urandom, tty, pts, shm) and no
//! /sys: none of this machine's disks is visible to it, so nothing a host runs (cloud-init's
//! data-volume step formats "the one unformatted disk") can touch them.

use crate::hostfiles::{quote, IN_HOST_DIR};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The image's default user (Debian's AMIs log in as `admin`, with passwordless sudo).
pub const LOGIN_USER: &str = "admin";
/// apt-cacher-ng's port (localstack/aptcache.sh).
pub const APT_CACHE_PORT: u16 = 3142;

/// Which hosts boot from the image: those of `regions` (every region when empty).
#[derive(Debug, Clone)]
pub struct Image {
    pub rootfs: PathBuf,
    pub regions: Vec<String>,
}

impl Image {
    pub fn applies_to(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|r| r == region)
    }
}

/// The host's disk inside its state directory: overlay upper, work and mount point.
pub fn disk_dir(host_dir: &Path) -> PathBuf {
    host_dir.join("disk")
}

/// Files put on a new host's disk before its first boot (paths relative to its root): the
/// cloud-init seed, and apt's and pip's way out through the apt cache at `gateway`.
pub fn first_boot_files(instance_id: &str, hostname: &str, user_data: &str, gateway: Ipv4Addr) -> Vec<(&'static str, String)> {
    let proxy = format!("http://{gateway}:{APT_CACHE_PORT}");
    vec![
        ("var/lib/cloud/seed/nocloud/user-data", user_data.to_string()),
        ("var/lib/cloud/seed/nocloud/meta-data", format!("instance-id: {instance_id}\nlocal-hostname: {hostname}\n")),
        (
            "etc/apt/apt.conf.d/00labhost-nat",
            format!("// labhost: the lab's apt cache stands in for the VPC's NAT gateway\nAcquire::http::Proxy \"{proxy}\";\n"),
        ),
        (
            "etc/pip.conf",
            format!(
                "# labhost: PyPI through the lab's apt cache (CONNECT), as through a NAT gateway\n\
                 [global]\nproxy = {proxy}\ncert = /etc/ssl/certs/ca-certificates.crt\n"
            ),
        ),
    ]
}

/// sshd of an image host: the AMI's user only, through PAM as Debian's sshd runs; the key
/// labhost keeps in the host dir (EC2's key pair) is the one accepted.
pub fn sshd_config(ip: Ipv4Addr) -> String {
    format!(
        "# written by labhost (image mode)\n\
         ListenAddress {ip}:22\n\
         HostKey {IN_HOST_DIR}/ssh_host_ed25519_key\n\
         PidFile none\n\
         UsePAM yes\n\
         StrictModes no\n\
         PermitRootLogin no\n\
         AllowUsers {LOGIN_USER}\n\
         PubkeyAuthentication yes\n\
         AuthorizedKeysFile {IN_HOST_DIR}/authorized_keys\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UseDNS no\n\
         PrintMotd no\n\
         MaxStartups 100:30:200\n\
         AcceptEnv LANG LC_*\n\
         Subsystem sftp /usr/lib/openssh/sftp-server\n"
    )
}

/// Run on this machine, inside the host's network, mount and UTS namespaces: the overlay, a
/// private /run with the host dir, a /dev of its own, the VPC resolver; then the image's
/// `/bin/sh` as PID 1 of a new pid namespace, chrooted, running [`init_script`].
pub fn enter_script(host_dir: &Path, rootfs: &Path) -> String {
    let disk = disk_dir(host_dir);
    let m = quote(&disk.join("merged").to_string_lossy());
    let h = quote(&host_dir.to_string_lossy());
    let lower = rootfs.to_string_lossy();
    let upper = disk.join("upper").to_string_lossy().to_string();
    let work = disk.join("work").to_string_lossy().to_string();
    format!(
        "#!/bin/sh\n# labhost image host: mounts, then the image's init as PID 1\nset -eu\nm={m}\n\
         mount -t overlay labhost-disk -o {opts} \"$m\"\n\
         mount -t tmpfs -o mode=0755,size=64m labhost-run \"$m/run\"\n\
         mkdir -p \"$m{IN_HOST_DIR}\" \"$m/run/sshd\"\n\
         mount --bind {h} \"$m{IN_HOST_DIR}\"\n\
         mount -t tmpfs -o mode=0755,size=1m labhost-dev \"$m/dev\"\n\
         for n in null zero full random urandom tty; do : > \"$m/dev/$n\"; mount --bind \"/dev/$n\" \"$m/dev/$n\"; done\n\
         mkdir \"$m/dev/pts\" \"$m/dev/shm\"\n\
         mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 labhost-pts \"$m/dev/pts\"\n\
         ln -s pts/ptmx \"$m/dev/ptmx\"\n\
         mount -t tmpfs -o mode=1777,size=512m labhost-shm \"$m/dev/shm\"\n\
         ln -s /proc/self/fd \"$m/dev/fd\"; ln -s /proc/self/fd/0 \"$m/dev/stdin\"\n\
         ln -s /proc/self/fd/1 \"$m/dev/stdout\"; ln -s /proc/self/fd/2 \"$m/dev/stderr\"\n\
         mount --bind {h}/resolv.conf \"$m/etc/resolv.conf\"\n\
         setsid unshare --pid --fork --mount-proc=\"$m/proc\" chroot \"$m\" /bin/sh {IN_HOST_DIR}/init.sh \
         </dev/null >>{h}/init.log 2>&1 &\n",
        opts = quote(&format!("lowerdir={lower},upperdir={upper},workdir={work}")),
    )
}

/// PID 1 of an image host, a shell: cloud-init's init stage (users, SSH, bootcmd,
/// write_files), then sshd; the config and final stages (packages, runcmd) and the boot hook
/// carry on beside it, as cloud-final runs beside sshd on EC2. The shell stays PID 1 and reaps
/// orphans. (sshd cannot be PID 1 here: it rewrites its environment block for its process
/// title, and cloud-init parses PID 1's environment to detect a container.)
pub fn init_script(boot_hook: &str, boot_log: &str) -> String {
    format!(
        "#!/bin/sh\n# labhost image host: PID 1\n\
         log=/var/log/cloud-init-output.log\n\
         cloud-init init >>$log 2>&1 </dev/null\n\
         /usr/sbin/sshd -D -f {IN_HOST_DIR}/sshd_config -E {IN_HOST_DIR}/sshd.log </dev/null &\n\
         ( cloud-init modules --mode=config; cloud-init modules --mode=final\n\
           if [ -f {hook} ]; then mkdir -p \"$(dirname {blog})\"; exec /bin/sh {hook} >>{blog} 2>&1; fi ) >>$log 2>&1 </dev/null &\n\
         while :; do wait; sleep 1; done\n",
        hook = quote(boot_hook),
        blog = quote(boot_log),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_host_sees_none_of_the_machines_disks_and_boots_cloud_init_before_sshd() {
        let s = enter_script(Path::new("/s/hosts/i-1"), Path::new("/img/rootfs"));
        assert!(s.contains("lowerdir=/img/rootfs,upperdir=/s/hosts/i-1/disk/upper,workdir=/s/hosts/i-1/disk/work"));
        assert!(!s.contains("--rbind /dev") && !s.contains("sysfs"), "the machine's block devices must stay out of the host");
        let init = init_script("/etc/exa/boot.sh", "/var/log/exa/boot.log");
        assert!(init.find("cloud-init init").unwrap() < init.find("/usr/sbin/sshd -D").unwrap());
        assert!(init.ends_with("while :; do wait; sleep 1; done\n"), "PID 1 stays and reaps: {init}");
        assert!(init.find("--mode=final").unwrap() < init.find("/etc/exa/boot.sh").unwrap());
        let files = first_boot_files("i-1", "ip-10-1-1-4", "#cloud-config\n", "10.1.0.1".parse().unwrap());
        assert!(files.iter().any(|(p, b)| *p == "etc/apt/apt.conf.d/00labhost-nat" && b.contains("http://10.1.0.1:3142")));
        assert!(sshd_config("10.1.1.4".parse().unwrap()).contains("AllowUsers admin\n"));
        assert!(Image { rootfs: "/r".into(), regions: vec![] }.applies_to("eu-west-1"));
        assert!(!Image { rootfs: "/r".into(), regions: vec!["us-east-1".into()] }.applies_to("eu-west-1"));
    }
}
