#!/usr/bin/env bash
# The API front's benchmarks (LocalStack on 127.0.0.1:4566 and the front on 127.0.0.1:4567,
# started by localstack/start.sh, must be running). About 3-4 minutes after the build:
#   (a) what the front adds per call: 500 DescribeVpcs direct to LocalStack, then through the
#       front, p50/p99 (examples/front_latency.rs, a few seconds);
#   (b) DNS answer latency: 2000 UDP queries of a failover A record, one at a time, p50/p99
#       (examples/dns_failover_time.rs --latency, ~10 s);
#   (c) DNS failover time: a health check's target stops -> the answer moves to SECONDARY,
#       and back once it restarts; RequestInterval 10, FailureThreshold 3, 3 runs and the
#       medians (examples/dns_failover_time.rs, ~1 min a run).
# (b) and (c) start their own labfront (same build, free ports) and their own zone, check and
# target on 127.0.0.0/8, deleted at the end. For (a) the running front's throttle_all and
# consistency_ms are set to 0, and put back as they were on exit (also on error or Ctrl-C).
#   scripts/bench-front.sh            env: CARGO_TARGET_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
front=http://127.0.0.1:4567
target_dir="${CARGO_TARGET_DIR:-target}"

saved="$(curl -fsS --max-time 5 "$front/_front/faults")" || {
  echo "bench-front: no front answers on $front; start it: localstack/start.sh" >&2
  exit 1
}
restore="$(python3 -c 'import json, sys; s = json.load(sys.stdin); print(json.dumps({k: s[k] for k in ("throttle_all", "consistency_ms")}))' <<<"$saved")"
put_settings() { curl -fsS --max-time 5 -X PUT -H 'content-type: application/json' -d "$1" "$front/_front/settings" >/dev/null; }
restore_settings() {
  put_settings "$restore" && echo "front settings restored: $restore" || echo "bench-front: could not restore the front's settings $restore" >&2
}
trap restore_settings EXIT
trap 'exit 130' INT TERM
put_settings '{"throttle_all":0,"consistency_ms":0}'

cargo build -q -p labfront --bin labfront --examples

echo "== (a) API latency, direct vs through the front"
cargo run -q -p labfront --example front_latency -- 500
echo "== (b) DNS answer latency (own labfront)"
cargo run -q -p labfront --example dns_failover_time -- --labfront "$target_dir/debug/labfront" --latency 2000 --runs 0
echo "== (c) DNS failover time (own labfront)"
cargo run -q -p labfront --example dns_failover_time -- --labfront "$target_dir/debug/labfront" --runs 3
