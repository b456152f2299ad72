//! The fenced region's side of `failback`: its instances terminated, their host keys
//! forgotten, the fence mark cleared. `ops::failback` then rebuilds it (`up` + `deploy`) and
//! moves the primary role home with a planned switchover.

use super::*;
use crate::model::Marks;
use crate::situation::Situation;

#[derive(Debug, Clone, serde::Serialize)]
pub struct FailbackReport {
    /// "fresh clone on new instances" when the region was fenced, else "none".
    pub rebuild: String,
    pub rebuild_ms: u64,
    pub switchover: Option<FailoverReport>,
    pub notes: Vec<String>,
}

/// Terminates a fenced region's instances (their data may hold writes the survivors never
/// saw: the region is rebuilt from a fresh clone, not rewound), forgets their host keys and
/// clears the fence. Nothing to do when no region is fenced. What it terminates comes from a
/// fresh listing that must show every desired host of the region (else only `force` goes on).
pub async fn unfence(w: &Situation, quiet: bool, force: bool) -> Result<(), FailoverError> {
    let Some(f) = &w.observed.marks.fence else { return Ok(()) };
    w.cloud.ec2_answers(&f.region).await.map_err(|e| {
        refused(format!("{} is fenced and its EC2 API does not answer: {e}", f.region), "retry when the region's API answers")
    })?;
    let listing = super::listing::fresh(w, &f.region).await;
    if let (Some(gap), false) = (super::listing::incomplete(&f.region, "terminated", &listing), force) {
        return Err(refused(
            format!("{gap}; clearing the fence now would let it serve"),
            "retry when the API lists every host, or pass --force after making sure the missing hosts are gone",
        ));
    }
    let instances = listing.map(|l| l.instances).unwrap_or_default();
    let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
    let addrs: Vec<crate::ssh::Target> = instances
        .iter()
        .flat_map(|i| [i.attrs.private_ip.clone(), i.attrs.public_ip.clone()])
        .flatten()
        .map(|ip| crate::ssh::Target::new(ip, 22))
        .collect();
    if !quiet {
        eprintln!("failback: terminating {} fenced instance(s) in {} (their data may hold writes the survivors never saw: a fresh clone, not pg_rewind)", ids.len(), f.region);
    }
    w.cloud.terminate(&f.region, &ids).await?;
    crate::ssh::KnownHosts::new(crate::keys::key_dir(&w.cfg).join("known_hosts"))
        .forget(&addrs)
        .map_err(|e| refused(format!("cannot update known_hosts: {e}"), "check the file's permissions"))?;
    // The vault's copy too: every look replaces the local known_hosts with it, so the rebuild
    // would pin the old keys again, and EC2 hands a rebuilt host its predecessor's address.
    let failed = crate::vault::push(&w.configured, &w.cloud).await.map_err(|e| super::FailoverError::Vault(Box::new(e)))?;
    if !failed.is_empty() && !quiet {
        eprintln!("failback: the forgotten host keys are not yet out of the vault in: {}", failed.join("; "));
    }
    let next = Marks { epoch: 0, active: w.observed.marks.active.clone(), fence: None };
    let written = w.cloud.write_marks(&w.configured, zone_id(w), &w.observed.marks, next).await?;
    if !written.copies_failed.is_empty() && !quiet {
        eprintln!("failback: the fence is cleared; not yet copied to: {}", written.copies_failed.join("; "));
    }
    Ok(())
}

/// The passive region must be rebuilt: it was fenced, or an earlier failback stopped between
/// the termination and the rebuild (its hosts are missing).
pub fn needs_rebuild(w: &Situation) -> bool {
    let prefix = format!("{}/", w.cfg.passive().name);
    w.observed.marks.fence.is_some() || w.missing.iter().any(|k| k.starts_with(&prefix))
}
