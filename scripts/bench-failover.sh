#!/usr/bin/env bash
# Regional failover benchmarks on a running deployment (LocalStack + lab hosts, after
# `provision up`): planned and unplanned drills, each a failover under order load and a
# failback. Prints one line per run and writes the JSON reports to $out.
# KINDS picks the drills (default "planned unplanned"; "db-leader" powers off the primary
# region's DB leader host instead: the in-region failover under load).
#   scripts/bench-failover.sh [runs]        env: PROVISION (binary), LAB (lab control command), KINDS
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
kinds="${KINDS:-planned unplanned}"
for kind in $kinds; do
  for i in $(seq 1 "$runs"); do
    case "$kind" in
      planned) "$bin" drill --output json --report "$out/$kind-$i.json" >/dev/null 2>"$out/$kind-$i.log" ;;
      unplanned) "$bin" drill --unplanned --lab "$lab" --output json --report "$out/$kind-$i.json" >/dev/null 2>"$out/$kind-$i.log" ;;
      db-leader)
        "$bin" drill --db-leader --lab "$lab" --output json --report "$out/$kind-$i.json" >/dev/null 2>"$out/$kind-$i.log"
        python3 - "$out/$kind-$i.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f'db-leader  {r["old_leader"]} -> {r["new_leader"]}  power-off -> next ack {r["power_off_to_next_ack_ms"]} ms  '
      f'client outage {r["client_rto_ms"]} ms  acked {r["orders_acked"]}  missing {r["orders_missing"]}  ok {r["ok"]}')
PY
        sleep 30 # the old leader rejoins as a replica before the next run
        continue ;;
      *) echo "unknown kind $kind" >&2; exit 2 ;;
    esac
    summary "$kind" "$out/$kind-$i.json"
  done
done
