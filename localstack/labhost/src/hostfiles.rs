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
    }
}
