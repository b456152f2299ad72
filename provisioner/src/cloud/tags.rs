//! EC2 tags: every resource carries the project and its logical key.

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use crate::model::{TAG_KEY, TAG_PROJECT};

pub fn spec(rt: ResourceType, project: &str, key: &str, name: &str, extra: &[(&str, String)]) -> TagSpecification {
    let mut b =
        TagSpecification::builder().resource_type(rt).tags(tag(TAG_PROJECT, project)).tags(tag(TAG_KEY, key)).tags(tag("Name", name));
    for (k, v) in extra {
        b = b.tags(tag(k, v));
    }
    b.build()
}

pub fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

pub fn project_filter(project: &str) -> Filter {
    Filter::builder().name(format!("tag:{TAG_PROJECT}")).values(project).build()
}

pub fn get<'a>(tags: &'a [Tag], k: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(k)).and_then(|t| t.value())
}

/// The logical key, or "" for a project resource without one (it is then unwanted).
pub fn key(tags: &[Tag]) -> String {
    get(tags, TAG_KEY).unwrap_or_default().to_string()
}
