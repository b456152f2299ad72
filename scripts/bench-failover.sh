#!/usr/bin/env bash
# Regional failover benchmarks on a running deployment (LocalStack + lab hosts, after
# `provision up`): planned and unplanned drills, each a failover under order load and a
# failback. Prints one line per run and writes the JSON reports to $out.
#   scripts/bench-failover.sh [runs]        env: PROVISION (binary), LAB (lab control command)
set -euo pipefail
runs="${1:-3}"
bin="${PROVISION:-target/debug/provision}"
lab="${LAB:-localstack/labhost.sh}"
out="${OUT:-target/bench-failover}"
mkdir -p "$out"
summary() {
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
steps = {s["step"]: s["duration_ms"] for s in r["failover"]["steps"]}
print(f'{sys.argv[1]:<10} ladder RTO {r["rto_ms"]:>6} ms  client RTO {r["client_rto_ms"]:>6} ms  '
      f'acked {r["orders_acked"]:>4}  missing {r["orders_missing"]}  ok {r["ok"]}  '
      f'promote {steps.get("promote DR database")} ms  failback {r["steps"][-2]["duration_ms"]} ms')
PY
}
for i in $(seq 1 "$runs"); do
  "$bin" drill --output json --report "$out/planned-$i.json" >/dev/null 2>"$out/planned-$i.log"
  summary planned "$out/planned-$i.json"
done
for i in $(seq 1 "$runs"); do
  "$bin" drill --unplanned --lab "$lab" --output json --report "$out/unplanned-$i.json" >/dev/null 2>"$out/unplanned-$i.log"
  summary unplanned "$out/unplanned-$i.json"
done
