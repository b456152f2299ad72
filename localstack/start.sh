#!/usr/bin/env bash
# Starts the local cloud: LocalStack (EC2, Route53) on 127.0.0.1:4566 and, before it, the API
# front on 127.0.0.1:4567 with its DNS server (localstack/front.sh; needs `cargo build` first).
# LocalStack is isolated from this machine's resolver:
# DNS_ADDRESS=0 and a private /etc/resolv.conf inside its own mount namespace, so it can never
# rewrite the host's /etc/resolv.conf. Waits until healthy. Idempotent: a running, healthy
# LocalStack started by this script is left alone.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${LOCALSTACK_VENV:-$here/.venv}"
state="${LOCALSTACK_STATE_DIR:-$here/state}"
pidfile="$state/localstack.pid"
log="$state/localstack.log"
url="http://127.0.0.1:4566/_localstack/health"
timeout_s="${LOCALSTACK_START_TIMEOUT_S:-90}"

healthy() { curl -fsS --max-time 2 "$url" 2>/dev/null | grep -q '"ec2": "\(available\|running\)"'; }

mkdir -p "$state"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && healthy; then
  echo "localstack: already running (pid $(cat "$pidfile"))"
  exec "$here/front.sh" start
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "localstack: no venv at $venv; run localstack/install.sh first" >&2
  exit 1
fi
if curl -fsS --max-time 2 "$url" >/dev/null 2>&1; then
  echo "localstack: something else already answers on 127.0.0.1:4566; stop it first" >&2
  exit 1
fi

printf 'nameserver 127.0.0.1\n' > "$state/resolv.conf"
# The images EC2 offers: moto's defaults plus Debian 12's (owner 136693071363, the project's
# supported image family; moto ships none). MOTO_AMIS_PATH replaces moto's list, so the
# defaults are copied in.
"$venv/bin/python" - "$here/debian-12-amis.json" "$state/amis.json" <<'PY'
import gzip, json, os, sys, moto
base = json.load(gzip.open(os.path.join(os.path.dirname(moto.__file__), "ec2/resources/amis.json.gz")))
json.dump(base + json.load(open(sys.argv[1])), open(sys.argv[2], "w"))
PY
: > "$log"
# setsid: its own process group, so stop.sh ends LocalStack and every child it spawned.
# unshare --mount: the bind mount of resolv.conf is seen by LocalStack alone.
setsid env \
  SERVICES=ec2,route53,sts,iam,ssm \
  MOTO_AMIS_PATH="$state/amis.json" \
  GATEWAY_LISTEN=127.0.0.1:4566 \
  LOCALSTACK_VOLUME_DIR="$state/volume" \
  DNS_ADDRESS=0 \
  SKIP_SSL_CERT_DOWNLOAD=1 \
  DISABLE_EVENTS=1 \
  EAGER_SERVICE_LOADING=1 \
  unshare --mount --propagation private \
  sh -c 'mount --bind "$0" /etc/resolv.conf && exec "$1" -m localstack.runtime.main' \
  "$state/resolv.conf" "$venv/bin/python" >>"$log" 2>&1 < /dev/null &
echo $! > "$pidfile"

for _ in $(seq 1 "$timeout_s"); do
  if healthy; then
    echo "localstack: ready on http://127.0.0.1:4566 (pid $(cat "$pidfile"), log $log)"
    exec "$here/front.sh" start
  fi
  if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "localstack: exited during start-up; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  sleep 1
done
echo "localstack: not healthy after ${timeout_s}s; last lines of $log:" >&2
tail -n 20 "$log" >&2
exit 1
