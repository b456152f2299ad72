#!/usr/bin/env bash
# Benchmark (issue 18): `provision up` of `compact`, end to end, with the primary region's
# hosts booting the fresh Debian 12 image (cloud-init's packages, Patroni from PyPI, all
# through the apt cache) and the DR region on the lab's shared root. Prints the wall time and
# `up`'s own phase table. Needs LocalStack and the front running (localstack/start.sh).
#   scripts/bench-fresh-image.sh                 the cache as it is (warm after the first run)
#   APTCACHE_DIR=$(mktemp -d) scripts/bench-fresh-image.sh    a cold cache: every package
#                                                 downloaded, as a NAT gateway would
#   IMAGE_REGIONS=none scripts/bench-fresh-image.sh   no image hosts: the lab's baseline
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
regions="${IMAGE_REGIONS:-us-east-1}"
work="$(mktemp -d)"
project="fib$(date +%s | tail -c 6)"
sed -e "s/^project = .*/project = \"$project\"/" \
    -e "s/exa\\.example\\.internal/$project.example.internal/g" \
    -e 's#^vpc_cidr = "10.10.0.0/16"#vpc_cidr = "10.34.0.0/16"#' \
    -e 's#^vpc_cidr = "10.20.0.0/16"#vpc_cidr = "10.44.0.0/16"#' regions.toml > "$work/regions.toml"
if [ "$regions" != none ]; then
  # The image's login user in the image regions, as on AWS.
  awk -v r="$regions" '/^name = /{name=$3; gsub(/"/,"",name)} /^ssh_user = /{ if (index(","r",", ","name",")) $0="ssh_user = \"admin\"" } {print}' \
    "$work/regions.toml" > "$work/r.toml" && mv "$work/r.toml" "$work/regions.toml"
fi
started_cache=0
if [ "$regions" != none ] && ! curl -s -o /dev/null --max-time 2 http://127.0.0.1:3142/acng-report.html; then
  localstack/aptcache.sh start >/dev/null
  started_cache=1
fi
flags=()
[ "$regions" = none ] || flags=(--image "$(localstack/image.sh)" --image-regions "$regions")
export LABHOST_STATE_DIR="$work/labhost" LABHOST_CONFIG="$work/regions.toml"
cleanup() {
  target/debug/provision --config "$work/regions.toml" down >/dev/null 2>&1 || true
  localstack/labhost.sh stop >/dev/null 2>&1 || true
  [ "$started_cache" = 0 ] || localstack/aptcache.sh stop >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
localstack/labhost.sh start --prefix fb "${flags[@]}" >/dev/null
t0=$(date +%s.%N)
target/debug/provision --config "$work/regions.toml" up > "$work/up.log" 2>&1 || { tail -20 "$work/up.log"; exit 1; }
t1=$(date +%s.%N)
grep -v '^created' "$work/up.log" | tail -25
printf 'bench-fresh-image: image regions %s: up (infrastructure + deploy) %.1f s\n' "$regions" "$(echo "$t1 - $t0" | bc)"
