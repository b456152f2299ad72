//! `provision`: builds and removes a two-region exchange on AWS (or LocalStack).
//!
//! Layers: `config`/`template` (validated input) -> `desired` -> `plan`/`teardown` (pure)
//! -> `exec` (runs a plan's steps) -> `cloud` (the only module that talks to AWS).

pub mod action;
pub mod cloud;
pub mod config;
pub mod dedupe;
pub mod deploy;
pub mod desired;
pub mod drill;
pub mod exec;
pub mod failover;
pub mod image;
pub mod keys;
pub mod locate;
pub mod model;
pub mod ops;
pub mod plan;
pub mod preflight;
pub mod progress;
pub mod render;
pub mod roles;
pub mod situation;
pub mod ssh;
pub mod teardown;
pub mod template;
pub mod tls;
pub mod userdata;
pub mod vault;
pub mod watch;
