//! AWS's validations that LocalStack skips, answered with AWS's codes and messages.

use crate::aws::{self, Call, Reply};
use crate::xml;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

pub const HEALTH_CHECK_CALLER_REFERENCE_CHARS_MAX: usize = 64;
pub const HOSTED_ZONE_CALLER_REFERENCE_CHARS_MAX: usize = 128;
pub const FAILURE_THRESHOLD_MAX: i64 = 10;
pub const EC2_TAGS_PER_RESOURCE_MAX: usize = 50;
pub const ROUTE53_TAGS_PER_REQUEST_MAX: usize = 10;
pub const TAG_KEY_CHARS_MAX: usize = 128;
pub const TAG_VALUE_CHARS_MAX: usize = 256;
pub const TTL_S_MAX: i64 = 2_147_483_647;

/// The first validation `call` fails, answered as AWS answers it; None = valid (as far as the
/// front checks).
pub async fn check(front: &crate::run::Front, call: &Call) -> Option<Reply> {
    match (call.service.as_str(), call.action.as_str()) {
        ("ec2", _) => ec2_tags(call).err().map(|e| aws::error("ec2", 400, e.0, &e.1)),
        ("route53", "ChangeResourceRecordSets") => change_batch(front, call).await.err().map(route53_error),
        ("route53", _) => route53(call).err().map(route53_error),
        _ => None,
    }
}

