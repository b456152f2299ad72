#!/usr/bin/env bash
# The lab's fresh Debian 12 image (issue 18): a root filesystem built once with mmdebstrap
# from Debian's packages and cached, for lab hosts started with `labhost run --image`.
#   localstack/image.sh            build it unless cached; print its path
#   localstack/image.sh --rebuild  build it again
# It holds what an official Debian 12 AMI has that the project touches: OpenSSH, sudo,
# systemd's tools (not running: no systemd here), cloud-init, python3, and the distro's
# defaults. No PostgreSQL, Patroni or etcd: cloud-init and `provision deploy` install them,
# through the lab's apt cache (localstack/aptcache.sh), as they would through a NAT gateway.
# Lab-only additions, each in a file of its own:
#   /etc/cloud/cloud.cfg.d/01_debian_cloud.cfg  the AMI's default user `admin`; NoCloud (the
#       labhost writes the instance's UserData as its seed); no network config (labhost
#       configures eth0, as EC2's DHCP would)
#   /usr/sbin/policy-rc.d  systemd would refuse to start a masked unit; with no systemd here,
#       invoke-rc.d falls back to /etc/init.d, and this refuses what systemd would refuse
#   /usr/local/share/ca-certificates/machine-*.crt  this machine's own CAs (its egress proxy
#       signs every HTTPS answer, pip's included)
# Env: LAB_IMAGE_DIR (default localstack/state/images/debian-12), DEBIAN_MIRROR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${LAB_IMAGE_DIR:-$here/state/images/debian-12}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
rootfs="$dir/rootfs"
packages=openssh-server,sudo,ca-certificates,python3,iproute2,kmod,e2fsprogs,curl,less,procps,systemd,cloud-init,netbase,locales

if [ "${1:-}" = "--rebuild" ]; then rm -rf "$rootfs"; fi
if [ -f "$rootfs/.labhost-image" ]; then
  echo "$rootfs"
  exit 0
fi
command -v mmdebstrap >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
}
mkdir -p "$dir"
tmp="$dir/rootfs.building"
rm -rf "$tmp"
echo "image: building Debian 12 into $rootfs (mmdebstrap, about a minute)" >&2
mmdebstrap --quiet --variant=minbase --include="$packages" bookworm "$tmp" "$mirror" >&2
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
  "$mirror" "$mirror" > "$tmp/etc/apt/sources.list"
printf '# labhost binds the VPC resolver over this file\n' > "$tmp/etc/resolv.conf"
cat > "$tmp/etc/cloud/cloud.cfg.d/01_debian_cloud.cfg" <<'EOF'
# As Debian's official AMIs: the default user is `admin` (passwordless sudo, SSH keys only).
system_info:
  default_user:
    name: admin
    lock_passwd: true
    gecos: Debian
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
manage_etc_hosts: true
# Lab only: the instance's UserData comes as a NoCloud seed that labhost writes; eth0 is
# configured by labhost as EC2's DHCP would.
datasource_list: [NoCloud]
network:
  config: disabled
EOF
cat > "$tmp/usr/sbin/policy-rc.d" <<'EOF'
#!/bin/sh
# Lab image: no systemd runs here, so invoke-rc.d starts services from /etc/init.d. systemd
# refuses to start a masked unit; so does this (101: action forbidden), and allows the rest.
case "$(readlink "/etc/systemd/system/$1.service" 2>/dev/null)" in
  /dev/null) exit 101 ;;
esac
exit 0
EOF
chmod 755 "$tmp/usr/sbin/policy-rc.d"
for ca in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$ca" ] && cp "$ca" "$tmp/usr/local/share/ca-certificates/machine-$(basename "$ca")"
done
chroot "$tmp" update-ca-certificates >/dev/null 2>&1
touch "$tmp/.labhost-image"
mv "$tmp" "$rootfs"
echo "$rootfs"
