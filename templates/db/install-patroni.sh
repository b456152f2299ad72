#!/bin/sh
# Installs the project's pinned Patroni into its own venv (idempotent). Used by
# scripts/setup.sh (the lab image), templates/cloud-init.yaml (AWS first boot) and by
# `provision deploy` on a DB host that lacks it.
#
# Why not Debian 12's patroni 3.0.2: it reads etcd with `serializable: true` (a member cut off
# by a partition serves its stale view) and writes the leader key without a condition, so an
# isolated ex-leader that rejoins can take the lock back and promote itself onto a diverged
# timeline (issue 13; fixed upstream in patroni PRs #2689 and #3318). 4.x also has quorum
# commit (`synchronous_mode: quorum`): losing one of two standbys does not stop commits.
# Every dependency is pinned so every host runs the same code.
set -eu
version=4.1.5
dir=/usr/local/lib/patroni-$version
if [ -f "$dir/.installed" ] && "$dir/bin/patroni" --version 2>/dev/null | grep -qx "patroni $version"; then
  exit 0
fi
python=/usr/bin/python3
"$python" -c 'import venv, ensurepip' 2>/dev/null || {
  command -v apt-get >/dev/null || { echo "install-patroni: $python lacks venv/ensurepip and there is no apt-get" >&2; exit 1; }
  # A fresh image has no package lists, and cloud-init may hold apt's lock at first boot.
  apt="apt-get -o DPkg::Lock::Timeout=600 -q"
  DEBIAN_FRONTEND=noninteractive $apt update >/dev/null
  DEBIAN_FRONTEND=noninteractive $apt install -y python3-venv >/dev/null
}
rm -rf "$dir"
"$python" -m venv "$dir"
"$dir/bin/pip" install -q --disable-pip-version-check --no-deps \
  "patroni==$version" \
  psycopg2-binary==2.9.13 python-etcd==0.4.5 urllib3==2.8.0 dnspython==2.9.2 PyYAML==6.0.4 \
  click==8.5.1 prettytable==3.18.0 wcwidth==0.9.4 psutil==7.2.2 python-dateutil==4.0.0 \
  ydiff==1.4.2 tzdata==2026.6 py-consul==1.8.0 requests==2.34.2 certifi==2026.10.19.post1 charset-normalizer==3.5.3 idna==3.20
"$dir/bin/patroni" --version | grep -qx "patroni $version"
touch "$dir/.installed"
echo "install-patroni: patroni $version in $dir"
