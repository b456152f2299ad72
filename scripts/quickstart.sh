#!/usr/bin/env bash
# Quick start on a fresh machine: install what is missing, build, start the local cloud
# (LocalStack, its API front and DNS server, the lab hosts), run `provision up` on the shipped
# regions.toml, print the status and a real DNS answer for the API name.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
cargo build --workspace
localstack/start.sh
localstack/labhost.sh start
./target/debug/provision up
./target/debug/provision status
echo "DNS (the lab's Route53 data plane): dig @127.0.0.1 -p 1053 api.exa.example.internal"
dig @127.0.0.1 -p 1053 +noall +answer api.exa.example.internal A
