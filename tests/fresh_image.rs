//! Issue 18: `provision up` on fresh Debian 12 hosts, as on a new AWS account. The primary
//! region's hosts boot from a clean Debian 12 root filesystem (localstack/image.sh: OpenSSH,
//! cloud-init, no PostgreSQL, Patroni or etcd), log in as `admin`, run their UserData with
//! the image's own cloud-init, and get packages through the lab's apt cache as through a NAT
//! gateway, with the distro's postinst scripts running. The DR region stays on the lab image.
//! Checked from outside: packages and processes over SSH, PostgreSQL over TCP, orders and a
//! fill through the public API and in the database.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::api::Api;
use common::lab::*;
use common::*;

const PRIMARY_CIDR: &str = "10.32.0.0/16";
const DR_CIDR: &str = "10.42.0.0/16";
const LAB_PREFIX: &str = "fi";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The cached image's root filesystem (built on first use).
fn image() -> String {
    let out = Command::new(repo().join("localstack/image.sh")).output().unwrap();
    assert!(out.status.success(), "localstack/image.sh: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The apt cache for the test's duration: stopped on drop when this test started it.
struct AptCache {
    started: bool,
}

impl AptCache {
    fn start() -> AptCache {
        let running =
            Command::new("curl").args(["-s", "-o", "/dev/null", "--max-time", "2", "http://127.0.0.1:3142/acng-report.html"]).status();
        let started = !running.map(|s| s.success()).unwrap_or(false);
        let out = Command::new(repo().join("localstack/aptcache.sh")).arg("start").output().unwrap();
        assert!(out.status.success(), "aptcache: {}", String::from_utf8_lossy(&out.stderr));
        AptCache { started }
    }
}

impl Drop for AptCache {
    fn drop(&mut self) {
        if self.started {
            let _ = Command::new(repo().join("localstack/aptcache.sh")).arg("stop").output();
        }
    }
}

fn ssh_admin(key: &Path, ip: &str, cmd: &str) -> String {
    ssh_as(key, "admin", ip, cmd)
}

#[tokio::test(flavor = "multi_thread")]
async fn compact_up_on_fresh_debian_hosts_installs_through_cloud_init_and_trades() {
    let _turn = serial();
    let rootfs = image();
    let _cache = AptCache::start();
    let p = Project::with_cidrs("img", "compact", PRIMARY_CIDR, DR_CIDR);
    // The primary region logs in as Debian's `admin`, as on AWS; the DR region's lab hosts as root.
    let plain = std::fs::read_to_string(p.config()).unwrap();
    std::fs::write(p.config(), plain.replacen("ssh_user = \"root\"", "ssh_user = \"admin\"", 1)).unwrap();
    let _lab = Lab::start_with(&p.config(), LAB_PREFIX, &["--image", &rootfs, "--image-regions", PRIMARY]);
    p.ok(&["up"]);

    let dir = p.dir.path().join(".provision").join(&p.name);
    let key = dir.join("id_ed25519");
    let su = std::fs::read_to_string(dir.join("secrets/db_superuser_password")).unwrap();
    let admin = std::fs::read_to_string(dir.join("secrets/admin_token")).unwrap();
    let dbs = ips(PRIMARY, &p.name, "db").await;
    let apps = ips(PRIMARY, &p.name, "app").await;
    assert_eq!((dbs.len(), apps.len()), (3, 3), "compact's primary hosts");

    for ip in dbs.iter().chain(&apps) {
        // cloud-init ran the UserData once, to the end; root cannot log in, admin can.
        let done = ssh_admin(&key, ip, "test -f /var/lib/cloud/instance/boot-finished && echo done; id -un");
        assert_eq!(done, "done\nadmin", "cloud-init on {ip}");
        assert_eq!(ssh(&key, ip, "echo root"), "", "root logs in on {ip}");
        // The packages came from the distro through the cache, postinst scripts and all; the
        // distro's etcd and default PostgreSQL cluster never ran.
        let pkgs = ssh_admin(&key, ip, "dpkg-query -W -f='${db:Status-Abbrev}${Package}\\n' postgresql-15 etcd-server | sort");
        assert_eq!(pkgs, "ii etcd-server\nii postgresql-15", "packages on {ip}");
        let masked = ssh_admin(
            &key,
            ip,
            "readlink /etc/systemd/system/etcd.service; ls /etc/postgresql/15 2>/dev/null | wc -l; sudo ls -A /var/lib/etcd | wc -l",
        );
        assert_eq!(masked, "/dev/null\n0\n0", "the distro's etcd masked and never run, no default cluster, on {ip}");
        // Deploy waited for the first boot: cloud-init's runcmd (`chmod 0700 /etc/<project>`)
        // did not undo deploy's modes afterwards.
        assert_eq!(ssh_admin(&key, ip, &format!("stat -c %a /etc/{}", p.name)), "755", "/etc/{} on {ip}", p.name);
    }
    // On the DB hosts: Patroni's pinned release (from PyPI through the cache) runs PostgreSQL
    // as postgres, and the project's etcd serves on the host's address.
    for ip in &dbs {
        let patroni = ssh_admin(&key, ip, "ps -eo user=,args= | grep -cE '^postgres +/usr/local/lib/patroni-[0-9.]+/bin/python3 '");
        assert_eq!(patroni, "1", "Patroni on {ip}");
        let postgres = ssh_admin(&key, ip, "ps -eo user=,args= | grep -cE '^postgres +/usr/lib/postgresql/15/bin/postgres '");
        assert_eq!(postgres, "1", "PostgreSQL on {ip}");
        let listen = ssh_admin(&key, ip, "ss -Hltn 'sport = :2379' | awk '{print $4}'");
        assert!(listen.lines().any(|l| l == format!("{ip}:2379")), "the project's etcd on {ip}: {listen:?}");
    }
    let leader = writable_leader(&dbs, &su).expect("a writable leader in the primary region");
    wait_for("two quorum standbys", Duration::from_secs(120), || {
        psql(&leader, &su, "postgres", "select count(*) from pg_stat_replication where sync_state = 'quorum'") == "2"
    });

    // A trade through the public API (HTTPS) of a fresh host: two users' orders cross.
    let api = Api::of(&p);
    let gw = &apps[0];
    let mut keys = Vec::new();
    for (user, asset, amount) in [(5101, "USD", 100_000_000), (5102, "BTC", 100_000_000_000i64)] {
        let (code, body) = http(
            "POST",
            &format!("{}/admin/users", admin_base(gw)),
            &[("X-Admin-Token", admin.trim())],
            Some(&format!(r#"{{"user_id":{user}}}"#)),
        );
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        keys.push(v["api_key"].as_str().unwrap().to_string());
        let deposit = format!(r#"{{"deposit_id":"img-{user}","user_id":{user},"asset":"{asset}","amount_minor":{amount}}}"#);
        let (code, body) = http("POST", &format!("{}/admin/deposits", admin_base(gw)), &[("X-Admin-Token", admin.trim())], Some(&deposit));
        assert_eq!(code, 200, "{body}");
    }
    for (api_key, side, id) in [(&keys[1], "sell", "img-sell"), (&keys[0], "buy", "img-buy")] {
        let order = format!(
            r#"{{"market":"BTC-USD","client_order_id":"{id}","side":"{side}","type":"limit","price_ticks":100,"qty_lots":2,"quote_budget_minor":0}}"#
        );
        let (code, body) = api.call("POST", gw, "/v1/orders", &[("X-API-Key", api_key)], Some(&order));
        assert_eq!(code, 200, "{side}: {body}");
    }
    wait_for("the fill in the primary database", Duration::from_secs(30), || {
        psql(&leader, &su, "exchange", "select count(*) from fills") != "0"
    });
}
