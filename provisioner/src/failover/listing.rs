//! What a fence or a failback acts on: a fresh listing of the old region's instances, taken
//! right before, never an earlier observation. A region whose Describe calls failed was
//! observed as empty; stopping or terminating "what was observed" would then do nothing and
//! still report success, and the old hosts could come back as a second primary.

use crate::model::{Desired, Found, InstanceAttrs};
use crate::situation::Situation;

/// The region's instances as EC2 lists them now, and the desired hosts it does not list.
pub(super) struct Listing {
    /// Instances not shutting down: what a fence stops or a failback terminates.
    pub instances: Vec<Found<InstanceAttrs>>,
    /// Desired host keys with no listed instance (terminated, or not listed yet).
    pub missing: Vec<String>,
}

impl Listing {
    /// The ids in one of `states`.
    pub fn ids_in(&self, states: &[&str]) -> Vec<String> {
        self.instances.iter().filter(|i| states.contains(&i.attrs.state.as_str())).map(|i| i.id.clone()).collect()
    }
}

/// Lists `region` again through its EC2 API.
pub(super) async fn fresh(w: &Situation, region: &str) -> Result<Listing, String> {
    let listed = w.cloud.observe_instances(region).await.map_err(|e| e.to_string())?;
    Ok(compare(&wanted_keys(&w.desired, region), listed))
}

fn wanted_keys(d: &Desired, region: &str) -> Vec<String> {
    d.regions.iter().filter(|r| r.name == region).flat_map(|r| &r.hosts).map(|h| h.key.clone()).collect()
}

/// Pure: the listing against the host keys wanted in the region.
fn compare(wanted: &[String], listed: Vec<Found<InstanceAttrs>>) -> Listing {
    let instances: Vec<Found<InstanceAttrs>> = listed.into_iter().filter(|i| i.attrs.state != "shutting-down").collect();
    let missing = wanted.iter().filter(|k| !instances.iter().any(|i| &i.key == *k)).cloned().collect();
    Listing { instances, missing }
}

/// The refusal when the listing is not complete: what is missing and how to go on.
pub(super) fn incomplete(region: &str, what: &str, l: &Result<Listing, String>) -> Option<String> {
    match l {
        Err(e) => Some(format!("{region}'s instances cannot be listed now ({e}), so {what} would act on an old observation")),
        Ok(l) if !l.missing.is_empty() => Some(format!(
            "{region}'s fresh listing shows {} instance(s) but not {} desired host(s): {}. A host EC2 does not list cannot be {what}; it may still be serving",
            l.instances.len(),
            l.missing.len(),
            l.missing.join(", ")
        )),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(key: &str, state: &str) -> Found<InstanceAttrs> {
        Found { key: key.into(), id: format!("i-{key}"), attrs: InstanceAttrs { state: state.into(), ..Default::default() } }
    }

    #[test]
    fn an_unlisted_or_shutting_down_host_is_missing_and_the_fence_refuses() {
        let wanted = vec!["r/app-0".to_string(), "r/app-1".into(), "r/db-0".into()];
        let l = compare(&wanted, vec![inst("r/app-0", "running"), inst("r/app-1", "shutting-down")]);
        assert_eq!(l.missing, ["r/app-1", "r/db-0"]);
        let why = incomplete("r", "stopped", &Ok(l)).unwrap();
        assert!(why.contains("not 2 desired host(s): r/app-1, r/db-0"), "{why}");
        assert!(incomplete("r", "stopped", &Err("timed out".into())).unwrap().contains("cannot be listed now (timed out)"));
    }

    #[test]
    fn a_complete_listing_stops_what_runs() {
        let wanted = vec!["r/app-0".to_string(), "r/db-0".into()];
        let l = compare(&wanted, vec![inst("r/app-0", "running"), inst("r/db-0", "stopped")]);
        assert!(incomplete("r", "stopped", &Ok(Listing { instances: l.instances.clone(), missing: l.missing.clone() })).is_none());
        assert_eq!(l.ids_in(&["pending", "running", "stopping"]), ["i-r/app-0"]);
    }
}
