//! Time from a health-check target dying to labfront's DNS answer changing, and back. Starts
//! its own `labfront run` (free ports, killed on exit), creates in LocalStack (127.0.0.1:4566)
//! a hosted zone, an HTTP health check on a small HTTP server of its own on 127.0.0.<n> with
//! RequestInterval 10 and FailureThreshold 3 (what `provision` creates) and PRIMARY (that
//! target, with the check) / SECONDARY (another 127.0.0.<m>, no check) A records, TTL 10. Per
//! run: PRIMARY answered, the server stops (listener and connections dropped: refused), ms until
//! SECONDARY is answered; the server restarts, ms until PRIMARY again. Prints each run and the
//! medians. The zone, its records and the check are deleted at the end, also on error or Ctrl-C.
//! About 60 s a run (8 checkers, a check is down when at most 18 % of them see it healthy).
//! `--latency N` first measures N DNS queries of the record, one at a time over UDP (p50/p99).
//!
//! `cargo run -p labfront --example dns_failover_time -- [--runs 3] [--latency 0] [--labfront target/debug/labfront]`

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HealthCheckConfig, HealthCheckType, ResourceRecord, ResourceRecordSet, ResourceRecordSetFailover,
    RrType,
};
use clap::Parser;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LOCALSTACK: &str = "http://127.0.0.1:4566";
const REQUEST_INTERVAL_S: u64 = 10;
const FAILURE_THRESHOLD: u64 = 3;
const TTL_S: i64 = 10;
const POLL_MS: u64 = 50;
const MOVE_BOUND_S: u64 = 120;
const QUERY_TIMEOUT_MS: u64 = 1000;
const FRONT_READY_S: u64 = 10;
/// The front reads the zones every 250 ms and lists the checks every second.
const SEEN_BOUND_S: u64 = 5;

#[derive(Parser)]
struct Args {
    /// Failover runs (stop the target, restart it).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// DNS queries to time before the runs (0 = none).
    #[arg(long, default_value_t = 0)]
    latency: usize,
    /// The labfront binary to start.
    #[arg(long, default_value = "target/debug/labfront")]
    labfront: PathBuf,
}

/// The labfront child, killed on drop.
struct FrontProcess {
    child: std::process::Child,
    listen: SocketAddr,
    dns: SocketAddr,
}

impl FrontProcess {
    async fn start(bin: &PathBuf) -> anyhow::Result<FrontProcess> {
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let child = std::process::Command::new(bin)
            .args(["run", "--listen", &listen.to_string(), "--backend", LOCALSTACK, "--dns-listen", &dns.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("start {}: {e} (build it: cargo build -p labfront; or pass --labfront)", bin.display()))?;
        let mut front = FrontProcess { child, listen, dns };
        let deadline = Instant::now() + Duration::from_secs(FRONT_READY_S);
        while query(dns, "ready.invalid.", RecordType::A).await?.is_none() {
            if let Some(status) = front.child.try_wait()? {
                anyhow::bail!("{} exited ({status}) before its DNS answered", bin.display());
            }
            anyhow::ensure!(Instant::now() < deadline, "labfront's DNS on {dns} did not answer within {FRONT_READY_S} s");
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        Ok(front)
    }
}

impl Drop for FrontProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> anyhow::Result<u16> {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}

/// A small HTTP server answering 200 on every path. `stop` drops its listener and every open
/// connection (connections are refused from then on); `start` binds the same address again.
struct Target {
    addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Target {
    async fn start(ip: Ipv4Addr) -> anyhow::Result<Target> {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        Ok(Target { addr, task: Some(tokio::spawn(serve(listener))) })
    }

    /// Returns once the listener and the connections are closed.
    async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() > deadline => anyhow::bail!("rebind target {}: {e}", self.addr),
                Err(_) => tokio::time::sleep(Duration::from_millis(POLL_MS)).await,
            }
        };
        self.task = Some(tokio::spawn(serve(listener)));
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Accepts until aborted; the connections live in a JoinSet owned by this task, so aborting it
/// drops them too.
async fn serve(listener: tokio::net::TcpListener) {
    use hyper::service::service_fn;
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        while conns.try_join_next().is_some() {}
        let io = hyper_util::rt::TokioIo::new(stream);
        conns.spawn(async move {
            let svc = service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from("ok"))))
            });
            let _ = hyper::server::conn::http1::Builder::new().keep_alive(false).serve_connection(io, svc).await;
        });
    }
}

/// One UDP query; None on timeout.
async fn query(server: SocketAddr, name: &str, rtype: RecordType) -> anyhow::Result<Option<Message>> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    sock.connect(server).await?;
    ask(&sock, &Name::from_ascii(name)?, rtype).await
}

