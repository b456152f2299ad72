#!/usr/bin/env bash
# Benchmarks `provision up` / no-op `up` / `down` against LocalStack for compact and standard.
# Usage: scripts/bench-infra.sh [runs]   (LocalStack must be running: localstack/start.sh)
# Prints one line per measurement (median of `runs` runs, in seconds) as a markdown table.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${1:-3}"
bin="$root/target/debug/provision"
[ -x "$bin" ] || cargo build -p provisioner
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m/1000}'; }

echo "| template | up (s) | no-op up (s) | down (s) |"
echo "|---|---|---|---|"
for tpl in compact standard; do
  up=(); noop=(); down=()
  for i in $(seq 1 "$runs"); do
    proj="bench${tpl:0:3}$i$$"
    sed -e "s/^project = \"exa\"/project = \"$proj\"/" -e "s/exa.example.internal/$proj.example.internal/g" \
        -e "s/^template = \"compact\"/template = \"$tpl\"/" -e "s#10.10.0.0/16#10.70.0.0/16#" -e "s#10.20.0.0/16#10.80.0.0/16#" \
        "$root/regions.toml" > "$work/regions.toml"
    t=$(ms); "$bin" --config "$work/regions.toml" up --infra-only >/dev/null 2>&1; up+=($(( $(ms) - t )))
    t=$(ms); "$bin" --config "$work/regions.toml" up --infra-only >/dev/null 2>&1; noop+=($(( $(ms) - t )))
    t=$(ms); "$bin" --config "$work/regions.toml" down >/dev/null 2>&1; down+=($(( $(ms) - t )))
    rm -rf "$work/.provision"
  done
  echo "| $tpl | $(printf '%s\n' "${up[@]}" | median) | $(printf '%s\n' "${noop[@]}" | median) | $(printf '%s\n' "${down[@]}" | median) |"
done
