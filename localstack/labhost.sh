#!/usr/bin/env bash
# Lab-host emulator helper (see localstack/README.md, "Lab hosts").
#   localstack/labhost.sh start [run flags...]   start in the background, wait until ready
#   localstack/labhost.sh stop                   SIGTERM + wait for full cleanup
#   localstack/labhost.sh <any labhost subcommand> [args...]   e.g. status, fault partition A B, heal all, clean
# Env: LABHOST_BIN (default: target/release/labhost, else target/debug/labhost),
#      LABHOST_STATE_DIR (default localstack/state/labhost), LABHOST_CONFIG (default regions.toml),
#      LABHOST_START_TIMEOUT_S (default 30).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
state="${LABHOST_STATE_DIR:-$here/state/labhost}"
config="${LABHOST_CONFIG:-$root/regions.toml}"
timeout_s="${LABHOST_START_TIMEOUT_S:-30}"

bin="${LABHOST_BIN:-}"
if [ -z "$bin" ]; then
  for candidate in "$root/target/release/labhost" "$root/target/debug/labhost"; do
    if [ -x "$candidate" ]; then bin="$candidate"; break; fi
  done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "labhost: binary not found; run: cargo build -p labhost (or set LABHOST_BIN)" >&2
  exit 1
fi

running() { "$bin" --state-dir "$state" --output json status 2>/dev/null | grep -q '"state":"running"'; }

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  start)
    if running; then
      echo "labhost: already running (state dir $state)"
      exit 0
    fi
    mkdir -p "$state"
    # setsid: its own session, so a terminal's Ctrl-C does not skip the cleanup of `stop`.
    setsid "$bin" --state-dir "$state" run --config "$config" "$@" >>"$state/labhost.log" 2>&1 </dev/null &
    for _ in $(seq 1 $((timeout_s * 10))); do
      if running; then
        echo "labhost: running (pid $(cat "$state/labhost.pid"), state dir $state, log $state/labhost.log)"
        exit 0
      fi
      if ! kill -0 $! 2>/dev/null; then break; fi
      sleep 0.1
    done
    echo "labhost: failed to start; last lines of $state/labhost.log:" >&2
    tail -n 20 "$state/labhost.log" >&2
    exit 1
    ;;
  "" | -h | --help)
    sed -n '2,9p' "$0"
    ;;
  *)
    exec "$bin" --state-dir "$state" "$cmd" "$@"
    ;;
esac
