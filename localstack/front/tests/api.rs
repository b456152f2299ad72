//! The API front for real: the `labfront` binary before the running LocalStack (127.0.0.1:4566),
//! driven with the AWS SDKs (retries off) and raw HTTP for `/_front/*`.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HealthCheckConfig, HealthCheckType, ResourceRecord, ResourceRecordSet, RrType,
};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LOCALSTACK: &str = "http://127.0.0.1:4566";
const START_MS_MAX: u64 = 15_000;

struct FrontProc {
    child: Child,
    url: String,
}

impl Drop for FrontProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for TCP and UDP now, never handed out twice in this process (the tests run in
/// parallel; two fronts drawing the same port made one fail to bind).
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

async fn start(extra: &[&str]) -> FrontProc {
    let (port, dns_port) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_labfront"))
        .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--dns-listen", &format!("127.0.0.1:{dns_port}"), "--backend", LOCALSTACK])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("labfront starts");
    let front = FrontProc { child, url: format!("http://127.0.0.1:{port}") };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(START_MS_MAX) {
        if let Ok((200, _)) = control(&front, reqwest::Method::GET, "/_front/health", None).await {
            return front;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("labfront did not answer /_front/health within {START_MS_MAX} ms");
}

async fn control(front: &FrontProc, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<(u16, Value), reqwest::Error> {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", front.url));
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

async fn put_fault(front: &FrontProc, region: &str, service: &str, fault: Value) -> (u16, Value) {
    let body = json!({"region": region, "service": service, "fault": fault});
    control(front, reqwest::Method::PUT, "/_front/faults", Some(body)).await.expect("control API answers")
}

async fn heal(front: &FrontProc, region: &str, service: &str) {
    let (s, v) = control(front, reqwest::Method::DELETE, &format!("/_front/faults/{region}/{service}"), None).await.expect("answers");
    assert_eq!(s, 200, "{v}");
}

async fn sdk(url: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .timeout_config(TimeoutConfig::builder().operation_timeout(Duration::from_secs(3)).build())
        .load()
        .await
}

async fn ec2(url: &str, region: &str) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&sdk(url, region).await)
}

async fn route53(url: &str) -> aws_sdk_route53::Client {
    aws_sdk_route53::Client::new(&sdk(url, "us-east-1").await)
}

fn uniq() -> String {
    format!("{}", SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0))
}

fn code<E: ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("<no code>").to_string()
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

fn tag_spec(kind: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder().resource_type(kind).tags(tag("Name", name)).build()
}

fn name_filter(name: &str) -> Filter {
    Filter::builder().name("tag:Name").values(name).build()
}

async fn vpc(client: &aws_sdk_ec2::Client, name: &str) -> String {
    let out = client
        .create_vpc()
        .cidr_block("10.77.0.0/16")
        .tag_specifications(tag_spec(ResourceType::Vpc, name))
        .send()
        .await
        .expect("create vpc");
    out.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string()
}

#[tokio::test]
async fn pass_through_creates_a_vpc_localstack_holds() {
    let front = start(&[]).await;
    let id = vpc(&ec2(&front.url, "us-west-2").await, &format!("pass-{}", uniq())).await;
    let direct = ec2(LOCALSTACK, "us-west-2").await;
    let seen = direct.describe_vpcs().vpc_ids(&id).send().await.expect("LocalStack holds it");
    assert_eq!(seen.vpcs().len(), 1);
    direct.delete_vpc().vpc_id(&id).send().await.expect("delete");
}

#[tokio::test]
async fn each_fault_hits_its_region_and_service_only_and_heals() {
    let front = start(&[]).await;
    let (hit, other) = (ec2(&front.url, "eu-west-1").await, ec2(&front.url, "us-west-2").await);
    let faults = [
        json!({"kind": "down"}),
        json!({"kind": "hang"}),
        json!({"kind": "slow", "ms": 1500}),
        json!({"kind": "error", "code": "InternalError"}),
    ];
    for fault in faults {
        let (s, v) = put_fault(&front, "eu-west-1", "ec2", fault.clone()).await;
        assert_eq!(s, 200, "{v}");
        let t0 = Instant::now();
        let r = hit.describe_vpcs().send().await;
        let ms = t0.elapsed().as_millis();
        match fault["kind"].as_str() {
            Some("down") => assert!(matches!(r, Err(aws_sdk_ec2::error::SdkError::DispatchFailure(_))), "down: {r:?}"),
            Some("hang") => assert!(matches!(r, Err(aws_sdk_ec2::error::SdkError::TimeoutError(_))), "hang: {r:?}"),
            Some("slow") => assert!(r.is_ok() && ms >= 1500, "slow: {ms} ms {r:?}"),
            _ => {
                let e = r.expect_err("error fault");
                assert_eq!(code(&e), "InternalError");
                assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(500));
            }
        }
        other.describe_vpcs().send().await.expect("another region's EC2 still answers");
        heal(&front, "eu-west-1", "ec2").await;
        hit.describe_vpcs().send().await.expect("healed");
    }
}

#[tokio::test]
async fn throttling_answers_with_each_services_code() {
    let front = start(&[]).await;
    assert_eq!(put_fault(&front, "us-east-1", "ec2", json!({"kind": "throttle", "fraction": 1.0})).await.0, 200);
    assert_eq!(put_fault(&front, "us-east-1", "route53", json!({"kind": "throttle", "fraction": 1.0})).await.0, 200);
    let e = ec2(&front.url, "us-east-1").await.describe_vpcs().send().await.expect_err("throttled");
    assert_eq!(code(&e), "RequestLimitExceeded");
    let e = route53(&front.url).await.list_hosted_zones().send().await.expect_err("throttled");
    assert_eq!(code(&e), "Throttling");
    ec2(&front.url, "us-west-1").await.describe_vpcs().send().await.expect("other regions pass");
    let all = start(&["--throttle-all", "1"]).await;
    let e = ec2(&all.url, "ap-south-1").await.describe_vpcs().send().await.expect_err("throttle_all");
    assert_eq!(code(&e), "RequestLimitExceeded");
}

const WINDOW_MS: u64 = 3000;

#[tokio::test]
async fn young_resources_are_not_found_and_hidden_from_tag_listings_until_the_window_ends() {
    let front = start(&["--consistency-ms", &WINDOW_MS.to_string()]).await;
    let (c, direct) = (ec2(&front.url, "us-west-2").await, ec2(LOCALSTACK, "us-west-2").await);
    let name = format!("young-{}", uniq());
    let parent = vpc(&direct, &name).await; // made behind the front: not young
    let t0 = Instant::now();
    let young_vpc = vpc(&c, &name).await;
    let subnet =
        c.create_subnet().vpc_id(&parent).cidr_block("10.77.1.0/24").tag_specifications(tag_spec(ResourceType::Subnet, &name)).send().await;
    let subnet = subnet.expect("create subnet").subnet().and_then(|s| s.subnet_id()).expect("subnet id").to_string();
    let sg = c
        .create_security_group()
        .group_name(&name)
        .description("t")
        .vpc_id(&parent)
        .tag_specifications(tag_spec(ResourceType::SecurityGroup, &name))
        .send();
    let sg = sg.await.expect("create sg").group_id().expect("group id").to_string();
    // Each resource's window starts when the front saw its creation: the last one's ends last.
    let last_created = Instant::now();

    assert_eq!(code(&c.describe_vpcs().vpc_ids(&young_vpc).send().await.expect_err("young")), "InvalidVpcID.NotFound");
    assert_eq!(code(&c.describe_subnets().subnet_ids(&subnet).send().await.expect_err("young")), "InvalidSubnetID.NotFound");
    assert_eq!(code(&c.describe_security_groups().group_ids(&sg).send().await.expect_err("young")), "InvalidGroup.NotFound");
    let vpcs = c.describe_vpcs().filters(name_filter(&name)).send().await.expect("listing");
    assert_eq!(vpcs.vpcs().iter().filter_map(|v| v.vpc_id()).collect::<Vec<_>>(), vec![parent.as_str()], "only the old VPC");
    assert!(c.describe_subnets().filters(name_filter(&name)).send().await.expect("listing").subnets().is_empty());
    assert!(c.describe_security_groups().filters(name_filter(&name)).send().await.expect("listing").security_groups().is_empty());
    assert!(t0.elapsed() < Duration::from_millis(WINDOW_MS), "checks ran within the window");

    tokio::time::sleep(Duration::from_millis(WINDOW_MS + 200).saturating_sub(last_created.elapsed())).await;
    assert_eq!(c.describe_vpcs().vpc_ids(&young_vpc).send().await.expect("grown up").vpcs().len(), 1);
    assert_eq!(c.describe_vpcs().filters(name_filter(&name)).send().await.expect("listing").vpcs().len(), 2);
    assert_eq!(c.describe_subnets().filters(name_filter(&name)).send().await.expect("listing").subnets().len(), 1);
    assert_eq!(c.describe_security_groups().filters(name_filter(&name)).send().await.expect("listing").security_groups().len(), 1);
    c.delete_security_group().group_id(&sg).send().await.expect("delete sg");
    c.delete_subnet().subnet_id(&subnet).send().await.expect("delete subnet");
    c.delete_vpc().vpc_id(&young_vpc).send().await.expect("delete vpc");
    c.delete_vpc().vpc_id(&parent).send().await.expect("delete vpc");
}

fn http_check(reference: &str, interval: i32, threshold: i32) -> (String, HealthCheckConfig) {
    let config = HealthCheckConfig::builder()
        .r#type(HealthCheckType::Http)
        .ip_address("192.0.2.10")
        .port(80)
        .resource_path("/")
        .request_interval(interval)
        .failure_threshold(threshold)
        .build()
        .expect("config");
    (reference.to_string(), config)
}

#[tokio::test]
async fn health_check_validations() {
    let front = start(&[]).await;
    let r53 = route53(&front.url).await;
    let u = uniq();
    let cases = [(format!("{u:x<65}"), 30, 3), (format!("i{u}"), 20, 3), (format!("t{u}"), 30, 11)];
    for (reference, interval, threshold) in cases {
        let (r, config) = http_check(&reference, interval, threshold);
        let e = r53.create_health_check().caller_reference(r).health_check_config(config).send().await.expect_err("invalid");
        assert_eq!(code(&e), "InvalidInput", "{reference} {interval} {threshold}");
    }
    let (r, config) = http_check(&format!("{u:x<64}"), 30, 3);
    let ok = r53.create_health_check().caller_reference(r).health_check_config(config).send().await.expect("64 chars pass");
    let id = ok.health_check().map(|h| h.id().to_string()).expect("id");
    let e = r53.update_health_check().health_check_id(&id).failure_threshold(0).send().await.expect_err("threshold 0");
    assert_eq!(code(&e), "InvalidInput");
    let tags: Vec<_> = (0..11).map(|i| aws_sdk_route53::types::Tag::builder().key(format!("k{i}")).value("v").build()).collect();
    let e = r53.change_tags_for_resource().resource_type("healthcheck".into()).resource_id(&id).set_add_tags(Some(tags)).send().await;
    assert_eq!(code(&e.expect_err("11 tags")), "InvalidInput");
    r53.delete_health_check().health_check_id(&id).send().await.expect("delete");
}

fn record(name: &str, ttl: i64) -> ChangeBatch {
    let set = ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::A)
        .ttl(ttl)
        .resource_records(ResourceRecord::builder().value("192.0.2.1").build().expect("record"))
        .build()
        .expect("set");
    let change = Change::builder().action(ChangeAction::Upsert).resource_record_set(set).build().expect("change");
    ChangeBatch::builder().changes(change).build().expect("batch")
}

