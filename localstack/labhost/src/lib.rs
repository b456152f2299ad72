//! labhost: every LocalStack EC2 instance in the configured VPC CIDRs becomes a real lab host
//! (network + mount + pid + uts namespaces, sshd on its private IP), with fault injection.

pub mod clean;
pub mod cmd;
pub mod config;
pub mod control;
pub mod daemon;
pub mod ec2;
pub mod faults;
pub mod front;
pub mod host;
pub mod hostfiles;
pub mod image;
pub mod model;
pub mod names;
pub mod net;
pub mod owner;
pub mod plan;
pub mod status;
