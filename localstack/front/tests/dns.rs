//! The DNS data plane and Route53's health checkers against the real LocalStack (127.0.0.1:4566):
//! zones and checks are created there; answers come from the labfront binary's DNS server or
//! from checkers run in-process.

mod support;

use aws_sdk_route53::types::{ResourceRecordSetFailover, RrType};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// Bound on waiting for the front to read a change (it reads every 250 ms; a change shows within 1 s).
const SEEN_WITHIN_MS: u64 = 1500;

async fn zone_with(r53: &aws_sdk_route53::Client, prefix: &str, cleanup: &mut Cleanup) -> (String, String) {
    let name = format!("{}.example.", unique(prefix));
    let zone = create_zone(r53, &name).await;
    cleanup.zones.push(zone.clone());
    (zone, name)
}

#[tokio::test]
async fn simple_a_record_answered_with_its_ttl_and_changes_show_within_a_second() {
    let r53 = route53().await;
    let mut cleanup = Cleanup::default();
    let front = FrontProcess::start().await;
    let (zone, apex) = zone_with(&r53, "simple", &mut cleanup).await;
    let www = format!("www.{apex}");
    upsert(&r53, &zone, vec![record(&www, RrType::A, 42, &["10.9.0.1"])]).await;
    let seen = wait_for(front.dns, &www, RecordType::A, Duration::from_millis(SEEN_WITHIN_MS), |m| values(m) == ["10.9.0.1"]).await;
    assert!(seen.is_some(), "the new record did not show within {SEEN_WITHIN_MS} ms");
    let m = query(front.dns, &www, RecordType::A).await.expect("answer");
    assert!(m.authoritative(), "AA flag");
    assert_eq!(m.answers()[0].ttl(), 42);

    upsert(&r53, &zone, vec![record(&www, RrType::A, 42, &["10.9.0.2"])]).await;
    let seen = wait_for(front.dns, &www, RecordType::A, Duration::from_millis(SEEN_WITHIN_MS), |m| values(m) == ["10.9.0.2"]).await;
    assert!(seen.is_some(), "the changed record did not show within {SEEN_WITHIN_MS} ms");
    eprintln!("change seen after {seen:?}");
}

#[tokio::test]
async fn nxdomain_and_nodata_carry_the_soa_and_the_apex_has_soa_and_ns() {
    let r53 = route53().await;
    let mut cleanup = Cleanup::default();
    let front = FrontProcess::start().await;
    let (zone, apex) = zone_with(&r53, "neg", &mut cleanup).await;
    let www = format!("www.{apex}");
    upsert(&r53, &zone, vec![record(&www, RrType::A, 60, &["10.9.0.1"])]).await;
    assert!(wait_for(front.dns, &www, RecordType::A, Duration::from_millis(SEEN_WITHIN_MS), |m| !m.answers().is_empty()).await.is_some());

    let nx = query(front.dns, &format!("nope.{apex}"), RecordType::A).await.expect("answer");
    assert_eq!(nx.response_code(), ResponseCode::NXDomain);
    assert!(matches!(nx.name_servers().first().map(|r| r.data()), Some(RData::SOA(_))), "NXDOMAIN without SOA: {nx:?}");
    let nodata = query(front.dns, &www, RecordType::AAAA).await.expect("answer");
    assert_eq!((nodata.response_code(), nodata.answers().len()), (ResponseCode::NoError, 0));
    assert!(matches!(nodata.name_servers().first().map(|r| r.data()), Some(RData::SOA(_))), "NODATA without SOA: {nodata:?}");

    let soa = query(front.dns, &apex, RecordType::SOA).await.expect("answer");
    assert!(matches!(soa.answers().first().map(|r| r.data()), Some(RData::SOA(_))), "apex SOA: {soa:?}");
    let ns = query(front.dns, &apex, RecordType::NS).await.expect("answer");
    assert!(!ns.answers().is_empty() && ns.answers().iter().all(|r| matches!(r.data(), RData::NS(_))), "apex NS: {ns:?}");
}

#[tokio::test]
async fn names_outside_every_zone_are_refused() {
    let front = FrontProcess::start().await;
    let m = query(front.dns, &format!("{}.not-a-lab-zone.invalid.", unique("x")), RecordType::A).await.expect("answer");
    assert_eq!(m.response_code(), ResponseCode::Refused);
}