#[tokio::test]
async fn record_set_validations() {
    let front = start(&[]).await;
    let r53 = route53(&front.url).await;
    let u = uniq();
    let zone = format!("z{u}.example.com");
    let created = r53.create_hosted_zone().name(&zone).caller_reference(format!("{u:x<129}")).send().await;
    assert_eq!(code(&created.expect_err("129-char reference")), "InvalidInput");
    let created = r53.create_hosted_zone().name(&zone).caller_reference(&u).send().await.expect("zone");
    let id = created.hosted_zone().map(|z| z.id().trim_start_matches("/hostedzone/").to_string()).expect("zone id");
    let change = |name: String, ttl| r53.change_resource_record_sets().hosted_zone_id(&id).change_batch(record(&name, ttl)).send();
    let e = change(format!("www.other{u}.com."), 300).await.expect_err("outside the zone");
    assert_eq!(code(&e), "InvalidChangeBatch");
    assert!(format!("{e:?}").contains("is not permitted in zone"), "{e:?}");
    assert_eq!(code(&change(format!("www.{zone}."), -1).await.expect_err("ttl -1")), "InvalidInput");
    assert_eq!(code(&change(format!("www.{zone}."), 2_147_483_648).await.expect_err("ttl too big")), "InvalidInput");
    change(format!("www.{zone}"), 300).await.expect("in the zone, no trailing dot");
    let clean = r53.change_resource_record_sets().hosted_zone_id(&id);
    let mut batch = record(&format!("www.{zone}."), 300);
    batch.changes[0].action = ChangeAction::Delete;
    clean.change_batch(batch).send().await.expect("delete record");
    r53.delete_hosted_zone().id(&id).send().await.expect("delete zone");
}

