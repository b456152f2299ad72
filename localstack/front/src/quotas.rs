//! Service Quotas, which LocalStack does not emulate: `GetServiceQuota` answers EC2's quota of
//! running On-Demand standard vCPUs (`L-1216C47A`) as the front is set (`vcpu_quota` in
//! `/_front/settings`; the same in every region), so that `plan`'s quota check meets an
//! account's limit here as it does on AWS. Any other quota is AWS's NoSuchResourceException.

use std::sync::Mutex;

use serde_json::{json, Value};

use crate::aws::{error, Call, Reply};

/// "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", in vCPUs.
pub const STANDARD_VCPUS: &str = "L-1216C47A";
/// An established account's quota; a new account's is far lower (set it to try that).
pub const DEFAULT_VCPU_QUOTA: f64 = 640.0;

pub struct Quotas {
    vcpus: Mutex<f64>,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas { vcpus: Mutex::new(DEFAULT_VCPU_QUOTA) }
    }
}

impl Quotas {
    pub fn vcpus(&self) -> f64 {
        *self.vcpus.lock().expect("quotas")
    }

    pub fn set_vcpus(&self, v: f64) {
        *self.vcpus.lock().expect("quotas") = v;
    }

    /// The front's answer to a Service Quotas call (None: not one).
    pub fn intercept(&self, call: &Call) -> Option<Reply> {
        if call.service != "servicequotas" {
            return None;
        }
        if call.action != "GetServiceQuota" {
            return Some(error(&call.service, 400, "UnknownOperationException", &format!("{} is not emulated here", call.action)));
        }
        let body: Value = serde_json::from_slice(&call.body).unwrap_or_default();
        let (service, code) = (body["ServiceCode"].as_str().unwrap_or_default(), body["QuotaCode"].as_str().unwrap_or_default());
        if (service, code) != ("ec2", STANDARD_VCPUS) {
            return Some(error(
                &call.service,
                400,
                "NoSuchResourceException",
                &format!("The request failed because the specified quota {service}/{code} does not exist."),
            ));
        }
        let quota = json!({ "Quota": {
            "ServiceCode": "ec2",
            "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
            "QuotaArn": format!("arn:aws:servicequotas:{}:000000000000:ec2/{STANDARD_VCPUS}", call.region),
            "QuotaCode": STANDARD_VCPUS,
            "QuotaName": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
            "Value": self.vcpus(),
            "Unit": "None",
            "Adjustable": true,
            "GlobalQuota": false,
        }});
        Some(Reply { status: 200, content_type: "application/x-amz-json-1.1", body: quota.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(action: &str, body: &str) -> Call {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=AK/20261202/us-east-1/servicequotas/aws4_request, x".parse().unwrap(),
        );
        h.insert("x-amz-target", format!("ServiceQuotasV20190624.{action}").parse().unwrap());
        Call::parse(&http::Method::POST, &"/".parse().unwrap(), &h, &bytes::Bytes::from(body.to_string())).unwrap()
    }

    #[test]
    fn the_standard_vcpu_quota_is_the_set_value_and_others_do_not_exist() {
        let q = Quotas::default();
        q.set_vcpus(8.0);
        let r = q.intercept(&call("GetServiceQuota", r#"{"ServiceCode":"ec2","QuotaCode":"L-1216C47A"}"#)).unwrap();
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!((r.status, v["Quota"]["Value"].as_f64()), (200, Some(8.0)));
        let r = q.intercept(&call("GetServiceQuota", r#"{"ServiceCode":"ec2","QuotaCode":"L-0000"}"#)).unwrap();
        assert!(r.status == 400 && r.body.contains("NoSuchResourceException"), "{}", r.body);
    }
}
