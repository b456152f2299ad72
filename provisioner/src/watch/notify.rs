//! The watch's webhook posts: spawned, bounded in number, never holding up a tick.

use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::decide::Decision;
use crate::failover;

/// Webhook posts in flight at once; beyond that a post is dropped and counted.
const WEBHOOKS_IN_FLIGHT_MAX: usize = 64;

pub(super) fn webhook_event(project: &str, at: u64, d: &Decision) -> Value {
    let mut v = json!({ "project": project, "at_unix_ms": at, "source": "provision watch" });
    if let (Some(o), Value::Object(extra)) = (v.as_object_mut(), serde_json::to_value(d).unwrap_or(Value::Null)) {
        o.extend(extra);
    }
    v
}

pub(super) fn post(posts: &mut JoinSet<()>, urls: &[String], event: Value, dropped: &mut u64) {
    if urls.is_empty() {
        return;
    }
    if posts.len() >= WEBHOOKS_IN_FLIGHT_MAX {
        *dropped += 1;
        return;
    }
    let urls = urls.to_vec();
    posts.spawn(async move {
        for d in failover::webhook::post_all(&urls, &event).await.into_iter().filter(|d| !d.ok) {
            tracing::warn!("watch: webhook {}: {} after {} tries", d.url, d.detail, d.tries);
        }
    });
}
