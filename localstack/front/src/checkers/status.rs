//! `GetHealthCheckStatus`'s answer in Route53's XML.

use super::verdict::Observation;
use crate::aws::xml_escape;
use aws_sdk_route53::primitives::{DateTime, DateTimeFormat};

/// Route53's checker regions, and a made-up address for each simulated checker.
pub const CHECKER_REGIONS: [&str; 8] =
    ["us-east-1", "us-west-1", "us-west-2", "eu-west-1", "ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "sa-east-1"];
pub const CHECKER_IPS: [&str; 8] =
    ["54.243.31.192", "54.183.255.128", "54.244.52.192", "54.228.16.0", "54.251.31.128", "54.252.79.128", "54.248.220.0", "54.232.40.64"];

/// Checker i's region and address (regions repeat past 8 checkers, addresses stay distinct).
pub fn checker_identity(i: usize) -> (String, String) {
    let n = CHECKER_REGIONS.len();
    let base: std::net::Ipv4Addr = CHECKER_IPS[i % n].parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let o = base.octets();
    let ip = std::net::Ipv4Addr::new(o[0], o[1], o[2], o[3].wrapping_add(u8::try_from(i / n).unwrap_or(0)));
    (CHECKER_REGIONS[i % n].to_string(), ip.to_string())
}

pub fn body(observations: &[(usize, Observation)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\"?>\n<GetHealthCheckStatusResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><HealthCheckObservations>",
    );
    for (i, o) in observations {
        let (region, ip) = checker_identity(*i);
        let at = DateTime::from(o.at).fmt(DateTimeFormat::DateTime).unwrap_or_default();
        s += &format!(
            "<HealthCheckObservation><Region>{region}</Region><IPAddress>{ip}</IPAddress><StatusReport><Status>{}</Status><CheckedTime>{at}</CheckedTime></StatusReport></HealthCheckObservation>",
            xml_escape(&o.status)
        );
    }
    s += "</HealthCheckObservations></GetHealthCheckStatusResponse>";
    s
}