#[tokio::test]
async fn ec2_tag_validations() {
    let front = start(&[]).await;
    let (c, direct) = (ec2(&front.url, "us-west-2").await, ec2(LOCALSTACK, "us-west-2").await);
    let id = vpc(&direct, &format!("tags-{}", uniq())).await;
    let many: Vec<Tag> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
    let e = c.create_tags().resources(&id).set_tags(Some(many)).send().await.expect_err("51 tags");
    assert_eq!(code(&e), "TagLimitExceeded");
    let fifty: Vec<Tag> = (0..49).map(|i| tag(&format!("k{i}"), "v")).collect();
    c.create_tags().resources(&id).set_tags(Some(fifty)).send().await.expect("Name + 49 = 50 tags pass");
    for (k, v) in [("k".repeat(129), "v".to_string()), ("k".into(), "v".repeat(257)), ("aws:x".into(), "v".into())] {
        let e = c.create_tags().resources(&id).tags(tag(&k, &v)).send().await.expect_err("bad tag");
        assert_eq!(code(&e), "InvalidParameterValue", "{k}={v}");
    }
    let spec = TagSpecification::builder().resource_type(ResourceType::Vpc).tags(tag("aws:x", "v")).build();
    let e = c.create_vpc().cidr_block("10.78.0.0/16").tag_specifications(spec).send().await.expect_err("aws: on a create");
    assert_eq!(code(&e), "InvalidParameterValue");
    direct.delete_vpc().vpc_id(&id).send().await.expect("delete");
}

