//! Real parts for the DNS and checker tests: LocalStack at 4566, the labfront binary on free
//! ports, HTTP targets on 127.0.0.0/8 loopback addresses, DNS queries over UDP.

#![allow(dead_code)]

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HealthCheckConfig, HealthCheckType, ResourceRecord, ResourceRecordSet, ResourceRecordSetFailover,
    RrType,
};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const LOCALSTACK: &str = "http://127.0.0.1:4566";
const QUERY_TIMEOUT_MS: u64 = 1000;
const FRONT_READY_TIMEOUT_MS: u64 = 10_000;
const FRONT_START_ATTEMPTS: u32 = 3;

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{nanos}-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// A port free for UDP and TCP now, never handed out twice in this process: the tests of a
/// binary run in parallel, and two of them drawing the same port made one front fail to bind.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// The labfront binary, killed on drop.
pub struct FrontProcess {
    child: std::process::Child,
    pub dns: SocketAddr,
}

impl FrontProcess {
    /// Starts a front on fresh ports; again on others if it exits (a port another process
    /// took between the draw and the bind).
    pub async fn start() -> FrontProcess {
        for _ in 0..FRONT_START_ATTEMPTS {
            if let Some(front) = Self::start_once().await {
                return front;
            }
        }
        panic!("labfront did not start in {FRONT_START_ATTEMPTS} attempts (see its log above)");
    }

