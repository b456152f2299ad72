#!/usr/bin/env bash
# How fast `provision watch` confirms a dead primary region (from here AND from the second
# vantage point), on a running lab deployment. Each run: watch (no auto-failover) for a few
# seconds, cut every primary-region host off the network (lab `isolate`), read the time of
# the confirmation from watch's JSON summary, heal. Prints blackout -> confirmed per run.
#   scripts/bench-watch.sh [runs]     env: PROVISION, LAB, PRIMARY (region), FAILURES
set -euo pipefail
runs="${1:-5}"
bin="${PROVISION:-target/debug/provision}"
lab="${LAB:-localstack/labhost.sh}"
primary="${PRIMARY:-us-east-1}"
failures="${FAILURES:-3}"
out="${OUT:-target/bench-watch}"
mkdir -p "$out"
hosts=$("$lab" --output json status | python3 -c "import json,sys; s=json.load(sys.stdin); print(' '.join(h['ip'] for h in s['hosts'] if h['region']=='$primary'))")
for i in $(seq 1 "$runs"); do
  "$bin" watch --failures "$failures" --duration-s 12 --output json >"$out/watch-$i.jsonl" 2>/dev/null &
  pid=$!
  sleep 3.$((RANDOM % 10))
  t0=$(date +%s%3N)
  for h in $hosts; do "$lab" fault isolate "$h" >/dev/null; done
  wait "$pid"
  "$lab" heal all >/dev/null
  python3 - "$out/watch-$i.jsonl" "$t0" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
summary = [l for l in lines if l.get("event") == "summary"][-1]
t0 = int(sys.argv[2])
c = summary.get("confirmed_down_unix_ms")
print(f"cut at {t0}: confirmed dead {c - t0 if c else None} ms later (first failed probe -> confirmed {summary.get('detected_after_ms')} ms)")
PY
  sleep 4
done