/// (code, message).
struct Invalid(&'static str, String);

fn route53_error(e: Invalid) -> Reply {
    aws::error("route53", 400, e.0, &e.1)
}

fn constraint(value: &str, at: &str, rule: &str) -> Invalid {
    Invalid(
        "InvalidInput",
        format!("1 validation error detected: Value '{value}' at '{at}' failed to satisfy constraint: Member must {rule}"),
    )
}

// ---- EC2 tags ----

/// Tag sets of an EC2 call: CreateTags' `Tag.N.*`, and each `TagSpecification.N.Tag.M.*`.
fn ec2_tag_sets(call: &Call) -> HashMap<String, Vec<(String, String)>> {
    let mut sets: HashMap<String, HashMap<String, (String, String)>> = HashMap::new();
    for (k, v) in &call.params {
        let (set, rest) = match k.strip_prefix("TagSpecification.") {
            Some(r) => match r.split_once(".Tag.") {
                Some((n, rest)) => (format!("spec{n}"), rest),
                None => continue,
            },
            None if call.action == "CreateTags" => match k.strip_prefix("Tag.") {
                Some(rest) => ("tags".to_string(), rest),
                None => continue,
            },
            None => continue,
        };
        let Some((m, field)) = rest.split_once('.') else { continue };
        let tag = sets.entry(set).or_default().entry(m.to_string()).or_default();
        match field {
            "Key" => tag.0 = v.clone(),
            "Value" => tag.1 = v.clone(),
            _ => {}
        }
    }
    sets.into_iter().map(|(k, tags)| (k, tags.into_values().collect())).collect()
}

fn ec2_tags(call: &Call) -> Result<(), Invalid> {
    for tags in ec2_tag_sets(call).values() {
        if tags.len() > EC2_TAGS_PER_RESOURCE_MAX {
            return Err(Invalid("TagLimitExceeded", "The maximum number of Tags for a resource has been reached.".into()));
        }
        for (key, value) in tags {
            ec2_tag(key, value)?;
        }
    }
    Ok(())
}

fn ec2_tag(key: &str, value: &str) -> Result<(), Invalid> {
    if key.is_empty() {
        return Err(Invalid("InvalidParameterValue", "Tag key must have a value".into()));
    }
    if key.chars().count() > TAG_KEY_CHARS_MAX {
        return Err(Invalid("InvalidParameterValue", format!("Tag key exceeds the maximum length of {TAG_KEY_CHARS_MAX} characters")));
    }
    if value.chars().count() > TAG_VALUE_CHARS_MAX {
        return Err(Invalid("InvalidParameterValue", format!("Tag value exceeds the maximum length of {TAG_VALUE_CHARS_MAX} characters")));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(Invalid(
            "InvalidParameterValue",
            format!("Value ( {key} ) for parameter key is invalid. Tag keys starting with 'aws:' are reserved for internal use"),
        ));
    }
    Ok(())
}

// ---- Route53 ----

fn route53(call: &Call) -> Result<(), Invalid> {
    match call.action.as_str() {
        "CreateHealthCheck" => create_health_check(call),
        "UpdateHealthCheck" => update_health_check(call),
        "CreateHostedZone" => caller_reference(call, HOSTED_ZONE_CALLER_REFERENCE_CHARS_MAX),
        "ChangeTagsForResource" => route53_tags(call),
        _ => Ok(()),
    }
}

fn caller_reference(call: &Call, chars_max: usize) -> Result<(), Invalid> {
    let Some(root) = xml::parse(&call.body) else { return Ok(()) };
    let r = xml::text_at(&root, &["CallerReference"]).unwrap_or_default();
    let n = r.chars().count();
    if n > chars_max {
        return Err(constraint(&r, "callerReference", &format!("have length less than or equal to {chars_max}")));
    }
    if n == 0 {
        return Err(constraint(&r, "callerReference", "have length greater than or equal to 1"));
    }
    Ok(())
}

fn create_health_check(call: &Call) -> Result<(), Invalid> {
    caller_reference(call, HEALTH_CHECK_CALLER_REFERENCE_CHARS_MAX)?;
    let Some(root) = xml::parse(&call.body) else { return Ok(()) };
    let Some(config) = root.get_child("HealthCheckConfig") else { return Ok(()) };
    let kind = xml::text_at(config, &["Type"]).unwrap_or_default();
    if kind == "CALCULATED" || kind == "CLOUDWATCH_METRIC" {
        return Ok(());
    }
    if let Some(i) = xml::text_at(config, &["RequestInterval"]) {
        if i != "10" && i != "30" {
            return Err(Invalid(
                "InvalidInput",
                format!("Invalid parameter RequestInterval: {i}. The request interval must be 10 or 30 seconds"),
            ));
        }
    }
    failure_threshold(xml::text_at(config, &["FailureThreshold"]), "healthCheckConfig.failureThreshold")
}

fn update_health_check(call: &Call) -> Result<(), Invalid> {
    let Some(root) = xml::parse(&call.body) else { return Ok(()) };
    failure_threshold(xml::text_at(&root, &["FailureThreshold"]), "failureThreshold")
}

fn failure_threshold(value: Option<String>, at: &str) -> Result<(), Invalid> {
    let Some(v) = value else { return Ok(()) };
    match v.trim().parse::<i64>() {
        Ok(n) if n > FAILURE_THRESHOLD_MAX => Err(constraint(&v, at, &format!("have value less than or equal to {FAILURE_THRESHOLD_MAX}"))),
        Ok(n) if n < 1 => Err(constraint(&v, at, "have value greater than or equal to 1")),
        Ok(_) => Ok(()),
        Err(_) => Err(Invalid("InvalidInput", format!("Invalid FailureThreshold: {v}"))),
    }
}

fn route53_tags(call: &Call) -> Result<(), Invalid> {
    let Some(root) = xml::parse(&call.body) else { return Ok(()) };
    let Some(add) = root.get_child("AddTags") else { return Ok(()) };
    let tags: Vec<_> = xml::children(add, "Tag").collect();
    if tags.len() > ROUTE53_TAGS_PER_REQUEST_MAX {
        let at = "addTags";
        return Err(constraint(
            &format!("{} tags", tags.len()),
            at,
            &format!("have length less than or equal to {ROUTE53_TAGS_PER_REQUEST_MAX}"),
        ));
    }
    for (i, tag) in tags.iter().enumerate() {
        let key = xml::text_at(tag, &["Key"]).unwrap_or_default();
        let value = xml::text_at(tag, &["Value"]).unwrap_or_default();
        if key.chars().count() > TAG_KEY_CHARS_MAX {
            return Err(constraint(
                &key,
                &format!("addTags.{}.member.key", i + 1),
                &format!("have length less than or equal to {TAG_KEY_CHARS_MAX}"),
            ));
        }
        if value.chars().count() > TAG_VALUE_CHARS_MAX {
            let at = format!("addTags.{}.member.value", i + 1);
            return Err(constraint(&value, &at, &format!("have length less than or equal to {TAG_VALUE_CHARS_MAX}")));
        }
    }
    Ok(())
}

// ---- ChangeResourceRecordSets ----

fn zone_id(call: &Call) -> Option<String> {
    let p: Vec<&str> = call.path.trim_matches('/').split('/').collect();
    p.get(2).map(|s| s.to_string())
}

fn change_names_and_ttls(call: &Call) -> Vec<(String, Option<String>)> {
    let Some(root) = xml::parse(&call.body) else { return Vec::new() };
    let Some(changes) = root.get_child("ChangeBatch").and_then(|b| b.get_child("Changes")) else { return Vec::new() };
    xml::children(changes, "Change")
        .filter_map(|c| c.get_child("ResourceRecordSet"))
        .map(|r| (xml::text_at(r, &["Name"]).unwrap_or_default(), xml::text_at(r, &["TTL"])))
        .collect()
}

async fn change_batch(front: &crate::run::Front, call: &Call) -> Result<(), Invalid> {
    let changes = change_names_and_ttls(call);
    for (i, (_, ttl)) in changes.iter().enumerate() {
        check_ttl(ttl.as_deref(), i + 1)?;
    }
    let Some(id) = zone_id(call) else { return Ok(()) };
    let Some(zone) = zone_name(front, &id).await else { return Ok(()) };
    for (name, _) in &changes {
        in_zone(name, &zone)?;
    }
    Ok(())
}

fn check_ttl(ttl: Option<&str>, n: usize) -> Result<(), Invalid> {
    let Some(t) = ttl else { return Ok(()) };
    let at = format!("changeBatch.changes.{n}.member.resourceRecordSet.TTL");
    match t.trim().parse::<i64>() {
        Ok(v) if v < 0 => Err(constraint(t, &at, "have value greater than or equal to 0")),
        Ok(v) if v > TTL_S_MAX => Err(constraint(t, &at, &format!("have value less than or equal to {TTL_S_MAX}"))),
        Ok(_) => Ok(()),
        Err(_) => Err(constraint(t, &at, &format!("have value less than or equal to {TTL_S_MAX}"))),
    }
}

fn fqdn(name: &str) -> String {
    let n = name.trim_end_matches('.').to_ascii_lowercase().replace("\\052", "*");
    format!("{n}.")
}

fn in_zone(name: &str, zone: &str) -> Result<(), Invalid> {
    let (n, z) = (fqdn(name), fqdn(zone));
    if n == z || n.ends_with(&format!(".{z}")) {
        return Ok(());
    }
    Err(Invalid("InvalidChangeBatch", format!("[RRSet with DNS name {n} is not permitted in zone {z}]")))
}

fn zone_cache() -> &'static Mutex<HashMap<String, String>> {
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The zone's name, from LocalStack (cached by zone id; a zone's name never changes).
async fn zone_name(front: &crate::run::Front, id: &str) -> Option<String> {
    if let Some(n) = zone_cache().lock().unwrap_or_else(|e| e.into_inner()).get(id) {
        return Some(n.clone());
    }
    let out = front.backend.route53.get_hosted_zone().id(id).send().await.ok()?;
    let name = out.hosted_zone()?.name().to_string();
    zone_cache().lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string(), name.clone());
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_and_outside_a_zone() {
        assert!(in_zone("Www.Example.com", "example.com.").is_ok());
        assert!(in_zone("example.com.", "example.com").is_ok());
        let e = in_zone("www.other.com.", "example.com.").unwrap_err();
        assert_eq!(e.1, "[RRSet with DNS name www.other.com. is not permitted in zone example.com.]");
        assert!(in_zone("badexample.com.", "example.com.").is_err());
    }

    #[test]
    fn ec2_tag_rules() {
        assert!(ec2_tag("aws:x", "v").is_err());
        assert!(ec2_tag(&"k".repeat(129), "v").is_err());
        assert!(ec2_tag(&"k".repeat(128), &"v".repeat(256)).is_ok());
        assert!(ec2_tag("k", &"v".repeat(257)).is_err());
    }

    #[test]
    fn ttl_bounds() {
        assert!(check_ttl(Some("-1"), 1).is_err());
        assert!(check_ttl(Some("2147483648"), 1).is_err());
        assert!(check_ttl(Some("300"), 1).is_ok());
    }
}
