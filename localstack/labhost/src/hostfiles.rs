//! Per-host files: sshd_config, the init script run as PID 1 of the host, the key files.

use std::net::Ipv4Addr;

/// Inside a host, its own state directory is bind-mounted here (on a private /run tmpfs).
pub const IN_HOST_DIR: &str = "/run/labhost";

/// Directory name under `<host>/root/` backing one private path, e.g. `/var/lib/exa` -> `var_lib_exa`.
pub fn backing_name(path: &str) -> String {
    path.trim_start_matches('/').replace('/', "_")
}

pub fn sshd_config(ip: Ipv4Addr) -> String {
    format!(
        "# written by labhost\n\
         ListenAddress {ip}:22\n\
         HostKey {IN_HOST_DIR}/ssh_host_ed25519_key\n\
         PidFile none\n\
         UsePAM no\n\
         StrictModes no\n\
         PermitRootLogin prohibit-password\n\
         AllowUsers root\n\
         PubkeyAuthentication yes\n\
         AuthorizedKeysFile {IN_HOST_DIR}/authorized_keys\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         HostbasedAuthentication no\n\
         UseDNS no\n\
         PrintMotd no\n\
         MaxStartups 100:30:200\n\
         AcceptEnv LANG LC_*\n\
         Subsystem sftp /usr/lib/openssh/sftp-server\n"
    )
}

/// The host's /etc/resolv.conf: the VPC resolver on the bridge address, as EC2 instances use
/// the VPC's (labfront answers DNS there on port 53).
pub fn resolv_conf(nameserver: Ipv4Addr) -> String {
    format!("# written by labhost: the VPC resolver (labfront's DNS on the VPC bridge address)\nnameserver {nameserver}\n")
}

/// Where a bind mount over `/etc/resolv.conf` lands: the file itself, or where its symlinks
/// lead (bounded); relative links resolve against the link's directory.
pub fn resolv_target(path: &std::path::Path) -> std::path::PathBuf {
    const LINKS_MAX: usize = 8;
    let mut p = path.to_path_buf();
    for _ in 0..LINKS_MAX {
        match std::fs::read_link(&p) {
            Ok(next) => p = p.parent().map(|d| d.join(&next)).unwrap_or(next),
            Err(_) => break,
        }
    }
    p
}

pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Bind mounts giving a host its own directories: (source inside the host's view, target).
/// Sources go through [`IN_HOST_DIR`], which is mounted first, so that a state dir under a
/// private path (e.g. /tmp) stays reachable.
pub fn bind_mounts(private_dirs: &[String]) -> Vec<(String, String)> {
    private_dirs.iter().map(|d| (format!("{IN_HOST_DIR}/root/{}", backing_name(d)), d.clone())).collect()
}

/// The host's boot script, run by `/bin/sh` after the emulator has entered the host's
/// namespaces (the pid namespace applies to its children). Its first child, sshd, becomes
/// PID 1 of the host and reaps orphans; /proc is then mounted from inside the pid namespace;
/// the boot hook runs in the background; the script itself exits. Nothing else stays
/// resident, so an idle host is sshd alone.
pub fn init_script(boot_hook: &str, boot_log: &str) -> String {
    let mut s = String::from("#!/bin/sh\n# labhost host boot: sshd becomes PID 1 of the host's pid namespace\n");
    s += &format!("/usr/sbin/sshd -D -f {IN_HOST_DIR}/sshd_config -E {IN_HOST_DIR}/sshd.log </dev/null &\n");
    s += "mount -t proc proc /proc\n";
    s += &format!(
        "if [ -f {hook} ]; then mkdir -p \"$(dirname {log})\"; /bin/sh {hook} >>{log} 2>&1 </dev/null & fi\n",
        hook = quote(boot_hook),
        log = quote(boot_log)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_starts_sshd_before_hook_and_mounts_go_through_host_dir() {
        let s = init_script("/etc/exa/boot.sh", "/var/log/exa/boot.log");
        assert!(s.find("sshd -D").unwrap() < s.find("/etc/exa/boot.sh").unwrap());
        let m = bind_mounts(&["/opt".into(), "/var/lib/exa".into()]);
        assert_eq!(m[1], ("/run/labhost/root/var_lib_exa".to_string(), "/var/lib/exa".to_string()));
        assert!(sshd_config("10.1.1.4".parse().unwrap()).contains("ListenAddress 10.1.1.4:22"));
        assert!(resolv_conf("10.1.0.1".parse().unwrap()).contains("\nnameserver 10.1.0.1\n"));
    }

    #[test]
    fn resolv_target_follows_symlinks() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("run")).unwrap();
        std::os::unix::fs::symlink("run/stub.conf", d.path().join("resolv.conf")).unwrap();
        assert_eq!(resolv_target(&d.path().join("resolv.conf")), d.path().join("run/stub.conf"));
        assert_eq!(resolv_target(&d.path().join("plain")), d.path().join("plain"));
    }
}
