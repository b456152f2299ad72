#!/usr/bin/env bash
# Installs what this machine is missing for the project (idempotent; skips what is present):
# Debian packages for the lab hosts and the database stack, and LocalStack in a venv.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

# LocalStack rewrites resolv.conf when run unconfined; repair it if an old run did that.
if grep -q "required by LocalStack" /etc/resolv.conf 2>/dev/null; then
  echo "setup: /etc/resolv.conf was rewritten by LocalStack; restoring"
  printf 'nameserver 8.8.8.8\n' > /etc/resolv.conf
fi

# systemd: only its `systemd-analyze verify`, which checks the units deploy installs on AWS.
# mmdebstrap and apt-cacher-ng: the fresh-image lab hosts (localstack/image.sh, aptcache.sh).
pkgs=(openssh-server openssh-client etcd-server etcd-client iptables iproute2 curl openssl python3-venv procps bind9-dnsutils systemd mmdebstrap apt-cacher-ng)
[ -x /usr/lib/postgresql/15/bin/postgres ] || pkgs+=(postgresql-15)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The service user the engines run as. Lab hosts share this machine's /etc/passwd, so it is
# created here once, as a host image would have it (deploy creates it where it is missing).
id -u exchange >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin exchange
# The project's pinned Patroni (not Debian's 3.0.2), shared by every lab host as an image's
# /usr/local would be.
"$root/templates/db/install-patroni.sh"
"$root/localstack/install.sh"
# The fresh Debian 12 image of the lab's image hosts (cached; about a minute the first time).
"$root/localstack/image.sh" >/dev/null
