#!/usr/bin/env bash
# Quick start on a fresh machine: install what is missing, start the local cloud (LocalStack
# and the lab hosts), build, run `provision up` on the shipped regions.toml, print the status.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
localstack/start.sh
cargo build --workspace
if [ -x localstack/labhost.sh ]; then localstack/labhost.sh start regions.toml; fi
./target/debug/provision up
./target/debug/provision status
