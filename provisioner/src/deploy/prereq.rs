//! Host prerequisites: what a host must have before `deploy` puts anything on it, and the
//! distro packages that provide it. Present ones are skipped (the lab image has them all);
//! missing ones are installed with apt where apt exists, else the host is refused with the
//! list. `templates/cloud-init.yaml` installs the same packages at first boot on AWS.

/// (what must exist: a command on PATH or an absolute path, the Debian package providing it)
const EVERY_HOST: &[(&str, &str)] = &[("curl", "curl"), ("runuser", "util-linux"), ("sha256sum", "coreutils")];
const DB_HOST: &[(&str, &str)] = &[
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("psql", "postgresql-client-15"),
    ("/usr/lib/postgresql/15/bin/postgres", "postgresql-15"),
];

/// The Patroni release the project pins (Debian 12 ships 3.0.2, which can let an isolated
/// ex-leader take the lock back when it rejoins: see `templates/db/install-patroni.sh`).
macro_rules! patroni_version {
    () => {
        "4.1.5"
    };
}
pub const PATRONI_VERSION: &str = patroni_version!();
/// Its venv, installed by `templates/db/install-patroni.sh` (the lab image and cloud-init
/// have it; deploy installs it where it is missing).
pub const PATRONI_BIN: &str = concat!("/usr/local/lib/patroni-", patroni_version!(), "/bin/patroni");
pub const INSTALL_PATRONI_SH: &str = include_str!("../../../templates/db/install-patroni.sh");

pub fn required(database: bool) -> Vec<(&'static str, &'static str)> {
    let mut v = EVERY_HOST.to_vec();
    if database {
        v.extend_from_slice(DB_HOST);
    }
    v
}

