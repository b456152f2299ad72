//! The facade: every command as a library call returning a serializable report, which the
//! CLI prints as text or JSON. Each command starts from one [`Situation`] (one look at the
//! world); the modules below do the work. `main.rs` calls nothing else.

mod infra;
mod regional;
mod status;

pub use infra::{deploy, down, plan, up, up_all, ApplyReport, FullUpReport, PlanReport, StepView};
pub use regional::{drill, drill_db_leader, failback, failover, watch};
pub use status::{status, StatusReport};

use crate::config::ConfigError;
use crate::keys::KeyError;
use crate::plan::PlanError;

pub use crate::situation::{Look, Situation};

pub const CONCURRENCY_DEFAULT: u16 = 32;

/// The config and its template, validated together: everything that can be refused is
/// refused here, before any command makes its first API call.
pub fn load(path: Option<&std::path::Path>) -> Result<(crate::config::Config, crate::template::Template), ConfigError> {
    let cfg = crate::config::Config::load(path)?;
    let tpl = crate::template::Template::load(&cfg)?;
    crate::desired::check_fits(&cfg, &tpl)?;
    Ok((cfg, tpl))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Cloud(#[from] crate::cloud::CloudError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
    #[error(transparent)]
    Fenced(#[from] crate::roles::FencedError),
    #[error(transparent)]
    Preflight(#[from] crate::preflight::PreflightError),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
}

impl From<crate::situation::LookError> for Error {
    fn from(e: crate::situation::LookError) -> Error {
        match e {
            crate::situation::LookError::Cloud(e) => Error::Cloud(e),
            crate::situation::LookError::Key(e) => Error::Key(e),
            crate::situation::LookError::Vault(e) => Error::Vault(e),
        }
    }
}

pub struct Opts {
    pub concurrency: usize,
    pub quiet: bool,
    /// Leave the Route53 failover records for later (`up` writes them after the deploy has
    /// made `/health` green, so the API name never points at hosts that cannot serve).
    pub defer_records: bool,
}
