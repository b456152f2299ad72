//! Issue 5 end to end: `provision up` on LocalStack + lab hosts ends with a live exchange.
//! Checked from outside: PostgreSQL's own views over TCP, the gateways' HTTP answers, files
//! on the hosts over SSH, and namespaces on this machine.

mod common;

use std::time::Duration;

use common::api::Api;
use common::lab::*;
use common::load::*;
use common::*;

const PRIMARY_CIDR: &str = "10.30.0.0/16";
const DR_CIDR: &str = "10.40.0.0/16";
const LAB_PREFIX: &str = "dp";

#[tokio::test(flavor = "multi_thread")]
async fn compact_up_gives_a_live_exchange_with_sync_standby_and_dr_standby_cluster() {
    let _turn = serial();
    let p = Project::with_cidrs("dep", "compact", PRIMARY_CIDR, DR_CIDR);
    let lab = Lab::start(&p.config(), LAB_PREFIX);
    p.ok(&["up"]);

    let secrets = p.dir.path().join(".provision").join(&p.name).join("secrets");
    let su = std::fs::read_to_string(secrets.join("db_superuser_password")).unwrap();
    let admin = std::fs::read_to_string(secrets.join("admin_token")).unwrap();
    let key = p.dir.path().join(".provision").join(&p.name).join("id_ed25519");

    // Primary region: quorum commit over both local standbys (`ANY 1`), so losing either one
    // stalls no commit; the DR standby leader that also streams from the leader is async.
    let pdb = ips(PRIMARY, &p.name, "db").await;
    let leader = pdb.iter().find(|ip| psql(ip, &su, "postgres", "select pg_is_in_recovery()") == "f").expect("a primary leader").clone();
    let ssn = psql(&leader, &su, "postgres", "show synchronous_standby_names");
    assert!(ssn.starts_with("ANY 1 ("), "synchronous_standby_names on {leader}: {ssn}");
    wait_for("two quorum standbys", Duration::from_secs(60), || {
        psql(&leader, &su, "postgres", "select count(*) from pg_stat_replication where sync_state = 'quorum'") == "2"
    });
    let quorum =
        psql(&leader, &su, "postgres", "select string_agg(application_name, ',') from pg_stat_replication where sync_state = 'quorum'");
    assert!(quorum.split(',').all(|n| n.starts_with(&format!("{PRIMARY}-"))), "the quorum standbys of {leader} are {quorum:?}");

    // DR region: a standby leader streams from the primary region, lag <= 1 MB.
    let ddb = ips(DR, &p.name, "db").await;
    let dr_leader = ddb
        .iter()
        .find(|ip| {
            psql(ip, &su, "postgres", "select status from pg_stat_wal_receiver") == "streaming"
                && psql(ip, &su, "postgres", "select sender_host from pg_stat_wal_receiver").starts_with("10.30.")
        })
        .expect("a DR standby leader streaming from the primary region")
        .clone();

    // An order through the primary gateway, then visible (read-only) in the DR database.
    let gw = &ips(PRIMARY, &p.name, "app").await[0];
    let api = Api::of(&p);
    let (code, body) = api.call("POST", gw, "/admin/users", &[("X-Admin-Token", admin.trim())], Some(r#"{"user_id":4242}"#));
    assert_eq!(code, 404, "admin calls are not served on the public port: {body}");
    public_port_is_https_only(&p, &api).await;
    let (code, body) =
        http("POST", &format!("{}/admin/users", admin_base(gw)), &[("X-Admin-Token", admin.trim())], Some(r#"{"user_id":4242}"#));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let api_key = v["api_key"].as_str().unwrap().to_string();
    let (code, body) = http(
        "POST",
        &format!("{}/admin/deposits", admin_base(gw)),
        &[("X-Admin-Token", admin.trim())],
        Some(r#"{"deposit_id":"d-4242","user_id":4242,"asset":"USD","amount_minor":1000000}"#),
    );
    assert_eq!(code, 200, "{body}");
    let order = r#"{"market":"BTC-USD","client_order_id":"deploy-test-1","side":"buy","type":"limit","price_ticks":100,"qty_lots":5,"quote_budget_minor":0}"#;
    let (code, body) = api.call("POST", gw, "/v1/orders", &[("X-API-Key", &api_key)], Some(order));
    assert_eq!(code, 200, "{body}");
    let lag_ok = || {
        let lsn = psql(&leader, &su, "postgres", "select pg_current_wal_lsn()");
        let replayed = psql(&dr_leader, &su, "postgres", "select pg_last_wal_replay_lsn()");
        let diff = psql(&leader, &su, "postgres", &format!("select pg_wal_lsn_diff('{lsn}', '{replayed}')"));
        diff.parse::<f64>().map(|d| d <= 1_048_576.0).unwrap_or(false)
    };
    wait_for("DR lag <= 1 MB", Duration::from_secs(60), lag_ok);
    wait_for("the order in the DR database", Duration::from_secs(60), || {
        psql(&dr_leader, &su, "exchange", "select count(*) from orders where client_order_id = 'deploy-test-1'") == "1"
    });

    // The DR gateway is up but rejects writes with its clear error.
    let dr_gw = &ips(DR, &p.name, "app").await[0];
    let (code, body) = api.call("POST", dr_gw, "/v1/orders", &[("X-API-Key", &api_key)], Some(order));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("standby"), "{body}");

    // Hosts resolve through their VPC's resolver (the lab's Route53 data plane), as EC2
    // instances do: the API name answers the primary region's gateways.
    let mut primary_gws = ips(PRIMARY, &p.name, "app").await;
    primary_gws.sort();
    let resolved = ssh(&key, dr_gw, &format!("getent ahostsv4 api.{}.test.internal | awk '{{print $1}}' | sort -u", p.name));
    assert_eq!(resolved.lines().map(str::to_string).collect::<Vec<_>>(), primary_gws, "the API name resolved on {dr_gw}");

    // The engines run as the unprivileged service user, and only it (and root) can read their
    // secrets and configs.
    let users = ssh(&key, gw, "ps -eo user=,comm= | awk '$2 ~ /^engine-/ {print $1}' | sort | uniq -c | awk '{print $2\":\"$1}'");
    assert_eq!(users.trim(), "exchange:5", "engine processes by user on {gw}");
    let modes = ssh(
        &key,
        gw,
        &format!(
            "stat -c '%a %U %n' /etc/{p}/secrets /etc/{p}/secrets/admin_token /etc/{p}/secrets/internal_token /etc/{p}/gateway.toml",
            p = p.name
        ),
    );
    assert_eq!(
        modes.trim(),
        format!("710 root /etc/{p}/secrets\n600 exchange /etc/{p}/secrets/admin_token\n600 exchange /etc/{p}/secrets/internal_token\n600 exchange /etc/{p}/gateway.toml", p = p.name)
    );

    // `up` again uploads nothing: the binaries on an app host keep their inode and mtime.
    let stat = |ip: &str| ssh(&key, ip, &format!("stat -c '%i %Y' /opt/{}/bin/engine-node /etc/{}/gateway.toml", p.name, p.name));
    let before = stat(gw);
    assert!(!before.is_empty());
    p.ok(&["up"]);
    assert_eq!(stat(gw), before, "a no-op up rewrote files");

    // Through a bastion (regions.toml `bastion`): deploy and status reach every host, and the
    // bastion's own log shows a forward to each of them.
    let bastion = common::bastion::Bastion::start(&key.with_extension("pub"));
    let plain = std::fs::read_to_string(p.config()).unwrap();
    std::fs::write(
        p.config(),
        plain.replace("ssh_user = \"root\"\n", &format!("ssh_user = \"root\"\nbastion = \"127.0.0.1:{}\"\n", bastion.port)),
    )
    .unwrap();
    p.ok(&["deploy"]);
    // `status` itself goes through the bastion: the forwards the bastion opens while it runs
    // include every gateway host (status asks each gateway's /health on the host over SSH).
    // The gateways' answers in status are the ones this test gets from them over HTTPS.
    let (pgw, dgw) = (ips(PRIMARY, &p.name, "app").await, ips(DR, &p.name, "app").await);
    assert!(!pgw.is_empty() && !dgw.is_empty(), "gateway hosts in EC2: {pgw:?} {dgw:?}");
    let mark = bastion.log_mark();
    let status: serde_json::Value = serde_json::from_slice(&p.ok(&["status", "--output", "json"]).stdout).unwrap();
    let during_status = bastion.forwarded_to_since(mark);
    let missing: Vec<&String> = pgw.iter().chain(&dgw).filter(|ip| !during_status.contains(*ip)).collect();
    assert!(
        missing.is_empty(),
        "status opened no forward through the bastion to gateway hosts {missing:?}; bastion log:\n{}",
        bastion.log()
    );
    let health_codes = |gws: &[String]| -> Vec<u64> {
        let mut v: Vec<u64> = gws.iter().map(|ip| api.call("GET", ip, "/health", &[], None).0 as u64).collect();
        v.sort();
        v
    };
    for (i, (region, gws)) in [(PRIMARY, &pgw), (DR, &dgw)].into_iter().enumerate() {
        assert_eq!(status["live"][i]["region"], region, "{status}");
        let mut in_status: Vec<u64> = status["live"][i]["gateways"]
            .as_array()
            .map(|g| g.iter().filter_map(|g| g["http_status"].as_u64()).collect())
            .unwrap_or_default();
        in_status.sort();
        assert_eq!(in_status, health_codes(gws), "{region}: gateway /health codes in status vs. probed directly: {status}");
    }
    assert_eq!(health_codes(&pgw), vec![200; pgw.len()], "the primary gateways answer /health with 200");
    // A replay lag in seconds for exactly the standbys PostgreSQL reports as streaming, on
    // every DB host of both regions: the primary's two local standbys and the DR standby
    // leader (on the primary's leader), the DR replicas (on their upstream).
    let streaming = || -> Vec<String> {
        let mut v: Vec<String> = [pdb.clone(), ddb.clone()]
            .concat()
            .iter()
            .flat_map(|ip| {
                psql(ip, &su, "postgres", "select application_name from pg_stat_replication")
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v
    };
    wait_for("5 standbys streaming", Duration::from_secs(60), || streaming().len() == 5);
    let status: serde_json::Value = serde_json::from_slice(&p.ok(&["status", "--output", "json"]).stdout).unwrap();
    let mut in_status: Vec<String> = (0..2)
        .flat_map(|i| status["live"][i]["replay_lag_s"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default())
        .collect();
    in_status.sort();
    assert_eq!(in_status, streaming(), "replay lags in status: {status}");
    let mut all_hosts = [ips(PRIMARY, &p.name, "app").await, pdb.clone(), ips(DR, &p.name, "app").await, ddb.clone()].concat();
    all_hosts.sort();
    assert_eq!(bastion.forwarded_to().into_iter().collect::<Vec<_>>(), all_hosts, "bastion log:\n{}", bastion.log());
    std::fs::write(p.config(), plain).unwrap();
    drop(bastion);

    // A changed gateway setting reaches the gateways and nothing else: gateway configs are
    // rewritten and gateways restarted; node configs, binaries and processes are untouched.
    let pids = |ip: &str| ssh(&key, ip, &format!("cat /var/lib/{p}/run/gateway.pid /var/lib/{p}/run/node-matching.pid", p = p.name));
    let nodes_stat = |ip: &str| ssh(&key, ip, &format!("stat -c '%i %Y' /opt/{p}/bin/engine-node /etc/{p}/node-matching.toml", p = p.name));
    let gw_stat = |ip: &str| ssh(&key, ip, &format!("stat -c '%i %Y' /etc/{p}/gateway.toml", p = p.name));
    let (pids0, nodes0, gw0) = (pids(gw), nodes_stat(gw), gw_stat(gw));
    std::thread::sleep(Duration::from_millis(1100)); // mtimes have 1 s resolution
    let mut toml = std::fs::read_to_string(p.config()).unwrap();
    toml.push_str("\n[engine]\ngateway_probe_interval_ms = 300\n");
    std::fs::write(p.config(), toml).unwrap();
    p.ok(&["deploy"]);
    assert_ne!(gw_stat(gw), gw0, "gateway config not rolled out");
    assert!(ssh(&key, gw, &format!("cat /etc/{}/gateway.toml", p.name)).contains("probe_interval_ms = 300"));
    assert_eq!(nodes_stat(gw), nodes0, "node files touched by a gateway-only change");
    let (g0, n0) = pids0.split_once('\n').unwrap();
    let pids1 = pids(gw);
    let (g1, n1) = pids1.split_once('\n').unwrap();
    assert_ne!(g0, g1, "gateway not restarted");
    assert_eq!(n0, n1, "a node was restarted by a gateway-only change");

    // Power off the primary region's DB leader under order load: Patroni promotes the
    // synchronous standby, the engines follow, and no acknowledged order is lost.
    let old_leader = writable_leader(&pdb, &su).expect("a primary leader");
    let gws = ips(PRIMARY, &p.name, "app").await;
    let load = Load::start(&Api::of(&p), Targets::Fixed(gws), &api_key, "dbloss");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(load.acked_after(std::time::Instant::now() - Duration::from_secs(2)) > 0, "no order acknowledged before the fault");
    lab.ctl(&["fault", "power-off", &old_leader]);
    let off = std::time::Instant::now();
    let others: Vec<String> = pdb.iter().filter(|ip| **ip != old_leader).cloned().collect();
    wait_for("a new writable leader in the primary region", Duration::from_secs(120), || writable_leader(&others, &su).is_some());
    wait_for("orders acknowledged again", Duration::from_secs(60), || load.acked_after(off + Duration::from_secs(1)) > 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = load.stop().await;
    let new_leader = writable_leader(&others, &su).expect("the promoted leader");
    let found = orders_of(&new_leader, &su, 4242);
    let lost: Vec<&String> = acked.iter().map(|(c, _)| c).filter(|c| !found.contains(*c)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged orders lost when the DB leader lost power: {lost:?}", lost.len(), acked.len());
    let (gap_from, gap) = longest_gap(&acked).expect("acks on both sides of the fault");
    eprintln!(
        "DB leader {old_leader} powered off: {new_leader} promoted; longest time without an ack {} ms (starting {} ms after the power-off); {} orders acked, none lost",
        gap.as_millis(),
        gap_from.saturating_duration_since(off).as_millis(),
        acked.len()
    );
    lab.ctl(&["heal", "all"]);

    // `down` leaves no lab host of the project behind.
    p.ok(&["down"]);
    wait_for("lab hosts removed", Duration::from_secs(60), || lab.namespaces().is_empty());
    drop(lab);
    assert!(lab_namespaces(LAB_PREFIX).is_empty());
}

/// Every gateway of both regions serves the API over HTTPS only: the certificate it presents
/// is the project's (the leaf in `.provision/<project>/secrets/tls_chain.pem`), it verifies for
/// the API name against the project's CA, and the same port gives no answer to plain HTTP.
async fn public_port_is_https_only(p: &common::Project, api: &Api) {
    let chain = std::fs::read_to_string(p.dir.path().join(".provision").join(&p.name).join("secrets").join("tls_chain.pem")).unwrap();
    let leaf = &chain[..chain.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len()];
    let mut gws = ips(PRIMARY, &p.name, "app").await;
    gws.extend(ips(DR, &p.name, "app").await);
    assert!(gws.len() >= 6, "gateways in EC2: {gws:?}");
    for ip in &gws {
        let (code, body) = api.call("GET", ip, "/health", &[], None);
        assert!(code == 200 || code == 503, "{ip}: HTTPS /health verified for {}: {code} {body}", api.name);
        let shown = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("openssl s_client -connect {ip}:8080 -servername {} </dev/null 2>/dev/null | openssl x509", api.name))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), leaf.trim(), "{ip}: the certificate the gateway presents");
        let (code, _) = http("GET", &format!("http://{ip}:8080/health"), &[], None);
        assert_eq!(code, 0, "{ip}: plain HTTP answered on the public port");
    }
}
