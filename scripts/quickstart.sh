#!/usr/bin/env bash
# Quick start on a fresh machine: install what is missing, start the local cloud (LocalStack
# and the lab hosts), build, run `provision up` on the shipped regions.toml, print the status.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
localstack/start.sh
cargo build --workspace
localstack/labhost.sh start
./target/debug/provision up
./target/debug/provision status
