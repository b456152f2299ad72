#!/usr/bin/env bash
# The fault suite's benchmark run (issue 13): every case of tests/faults.rs, the leader
# isolation five times, on its own deployment (LocalStack must be running; the test starts
# its own lab hosts). Prints one line per case: longest gap between acknowledgements, time
# from the heal until every member of both regions holds the same orders and balances, and
# acknowledged orders lost (must be 0). Full log: target/bench-faults.log.
#   scripts/bench-faults.sh            env: FAULT_FILTER (only the cases whose name contains it)
set -euo pipefail
cd "$(dirname "$0")/.."
log=target/bench-faults.log
mkdir -p target
status=0
FAULTS=all cargo test -p provisioner --test faults -- --nocapture >"$log" 2>&1 || status=$?
grep '^FAULT-CASE' "$log" | sed 's/^FAULT-CASE //' || true
[ "$status" = 0 ] || { echo "bench-faults: the suite failed (exit $status); see $log" >&2; exit "$status"; }