/// A command that prints what is missing, one name per line (nothing when all is there).
pub fn check_command(req: &[(&str, &'static str)]) -> String {
    let names: Vec<&str> = req.iter().map(|(n, _)| *n).collect();
    format!("for c in {}; do command -v \"$c\" >/dev/null 2>&1 || [ -x \"$c\" ] || echo \"$c\"; done", names.join(" "))
}

/// The packages providing the `missing` names (sorted, without duplicates).
pub fn packages_for(req: &[(&str, &'static str)], missing: &[&str]) -> Vec<&'static str> {
    let mut p: Vec<&'static str> = req.iter().filter(|(n, _)| missing.contains(n)).map(|(_, pkg)| *pkg).collect();
    p.sort_unstable();
    p.dedup();
    p
}

/// The unprivileged account the engines run as (a system user without a login shell or home).
/// One fixed name: on the lab, hosts share this machine's /etc/passwd, so `scripts/setup.sh`
/// creates it once, as an image would; elsewhere this phase creates it where it is missing.
pub const SERVICE_USER: &str = "exchange";

/// Creates [`SERVICE_USER`] unless it exists. A concurrent `useradd` (lab hosts sharing one
/// /etc/passwd) can fail on the lock: the account existing afterwards is what counts.
pub fn service_user_command() -> String {
    format!(
        "id -u {u} >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {u} || id -u {u} >/dev/null",
        u = SERVICE_USER
    )
}

/// The distro's own units for what Patroni and deploy run themselves: masked before the
/// packages are installed, so their postinst never starts them and no boot does (Debian's
/// etcd would hold 2379, its PostgreSQL a default cluster on 5432).
pub const DISTRO_UNITS: &[&str] = &["etcd.service", "postgresql.service", "postgresql@15-main.service"];
/// How long deploy waits for a host's first boot (cloud-init's packages and runcmd).
pub const CLOUD_INIT_WAIT_S: u32 = 900;

/// Waits for cloud-init's boot to end where it is installed and enabled: until its result file
/// exists (written when the final stage ends, errors or not; `cloud-init status --wait`
/// returns as soon as any module has failed, while later stages still run); fails after
/// [`CLOUD_INIT_WAIT_S`].
pub fn cloud_init_wait_command() -> String {
    format!(
        "command -v cloud-init >/dev/null || exit 0; cloud-init status 2>/dev/null | grep -q '^status: disabled' && exit 0; \
         n=0; until [ -e /run/cloud-init/result.json ]; do n=$((n+1)); [ $n -lt {CLOUD_INIT_WAIT_S} ] || exit 1; sleep 1; done"
    )
}

/// How long apt waits for the dpkg lock that cloud-init or unattended-upgrades may hold at
/// first boot, instead of failing at once.
pub const APT_LOCK_TIMEOUT_S: u32 = 600;

/// Bounds on one apt run (a mirror or NAT that stalls mid-transfer leaves apt waiting with no
/// timeout of its own) and the attempts made; apt's own dpkg-lock wait is inside the bound.
pub const APT_UPDATE_TIMEOUT_S: u32 = 180;
pub const APT_INSTALL_TIMEOUT_S: u32 = 1200;
pub const APT_ATTEMPTS_MAX: u32 = 3;

/// Pause between two apt attempts.
const APT_RETRY_PAUSE_S: u32 = 20;
/// What the SSH exec of a bounded on-host command adds to the command's own bound (connect,
/// sudo, output), so the host's clear error arrives before the SSH timeout.
const SSH_MARGIN_S: u32 = 60;

/// The SSH bound of [`install_command`]: every attempt of update and install, and the pauses.
pub fn install_ssh_timeout_ms() -> u64 {
    let attempts = APT_ATTEMPTS_MAX * (APT_UPDATE_TIMEOUT_S + APT_INSTALL_TIMEOUT_S);
    let pauses = 2 * (APT_ATTEMPTS_MAX - 1) * APT_RETRY_PAUSE_S;
    u64::from(attempts + pauses + SSH_MARGIN_S) * 1000
}

/// The SSH bound of [`cloud_init_wait_command`].
pub fn cloud_init_ssh_timeout_ms() -> u64 {
    u64::from(CLOUD_INIT_WAIT_S + SSH_MARGIN_S) * 1000
}

/// `cmd` under `timeout`, tried up to [`APT_ATTEMPTS_MAX`] times, 20 s apart (`apt-get
/// update` does not wait for a lock another apt holds); fails when every attempt did.
fn bounded(cmd: &str, timeout_s: u32) -> String {
    format!(
        "{{ n=0; until timeout {timeout_s} {cmd}; do n=$((n+1)); [ $n -lt {APT_ATTEMPTS_MAX} ] || break; sleep {APT_RETRY_PAUSE_S}; done; [ $n -lt {APT_ATTEMPTS_MAX} ]; }}"
    )
}

/// Installs `packages` with apt, after masking [`DISTRO_UNITS`] (where systemd is), turning
/// off the default PostgreSQL cluster, and with `policy-rc.d` refusing every service start
/// for the install's duration (any init system). The same steps as `templates/cloud-init.yaml`.
pub fn install_command(packages: &[&str]) -> String {
    const SAVED: &str = "/usr/sbin/policy-rc.d.provision-saved";
    let apt = format!("env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout={APT_LOCK_TIMEOUT_S} -q");
    [
        "command -v apt-get >/dev/null".to_string(),
        format!("{{ ! command -v systemctl >/dev/null || systemctl mask {}; }}", DISTRO_UNITS.join(" ")),
        "mkdir -p /etc/postgresql-common".into(),
        "{ grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf || echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf; }".into(),
        // An image's own policy-rc.d is kept aside and put back afterwards.
        format!("{{ [ ! -e /usr/sbin/policy-rc.d ] || mv -f /usr/sbin/policy-rc.d {SAVED}; }}"),
        "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d".into(),
        format!(
            "{{ {update} && {install}; ok=$?; rm -f /usr/sbin/policy-rc.d; \
             {{ [ ! -e {SAVED} ] || mv -f {SAVED} /usr/sbin/policy-rc.d; }}; [ $ok = 0 ]; }}",
            update = bounded(&format!("{apt} update"), APT_UPDATE_TIMEOUT_S),
            install = bounded(&format!("{apt} install -y {}", packages.join(" ")), APT_INSTALL_TIMEOUT_S),
        ),
    ]
    .join(" && ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_missing_is_installed() {
        let req = required(true);
        assert_eq!(packages_for(&req, &[]), Vec::<&str>::new());
        assert_eq!(packages_for(&req, &["etcd", "/usr/lib/postgresql/15/bin/postgres"]), vec!["etcd-server", "postgresql-15"]);
        assert!(!required(false).iter().any(|(n, _)| *n == "etcd"), "app hosts need no database packages");
        // The install script pins the same release it puts at PATRONI_BIN.
        assert!(INSTALL_PATRONI_SH.contains(&format!("version={PATRONI_VERSION}\n")), "install-patroni.sh pins another release");
        assert!(check_command(&req).contains("/usr/lib/postgresql/15/bin/postgres"));
    }

    /// Issue 18: the distro's etcd and PostgreSQL are masked before apt runs, no default
    /// cluster is made, no service starts during the install, and apt waits for the lock.
    #[test]
    fn the_install_masks_the_distro_services_first_and_waits_for_the_apt_lock() {
        let c = install_command(&["etcd-server", "postgresql-15"]);
        let at = |s: &str| c.find(s).unwrap_or_else(|| panic!("{s:?} not in {c}"));
        let install = at("install -y etcd-server postgresql-15");
        assert!(at("systemctl mask etcd.service postgresql.service postgresql@15-main.service") < install);
        assert!(at("create_main_cluster = false") < install);
        assert!(at("exit 101") < install && install < at("rm -f /usr/sbin/policy-rc.d"));
        assert!(c.contains("DPkg::Lock::Timeout=600"));
        // Every apt run is bounded and retried: a stalled mirror cannot hold deploy forever.
        assert!(c.contains("until timeout 180 env DEBIAN_FRONTEND=noninteractive apt-get") && c.contains("until timeout 1200 env"));
        // The SSH exec waits longer than every on-host bound, so the host's own error arrives.
        assert!(install_ssh_timeout_ms() > 3 * (180 + 1200 + 20) * 1000 && cloud_init_ssh_timeout_ms() > 900_000);
        // An image's own policy-rc.d is put back, not deleted.
        assert!(at("mv -f /usr/sbin/policy-rc.d /usr/sbin/policy-rc.d.provision-saved") < install);
        assert!(at("mv -f /usr/sbin/policy-rc.d.provision-saved /usr/sbin/policy-rc.d") > install);
    }
}
