//! labfront: an AWS-faithful front before LocalStack. See localstack/README.md ("The API front").
//!
//! One process, three parts sharing one [`Front`]:
//! - the API front (`proxy`): passes signed AWS calls to LocalStack, and on the way applies
//!   the faults of `faults`, the eventual consistency of `consistency` and AWS's validations
//!   of `validate`; `control` serves `/_front/*` (faults, settings) on the same port;
//! - Route53's health checkers (`checkers`): probe every health check LocalStack holds and
//!   answer `GetHealthCheckStatus`;
//! - the DNS data plane (`zones` reads the hosted zones, `dns` answers queries).

pub mod aws;
pub mod backend;
pub mod calls;
pub mod checkers;
pub mod consistency;
pub mod control;
pub mod dns;
pub mod faults;
pub mod peering;
pub mod proxy;
pub mod quotas;
pub mod run;
pub mod validate;
pub mod xml;
pub mod zones;

pub use run::{run, Opts};
