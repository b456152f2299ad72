//! AWS behaviour no lab shows, through the real SDK clients: a scripted endpoint on 127.0.0.1
//! answers each call with the next answer of a script, as AWS documents it (a pending
//! instance without its public address, an id not visible yet, a peering still
//! `provisioning`, a NAT gateway still `pending`, a record change still `PENDING`). The
//! script is the fake; everything from the SDK's request to our code's reading of the answer
//! is real. A test passes only when the whole script was asked for, in order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

use super::apply::Outputs;
use super::Cloud;
use crate::action::{Action, Ref};
use crate::config::Config;

const NS: &str = r#"xmlns="http://ec2.amazonaws.com/doc/2016-11-15/""#;

/// The answers, in order: (the operation expected, HTTP status, body).
struct Script {
    answers: Mutex<VecDeque<(String, u16, String)>>,
    /// Operations asked for that the script did not expect there.
    unexpected: Mutex<Vec<String>>,
}

impl Script {
    fn new(answers: Vec<(&str, u16, String)>) -> Arc<Script> {
        let answers = answers.into_iter().map(|(op, status, body)| (op.to_string(), status, body)).collect();
        Arc::new(Script { answers: Mutex::new(answers), unexpected: Mutex::new(vec![]) })
    }

    fn answer(&self, op: &str) -> (u16, String) {
        let mut q = self.answers.lock().unwrap();
        match q.front() {
            Some((want, _, _)) if want == op => {
                let (_, status, body) = q.pop_front().unwrap();
                (status, body)
            }
            other => {
                self.unexpected.lock().unwrap().push(format!("{op} (script expected {:?})", other.map(|a| &a.0)));
                (400, ec2_error("Unscripted", op))
            }
        }
    }

    #[track_caller]
    fn assert_done(&self) {
        assert_eq!(*self.unexpected.lock().unwrap(), Vec::<String>::new(), "calls the script did not expect");
        let left: Vec<String> = self.answers.lock().unwrap().iter().map(|a| a.0.clone()).collect();
        assert!(left.is_empty(), "scripted answers never asked for: {left:?}");
    }
}

/// Serves `script` on 127.0.0.1 (EC2's query protocol: the operation is the form's
/// `Action`; Route53's REST: the method and path) and returns a Cloud whose every client
/// talks to it.
async fn cloud(script: Arc<Script>) -> Cloud {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let script = script.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let script = script.clone();
                    async move {
                        let route = format!("{} {}", req.method(), req.uri().path());
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let form = String::from_utf8_lossy(&body).to_string();
                        let op = form.split('&').find_map(|kv| kv.strip_prefix("Action=")).map(str::to_string).unwrap_or(route);
                        let (status, xml) = script.answer(&op);
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .status(status)
                                .header("content-type", "text/xml")
                                .body(Full::new(Bytes::from(xml)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
            });
        }
    });
    let src = crate::config::EMBEDDED_REGIONS_TOML.replace("http://127.0.0.1:4567", &format!("http://{addr}"));
    let cfg = Config::parse("regions.toml", std::path::Path::new("."), &src).unwrap();
    Cloud::connect(&cfg).await
}

fn ec2_error(code: &str, message: &str) -> String {
    format!("<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>r</RequestID></Response>")
}

fn instance_xml(state: &str, public_ip: Option<&str>) -> String {
    let public = public_ip.map(|ip| format!("<ipAddress>{ip}</ipAddress>")).unwrap_or_default();
    format!(
        "<item><instanceId>i-0abc</instanceId><privateIpAddress>10.10.0.7</privateIpAddress>{public}\
         <instanceState><code>0</code><name>{state}</name></instanceState></item>"
    )
}

fn describe_instance(state: &str, public_ip: Option<&str>) -> String {
    format!(
        "<DescribeInstancesResponse {NS}><requestId>r</requestId><reservationSet><item><reservationId>r-1</reservationId>\
         <instancesSet>{}</instancesSet></item></reservationSet></DescribeInstancesResponse>",
        instance_xml(state, public_ip)
    )
}

fn peering(state: &str) -> String {
    format!(
        "<DescribeVpcPeeringConnectionsResponse {NS}><requestId>r</requestId><vpcPeeringConnectionSet><item>\
         <vpcPeeringConnectionId>pcx-1</vpcPeeringConnectionId><status><code>{state}</code><message>m</message></status>\
         </item></vpcPeeringConnectionSet></DescribeVpcPeeringConnectionsResponse>"
    )
}

fn nat(state: &str) -> String {
    format!(
        "<DescribeNatGatewaysResponse {NS}><requestId>r</requestId><natGatewaySet><item><natGatewayId>nat-1</natGatewayId>\
         <state>{state}</state></item></natGatewaySet></DescribeNatGatewaysResponse>"
    )
}

/// A gateway host of the shipped config (it asks for a public address).
fn gateway_launch() -> Action {
    let cfg = Config::parse("regions.toml", std::path::Path::new("."), crate::config::EMBEDDED_REGIONS_TOML).unwrap();
    let tpl = crate::template::Template::load(&cfg).unwrap();
    let d = crate::desired::desired(&cfg, &tpl, "ssh-ed25519 AAAA test");
    let host = d.regions[0].hosts.iter().find(|h| h.gateway).unwrap().clone();
    assert!(host.public_ip);
    Action::RunInstance {
        region: d.regions[0].name.clone(),
        region_role: "primary".into(),
        host,
        ami: "ami-1".into(),
        subnet: Ref::Id("subnet-1".into()),
        sg: Ref::Id("sg-1".into()),
        key_name: "exa".into(),
    }
}

