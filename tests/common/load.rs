//! Order load for end-to-end tests, and the failover records it follows. Everything is
//! checked from outside: Route53's record sets, the gateways' HTTPS answers.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::api::{Api, Clients};
use super::lab::assert_local;
use super::{route53, Project};

/// (PRIMARY, SECONDARY) addresses of the API name's failover records, read from Route53.
pub async fn records(p: &Project) -> (Vec<String>, Vec<String>) {
    records_of(&p.name).await
}

pub async fn records_of(project: &str) -> (Vec<String>, Vec<String>) {
    let r53 = route53().await;
    let zone = format!("{project}.test.internal.");
    let zones = r53.list_hosted_zones_by_name().dns_name(&zone).send().await.unwrap();
    let z = zones.hosted_zones().iter().find(|z| z.name() == zone).expect("the project's zone");
    let sets = r53.list_resource_record_sets().hosted_zone_id(z.id()).send().await.unwrap();
    let ips = |failover: &str| -> Vec<String> {
        let mut v: Vec<String> = sets
            .resource_record_sets()
            .iter()
            .filter(|s| s.name() == format!("api.{zone}") && s.failover().map(|f| f.as_str()) == Some(failover))
            .flat_map(|s| s.resource_records().iter().map(|r| r.value().to_string()))
            .collect();
        v.sort();
        v
    };
    (ips("PRIMARY"), ips("SECONDARY"))
}

