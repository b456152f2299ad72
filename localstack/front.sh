#!/usr/bin/env bash
# The lab's API front (localstack/front, binary labfront) before LocalStack: AWS's faults,
# eventual consistency and validations, Route53's health checkers and a DNS server.
#   localstack/front.sh start   background; waits until /_front/health answers
#   localstack/front.sh stop    SIGTERM, wait; every fault is gone with the process
# Env: LABFRONT_BIN (default target/release/labfront, else target/debug/labfront),
#      LABFRONT_THROTTLE_ALL (default 0), LABFRONT_CONSISTENCY_MS (default 0),
#      LABFRONT_DNS_LISTEN (default 127.0.0.1:1053), LOCALSTACK_STATE_DIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
state="${LOCALSTACK_STATE_DIR:-$here/state}"
pidfile="$state/labfront.pid"
log="$state/labfront.log"
url="http://127.0.0.1:4567/_front/health"

bin="${LABFRONT_BIN:-}"
if [ -z "$bin" ]; then
  for candidate in "$root/target/release/labfront" "$root/target/debug/labfront"; do
    if [ -x "$candidate" ]; then bin="$candidate"; break; fi
  done
fi

alive() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
  start)
    mkdir -p "$state"
    if alive && curl -fsS --max-time 2 "$url" >/dev/null 2>&1; then
      echo "labfront: already running (pid $(cat "$pidfile"))"
      exit 0
    fi
    if [ -z "$bin" ] || [ ! -x "$bin" ]; then
      echo "labfront: binary not found; run: cargo build -p labfront (or set LABFRONT_BIN)" >&2
      exit 1
    fi
    if curl -fsS --max-time 2 "$url" >/dev/null 2>&1; then
      echo "labfront: something else already answers on 127.0.0.1:4567; stop it first" >&2
      exit 1
    fi
    setsid "$bin" run \
      --throttle-all "${LABFRONT_THROTTLE_ALL:-0}" \
      --consistency-ms "${LABFRONT_CONSISTENCY_MS:-0}" \
      --dns-listen "${LABFRONT_DNS_LISTEN:-127.0.0.1:1053}" >>"$log" 2>&1 </dev/null &
    echo $! > "$pidfile"
    for _ in $(seq 1 100); do
      if curl -fsS --max-time 1 "$url" >/dev/null 2>&1; then
        echo "labfront: ready on http://127.0.0.1:4567, DNS on ${LABFRONT_DNS_LISTEN:-127.0.0.1:1053} (pid $(cat "$pidfile"), log $log)"
        exit 0
      fi
      alive || break
      sleep 0.1
    done
    echo "labfront: failed to start; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
    ;;
  stop)
    if alive; then
      pid="$(cat "$pidfile")"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    echo "labfront: stopped"
    ;;
  *)
    sed -n '2,9p' "$0"
    exit 2
    ;;
esac
