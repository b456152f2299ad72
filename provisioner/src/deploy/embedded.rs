//! The engine binaries built with this `provision` (see build.rs), with their sha256.

use sha2::{Digest, Sha256};

pub static ENGINE_NODE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/engine-node"));
pub static ENGINE_GATEWAY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/engine-gateway"));
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

const ENGINE_NODE_SHA256: &str = include_str!(concat!(env!("OUT_DIR"), "/engine-node.sha256"));
const ENGINE_GATEWAY_SHA256: &str = include_str!(concat!(env!("OUT_DIR"), "/engine-gateway.sha256"));

pub fn list() -> Vec<Embedded> {
    [("engine-node", ENGINE_NODE_VERSION, ENGINE_NODE), ("engine-gateway", ENGINE_GATEWAY_VERSION, ENGINE_GATEWAY)]
        .into_iter()
        .map(|(name, version, b)| Embedded { name, version, bytes: b.len(), sha256: sha256_cached(b) })
        .collect()
}

/// sha256 of a byte string; for the embedded binaries, the one build.rs computed (they are
/// large, and every host gets them).
pub fn sha256_cached(b: &[u8]) -> String {
    if std::ptr::eq(b, ENGINE_NODE) {
        ENGINE_NODE_SHA256.to_string()
    } else if std::ptr::eq(b, ENGINE_GATEWAY) {
        ENGINE_GATEWAY_SHA256.to_string()
    } else {
        sha256_hex(b)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_time_hashes_match_the_embedded_bytes() {
        for (b, sha) in [(super::ENGINE_NODE, super::ENGINE_NODE_SHA256), (super::ENGINE_GATEWAY, super::ENGINE_GATEWAY_SHA256)] {
            assert_eq!(super::sha256_hex(b), sha);
        }
    }
}
