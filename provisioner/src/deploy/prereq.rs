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

pub fn install_command(packages: &[&str]) -> String {
    format!("command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q {}", packages.join(" "))
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
}
