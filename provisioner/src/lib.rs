//! `provision`: builds and removes a two-region exchange on AWS (or LocalStack).
//!
//! Layers: `config`/`template` (validated input) -> `desired` -> `plan`/`teardown` (pure)
//! -> `exec` (runs a plan's steps) -> `cloud` (the only module that talks to AWS).

pub mod action;
pub mod config;
pub mod desired;
pub mod locate;
pub mod model;
pub mod plan;
pub mod roles;
pub mod teardown;
pub mod template;
pub mod cloud;
pub mod exec;
pub mod keys;
pub mod ops;
pub mod progress;
pub mod render;
pub mod ssh;
pub mod deploy;
pub mod failover;
pub mod drill;
pub mod watch;