    async fn start_once() -> Option<FrontProcess> {
        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_labfront"))
            .args(["run", "--listen", &listen.to_string(), "--backend", LOCALSTACK, "--dns-listen", &dns.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start labfront");
        let mut front = FrontProcess { child, dns };
        let deadline = Instant::now() + Duration::from_millis(FRONT_READY_TIMEOUT_MS);
        while query(dns, "ready.invalid.", RecordType::A).await.is_none() {
            if front.child.try_wait().expect("labfront status").is_some() {
                return None;
            }
            assert!(Instant::now() < deadline, "labfront's DNS did not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(front)
    }
}

impl Drop for FrontProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One UDP query; None on timeout.
pub async fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Option<Message> {
    let mut m = Message::new();
    m.set_id(rand::random()).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(false);
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.send_to(&m.to_vec().expect("encode"), server).await.expect("send");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_millis(QUERY_TIMEOUT_MS), sock.recv(&mut buf)).await.ok()?.ok()?;
    Some(Message::from_vec(&buf[..n]).expect("decode"))
}

/// The answer section's data as text.
pub fn values(m: &Message) -> Vec<String> {
    m.answers().iter().map(|r| r.data().to_string()).collect()
}

/// Polls until `want` holds for an answer; the last answer and the time it took, or None after `limit`.
pub async fn wait_for(
    dns: SocketAddr,
    name: &str,
    rtype: RecordType,
    limit: Duration,
    want: impl Fn(&Message) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(m) = query(dns, name, rtype).await {
            if want(&m) {
                return Some(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

pub async fn route53() -> aws_sdk_route53::Client {
    labfront::backend::Backend::new(LOCALSTACK).await.route53
}

pub async fn create_zone(r53: &aws_sdk_route53::Client, name: &str) -> String {
    let out = r53.create_hosted_zone().name(name).caller_reference(unique("ref")).send().await.expect("CreateHostedZone");
    out.hosted_zone().expect("zone").id().trim_start_matches("/hostedzone/").to_string()
}

/// Deletes every record set but the apex SOA/NS, then the zone (best effort).
pub async fn delete_zone(r53: &aws_sdk_route53::Client, zone: &str) {
    if let Ok(out) = r53.list_resource_record_sets().hosted_zone_id(zone).send().await {
        let changes: Vec<Change> = out
            .resource_record_sets()
            .iter()
            .filter(|s| !matches!(s.r#type(), RrType::Soa | RrType::Ns))
            .filter_map(|s| Change::builder().action(ChangeAction::Delete).resource_record_set(s.clone()).build().ok())
            .collect();
        if let (false, Ok(batch)) = (changes.is_empty(), ChangeBatch::builder().set_changes(Some(changes)).build()) {
            let _ = r53.change_resource_record_sets().hosted_zone_id(zone).change_batch(batch).send().await;
        }
    }
    let _ = r53.delete_hosted_zone().id(zone).send().await;
}

pub fn record(name: &str, rtype: RrType, ttl: i64, values: &[&str]) -> ResourceRecordSet {
    let records = values.iter().map(|v| ResourceRecord::builder().value(*v).build().expect("record")).collect();
    ResourceRecordSet::builder().name(name).r#type(rtype).ttl(ttl).set_resource_records(Some(records)).build().expect("set")
}

pub fn failover(name: &str, role: ResourceRecordSetFailover, ip: &str, check: Option<&str>) -> ResourceRecordSet {
    let mut s = record(name, RrType::A, 10, &[ip]);
    s.set_identifier = Some(role.as_str().to_lowercase());
    s.failover = Some(role);
    s.health_check_id = check.map(str::to_string);
    s
}

pub async fn upsert(r53: &aws_sdk_route53::Client, zone: &str, sets: Vec<ResourceRecordSet>) {
    let changes =
        sets.into_iter().map(|s| Change::builder().action(ChangeAction::Upsert).resource_record_set(s).build().expect("change")).collect();
    let batch = ChangeBatch::builder().set_changes(Some(changes)).build().expect("batch");
    r53.change_resource_record_sets().hosted_zone_id(zone).change_batch(batch).send().await.expect("ChangeResourceRecordSets");
}

/// An HTTP health check on ip:port at RequestInterval 10 s.
pub async fn create_http_check(r53: &aws_sdk_route53::Client, target: SocketAddr, failure_threshold: i32) -> String {
    let cfg = HealthCheckConfig::builder()
        .r#type(HealthCheckType::Http)
        .ip_address(target.ip().to_string())
        .port(i32::from(target.port()))
        .resource_path("/health")
        .request_interval(10)
        .failure_threshold(failure_threshold)
        .build()
        .expect("config");
    create_check(r53, cfg).await
}

pub async fn create_calculated_check(r53: &aws_sdk_route53::Client, children: &[&str], threshold: i32) -> String {
    let cfg = HealthCheckConfig::builder()
        .r#type(HealthCheckType::Calculated)
        .set_child_health_checks(Some(children.iter().map(|c| c.to_string()).collect()))
        .health_threshold(threshold)
        .build()
        .expect("config");
    create_check(r53, cfg).await
}

async fn create_check(r53: &aws_sdk_route53::Client, cfg: HealthCheckConfig) -> String {
    let out = r53.create_health_check().caller_reference(unique("hc")).health_check_config(cfg).send().await.expect("CreateHealthCheck");
    out.health_check().expect("check").id().to_string()
}

/// A loopback address of its own for one test's targets (127.0.0.0/8 only).
pub fn loopback() -> Ipv4Addr {
    let n: u16 = rand::random();
    Ipv4Addr::new(127, 77, (n >> 8) as u8, (n as u8).max(1))
}

/// A small HTTP server answering 200 on every path; stop() closes its listener (connections refused).
pub struct Target {
    pub addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Target {
    pub async fn start(ip: Ipv4Addr) -> Target {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind target");
        let addr = listener.local_addr().expect("addr");
        Target { addr, task: Some(tokio::spawn(serve(listener))) }
    }

    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.expect("rebind target");
        self.task = Some(tokio::spawn(serve(listener)));
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: tokio::net::TcpListener) {
    use hyper::service::service_fn;
    while let Ok((stream, _)) = listener.accept().await {
        let io = hyper_util::rt::TokioIo::new(stream);
        tokio::spawn(async move {
            let svc = service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from("ok"))))
            });
            let _ = hyper::server::conn::http1::Builder::new().keep_alive(false).serve_connection(io, svc).await;
        });
    }
}

/// Deletes the zones and checks a test made when it ends, passing or failing (on its own thread
/// and runtime, as Drop cannot await).
#[derive(Default)]
pub struct Cleanup {
    pub zones: Vec<String>,
    pub checks: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (zones, checks) = (std::mem::take(&mut self.zones), std::mem::take(&mut self.checks));
        let work = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                let r53 = route53().await;
                for z in &zones {
                    delete_zone(&r53, z).await;
                }
                // Calculated checks were created after their children: delete them first.
                for c in checks.iter().rev() {
                    let _ = r53.delete_health_check().health_check_id(c).send().await;
                }
            });
        });
        let _ = work.join();
    }
}
