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

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The host's init: private /run, the host dir at [`IN_HOST_DIR`], per-host bind mounts,
/// hostname, sshd in the foreground, then the boot hook; then reaps children forever.
pub fn init_script(host_dir: &str, private_dirs: &[String], hostname: &str, boot_hook: &str, boot_log: &str) -> String {
    let mut s = String::from("#!/bin/sh\n# labhost host init: PID 1 of the host's pid namespace\nset -e\n");
    s += "mount -t tmpfs -o mode=0755,size=64m labhost-run /run\n";
    s += &format!("mkdir -p {IN_HOST_DIR} /run/sshd\n");
    s += &format!("mount --bind {} {IN_HOST_DIR}\n", quote(host_dir));
    for d in private_dirs {
        s += &format!("mount --bind {IN_HOST_DIR}/root/{} {}\n", backing_name(d), quote(d));
    }
    s += &format!("hostname {}\n", quote(hostname));
    s += "set +e\n";
    s += &format!("/usr/sbin/sshd -D -f {IN_HOST_DIR}/sshd_config -E {IN_HOST_DIR}/sshd.log &\n");
    s += &format!(
        "if [ -f {hook} ]; then mkdir -p \"$(dirname {log})\"; /bin/sh {hook} >>{log} 2>&1 </dev/null & fi\n",
        hook = quote(boot_hook),
        log = quote(boot_log)
    );
    s += "while :; do wait; sleep 1; done\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_mounts_every_private_dir_and_starts_sshd_before_hook() {
        let s = init_script("/st/hosts/i-1", &["/opt".into(), "/var/lib/exa".into()], "ip-10-1-1-4", "/etc/exa/boot.sh", "/var/log/exa/boot.log");
        assert!(s.contains("mount --bind /run/labhost/root/var_lib_exa '/var/lib/exa'"));
        assert!(s.find("sshd -D").unwrap() < s.find("/etc/exa/boot.sh").unwrap());
        assert!(sshd_config("10.1.1.4".parse().unwrap()).contains("ListenAddress 10.1.1.4:22"));
    }
}