#[tokio::test]
async fn bad_fault_settings_get_a_clear_400() {
    let front = start(&[]).await;
    let cases = [
        ("mars-1", "ec2", json!({"kind": "down"}), "unknown region"),
        ("us-east-1", "s3", json!({"kind": "down"}), "unknown service"),
        ("us-east-1", "ec2", json!({"kind": "melt"}), "unknown fault kind"),
        ("eu-west-1", "route53", json!({"kind": "down"}), "route53 is global"),
        ("us-east-1", "ec2", json!({"kind": "throttle", "fraction": 1.5}), "from 0 to 1"),
        ("us-east-1", "ec2", json!({"kind": "slow"}), "slow needs"),
    ];
    for (region, service, fault, msg) in cases {
        let (s, v) = put_fault(&front, region, service, fault).await;
        assert_eq!(s, 400, "{v}");
        assert!(v["error"].as_str().is_some_and(|e| e.contains(msg)), "{msg}: {v}");
    }
    let (s, v) = control(&front, reqwest::Method::GET, "/_front/faults", None).await.expect("answers");
    assert_eq!((s, v["faults"].as_array().map(|a| a.len())), (200, Some(0)), "{v}");
    let (s, v) = control(&front, reqwest::Method::PUT, "/_front/settings", Some(json!({"consistency_ms": 1234}))).await.expect("answers");
    assert_eq!((s, &v["consistency_ms"]), (200, &json!(1234)));
}