pub fn order(cid: &str) -> String {
    format!(r#"{{"market":"BTC-USD","client_order_id":"{cid}","side":"buy","type":"limit","price_ticks":100,"qty_lots":1}}"#)
}

/// Where the load sends its orders.
#[derive(Clone)]
pub enum Targets {
    /// These gateways, round robin.
    Fixed(Vec<String>),
    /// The PRIMARY record of this project's API name, re-read from Route53 twice a second.
    PrimaryRecordOf(String),
    /// What a real DNS query for this name answers, asked twice a second (as a client does).
    Dns(String),
}

/// Orders at a steady rate (one every 20 ms), remembering which were acknowledged, when, and
/// by which gateway.
pub struct Load {
    acked: Arc<Mutex<Vec<(String, Instant, String)>>>,
    stop: Arc<Mutex<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    pub fn start(api: &Api, to: Targets, key: &str, prefix: &str) -> Load {
        let (acked, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(false)));
        let (a, s, key, prefix) = (acked.clone(), stop.clone(), key.to_string(), prefix.to_string());
        let mut clients = Clients::new(api.clone(), Duration::from_secs(2));
        let task = tokio::spawn(async move {
            let mut targets = match &to {
                Targets::Fixed(v) => v.clone(),
                Targets::PrimaryRecordOf(_) | Targets::Dns(_) => Vec::new(),
            };
            let mut refreshed = Instant::now() - Duration::from_secs(1);
            for n in 0u64.. {
                if *s.lock().unwrap() {
                    break;
                }
                if refreshed.elapsed() > Duration::from_millis(500) {
                    let fresh = match &to {
                        Targets::Fixed(_) => vec![],
                        Targets::PrimaryRecordOf(name) => records_of(name).await.0,
                        Targets::Dns(name) => {
                            let name = name.clone();
                            tokio::task::spawn_blocking(move || dns_a(&name)).await.unwrap_or_default()
                        }
                    };
                    if !fresh.is_empty() {
                        targets = fresh;
                    }
                    refreshed = Instant::now();
                }
                let Some(t) = targets.get(n as usize % targets.len().max(1)).cloned() else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                assert_local(&t);
                let cid = format!("{prefix}-{n}");
                let r = clients.post(&t, "/v1/orders", order(&cid)).header("X-API-Key", &key).send().await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    a.lock().unwrap().push((cid, Instant::now(), t));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Load { acked, stop, task }
    }

    /// How many orders were acknowledged after `t`.
    pub fn acked_after(&self, t: Instant) -> usize {
        self.acked.lock().unwrap().iter().filter(|(_, at, _)| *at > t).count()
    }

    pub async fn stop(self) -> Vec<(String, Instant)> {
        self.stop_by_gateway().await.into_iter().map(|(c, t, _)| (c, t)).collect()
    }

    /// Like [`Load::stop`], with the gateway that acknowledged each order.
    pub async fn stop_by_gateway(self) -> Vec<(String, Instant, String)> {
        *self.stop.lock().unwrap() = true;
        self.task.await.unwrap();
        let v = self.acked.lock().unwrap().clone();
        v
    }
}

/// The longest time without an acknowledged order, and when it started: the outage clients saw.
pub fn longest_gap(acked: &[(String, Instant)]) -> Option<(Instant, Duration)> {
    let mut at: Vec<Instant> = acked.iter().map(|(_, t)| *t).collect();
    at.sort();
    at.windows(2).map(|w| (w[0], w[1] - w[0])).max_by_key(|x| x.1)
}

/// One order a client sent, and what it knows about it.
#[derive(Clone, Debug)]
pub struct Sent {
    pub cid: String,
    /// When the acknowledgement arrived, and the status it carried; None = never acknowledged.
    pub ack: Option<(Instant, String)>,
}

/// Order load as a real client places it: `workers` clients, each sending one order at a time
/// and retrying it with the same client id until it is acknowledged (or the load stops).
/// Buyers (even workers, user `users.0`) and sellers (odd, `users.1`) cross at one price, so
/// orders fill and balances move. Records every client id it ever sent.
pub struct RetryLoad {
    sent: Arc<Mutex<Vec<Sent>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RetryLoad {
    pub fn start(api: &Api, gateways: Vec<String>, keys: (String, String), prefix: &str, workers: usize) -> RetryLoad {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..workers {
            let (sent, stop, gws) = (sent.clone(), stop.clone(), gateways.clone());
            let (key, side) = if w % 2 == 0 { (keys.0.clone(), "buy") } else { (keys.1.clone(), "sell") };
            let prefix = format!("{prefix}-w{w}");
            let mut clients = Clients::new(api.clone(), Duration::from_secs(5));
            tasks.push(tokio::spawn(async move {
                let mut attempt = w;
                for n in 0u64.. {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    let cid = format!("{prefix}-{n}");
                    let idx = {
                        let mut s = sent.lock().unwrap();
                        s.push(Sent { cid: cid.clone(), ack: None });
                        s.len() - 1
                    };
                    let body = format!(
                        r#"{{"market":"BTC-USD","client_order_id":"{cid}","side":"{side}","type":"limit","price_ticks":100,"qty_lots":1}}"#
                    );
                    // The same order again until it is acknowledged: a lost answer is retried, never dropped.
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        attempt += 1;
                        let gw = &gws[attempt % gws.len()];
                        assert_local(gw);
                        let r = clients.post(gw, "/v1/orders", body.clone()).header("X-API-Key", &key).send().await;
                        if let Ok(r) = r {
                            if r.status().is_success() {
                                let v: serde_json::Value = r.json().await.unwrap_or_default();
                                let status = v["status"].as_str().unwrap_or("").to_string();
                                sent.lock().unwrap()[idx].ack = Some((Instant::now(), status));
                                break;
                            }
                            assert!(!r.status().is_client_error(), "order {cid} refused: {}", r.status());
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }));
        }
        RetryLoad { sent, stop, tasks }
    }

    pub fn acked_after(&self, t: Instant) -> usize {
        self.sent.lock().unwrap().iter().filter(|s| s.ack.as_ref().is_some_and(|(at, _)| *at > t)).count()
    }

    pub async fn stop(self) -> Vec<Sent> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let v = self.sent.lock().unwrap().clone();
        v
    }
}

/// The longest time between two acknowledgements.
pub fn longest_ack_gap(sent: &[Sent]) -> Duration {
    let mut at: Vec<Instant> = sent.iter().filter_map(|s| s.ack.as_ref().map(|a| a.0)).collect();
    at.sort();
    at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// The lab's DNS server (the front's Route53 data plane): what a resolver gets for `name`.
pub const DNS_SERVER: (&str, &str) = ("127.0.0.1", "1053");

/// The A records a real DNS query for `name` returns (sorted), through `dig`.
pub fn dns_a(name: &str) -> Vec<String> {
    let out = std::process::Command::new("dig")
        .args([&format!("@{}", DNS_SERVER.0), "-p", DNS_SERVER.1, "+short", "+time=1", "+tries=2", name, "A"])
        .output()
        .expect("dig (bind9-dnsutils, installed by scripts/setup.sh)");
    let mut ips: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    ips.sort();
    ips
}

/// The API name of a test project.
pub fn api_name(p: &Project) -> String {
    format!("api.{}.test.internal", p.name)
}

/// What `provision status` says Route53 answers for the API name now (sorted).
pub fn status_answer(p: &Project) -> Vec<String> {
    let out = p.ok(&["status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --output json");
    let mut ips: Vec<String> =
        v["answer"]["ips"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default();
    ips.sort();
    ips
}

/// A real DNS query for the API name answers `want`, and `status` says the same. DNS follows
/// an API change within 1 s and a health change within the checks' interval x threshold (30 s
/// for the project's checks): waited for up to 45 s. `status` reads the checkers' latest
/// observations (all `GetHealthCheckStatus` shows), while Route53 answers by each checker's
/// verdict, which flips only after `FailureThreshold` observations: during a change the two may
/// differ for up to interval x threshold, so `status` gets the same 45 s to agree.
pub fn assert_dns_answers(p: &Project, want: &[String], when: &str) {
    let mut want = want.to_vec();
    want.sort();
    let name = api_name(p);
    let settle = || std::time::Instant::now() + std::time::Duration::from_secs(45);
    let deadline = settle();
    let mut got = dns_a(&name);
    while got != want && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(250));
        got = dns_a(&name);
    }
    assert_eq!(got, want, "{when}: the DNS answer for {name}");
    let deadline = settle();
    let mut said = status_answer(p);
    while said != got && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_secs(1));
        said = status_answer(p);
        got = dns_a(&name);
    }
    assert_eq!(said, got, "{when}: `provision status` must report the answer the DNS server gives");
    assert_eq!(got, want, "{when}: the DNS answer for {name} moved away while `status` settled");
}
