//! What the front knows about an AWS API call: which region and service it is for (from the
//! SigV4 credential scope), which action, and the parameters; and AWS's error bodies, one
//! shape per protocol (EC2 query, Route53 REST-XML, STS/IAM query).

use bytes::Bytes;

/// The services the front tells apart. Route53 and IAM are global: AWS serves their control
/// planes from us-east-1, and so does the front. SSM is regional (the failover state and the
/// project's vault live in each region's Parameter Store).
pub const SERVICES: [&str; 6] = ["ec2", "route53", "sts", "iam", "ssm", "servicequotas"];
pub const GLOBAL_SERVICES: [&str; 2] = ["route53", "iam"];
pub const GLOBAL_REGION: &str = "us-east-1";

/// AWS's commercial regions: a fault for any other name is refused.
pub const REGIONS: [&str; 29] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "sa-east-1",
];

/// One signed API call, fully read.
#[derive(Debug, Clone)]
pub struct Call {
    pub region: String,
    pub service: String,
    /// EC2/STS/IAM: the `Action` parameter; Route53: the operation named from method and path
    /// (e.g. `CreateHealthCheck`, `GetHealthCheckStatus`, `ChangeResourceRecordSets`).
    pub action: String,
    pub method: http::Method,
    /// Path without the query string.
    pub path: String,
    pub query: String,
    pub body: Bytes,
    /// Query-protocol parameters (EC2, STS, IAM: the form body and the query string), in order.
    pub params: Vec<(String, String)>,
}

impl Call {
    /// Reads region, service, action and parameters. None when the request is not a SigV4-signed
    /// AWS call (then the front passes it through untouched).
    pub fn parse(method: &http::Method, uri: &http::Uri, headers: &http::HeaderMap, body: &Bytes) -> Option<Call> {
        let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let (region, service) = credential_scope(auth)?;
        let path = uri.path().to_string();
        let query = uri.query().unwrap_or_default().to_string();
        let mut params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let form = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if form.starts_with("application/x-www-form-urlencoded") {
            params.extend(url::form_urlencoded::parse(body).into_owned());
        }
        // JSON-protocol services (SSM) name the action in `X-Amz-Target: AmazonSSM.PutParameter`.
        let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).and_then(|t| t.rsplit('.').next()).map(str::to_string);
        let action = match service.as_str() {
            "route53" => route53_operation(method, &path),
            _ => params.iter().find(|(k, _)| k == "Action").map(|(_, v)| v.clone()).or(target).unwrap_or_default(),
        };
        Some(Call { region, service, action, method: method.clone(), path, query, body: body.clone(), params })
    }

    /// The first value of a query-protocol parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// `AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/ec2/aws4_request, ...` -> (region, service).
fn credential_scope(auth: &str) -> Option<(String, String)> {
    let cred = auth.split("Credential=").nth(1)?;
    let scope = cred.split([',', ' ']).next()?;
    let mut parts = scope.split('/');
    let (_key, _date, region, service) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some((region.to_string(), service.to_string()))
}

/// Route53's REST operations that the front treats specially, named as AWS names them.
fn route53_operation(method: &http::Method, path: &str) -> String {
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    let op = match (method.as_str(), p.as_slice()) {
        ("POST", [_, "healthcheck"]) => "CreateHealthCheck",
        ("GET", [_, "healthcheck"]) => "ListHealthChecks",
        ("GET", [_, "healthcheck", _, "status"]) => "GetHealthCheckStatus",
        ("GET", [_, "healthcheck", _]) => "GetHealthCheck",
        ("POST", [_, "healthcheck", _]) => "UpdateHealthCheck",
        ("DELETE", [_, "healthcheck", _]) => "DeleteHealthCheck",
        ("POST", [_, "hostedzone"]) => "CreateHostedZone",
        ("GET", [_, "hostedzone"]) => "ListHostedZones",
        ("GET", [_, "hostedzonesbyname"]) => "ListHostedZonesByName",
        ("POST", [_, "hostedzone", _, "rrset"]) => "ChangeResourceRecordSets",
        ("GET", [_, "hostedzone", _, "rrset"]) => "ListResourceRecordSets",
        ("GET", [_, "hostedzone", _]) => "GetHostedZone",
        ("DELETE", [_, "hostedzone", _]) => "DeleteHostedZone",
        ("POST", [_, "tags", _, _]) => "ChangeTagsForResource",
        ("GET", [_, "tags", _, _]) => "ListTagsForResource",
        ("POST", [_, "tags", _]) => "ListTagsForResources",
        ("GET", [_, "change", _]) => "GetChange",
        _ => "Other",
    };
    op.to_string()
}

/// An answer the front gives itself instead of LocalStack's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// AWS's error body for `service`, as the SDKs parse it. Route53's InvalidChangeBatch too takes
/// the standard ErrorResponse shape (as Route53 answers it since 2024; the SDKs cannot read the
/// older `<InvalidChangeBatch><Messages>` body).
pub fn error(service: &str, status: u16, code: &str, message: &str) -> Reply {
    let id = request_id();
    if service == "ssm" || service == "servicequotas" {
        // SSM and Service Quotas speak the JSON protocol (awsJson1_1).
        let body = serde_json::json!({ "__type": code, "message": message }).to_string();
        return Reply { status, content_type: "application/x-amz-json-1.1", body };
    }
    let (code, message) = (xml_escape(code), xml_escape(message));
    let body = match service {
        "ec2" => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{id}</RequestID></Response>"
        ),
        "route53" => format!(
            "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{id}</RequestId></ErrorResponse>"
        ),
        _ => format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{id}</RequestId></ErrorResponse>"
        ),
    };
    Reply { status, content_type: "text/xml", body }
}

/// The throttling error each service answers with, and its HTTP status.
pub fn throttling(service: &str) -> Reply {
    match service {
        "ec2" => error(service, 503, "RequestLimitExceeded", "Request limit exceeded."),
        "ssm" => error(service, 400, "ThrottlingException", "Rate exceeded"),
        _ => error(service, 400, "Throttling", "Rate exceeded"),
    }
}

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn request_id() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_and_service_come_from_the_credential_scope() {
        let a = "AWS4-HMAC-SHA256 Credential=test/20261130/us-west-2/ec2/aws4_request, SignedHeaders=host, Signature=ab";
        assert_eq!(credential_scope(a), Some(("us-west-2".into(), "ec2".into())));
        assert_eq!(credential_scope("Bearer x"), None);
    }

    #[test]
    fn route53_operations_are_named_from_method_and_path() {
        assert_eq!(route53_operation(&http::Method::GET, "/2013-04-01/healthcheck/abc/status"), "GetHealthCheckStatus");
        assert_eq!(route53_operation(&http::Method::POST, "/2013-04-01/hostedzone/Z1/rrset/"), "ChangeResourceRecordSets");
        assert_eq!(route53_operation(&http::Method::POST, "/2013-04-01/healthcheck"), "CreateHealthCheck");
    }

    #[test]
    fn ssm_errors_are_json_as_its_sdk_reads_them() {
        let r = throttling("ssm");
        assert_eq!((r.status, r.content_type), (400, "application/x-amz-json-1.1"));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["__type"], "ThrottlingException");
    }
}
