#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, starts the local cloud (LocalStack and its
# API front) if it is not running (and stops it again at the end if it started it), then
# `cargo test --workspace`, then the engine's poison-order test (a test-only feature). The front throttles 20 % of every service's calls and keeps EC2
# eventually consistent (2 s), as AWS can be: the whole suite must pass so.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
t0=$(date +%s)
scripts/setup.sh
cargo build --workspace
started=0
if ! curl -fsS --max-time 2 http://127.0.0.1:4567/_front/health >/dev/null 2>&1; then
  localstack/start.sh
  started=1
fi
curl -fsS --max-time 5 -X PUT -H 'content-type: application/json' \
  -d '{"throttle_all":0.2,"consistency_ms":2000}' http://127.0.0.1:4567/_front/settings >/dev/null
cleanup() {
  if [ "$started" = 1 ]; then localstack/stop.sh; fi
}
trap cleanup EXIT
cargo test --workspace --no-fail-fast
# The poison-order test needs a test-only engine feature (an order that trips an assertion);
# run last, as it rebuilds the debug engine binaries with it.
cargo test -p engine --features poison-test --test poison_order
# Last: the IAM policy against every call provision made through the front during the suite.
cargo test -p provisioner --test iam_policy -- --ignored
echo "test.sh: all tests done in $(( $(date +%s) - t0 )) s"
