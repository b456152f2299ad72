//! The failover state in each region's SSM Parameter Store, and the write that changes it
//! everywhere. One parameter per epoch, `/provision/<project>/failover/<epoch, 10 digits>`,
//! created with `Overwrite=false` and never changed: SSM refuses a second create of the same
//! name (`ParameterAlreadyExists`), which makes the create a compare-and-set on the epoch.
//! The rules that make three places safe are in `roles`.

use aws_sdk_ssm::types::ParameterType;

use super::{Cloud, CloudError};
use crate::config::Config;
use crate::model::{Fence, MarkPlace, Marks};

/// Epochs are zero-padded so that names sort as numbers.
const EPOCH_DIGITS: usize = 10;

/// One epoch as stored (JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Record {
    epoch: u64,
    active: Option<String>,
    fence: Option<Fence>,
}

impl From<&Marks> for Record {
    fn from(m: &Marks) -> Record {
        Record { epoch: m.epoch, active: m.active.clone(), fence: m.fence.clone() }
    }
}

/// What a change of the failover state wrote: the epoch, the region whose store decided it,
/// and the copies that did not land (repaired by the next `up` or `failback`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MarksWrite {
    pub marks: Marks,
    pub decided_in: String,
    pub copies_failed: Vec<String>,
}

impl Cloud {
    fn state_path(&self) -> String {
        format!("/provision/{}/failover/", self.project)
    }

    fn state_name(&self, epoch: u64) -> String {
        format!("{}{epoch:0EPOCH_DIGITS$}", self.state_path())
    }

    /// The newest epoch in `region`'s Parameter Store (the state before any failover if none).
    pub(crate) async fn state_in(&self, region: &str) -> Result<Marks, CloudError> {
        let c = self.ssm(region)?;
        let mut pages = c.get_parameters_by_path().path(self.state_path()).recursive(false).into_paginator().send();
        let mut newest: Option<Record> = None;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err_in("ssm", "GetParametersByPath", &self.state_path(), region, e))?;
            for p in page.parameters() {
                let r: Record = serde_json::from_str(p.value().unwrap_or_default()).map_err(|e| CloudError::Other {
                    resource: p.name().unwrap_or_default().into(),
                    region: region.into(),
                    message: format!("not a failover state record ({e}); it was not written by provision: remove it"),
                })?;
                if newest.as_ref().is_none_or(|n| r.epoch > n.epoch) {
                    newest = Some(r);
                }
            }
        }
        Ok(newest.map(|r| Marks { epoch: r.epoch, active: r.active, fence: r.fence }).unwrap_or_default())
    }

    /// Creates `m`'s epoch in `region`. Ok(None) when created; Ok(Some(theirs)) when that epoch
    /// exists already, with what it holds.
    async fn create_state(&self, region: &str, m: &Marks) -> Result<Option<String>, CloudError> {
        let c = self.ssm(region)?;
        let name = self.state_name(m.epoch);
        let value = serde_json::to_string(&Record::from(m)).expect("plain data");
        let r = c.put_parameter().name(&name).value(&value).r#type(ParameterType::String).overwrite(false).send().await;
        match r {
            Ok(_) => Ok(None),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_already_exists()) => {
                let theirs =
                    c.get_parameter().name(&name).send().await.map_err(|e| self.err_in("ssm", "GetParameter", &name, region, e))?;
                Ok(Some(theirs.parameter().and_then(|p| p.value()).unwrap_or_default().to_string()))
            }
            Err(e) => Err(self.err_in("ssm", "PutParameter", &name, region, e)),
        }
    }

    /// Changes the failover state from `prev` (as this run read it) to `next`: creates epoch
    /// `prev.epoch + 1` in the deciding region's store (refused with [`CloudError::Raced`] when
    /// another run created it first), then copies it to the other region's store and to the
    /// zone's tags (when `zone_id` is known). A copy that fails is reported, not fatal: the
    /// decision is made. Nothing is written when `next` is the state already.
    pub async fn write_marks(&self, cfg: &Config, zone_id: Option<&str>, prev: &Marks, next: Marks) -> Result<MarksWrite, CloudError> {
        let decided_in = crate::roles::deciding_region(cfg, &next);
        let Some(next) = crate::roles::successor(prev, next) else {
            return Ok(MarksWrite { marks: prev.clone(), decided_in, copies_failed: vec![] });
        };
        if let Some(theirs) = self.create_state(&decided_in, &next).await? {
            return Err(CloudError::Raced { resource: self.state_name(next.epoch), region: decided_in, epoch: next.epoch, theirs });
        }
        let copies_failed = self.copy_marks(cfg, zone_id, &next, Some(&decided_in)).await;
        Ok(MarksWrite { marks: next, decided_in, copies_failed })
    }

    /// Writes `m` to every place except `skip`; returns the places that failed, with why.
    /// A store that already holds `m`'s epoch with the same state is fine.
    pub async fn copy_marks(&self, cfg: &Config, zone_id: Option<&str>, m: &Marks, skip: Option<&str>) -> Vec<String> {
        let mut failed = Vec::new();
        for r in cfg.regions.iter().filter(|r| Some(r.name.as_str()) != skip) {
            match self.create_state(&r.name, m).await {
                Ok(None) => {}
                Ok(Some(theirs)) if serde_json::from_str::<Record>(&theirs).ok().as_ref() == Some(&Record::from(m)) => {}
                Ok(Some(theirs)) => failed.push(format!("ssm {}: epoch {} there holds {theirs}", r.name, m.epoch)),
                Err(e) => failed.push(format!("ssm {}: {e}", r.name)),
            }
        }
        match zone_id {
            Some(z) => {
                if let Err(e) = self.set_marks(z, m).await {
                    failed.push(format!("zone tags: {e}"));
                }
            }
            None => failed.push("zone tags: the hosted zone was not seen (Route53's control plane did not answer)".into()),
        }
        failed
    }

    /// Reads the state from every place that answers: the newest epoch wins. A place that does
    /// not answer is named in the places list (a strict look fails on it instead).
    /// The third value names each store that did not answer (`ssm <region>`) with its error.
    #[allow(clippy::type_complexity)]
    pub(crate) async fn observe_marks(
        &self,
        cfg: &Config,
        zone: Option<Result<Marks, CloudError>>,
    ) -> (Marks, Vec<MarkPlace>, Vec<(String, CloudError)>) {
        let stores =
            futures::future::join_all(cfg.regions.iter().map(|r| async move { (r.name.clone(), self.state_in(&r.name).await) })).await;
        let mut views = Vec::new();
        let mut places = Vec::new();
        let mut errors = Vec::new();
        let mut note = |place: String, v: Result<Marks, CloudError>| match v {
            Ok(m) => {
                places.push(MarkPlace { place, epoch: Some(m.epoch), error: None });
                views.push(m);
            }
            Err(e) => {
                places.push(MarkPlace { place: place.clone(), epoch: None, error: Some(e.to_string()) });
                errors.push((place, e));
            }
        };
        for (region, v) in stores {
            note(format!("ssm {region}"), v);
        }
        if let Some(z) = zone {
            note("zone tags".into(), z);
        }
        errors.retain(|(place, _)| place.starts_with("ssm "));
        (crate::roles::newest(views), places, errors)
    }
}
