#!/usr/bin/env bash
# Stops the API front and the LocalStack that start.sh started (its whole process group), and nothing else.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${LOCALSTACK_STATE_DIR:-$here/state}"
pidfile="$state/localstack.pid"
"$here/front.sh" stop
[ -f "$pidfile" ] || { echo "localstack: not running (no pid file)"; exit 0; }
pid="$(cat "$pidfile")"
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL -- "-$pid" 2>/dev/null || true
fi
rm -f "$pidfile"
echo "localstack: stopped"