/// PRIMARY while its target answers 200; SECONDARY once it stops (within interval x (threshold+1) + 2 s);
/// PRIMARY again once it recovers.
#[tokio::test]
async fn failover_follows_the_primary_targets_health() {
    const INTERVAL_S: u64 = 10;
    const THRESHOLD: i32 = 1;
    let bound = Duration::from_secs(INTERVAL_S * (THRESHOLD as u64 + 1) + 2);
    let r53 = route53().await;
    let mut cleanup = Cleanup::default();
    let front = FrontProcess::start().await;
    let mut target = Target::start(loopback()).await;
    let check = create_http_check(&r53, target.addr, THRESHOLD).await;
    cleanup.checks.push(check.clone());
    let (zone, apex) = zone_with(&r53, "failover", &mut cleanup).await;
    let app = format!("app.{apex}");
    let primary = failover(&app, ResourceRecordSetFailover::Primary, "10.9.1.1", Some(&check));
    upsert(&r53, &zone, vec![primary, failover(&app, ResourceRecordSetFailover::Secondary, "10.9.1.2", None)]).await;
    let is = |ip: &'static str| move |m: &hickory_proto::op::Message| values(m) == [ip];
    assert!(
        wait_for(front.dns, &app, RecordType::A, Duration::from_millis(SEEN_WITHIN_MS), is("10.9.1.1")).await.is_some(),
        "PRIMARY first"
    );
    // The checkers list checks every second and probe a new one at once: let them see it healthy.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(values(&query(front.dns, &app, RecordType::A).await.expect("answer")), ["10.9.1.1"], "PRIMARY while its target answers 200");

    target.stop();
    let moved = wait_for(front.dns, &app, RecordType::A, bound, is("10.9.1.2")).await;
    assert!(moved.is_some(), "still PRIMARY {bound:?} after its target stopped");
    eprintln!("moved to SECONDARY after {moved:?}");
    target.restart().await;
    let back = wait_for(front.dns, &app, RecordType::A, bound, is("10.9.1.1")).await;
    assert!(back.is_some(), "still SECONDARY {bound:?} after the target recovered");
    eprintln!("back to PRIMARY after {back:?}");
}

/// Checkers run in-process against LocalStack, `blind` of them cut off.
async fn checkers(count: usize, blind: usize) -> Arc<labfront::checkers::Checkers> {
    let c = Arc::new(labfront::checkers::Checkers::new(count));
    c.set_blind(blind);
    tokio::spawn(labfront::checkers::run(c.clone(), labfront::backend::Backend::new(LOCALSTACK).await));
    c
}

