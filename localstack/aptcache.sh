#!/usr/bin/env bash
# The lab's stand-in for a NAT gateway: apt-cacher-ng on this machine, which fresh-image lab
# hosts reach on their VPC bridge address (labhost writes it into their apt and pip config).
# Debian packages are cached under localstack/state/aptcache, so only the first run downloads
# them; HTTPS (pip from PyPI) passes through as CONNECT, uncached.
#   localstack/aptcache.sh start   start it unless running (port 3142)
#   localstack/aptcache.sh stop    stop the one this script started (its pid file)
# Env: APTCACHE_DIR (default localstack/state/aptcache), APTCACHE_PORT (default 3142; lab hosts use 3142).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${APTCACHE_DIR:-$here/state/aptcache}"
port="${APTCACHE_PORT:-3142}"
pidfile="$dir/apt-cacher-ng.pid"

up() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/acng-report.html"; }

case "${1:-}" in
  start)
    if up; then
      if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "aptcache: running on port $port"; exit 0; fi
      echo "aptcache: port $port answers but not as the apt-cacher-ng this script started (a system apt-cacher-ng? its default backend may be unreachable): stop it (/etc/init.d/apt-cacher-ng stop); lab hosts look for the cache on port 3142" >&2
      exit 1
    fi
    command -v apt-cacher-ng >/dev/null || {
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends apt-cacher-ng >/dev/null
    }
    mkdir -p "$dir/cache" "$dir/log" "$dir/conf"
    # Its own configuration: every Debian mirror name maps to deb.debian.org (the package's
    # default backend, ftp.debian.org, is not reachable from every machine).
    cat > "$dir/conf/acng.conf" <<CONF
CacheDir: $dir/cache
LogDir: $dir/log
SupportDir: /usr/lib/apt-cacher-ng
Port: $port
BindAddress: 0.0.0.0
PidFile: $pidfile
ForeGround: 1
ReportPage: acng-report.html
Remap-debrep: file:deb_mirror*.gz /debian ; http://deb.debian.org/debian/
Remap-secdeb: security.debian.org security.debian.org/debian-security deb.debian.org/debian-security /debian-security ; http://deb.debian.org/debian-security/
PassThroughPattern: .*
ExThreshold: 4
CONF
    setsid apt-cacher-ng -c "$dir/conf" >>"$dir/log/stdout.log" 2>&1 </dev/null &
    echo $! > "$pidfile"
    for _ in $(seq 1 100); do
      if up; then echo "aptcache: running on port $port (pid $(cat "$pidfile"), cache $dir/cache)"; exit 0; fi
      sleep 0.1
    done
    echo "aptcache: did not start; see $dir/log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
      rm -f "$pidfile"
    fi
    echo "aptcache: stopped"
    ;;
  *)
    sed -n '2,9p' "$0"
    exit 2
    ;;
esac
