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
#   (d) `provision up --infra-only` wall time (compact, then `down`) with the endpoint set to
#       LocalStack directly vs to the front, alternating, UP_RUNS (3) each, medians.
#   scripts/bench-front.sh            env: CARGO_TARGET_DIR, UP_RUNS, PARTS (default abcd)
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

parts="${PARTS:-abcd}"
if [[ $parts == *a* ]]; then
echo "== (a) API latency, direct vs through the front"
cargo run -q -p labfront --example front_latency -- 500
fi
if [[ $parts == *b* ]]; then
echo "== (b) DNS answer latency (own labfront)"
cargo run -q -p labfront --example dns_failover_time -- --labfront "$target_dir/debug/labfront" --latency 2000 --runs 0
fi
if [[ $parts == *c* ]]; then
echo "== (c) DNS failover time (own labfront)"
cargo run -q -p labfront --example dns_failover_time -- --labfront "$target_dir/debug/labfront" --runs 3
fi
[[ $parts == *d* ]] || exit 0
echo "== (d) provision up --infra-only + down (compact), direct to LocalStack vs through the front (throttle and consistency off), ${UP_RUNS:-3} runs each, alternating"
cargo build -q -p provisioner
dir="$(mktemp -d)"
trap 'rm -rf "$dir"; restore_settings' EXIT
for endpoint in 4566 4567; do
  sed -e 's#^project = "exa"#project = "bench'"$endpoint"'"#' -e 's#exa.example.internal#bench'"$endpoint"'.example.internal#g' \
    -e 's#^url = "http://127.0.0.1:4567"#url = "http://127.0.0.1:'"$endpoint"'"#' regions.toml > "$dir/$endpoint.toml"
done
for i in $(seq 1 "${UP_RUNS:-3}"); do
  for endpoint in 4566 4567; do
    t0=$(date +%s%3N)
    target/debug/provision --config "$dir/$endpoint.toml" up --infra-only >"$dir/out" 2>&1 || { cat "$dir/out" >&2; exit 1; }
    t1=$(date +%s%3N)
    target/debug/provision --config "$dir/$endpoint.toml" down >"$dir/out" 2>&1 || { cat "$dir/out" >&2; exit 1; }
    echo "run $i :$endpoint up -> $(( t1 - t0 )) ms"
  done
done | tee "$dir/up.txt"
python3 - "$dir/up.txt" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.search(r":(\d+) up -> (\d+) ms", line)
    if m:
        runs.setdefault(m.group(1), []).append(int(m.group(2)))
d, f = statistics.median(runs["4566"]), statistics.median(runs["4567"])
print(f"up --infra-only median: direct {d:.0f} ms, through the front {f:.0f} ms ({100 * (f - d) / d:+.1f} %)")
PY
