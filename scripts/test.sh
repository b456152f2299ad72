#!/usr/bin/env bash
# Runs every test: installs what is missing, starts LocalStack if it is not running (and
# stops it again at the end if it started it), then `cargo test --workspace`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
t0=$(date +%s)
scripts/setup.sh
started=0
if ! curl -fsS --max-time 2 http://127.0.0.1:4566/_localstack/health >/dev/null 2>&1; then
  localstack/start.sh
  started=1
fi
cleanup() {
  if [ "$started" = 1 ]; then localstack/stop.sh; fi
}
trap cleanup EXIT
cargo build --workspace
cargo test --workspace --no-fail-fast
echo "test.sh: all tests done in $(( $(date +%s) - t0 )) s"