/// One query on a connected socket; None on timeout or a reply that does not decode.
async fn ask(sock: &tokio::net::UdpSocket, name: &Name, rtype: RecordType) -> anyhow::Result<Option<Message>> {
    let mut m = Message::new();
    m.set_id(rand::random()).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(false);
    m.add_query(Query::query(name.clone(), rtype));
    sock.send(&m.to_vec()?).await?;
    let mut buf = vec![0u8; 4096];
    let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(QUERY_TIMEOUT_MS), sock.recv(&mut buf)).await else { return Ok(None) };
    Ok(Message::from_vec(&buf[..n]).ok())
}

fn values(m: &Message) -> Vec<String> {
    m.answers().iter().map(|r| r.data().to_string()).collect()
}

/// Polls every 50 ms until the name's A answer is exactly `ip`; the time it took, or an error after `limit`.
async fn wait_answer(dns: SocketAddr, name: &str, ip: Ipv4Addr, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let want = [ip.to_string()];
    let mut last = None;
    while start.elapsed() < limit {
        if let Some(m) = query(dns, name, RecordType::A).await? {
            let got = values(&m);
            if got == want {
                return Ok(start.elapsed());
            }
            last = Some(got);
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    anyhow::bail!("{name} did not answer {ip} within {limit:?} (last answer {last:?})")
}

/// What the benchmark created in LocalStack, deleted by `cleanup`.
#[derive(Default)]
struct Made {
    zone: Option<String>,
    check: Option<String>,
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{nanos}-{}", std::process::id())
}

async fn route53() -> aws_sdk_route53::Client {
    let creds = aws_credential_types::Credentials::new("test", "test", None, None, "bench");
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(LOCALSTACK)
        .credentials_provider(creds)
        .load()
        .await;
    aws_sdk_route53::Client::new(&sdk)
}

fn failover(name: &str, role: ResourceRecordSetFailover, ip: Ipv4Addr, check: Option<&str>) -> anyhow::Result<ResourceRecordSet> {
    Ok(ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::A)
        .ttl(TTL_S)
        .resource_records(ResourceRecord::builder().value(ip.to_string()).build()?)
        .set_identifier(role.as_str().to_lowercase())
        .failover(role)
        .set_health_check_id(check.map(str::to_string))
        .build()?)
}

/// Creates the check, the zone and the failover pair; returns the record's name.
async fn provision(r53: &aws_sdk_route53::Client, made: &mut Made, target: SocketAddr, secondary: Ipv4Addr) -> anyhow::Result<String> {
    let std::net::IpAddr::V4(primary) = target.ip() else { anyhow::bail!("target {target}: not IPv4") };
    let cfg = HealthCheckConfig::builder()
        .r#type(HealthCheckType::Http)
        .ip_address(target.ip().to_string())
        .port(i32::from(target.port()))
        .resource_path("/health")
        .request_interval(REQUEST_INTERVAL_S as i32)
        .failure_threshold(FAILURE_THRESHOLD as i32)
        .build()?;
    let out = r53.create_health_check().caller_reference(unique("hc")).health_check_config(cfg).send().await?;
    let check = out.health_check().ok_or_else(|| anyhow::anyhow!("CreateHealthCheck: no check"))?.id().to_string();
    made.check = Some(check.clone());

    let apex = format!("{}.example.", unique("dns-failover-time"));
    let out = r53.create_hosted_zone().name(&apex).caller_reference(unique("zone")).send().await?;
    let zone = out.hosted_zone().ok_or_else(|| anyhow::anyhow!("CreateHostedZone: no zone"))?.id().trim_start_matches("/hostedzone/");
    made.zone = Some(zone.to_string());

    let app = format!("app.{apex}");
    let changes = [
        failover(&app, ResourceRecordSetFailover::Primary, primary, Some(&check))?,
        failover(&app, ResourceRecordSetFailover::Secondary, secondary, None)?,
    ]
    .into_iter()
    .map(|s| Change::builder().action(ChangeAction::Create).resource_record_set(s).build())
    .collect::<Result<Vec<_>, _>>()?;
    let batch = ChangeBatch::builder().set_changes(Some(changes)).build()?;
    r53.change_resource_record_sets().hosted_zone_id(zone).change_batch(batch).send().await?;
    eprintln!("zone {apex} ({zone}), check {check} on http://{target}/health; {app} PRIMARY {primary}, SECONDARY {secondary}");
    Ok(app)
}

/// Deletes the zone's record sets but SOA/NS, the zone, then the check (best effort, errors reported).
async fn cleanup(r53: &aws_sdk_route53::Client, made: &Made) {
    if let Some(zone) = &made.zone {
        match r53.list_resource_record_sets().hosted_zone_id(zone).send().await {
            Ok(out) => {
                let changes: Vec<Change> = out
                    .resource_record_sets()
                    .iter()
                    .filter(|s| !matches!(s.r#type(), RrType::Soa | RrType::Ns))
                    .filter_map(|s| Change::builder().action(ChangeAction::Delete).resource_record_set(s.clone()).build().ok())
                    .collect();
                if let (false, Ok(batch)) = (changes.is_empty(), ChangeBatch::builder().set_changes(Some(changes)).build()) {
                    if let Err(e) = r53.change_resource_record_sets().hosted_zone_id(zone).change_batch(batch).send().await {
                        eprintln!("cleanup: delete the records of zone {zone}: {e}");
                    }
                }
            }
            Err(e) => eprintln!("cleanup: list the records of zone {zone}: {e}"),
        }
        if let Err(e) = r53.delete_hosted_zone().id(zone).send().await {
            eprintln!("cleanup: delete zone {zone}: {e}");
        }
    }
    if let Some(check) = &made.check {
        if let Err(e) = r53.delete_health_check().health_check_id(check).send().await {
            eprintln!("cleanup: delete check {check}: {e}");
        }
    }
}

/// (p50, p99, lost, wrong) of `n` queries of `name`, one at a time on one socket.
async fn latency(dns: SocketAddr, name: &str, want: Ipv4Addr, n: usize) -> anyhow::Result<(Duration, Duration, usize, usize)> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    sock.connect(dns).await?;
    let name = Name::from_ascii(name)?;
    let want = [want.to_string()];
    let (mut took, mut lost, mut wrong) = (Vec::with_capacity(n), 0, 0);
    for _ in 0..n {
        let t0 = Instant::now();
        match ask(&sock, &name, RecordType::A).await? {
            Some(m) => {
                took.push(t0.elapsed());
                wrong += usize::from(values(&m) != want);
            }
            None => lost += 1,
        }
    }
    took.sort();
    let pct = |p: usize| took.get((took.len() * p / 100).min(took.len().saturating_sub(1))).copied().unwrap_or_default();
    Ok((pct(50), pct(99), lost, wrong))
}

fn median(ms: &[u128]) -> u128 {
    let mut v = ms.to_vec();
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

async fn bench(args: &Args, r53: &aws_sdk_route53::Client, made: &mut Made) -> anyhow::Result<()> {
    let front = FrontProcess::start(&args.labfront).await?;
    eprintln!("labfront {} on {} (DNS {})", args.labfront.display(), front.listen, front.dns);
    // Two addresses of 127.0.0.0/8 of this run's own: the target's, and SECONDARY's (never contacted).
    let n = rand::random::<u8>() % 200 + 20;
    let (primary, secondary) = (Ipv4Addr::new(127, 0, 0, n), Ipv4Addr::new(127, 0, 0, n + 1));
    let mut target = Target::start(primary).await?;
    let app = provision(r53, made, target.addr, secondary).await?;
    let bound = Duration::from_secs(MOVE_BOUND_S);
    wait_answer(front.dns, &app, primary, Duration::from_secs(SEEN_BOUND_S)).await?;
    // New checks start healthy; let the checkers list it (every second) and start probing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_answer(front.dns, &app, primary, Duration::from_secs(SEEN_BOUND_S)).await?;

    if args.latency > 0 {
        let (p50, p99, lost, wrong) = latency(front.dns, &app, primary, args.latency).await?;
        println!(
            "DNS latency, {} UDP queries of {app} A one at a time: p50 {} µs, p99 {} µs; {lost} lost, {wrong} not PRIMARY",
            args.latency,
            p50.as_micros(),
            p99.as_micros()
        );
    }

    let (mut moved, mut back) = (Vec::new(), Vec::new());
    for run in 1..=args.runs {
        wait_answer(front.dns, &app, primary, bound).await?;
        target.stop().await;
        let m = wait_answer(front.dns, &app, secondary, bound).await?.as_millis();
        println!("run {run}: target dead -> DNS moved: {m} ms");
        target.restart().await?;
        let up_since = Instant::now();
        let b = wait_answer(front.dns, &app, primary, bound).await?.as_millis();
        println!("run {run}: target back -> DNS back: {b} ms");
        moved.push(m);
        back.push(b);
        if run < args.runs {
            // DNS is back once 2 of 8 checkers see the target healthy; before the next run let
            // every checker get its FailureThreshold successes (each probes once per interval).
            let settled = up_since + Duration::from_secs(REQUEST_INTERVAL_S * FAILURE_THRESHOLD + 2);
            tokio::time::sleep_until(settled.into()).await;
        }
    }
    if args.runs > 0 {
        println!("median of {}: target dead -> DNS moved: {} ms", args.runs, median(&moved));
        println!("median of {}: target back -> DNS back: {} ms", args.runs, median(&back));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let r53 = route53().await;
    let mut made = Made::default();
    let result = tokio::select! {
        r = bench(&args, &r53, &mut made) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    cleanup(&r53, &made).await;
    result
}