#[tokio::test]
async fn a_launched_gateway_s_public_address_is_read_back_once_ec2_shows_it() {
    let script = Script::new(vec![
        // RunInstances describes the instance while pending: no public address yet.
        ("RunInstances", 200, format!("<RunInstancesResponse {NS}><requestId>r</requestId><reservationId>r-1</reservationId><ownerId>1</ownerId><instancesSet>{}</instancesSet></RunInstancesResponse>", instance_xml("pending", None))),
        // EC2 does not list the new id at first, then shows it still without the address.
        ("DescribeInstances", 400, ec2_error("InvalidInstanceID.NotFound", "The instance ID 'i-0abc' does not exist")),
        ("DescribeInstances", 200, describe_instance("pending", None)),
        ("DescribeInstances", 200, describe_instance("running", Some("203.0.113.7"))),
    ]);
    let c = cloud(script.clone()).await;
    let made = c.apply(&gateway_launch(), &Outputs::default()).await.unwrap().unwrap();
    assert_eq!(
        (made.id.as_str(), made.private_ip.as_deref(), made.public_ip.as_deref()),
        ("i-0abc", Some("10.10.0.7"), Some("203.0.113.7"))
    );
    script.assert_done();
}

#[tokio::test]
async fn a_route_naming_a_table_ec2_does_not_show_yet_is_retried_until_it_does() {
    let script = Script::new(vec![
        ("CreateRoute", 400, ec2_error("InvalidRouteTableID.NotFound", "The routeTable ID 'rtb-1' does not exist")),
        ("CreateRoute", 400, ec2_error("InvalidRouteTableID.NotFound", "The routeTable ID 'rtb-1' does not exist")),
        ("CreateRoute", 200, format!("<CreateRouteResponse {NS}><requestId>r</requestId><return>true</return></CreateRouteResponse>")),
    ]);
    let c = cloud(script.clone()).await;
    let a = Action::CreateRoute {
        region: "us-east-1".into(),
        route_table: Ref::Id("rtb-1".into()),
        cidr: "0.0.0.0/0".into(),
        target: Ref::Id("nat-1".into()),
        replace: false,
    };
    c.apply(&a, &Outputs::default()).await.unwrap();
    script.assert_done();
}

#[tokio::test]
async fn a_peering_is_accepted_only_once_it_is_pending_acceptance() {
    let script = Script::new(vec![
        ("DescribeVpcPeeringConnections", 200, peering("initiating-request")),
        ("DescribeVpcPeeringConnections", 200, peering("provisioning")),
        ("DescribeVpcPeeringConnections", 200, peering("pending-acceptance")),
        (
            "AcceptVpcPeeringConnection",
            200,
            format!("<AcceptVpcPeeringConnectionResponse {NS}><requestId>r</requestId><vpcPeeringConnection><vpcPeeringConnectionId>pcx-1</vpcPeeringConnectionId><status><code>provisioning</code></status></vpcPeeringConnection></AcceptVpcPeeringConnectionResponse>"),
        ),
    ]);
    let c = cloud(script.clone()).await;
    c.apply(&Action::AcceptPeering { region: "us-west-2".into(), peering: Ref::Id("pcx-1".into()) }, &Outputs::default()).await.unwrap();
    script.assert_done();
}

#[tokio::test]
async fn a_nat_gateway_step_ends_when_it_is_available_and_its_removal_when_it_is_deleted() {
    let script = Script::new(vec![
        (
            "CreateNatGateway",
            200,
            format!("<CreateNatGatewayResponse {NS}><requestId>r</requestId><natGateway><natGatewayId>nat-1</natGatewayId><state>pending</state></natGateway></CreateNatGatewayResponse>"),
        ),
        ("DescribeNatGateways", 200, nat("pending")),
        ("DescribeNatGateways", 200, nat("available")),
        ("DeleteNatGateway", 200, format!("<DeleteNatGatewayResponse {NS}><requestId>r</requestId><natGatewayId>nat-1</natGatewayId></DeleteNatGatewayResponse>")),
        ("DescribeNatGateways", 200, nat("deleting")),
        ("DescribeNatGateways", 200, nat("deleted")),
    ]);
    let c = cloud(script.clone()).await;
    let create = Action::CreateNatGateway {
        region: "us-east-1".into(),
        key: "us-east-1/nat".into(),
        subnet: Ref::Id("subnet-1".into()),
        allocation: Ref::Id("eipalloc-1".into()),
    };
    let made = c.apply(&create, &Outputs::default()).await.unwrap().unwrap();
    assert_eq!(made.id, "nat-1");
    let delete = Action::DeleteNatGateway { region: "us-east-1".into(), id: "nat-1".into(), key: "us-east-1/nat".into() };
    c.apply(&delete, &Outputs::default()).await.unwrap();
    script.assert_done();
}

#[tokio::test]
async fn a_record_change_is_waited_for_until_route53_reports_it_insync() {
    let change = |status: &str| {
        format!(
            r#"<?xml version="1.0"?><GetChangeResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeInfo><Id>/change/C1</Id><Status>{status}</Status><SubmittedAt>2026-12-02T00:00:00Z</SubmittedAt></ChangeInfo></GetChangeResponse>"#
        )
    };
    let script = Script::new(vec![
        ("GET /2013-04-01/change/C1", 200, change("PENDING")),
        ("GET /2013-04-01/change/C1", 200, change("PENDING")),
        ("GET /2013-04-01/change/C1", 200, change("PENDING")),
        ("GET /2013-04-01/change/C1", 200, change("INSYNC")),
    ]);
    let c = cloud(script.clone()).await;
    c.wait_insync("C1").await.unwrap();
    script.assert_done();
}
