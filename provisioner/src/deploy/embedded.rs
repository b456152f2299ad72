//! The engine binaries built with this `provision` (see build.rs), with their sha256.

use sha2::{Digest, Sha256};

pub const ENGINE_NODE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/engine-node"));
pub const ENGINE_GATEWAY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/engine-gateway"));
const ENGINE_NODE_VERSION: &str = include_str!(concat!(env!("OUT_DIR"), "/engine-node.version"));
const ENGINE_GATEWAY_VERSION: &str = include_str!(concat!(env!("OUT_DIR"), "/engine-gateway.version"));

#[derive(Debug, Clone, serde::Serialize)]
pub struct Embedded {
    pub name: &'static str,
    pub version: &'static str,
    pub bytes: usize,
    pub sha256: String,
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

pub fn list() -> Vec<Embedded> {
    [("engine-node", ENGINE_NODE_VERSION, ENGINE_NODE), ("engine-gateway", ENGINE_GATEWAY_VERSION, ENGINE_GATEWAY)]
        .into_iter()
        .map(|(name, version, b)| Embedded { name, version, bytes: b.len(), sha256: sha256_hex(b) })
        .collect()
}

/// sha256 of a byte string, computed once per distinct embedded binary (they are large, and
/// every host gets them).
pub fn sha256_cached(b: &[u8]) -> String {
    static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static GATEWAY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if std::ptr::eq(b, ENGINE_NODE) {
        NODE.get_or_init(|| sha256_hex(ENGINE_NODE)).clone()
    } else if std::ptr::eq(b, ENGINE_GATEWAY) {
        GATEWAY.get_or_init(|| sha256_hex(ENGINE_GATEWAY)).clone()
    } else {
        sha256_hex(b)
    }
}
