//! One look at the world: the config, the template and one observation of the cloud, joined
//! into everything a command needs. Built here and only here; every command starts from it.

use crate::cloud::{Cloud, CloudError};
use crate::config::Config;
use crate::deploy::inventory::{inventory_partial, Host, Inventory};
use crate::desired::desired;
use crate::keys::{self, KeyError, KeyUse};
use crate::model::{Desired, Observed};
use crate::roles::{self, FencedError};
use crate::template::Template;

/// How much of the cloud must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Every region's API: a dead one is an error (`plan`, `up`, `deploy`, `status`).
    Strict,
    /// A region whose EC2 API does not answer is recorded in `unreachable` and seen empty
    /// (`failover`, `watch`, `drill`: they exist for the day a region is dead).
    Partial,
}

#[derive(Debug, thiserror::Error)]
pub enum LookError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
}

pub struct Situation {
    /// The config as written.
    pub configured: Config,
    /// The config after the failover marks: where the primary role is now.
    pub cfg: Config,
    pub cloud: Cloud,
    pub observed: Observed,
    /// Regions whose EC2 API did not answer (only with [`Look::Partial`]).
    pub unreachable: Vec<(String, CloudError)>,
    pub desired: Desired,
    /// The desired hosts that run now.
    pub inventory: Inventory,
    /// Desired hosts with no running instance (keys `region/instance/role-i`).
    pub missing: Vec<String>,
}

impl Situation {
    /// Connects, observes once, fills `.provision/` from the project's vault in AWS (so this
    /// machine uses the project's key and secrets, never fresh ones) and derives the rest.
    pub async fn look(cfg: &Config, tpl: &Template, look: Look, key: KeyUse) -> Result<Situation, LookError> {
        let cloud = Cloud::connect(cfg).await;
        let observe = async {
            match look {
                Look::Strict => Ok((cloud.observe(cfg).await?, vec![])),
                Look::Partial => cloud.observe_partial(cfg).await,
            }
        };
        // Side by side: a dead region's Parameter Store costs one SDK timeout, not two.
        let (observed, pulled) = tokio::join!(observe, crate::vault::pull(cfg, &cloud));
        let (observed, unreachable) = observed?;
        pulled?;
        Situation::of(cfg, tpl, cloud, observed, unreachable, key)
    }

    /// Copies the newest failover state to the places that hold an older epoch (a copy a
    /// failover could not make while a region or Route53 was down). Returns what it repaired.
    pub async fn repair_marks(&self) -> Result<Vec<String>, CloudError> {
        let behind: Vec<String> = self
            .observed
            .mark_places
            .iter()
            .filter(|p| p.epoch.is_some_and(|e| e < self.observed.marks.epoch))
            .map(|p| p.place.clone())
            .collect();
        if behind.is_empty() {
            return Ok(vec![]);
        }
        let zone = self.observed.zone.as_ref().map(|z| z.id.as_str());
        let failed = self.cloud.copy_marks(&self.configured, zone, &self.observed.marks, None).await;
        match failed.first() {
            Some(f) => Err(CloudError::Other {
                resource: "failover state".into(),
                region: "any".into(),
                message: format!("cannot copy epoch {}: {f}", self.observed.marks.epoch),
            }),
            None => Ok(behind),
        }
    }

    /// The same look with a fresh observation (after a plan changed the cloud).
    pub async fn refresh(self, tpl: &Template, key: KeyUse) -> Result<Situation, LookError> {
        let observed = self.cloud.observe(&self.configured).await?;
        Situation::of(&self.configured, tpl, self.cloud, observed, vec![], key)
    }

    fn of(
        cfg: &Config,
        tpl: &Template,
        cloud: Cloud,
        observed: Observed,
        unreachable: Vec<(String, CloudError)>,
        key: KeyUse,
    ) -> Result<Situation, LookError> {
        let material = keys::public_key(cfg, key)?;
        let eff = roles::effective(cfg, &observed.marks);
        let desired = desired(&eff, tpl, &material);
        let (inventory, missing) = inventory_partial(&eff, &desired, &observed);
        let missing = missing.into_iter().map(|m| m.key).collect();
        Ok(Situation { configured: cfg.clone(), cfg: eff, cloud, observed, unreachable, desired, inventory, missing })
    }

    /// `up` and `deploy` must not start or touch a fenced region: only `failback` may.
    pub fn refuse_if_fenced(&self) -> Result<(), FencedError> {
        roles::refuse_if_fenced(&self.configured, &self.observed.marks)
    }

    /// The hosts to work on: all desired hosts, or the first one that does not run.
    pub fn all_hosts(&self) -> Result<&Inventory, crate::deploy::inventory::MissingHost> {
        match self.missing.first() {
            Some(key) => Err(crate::deploy::inventory::MissingHost { key: key.clone() }),
            None => Ok(&self.inventory),
        }
    }

    /// The running hosts this machine may connect to: on a local cloud, an address without a
    /// lab host would route off this machine, so such hosts are left out.
    pub fn reachable_hosts(&self) -> Vec<Host> {
        let hosts = self.inventory.hosts.iter().cloned();
        if self.cfg.endpoint_url.is_some() {
            hosts.filter(|h| crate::deploy::local_route_guard(h).is_ok()).collect()
        } else {
            hosts.collect()
        }
    }
}
