//! Builds the engine binaries (`engine-node`, `engine-gateway`) with the same cargo, always
//! optimized (debug engines burn a core between them when idle on a small lab), into a
//! target dir of their own, and copies them to OUT_DIR, where `deploy::embedded` includes
//! them: `provision` carries what it deploys.
//!
//! `PROVISION_ENGINE_BIN_DIR=<dir>` embeds prebuilt binaries from <dir> instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

const BINS: [&str; 2] = ["engine-node", "engine-gateway"];

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    println!("cargo:rerun-if-env-changed=PROVISION_ENGINE_BIN_DIR");
    for p in ["engine/src", "engine/config/src", "engine/Cargo.toml", "engine/config/Cargo.toml", "engine/build.rs"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }

    let bin_dir = match std::env::var_os("PROVISION_ENGINE_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => build_engine(&root),
    };
    for b in BINS {
        let src = bin_dir.join(b);
        std::fs::copy(&src, out.join(b)).unwrap_or_else(|e| panic!("cannot copy {}: {e}", src.display()));
        // Its own `--version`, so `provision version` can show it without running it.
        let v =
            Command::new(&src).arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
        std::fs::write(out.join(format!("{b}.version")), v).expect("write version");
        // Its sha256, hashed here once instead of at every `provision` run (and per host).
        let bytes = std::fs::read(&src).expect("read engine binary");
        let sha: String = sha2::Sha256::digest(&bytes).iter().map(|x| format!("{x:02x}")).collect();
        std::fs::write(out.join(format!("{b}.sha256")), sha).expect("write sha256");
    }
}

fn build_engine(root: &Path) -> PathBuf {
    let target_dir = root.join("target").join("embedded");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(["build", "-p", "engine", "--bins", "--release", "--target-dir"]).arg(&target_dir);
    // Do not inherit the outer build's flags and jobserver meant for this build script.
    for v in ["CARGO_TARGET_DIR", "CARGO_ENCODED_RUSTFLAGS", "CARGO_MAKEFLAGS", "RUSTC_WORKSPACE_WRAPPER", "CARGO_BUILD_TARGET_DIR"] {
        cmd.env_remove(v);
    }
    let status = cmd.status().expect("run cargo to build the engine binaries");
    assert!(status.success(), "building the engine binaries failed");
    target_dir.join("release")
}