async fn wait_health(c: &labfront::checkers::Checkers, id: &str, want: Option<bool>, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if c.healthy(id) == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn status_call(id: &str) -> labfront::aws::Call {
    let uri: http::Uri = format!("http://127.0.0.1/2013-04-01/healthcheck/{id}/status").parse().expect("uri");
    let mut headers = http::HeaderMap::new();
    let auth = "AWS4-HMAC-SHA256 Credential=test/20261130/us-east-1/route53/aws4_request, SignedHeaders=host, Signature=ab";
    headers.insert(http::header::AUTHORIZATION, auth.parse().expect("header"));
    labfront::aws::Call::parse(&http::Method::GET, &uri, &headers, &bytes::Bytes::new()).expect("call")
}

#[tokio::test]
async fn get_health_check_status_has_one_observation_per_checker_and_refuses_as_aws_does() {
    let r53 = route53().await;
    let mut cleanup = Cleanup::default();
    let target = Target::start(loopback()).await;
    let check = create_http_check(&r53, target.addr, 1).await;
    let calc = create_calculated_check(&r53, &[&check], 1).await;
    cleanup.checks.extend([check.clone(), calc.clone()]);
    let c = checkers(8, 0).await;

    // Just created: not listed yet, the front re-lists rather than answering NoSuchHealthCheck.
    let first = c.intercept(&status_call(&check)).await.expect("intercepted");
    assert_eq!(first.status, 200, "{}", first.body);
    let start = std::time::Instant::now();
    let body = loop {
        let r = c.intercept(&status_call(&check)).await.expect("intercepted");
        if r.body.matches("<HealthCheckObservation>").count() == 8 || start.elapsed() > Duration::from_secs(3) {
            break r.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body.matches("<HealthCheckObservation>").count(), 8, "{body}");
    assert_eq!(body.matches("<Status>Success: HTTP Status Code 200, OK</Status>").count(), 8, "{body}");
    for region in ["us-east-1", "eu-west-1", "sa-east-1"] {
        assert!(body.contains(&format!("<Region>{region}</Region>")), "{body}");
    }

    let missing = c.intercept(&status_call("00000000-0000-0000-0000-000000000000")).await.expect("intercepted");
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("<Code>NoSuchHealthCheck</Code>"), "{}", missing.body);
    let calculated = c.intercept(&status_call(&calc)).await.expect("intercepted");
    assert_eq!(calculated.status, 400);
    assert!(calculated.body.contains("<Code>InvalidInput</Code>"), "{}", calculated.body);
    let mut other = status_call(&check);
    other.action = "GetHealthCheck".into();
    assert!(c.intercept(&other).await.is_none());
}

#[tokio::test]
async fn calculated_check_is_healthy_while_health_threshold_children_are() {
    let r53 = route53().await;
    let mut cleanup = Cleanup::default();
    let ip = loopback();
    let up = Target::start(ip).await;
    let mut down = Target::start(ip).await;
    down.stop();
    let (a, b) = (create_http_check(&r53, up.addr, 1).await, create_http_check(&r53, down.addr, 1).await);
    let one = create_calculated_check(&r53, &[&a, &b], 1).await;
    let two = create_calculated_check(&r53, &[&a, &b], 2).await;
    cleanup.checks.extend([a.clone(), b.clone(), one.clone(), two.clone()]);
    let c = checkers(8, 0).await;
    let limit = Duration::from_secs(5);
    assert!(wait_health(&c, &b, Some(false), limit).await, "the child with a stopped target stays healthy");
    assert_eq!(c.healthy(&a), Some(true));
    assert!(wait_health(&c, &one, Some(true), limit).await, "1 of 2 children healthy, HealthThreshold 1");
    assert!(wait_health(&c, &two, Some(false), limit).await, "1 of 2 children healthy, HealthThreshold 2");
}

/// A check is healthy while MORE than 18 % of its checkers see it healthy: 2 of 8 (25 %) is
/// enough, 1 of 8 (12.5 %) is not.
#[tokio::test]
async fn eighteen_percent_rule_with_eight_checkers() {
    let r53 = route53().await;
    let mut cleanup = Cleanup::default();
    let target = Target::start(loopback()).await;
    let check = create_http_check(&r53, target.addr, 1).await;
    cleanup.checks.push(check.clone());
    let six_blind = checkers(8, 6).await;
    let seven_blind = checkers(8, 7).await;
    let limit = Duration::from_secs(5);
    assert!(wait_health(&seven_blind, &check, Some(false), limit).await, "7 of 8 checkers blind: still healthy");
    assert!(wait_health(&six_blind, &check, Some(true), limit).await);
    // Every checker has probed at least once by now (the first probe is immediate).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(six_blind.healthy(&check), Some(true), "6 of 8 checkers blind: 25 % still see it healthy");
    assert_eq!(seven_blind.blind(), 7);
}

/// Addresses that appear later (as VPC bridges do) get UDP and TCP listeners within a scan or two.
#[tokio::test]
async fn dns_is_served_on_addresses_as_they_appear() {
    let ip = loopback();
    let port = free_port();
    let appeared = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handler = labfront::dns::handler::Handler {
        zones: Arc::new(labfront::zones::Zones::default()),
        checkers: Arc::new(labfront::checkers::Checkers::new(8)),
    };
    let flag = appeared.clone();
    let scan = move || {
        let now = flag.load(std::sync::atomic::Ordering::Relaxed);
        async move {
            if now {
                vec![ip]
            } else {
                vec![]
            }
        }
    };
    let server = tokio::spawn(labfront::dns::serve_appearing(handler, port, scan));
    let addr = std::net::SocketAddr::from((ip, port));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(query(addr, "x.invalid.", RecordType::A).await.is_none(), "answered before the address appeared");
    appeared.store(true, std::sync::atomic::Ordering::Relaxed);
    let m = wait_for(addr, "x.invalid.", RecordType::A, Duration::from_millis(2500), |_| true).await;
    assert!(m.is_some(), "no DNS on the new address");
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok(), "no TCP listener on the new address");
    server.abort();
}
