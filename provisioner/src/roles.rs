//! Which region serves writes, and which is fenced: the failover state, read from the cloud,
//! never from a local file. Pure: tag maps and places in, [`Marks`] out, and back.
//!
//! The state is kept in three places (each region's Parameter Store, and the hosted zone's
//! tags) so that it stays readable and writable with a region, or Route53's control plane,
//! down. The rules that make that safe (see ARCHITECTURE.md, "Failover state"):
//! - every change creates epoch N+1 in the Parameter Store of the region the change makes
//!   active ([`deciding_region`]); the create is refused when N+1 exists, so of two runs
//!   that read N, exactly one changes the state;
//! - from any state, every valid change makes the same region active, so rivals always race
//!   for the same parameter;
//! - a reader takes the newest epoch any answering place holds ([`newest`]). A reader that
//!   misses the newest epoch missed the deciding region's store, so its own write (which must
//!   go there) cannot land either.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::model::{Fence, Marks};

/// Tag keys carry the project, so several projects can share one hosted zone.
pub fn active_key(project: &str) -> String {
    format!("provision:{project}:active")
}
pub fn fence_key(project: &str) -> String {
    format!("provision:{project}:fenced")
}
pub fn epoch_key(project: &str) -> String {
    format!("provision:{project}:epoch")
}

/// Reads the marks from the zone's tags. A fence tag is `<region> <unix ms>`.
pub fn from_tags(project: &str, tags: &BTreeMap<String, String>) -> Marks {
    let active = tags.get(&active_key(project)).and_then(|v| value(v)).map(str::to_string);
    // A tag that does not parse still fences: refusing is the safe reading.
    let fence = tags.get(&fence_key(project)).and_then(|v| value(v)).map(|v| match v.split_once(' ') {
        Some((region, at)) => Fence { region: region.to_string(), at_unix_ms: at.parse().unwrap_or(0) },
        None => Fence { region: v.to_string(), at_unix_ms: 0 },
    });
    let epoch = tags.get(&epoch_key(project)).and_then(|v| value(v)).and_then(|v| v.parse().ok()).unwrap_or(0);
    Marks { epoch, active, fence }
}

/// Written for "no value": a tag is overwritten, never removed, so one ChangeTagsForResource
/// with adds only records all marks atomically (LocalStack drops the removals of a call that
/// also adds, and turns an empty value into "None").
pub const NONE: &str = "-";

fn value(v: &str) -> Option<&str> {
    Some(v.trim()).filter(|v| !v.is_empty() && *v != NONE && *v != "None")
}

/// The tags that record `m`.
pub fn to_tags(project: &str, m: &Marks) -> Vec<(String, String)> {
    vec![
        (active_key(project), m.active.clone().unwrap_or_else(|| NONE.into())),
        (fence_key(project), m.fence.as_ref().map(|f| format!("{} {}", f.region, f.at_unix_ms)).unwrap_or_else(|| NONE.into())),
        (epoch_key(project), m.epoch.to_string()),
    ]
}

/// The state as read from its places: the newest epoch that any answering place holds.
pub fn newest(views: impl IntoIterator<Item = Marks>) -> Marks {
    views.into_iter().max_by_key(|m| m.epoch).unwrap_or_default()
}

/// The region whose Parameter Store decides a change to `next`: the region it makes active.
pub fn deciding_region(cfg: &Config, next: &Marks) -> String {
    next.active.clone().filter(|r| cfg.region(r).is_some()).unwrap_or_else(|| cfg.primary().name.clone())
}

/// `next` as the change after `prev`: one epoch later. None when it changes nothing.
pub fn successor(prev: &Marks, next: Marks) -> Option<Marks> {
    (!prev.same_state(&next)).then(|| Marks { epoch: prev.epoch + 1, ..next })
}

/// The config as the cloud says it is now: the primary role where the marks put it.
pub fn effective(cfg: &Config, m: &Marks) -> Config {
    match &m.active {
        Some(r) if cfg.region(r).is_some() => cfg.with_active(r),
        _ => cfg.clone(),
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "region {region} is fenced: `provision failover` stopped its instances at {at} (unix ms) so that nothing there serves writes\n  \
     fix: run `provision failback` to rebuild it as a standby of {active}, then it can take the primary role again"
)]
pub struct FencedError {
    pub region: String,
    pub at: u64,
    pub active: String,
}

/// `up` and `deploy` must not start or touch a fenced region: only `failback` may.
pub fn refuse_if_fenced(cfg: &Config, m: &Marks) -> Result<(), FencedError> {
    match &m.fence {
        Some(f) => Err(FencedError { region: f.region.clone(), at: f.at_unix_ms, active: effective(cfg, m).active().name.clone() }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_through_tags() {
        let m = Marks { epoch: 3, active: Some("eu-west-1".into()), fence: Some(Fence { region: "us-east-1".into(), at_unix_ms: 42 }) };
        let tags: BTreeMap<String, String> = to_tags("p", &m).into_iter().collect();
        assert_eq!(from_tags("p", &tags), m);
        let cleared: BTreeMap<String, String> = to_tags("p", &Marks::default()).into_iter().collect();
        assert_eq!(from_tags("p", &cleared), Marks::default(), "empty values mean no marks");
        assert_eq!(from_tags("p", &BTreeMap::new()).epoch, 0, "a zone without an epoch tag (written before epochs) is epoch 0");
        assert_eq!(from_tags("other", &tags), Marks::default(), "another project's marks are not ours");
    }

    #[test]
    fn the_newest_epoch_wins_and_a_change_is_one_epoch_later() {
        let at = |epoch, active: Option<&str>| Marks { epoch, active: active.map(str::to_string), fence: None };
        assert_eq!(newest([at(2, Some("b")), at(3, None), at(1, Some("b"))]), at(3, None));
        assert_eq!(newest(Vec::<Marks>::new()), Marks::default(), "no place answered: the state before any failover");
        assert_eq!(successor(&at(3, None), at(0, Some("b"))), Some(at(4, Some("b"))));
        assert_eq!(successor(&at(3, Some("b")), at(0, Some("b"))), None, "the same state is no change");
    }

    #[test]
    fn a_malformed_fence_tag_still_fences() {
        let tags = BTreeMap::from([(fence_key("p"), "garbage".to_string())]);
        assert_eq!(from_tags("p", &tags).fence, Some(Fence { region: "garbage".into(), at_unix_ms: 0 }));
    }
}
