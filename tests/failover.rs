//! Issue 6 end to end on LocalStack + lab hosts: planned switchover under load and failback,
//! `watch --auto-failover` on a region blackout (and not on one missed probe), the fence,
//! failback with a rebuild, a drill, then teardown and recreate. Checked from outside: the
//! Route53 and EC2 APIs, PostgreSQL's views over TCP, and the gateways' HTTP answers.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::api::Api;
use common::lab::*;
use common::load::*;
use common::*;

const PRIMARY_CIDR: &str = "10.70.0.0/16";
const DR_CIDR: &str = "10.80.0.0/16";
const LAB_PREFIX: &str = "fo";

struct Secrets {
    su: String,
    admin: String,
}

fn secrets(p: &Project) -> Secrets {
    let dir = p.dir.path().join(".provision").join(&p.name).join("secrets");
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap().trim().to_string();
    Secrets { su: read("db_superuser_password"), admin: read("admin_token") }
}

fn make_user(gw: &str, admin: &str, user_id: i64) -> String {
    let (code, body) =
        http("POST", &format!("{}/admin/users", admin_base(gw)), &[("X-Admin-Token", admin)], Some(&format!(r#"{{"user_id":{user_id}}}"#)));
    assert_eq!(code, 200, "{body}");
    let key = serde_json::from_str::<serde_json::Value>(&body).unwrap()["api_key"].as_str().unwrap().to_string();
    let dep = format!(r#"{{"deposit_id":"d-{user_id}","user_id":{user_id},"asset":"USD","amount_minor":1000000000000}}"#);
    let (code, body) = http("POST", &format!("{}/admin/deposits", admin_base(gw)), &[("X-Admin-Token", admin)], Some(&dep));
    assert_eq!(code, 200, "{body}");
    key
}

/// A child process that is killed (by its PID) when the test ends, also on failure.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn planned_and_unplanned_failover_watch_failback_drill_then_teardown_and_recreate() {
    let _turn = serial();
    let p = Project::with_cidrs("fo", "compact", PRIMARY_CIDR, DR_CIDR);
    let lab = Lab::start(&p.config(), LAB_PREFIX);
    p.ok(&["up"]);
    let s = secrets(&p);
    let (pgw, dgw) = (ips(PRIMARY, &p.name, "app").await, ips(DR, &p.name, "app").await);
    let (pdb, ddb) = (ips(PRIMARY, &p.name, "db").await, ips(DR, &p.name, "db").await);
    assert_eq!(records(&p).await, (pgw.clone(), dgw.clone()), "after up: PRIMARY -> primary gateways");
    assert_dns_answers(&p, &pgw, "after up");
    let user = 7001;
    let key = make_user(&pgw[0], &s.admin, user);

    // --- Planned switchover under load: no acknowledged order lost. ---
    let load = Load::start(&Api::of(&p), Targets::PrimaryRecordOf(p.name.clone()), &key, "planned");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = p.ok(&["failover", "--to", DR, "--planned", "--output", "json"]);
    let switched = Instant::now();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = load.stop().await;
    assert_eq!(records(&p).await, (dgw.clone(), pgw.clone()), "PRIMARY now points at the DR gateways");
    assert_dns_answers(&p, &dgw, "after a planned switchover");
    let dr_leader = writable_leader(&ddb, &s.su).expect("the DR region has a writable leader");
    assert!(writable_leader(&pdb, &s.su).is_none(), "the old primary region must not be writable");
    let found = orders_of(&dr_leader, &s.su, user);
    let lost: Vec<&String> = acked.iter().map(|(c, _)| c).filter(|c| !found.contains(*c)).collect();
    assert!(lost.is_empty(), "{} acknowledged orders lost in a planned switchover: {lost:?}", lost.len());
    assert!(acked.iter().any(|(_, t)| *t > switched), "no order was acknowledged through the API name after the switchover");
    assert!(acked.iter().any(|(_, t)| *t < switched), "no order was acknowledged before the switchover");
    let (code, body) = Api::of(&p).call("POST", &dgw[0], "/v1/orders", &[("X-API-Key", &key)], Some(&order("planned-direct")));
    assert_eq!(code, 200, "the DR gateway takes writes: {body}");
    let (code, _) = Api::of(&p).call("POST", &pgw[0], "/v1/orders", &[("X-API-Key", &key)], Some(&order("planned-old")));
    assert_eq!(code, 503, "the old primary's gateway refuses writes");
    wait_for("the old primary region streams from the new one", Duration::from_secs(60), || streams_from(&pdb, &s.su, "10.80."));
    eprintln!("planned switchover: RTO {} ms, {} orders acked, none lost", report["rto_ms"], acked.len());

    // --- Failback restores the original layout. ---
    p.ok(&["failback"]);
    assert_eq!(records(&p).await, (pgw.clone(), dgw.clone()), "failback: PRIMARY back on the primary gateways");
    assert_dns_answers(&p, &pgw, "after failback");
    let leader = writable_leader(&pdb, &s.su).expect("primary region writable again");
    assert!(writable_leader(&ddb, &s.su).is_none());
    wait_for("DR streams from the primary region again", Duration::from_secs(60), || streams_from(&ddb, &s.su, "10.70."));
    assert!(orders_of(&leader, &s.su, user).contains("planned-direct"), "the write taken in DR survived the failback");

    // --- watch: one missed probe changes nothing; a blackout fails over (fencing first). ---
    let watch_log = p.dir.path().join("watch.jsonl");
    let mut watch = Reaped(
        p.cmd(&["watch", "--auto-failover", "--failures", "3", "--output", "json"])
            .stdout(std::fs::File::create(&watch_log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let api = Api::of(&p);
    let health = |ip: &str| {
        assert_local(ip);
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "0.3", "-w", "%{http_code}", "--cacert"])
            .arg(&api.ca_file)
            .args(["--resolve", &format!("{}:8080:{ip}", api.name), &api.url("/health")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse::<u16>().unwrap_or(0)
    };
    for ip in &pgw {
        lab.ctl(&["fault", "isolate", ip]);
    }
    let all_down = || {
        std::thread::scope(|sc| {
            pgw.iter().map(|ip| sc.spawn(move || health(ip))).collect::<Vec<_>>().into_iter().all(|h| h.join().unwrap() != 200)
        })
    };
    let cut = Instant::now();
    wait_for("the primary gateways cut off", Duration::from_secs(10), all_down);
    tokio::time::sleep(Duration::from_millis(300)).await;
    lab.ctl(&["heal", "all"]); // about one probe interval without an answer: fewer than 3 misses
    eprintln!("blip: primary gateways unreachable for about {} ms", cut.elapsed().as_millis());
    wait_for("the primary gateways back", Duration::from_secs(10), || pgw.iter().all(|ip| health(ip) == 200));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        watch.0.try_wait().unwrap().is_none(),
        "watch exited after a short blip: {}",
        std::fs::read_to_string(&watch_log).unwrap_or_default()
    );
    assert_eq!(records(&p).await.0, pgw, "a short blip must not fail over");

    let load = Load::start(&Api::of(&p), Targets::PrimaryRecordOf(p.name.clone()), &key, "unplanned");
    tokio::time::sleep(Duration::from_secs(2)).await;
    lab.ctl(&["fault", "blackout", PRIMARY]);
    let blackout = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = watch.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "watch did not fail over within 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let recovered = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = load.stop().await;
    assert!(status.success(), "watch failed: {}", std::fs::read_to_string(&watch_log).unwrap_or_default());
    // What watch did, seen from outside (its own log is only printed on failure): Route53
    // sends the API name to the DR gateways, EC2 has the old primary stopped, exactly one DR
    // database is a writable primary, and every DR gateway takes an order that lands there.
    let log = std::fs::read_to_string(&watch_log).unwrap_or_default();
    assert_eq!(records(&p).await.0, dgw, "after the blackout PRIMARY points at the DR gateways; watch log: {log}");
    let mut want = dgw.clone();
    want.sort();
    wait_for("real DNS answers the DR gateways", Duration::from_secs(45), || dns_a(&api_name(&p)) == want);
    let dns_moved = Instant::now();
    assert_dns_answers(&p, &dgw, "after an unplanned failover");
    let st: Vec<String> = instances_now(PRIMARY, &p.name).await.into_iter().map(|(_, s)| s).collect();
    assert!(!st.is_empty() && st.iter().all(|s| s == "stopped"), "the fenced region's instances are stopped in EC2: {st:?}");
    let writable: Vec<&String> = ddb.iter().filter(|ip| psql(ip, &s.su, "postgres", "select pg_is_in_recovery()") == "f").collect();
    assert_eq!(writable.len(), 1, "DR databases that are writable primaries after the failover: {writable:?}; watch log: {log}");
    let dr_leader = writable[0].clone();
    for (i, gw) in dgw.iter().enumerate() {
        let cid = format!("unplanned-direct-{i}");
        let (code, body) = Api::of(&p).call("POST", gw, "/v1/orders", &[("X-API-Key", &key)], Some(&order(&cid)));
        assert_eq!(code, 200, "DR gateway {gw} takes writes after the failover: {body}");
        assert!(orders_of(&dr_leader, &s.su, user).contains(&cid), "order {cid} taken by {gw} is not in the DR primary {dr_leader}");
    }
    let found = orders_of(&dr_leader, &s.su, user);
    let after: Vec<&String> = acked.iter().filter(|(_, t)| *t > recovered).map(|(c, _)| c).collect();
    assert!(!after.is_empty(), "no order acknowledged through the API name after the failover");
    assert!(after.iter().all(|c| found.contains(*c)), "orders acked after the failover are missing");
    let lost = acked.iter().filter(|(c, _)| !found.contains(c)).count();
    // The primary gateways are dark from the blackout on (an order in flight then may still land).
    let first_dr_ack = acked.iter().map(|(_, t)| *t).filter(|t| *t > blackout + Duration::from_secs(2)).min();
    eprintln!(
        "unplanned (Route53 control plane up): watch failed over {} ms after the blackout; DNS RTO (blackout -> DNS names the DR gateways) <= {} ms; RTO to writable (blackout -> first order acked through the PRIMARY record after it) {:?} ms; {lost} of {} acked orders not in DR (async RPO)",
        (recovered - blackout).as_millis(),
        (dns_moved - blackout).as_millis(),
        first_dr_ack.map(|t| (t - blackout).as_millis()),
        acked.len()
    );

    // A second failover while a region is fenced is refused, and so is `up`.
    let out = p.run(&["failover", "--to", PRIMARY]);
    assert!(!out.status.success() && stderr(&out).contains("fenced"), "second failover: {}", stderr(&out));
    let out = p.run(&["up"]);
    assert!(!out.status.success() && stderr(&out).contains("fenced"), "up on a fenced region: {}", stderr(&out));

    // --- Failback after an unplanned failover rebuilds the fenced region, then switches back. ---
    lab.ctl(&["heal", "all"]);
    p.ok(&["failback"]);
    let (pgw2, pdb2) = (ips(PRIMARY, &p.name, "app").await, ips(PRIMARY, &p.name, "db").await);
    assert_eq!(records(&p).await, (pgw2.clone(), dgw.clone()), "rebuilt primary region serves again");
    assert_dns_answers(&p, &pgw2, "after failback from an unplanned failover");
    let leader = writable_leader(&pdb2, &s.su).expect("rebuilt primary writable");
    assert!(
        orders_of(&leader, &s.su, user).is_superset(&after.iter().map(|c| c.to_string()).collect()),
        "orders taken in DR came back with the failback"
    );
    wait_for("DR streams from the rebuilt primary", Duration::from_secs(60), || streams_from(&ddb, &s.su, "10.70."));

    // --- A planned drill passes. The test's own client places orders through the API name
    // (the PRIMARY record, re-read from Route53) for the whole drill; the drill moves that
    // record to DR and back (seen in Route53 while it runs), DR gateways acknowledge some of
    // the client's orders, and every order the client got acknowledged, also those, is in the
    // primary database afterwards. ---
    let report_path = p.dir.path().join("drill.json");
    let load = Load::start(&Api::of(&p), Targets::PrimaryRecordOf(p.name.clone()), &key, "during-drill");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut drill_run = Reaped(
        p.cmd(&["drill", "--report", report_path.to_str().unwrap(), "--output", "json"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(p.dir.path().join("drill.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut on_dr: Option<(Instant, Instant)> = None; // first and last time Route53 said DR
    let drill_status = loop {
        if let Some(st) = drill_run.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the drill did not end within 600 s");
        if records(&p).await.0 == dgw {
            let now = Instant::now();
            on_dr = Some((on_dr.map_or(now, |w| w.0), now));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = load.stop_by_gateway().await;
    let drill_err = std::fs::read_to_string(p.dir.path().join("drill.err")).unwrap_or_default();
    assert!(drill_status.success(), "drill failed: {drill_err}");
    let drill: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(drill["ok"], true, "{drill}");
    let (dr_from, dr_to) = on_dr.expect("Route53 never pointed the API name at the DR gateways during the drill");
    assert_eq!(records(&p).await.0, pgw2, "the drill failed back");
    let leader = writable_leader(&pdb2, &s.su).expect("primary writable after the drill");
    let found = orders_of(&leader, &s.su, user);
    let lost: Vec<&String> = acked.iter().map(|(c, _, _)| c).filter(|c| !found.contains(*c)).collect();
    assert!(lost.is_empty(), "{} of {} orders acked during the drill are not in the primary DB: {lost:?}", lost.len(), acked.len());
    let by_dr = acked.iter().filter(|(_, _, gw)| dgw.contains(gw)).count();
    assert!(by_dr > 0, "no order of the test's client was acknowledged by a DR gateway during the drill");
    // Seen from the client: primary gateways that acknowledged while Route53 said DR (the
    // edges of the switch; reported, not judged).
    let edge: Vec<Instant> = acked.iter().filter(|(_, t, gw)| pgw2.contains(gw) && *t > dr_from && *t <= dr_to).map(|x| x.1).collect();
    eprintln!(
        "drill: {} orders of the test's client acked ({by_dr} by DR gateways), none lost; Route53 on DR for {} ms; {} acks by primary gateways in that time{}",
        acked.len(),
        (dr_to - dr_from).as_millis(),
        edge.len(),
        match (edge.first(), edge.last()) {
            (Some(a), Some(b)) => format!(" ({} to {} ms after Route53 showed DR)", (*a - dr_from).as_millis(), (*b - dr_from).as_millis()),
            _ => String::new(),
        }
    );
    let drill_orders: u64 =
        psql(&leader, &s.su, "exchange", "select count(*) from orders where client_order_id like 'drill-%'").parse().unwrap();
    assert!(drill_orders > 0, "no order of the drill's own load in the primary DB");

    // --- Issue 19: the primary region blacked out with its Parameter Store and Route53's
    // control plane down, and two operators running `failover` at the same moment, one from a
    // second checkout with an empty `.provision/`. Exactly one promotes; Route53's health
    // checks alone move the DNS answer; the second checkout then fails back. ---
    dataplane_failover(&p, &lab, &s, &key, (&dgw, &ddb)).await;
    let (pgw3, pdb3) = (ips(PRIMARY, &p.name, "app").await, ips(PRIMARY, &p.name, "db").await);
    assert_eq!(
        records(&p).await,
        (pgw3.clone(), dgw.clone()),
        "after the second checkout's failback: PRIMARY on the rebuilt primary region"
    );
    assert_dns_answers(&p, &pgw3, "after the second checkout's failback");
    writable_leader(&pdb3, &s.su).expect("the rebuilt primary region is writable");
    let newest = *state_epochs(DR, &p.name).await.last().unwrap();
    assert_eq!(state_epochs(PRIMARY, &p.name).await.last(), Some(&newest), "failback copied the newest epoch to {PRIMARY}'s store");
    assert_eq!(zone_epoch(&p.name).await, Some(newest), "failback copied the newest epoch to the zone's tags");

    // --- Teardown and recreate. ---
    p.ok(&["down"]);
    wait_for("lab hosts removed", Duration::from_secs(60), || lab.namespaces().is_empty());
    assert!(instances_now(PRIMARY, &p.name).await.is_empty() && instances_now(DR, &p.name).await.is_empty());
    p.ok(&["up"]);
    let gw = ips(PRIMARY, &p.name, "app").await;
    let (code, body) = Api::of(&p).call("GET", &gw[0], "/health", &[], None);
    assert_eq!(code, 200, "recreated exchange is healthy: {body}");
    assert_eq!(records(&p).await.0, gw, "recreated: PRIMARY on the primary gateways");
    p.ok(&["down"]);
    wait_for("lab hosts removed", Duration::from_secs(60), || lab.namespaces().is_empty());
    drop(lab);
    assert!(lab_namespaces(LAB_PREFIX).is_empty());
}

/// See the call site. Returns when the second checkout's `failback` has finished.
async fn dataplane_failover(p: &Project, lab: &Lab, s: &Secrets, key: &str, dr: (&[String], &[String])) {
    let (dgw, ddb) = dr;
    let second = tempfile::tempdir().unwrap();
    let second_cfg = second.path().join("regions.toml");
    std::fs::copy(p.config(), &second_cfg).unwrap();
    let epochs_before = state_epochs(DR, &p.name).await;
    let load = Load::start(&Api::of(p), Targets::Dns(api_name(p)), key, "dataplane");
    tokio::time::sleep(Duration::from_secs(2)).await;

    lab.ctl(&["fault", "blackout", PRIMARY]);
    let blackout = Instant::now();
    let r53_down = ApiFault::set("us-east-1", "route53", &["down"]);
    let ssm_down = ApiFault::set(PRIMARY, "ssm", &["down"]);
    let spawn = |mut c: std::process::Command| c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let args = ["failover", "--to", DR, "--output", "json"];
    let (a, b) = (spawn(p.cmd(&args)), spawn(provision_cmd(&second_cfg, &args)));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let failed_over = Instant::now();
    let (won, lost) = match (a.status.success(), b.status.success()) {
        (true, false) => (&a, &b),
        (false, true) => (&b, &a),
        _ => panic!("exactly one of two simultaneous failovers must promote:\nfirst: {}\nsecond: {}", stderr(&a), stderr(&b)),
    };
    let refusal = stderr(lost);
    assert!(
        refusal.contains("refused") && (refusal.contains("another run") || refusal.contains("already decided")),
        "the loser's refusal: {refusal}"
    );
    let report: serde_json::Value = serde_json::from_slice(&won.stdout).unwrap();
    let notes = report["notes"].to_string();
    assert!(notes.contains("SKIPPED"), "the record swap is reported skipped while Route53's control plane is down: {notes}");

    // Seen from outside: one new epoch in DR's store, naming DR active and the primary fenced;
    // exactly one writable DR database; the DNS answer moved by Route53's checks alone.
    let epochs = state_epochs(DR, &p.name).await;
    assert_eq!(epochs.len(), epochs_before.len() + 1, "exactly one new failover epoch: {epochs_before:?} -> {epochs:?}");
    let rec = state_record(DR, &p.name).await;
    assert_eq!((rec["active"].as_str(), rec["fence"]["region"].as_str()), (Some(DR), Some(PRIMARY)), "{rec}");
    let writable: Vec<&String> = ddb.iter().filter(|ip| psql(ip, &s.su, "postgres", "select pg_is_in_recovery()") == "f").collect();
    assert_eq!(writable.len(), 1, "DR databases that are writable primaries: {writable:?}");
    let mut want = dgw.to_vec();
    want.sort();
    // Route53: a checker's verdict flips after FailureThreshold (3) checks at RequestInterval
    // (10 s), and a resolver may hold the old answer for the record's TTL (10 s).
    let bound = Duration::from_secs(10 * 3 + 10);
    wait_for("real DNS answers the DR gateways", bound, || dns_a(&api_name(p)) == want);
    let moved = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while load.acked_after(moved) < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let acked = load.stop_by_gateway().await;
    let after: Vec<&String> = acked.iter().filter(|(_, t, gw)| *t > moved && dgw.contains(gw)).map(|(c, _, _)| c).collect();
    assert!(!after.is_empty(), "no order acknowledged by a DR gateway through the DNS-resolved address");
    let first_dr_ack = acked.iter().filter(|(_, _, gw)| dgw.contains(gw)).map(|(_, t, _)| *t).min().unwrap();
    eprintln!(
        "data-plane failover (Route53 control plane down): failover command {} ms; RTO to writable (blackout -> first order acked at a DR gateway through DNS) {} ms; DNS RTO (blackout -> DNS names the DR gateways) {} ms",
        (failed_over - blackout).as_millis(),
        (first_dr_ack - blackout).as_millis(),
        (moved - blackout).as_millis()
    );
    let found = orders_of(writable[0], &s.su, 7001);
    assert!(after.iter().all(|c| found.contains(*c)), "orders acked through DNS after the move are missing in DR");

    // The second checkout reads the state and the vault from DR alone.
    let out = provision_cmd(&second_cfg, &["status", "--output", "json"]).output().unwrap();
    assert!(out.status.success(), "status from the second checkout: {}", stderr(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["cloud"]["marks"]["active"].as_str(), Some(DR), "{}", st["dns"]);

    // Route53 and the primary region come back: the second checkout fails back, which swaps
    // the records and copies the state everywhere.
    drop((r53_down, ssm_down));
    lab.ctl(&["heal", "all"]);
    let out = provision_cmd(&second_cfg, &["status", "--output", "json"]).output().unwrap();
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["records"], "pending", "status says the records still name the old PRIMARY: {}", st["dns"]);
    let out = provision_cmd(&second_cfg, &["failback"]).output().unwrap();
    assert!(out.status.success(), "failback from the second checkout: {}", stderr(&out));
    // It used the project's key and secrets from the vault, never fresh ones.
    for f in ["id_ed25519", "secrets/admin_token", "secrets/db_superuser_password", &format!("secrets/internal_token.{DR}")] {
        let read = |dir: &std::path::Path| std::fs::read_to_string(dir.join(".provision").join(&p.name).join(f)).unwrap();
        assert!(read(second.path()) == read(p.dir.path()), "the second checkout's {f} differs from the first's");
    }
}
