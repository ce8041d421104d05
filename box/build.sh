#!/bin/sh
# `make box`: builds the Vagrant box of the docker provider, a Debian 12 image whose PID 1 is systemd, and tags it
# BOX_IMAGE (what the Vagrantfile runs). The image is cached by a hash of its recipe (this folder and Vagrant's
# insecure key): when BOX_IMAGE:<hash> exists, nothing is built.
#
#   BOX_FROM=debootstrap   debootstrap + `docker import` (no image registry needed: CI, offline hosts); as root
#   BOX_FROM=dockerfile    `docker build` FROM debian:bookworm (needs an image registry)
#   BOX_FROM=auto          dockerfile when debian:bookworm is present or can be pulled, else debootstrap (default)
#   BOX_IMAGE              image name (crud-master/debian12-systemd)
#   BOX_MIRROR             Debian mirror for debootstrap (http://deb.debian.org/debian)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
image=${BOX_IMAGE:-crud-master/debian12-systemd}
from=${BOX_FROM:-auto}
mirror=${BOX_MIRROR:-http://deb.debian.org/debian}

command -v docker >/dev/null || { echo "box: docker is missing (Debian: apt-get install docker.io)" >&2; exit 1; }
docker info >/dev/null 2>&1 \
  || { echo "box: no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-default})" >&2; exit 1; }

# Vagrant's insecure public key: the box's first login, as in every Vagrant base box.
vagrant_dir=$(ruby -e 'print Gem::Specification.find_by_name("vagrant").gem_dir' 2>/dev/null \
  || dirname "$(dirname "$(readlink -f "$(command -v vagrant)")")")
key=$vagrant_dir/keys/vagrant.pub
[ -f "$key" ] || { echo "box: Vagrant's insecure key is not at $key (is Vagrant installed?)" >&2; exit 1; }

# The certificate authorities this host added itself (a corporate or sandbox TLS proxy): the guests trust them too,
# or their downloads from the npm registry would fail where this host's succeed. Copied into each build's context.
local_cas=/usr/local/share/ca-certificates
copy_local_cas() {
  mkdir -p "$1"
  for ca in "$local_cas"/*.crt; do
    [ ! -e "$ca" ] || cp "$ca" "$1/"
  done
}
sha256() { if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi; }

recipe=$(
  for ca in "$local_cas"/*.crt; do [ ! -e "$ca" ] || cat "$ca"; done \
    | cat "$here/Dockerfile" "$here/setup.sh" "$here/build.sh" "$key" - | sha256 | cut -c1-12
)
if docker image inspect "$image:$recipe" >/dev/null 2>&1; then
  docker tag "$image:$recipe" "$image:latest"
  echo "box: $image:$recipe is up to date (recipe $recipe)"
  exit 0
fi

if [ "$from" = auto ]; then
  # macOS has no timeout(1)
  pull() { if command -v timeout >/dev/null; then timeout 60 docker pull -q "$1"; else docker pull -q "$1"; fi; }
  if docker image inspect debian:bookworm >/dev/null 2>&1 || pull debian:bookworm >/dev/null 2>&1; then
    from=dockerfile
  else
    from=debootstrap
  fi
fi

started=$(date +%s)
work=$(mktemp -d /var/tmp/crud-master-box.XXXXXX)
cleanup() {
  for mount in "$work/rootfs/proc" "$work/rootfs/sys" "$work/rootfs/dev/pts" "$work/rootfs/dev"; do
    mountpoint -q "$mount" 2>/dev/null && umount -l "$mount"
  done
  rm -rf "$work"
}
trap cleanup EXIT

case $from in
  dockerfile)
    copy_local_cas "$work/ca-certificates"
    cp "$here/Dockerfile" "$here/setup.sh" "$key" "$work/"
    docker build --label "crud-master.box-recipe=$recipe" -t "$image:$recipe" "$work"
    ;;
  debootstrap)
    [ "$(id -u)" -eq 0 ] || { echo "box: debootstrap needs root (sudo make box)" >&2; exit 1; }
    command -v debootstrap >/dev/null \
      || { echo "box: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
    rootfs=$work/rootfs
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror"
    mount -t proc proc "$rootfs/proc"
    mount -t sysfs sysfs "$rootfs/sys"
    mount --bind /dev "$rootfs/dev"
    mount --bind /dev/pts "$rootfs/dev/pts"
    cp "$here/setup.sh" "$key" "$rootfs/tmp/"
    copy_local_cas "$rootfs/usr/local/share/ca-certificates"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    # the guest's own PATH: this host's may name folders that the new system does not have
    chroot "$rootfs" /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/sh /tmp/setup.sh
    rm -f "$rootfs/tmp/setup.sh"
    : > "$rootfs/etc/resolv.conf"
    umount -l "$rootfs/dev/pts" "$rootfs/dev" "$rootfs/sys" "$rootfs/proc"
    tar -C "$rootfs" --numeric-owner -c . | docker import \
      -c 'ENV container=docker' -c 'CMD ["/sbin/init"]' \
      -c "LABEL crud-master.box-recipe=$recipe" - "$image:$recipe"
    ;;
  *) echo "box: BOX_FROM=$from: use debootstrap, dockerfile or auto" >&2; exit 1 ;;
esac
docker tag "$image:$recipe" "$image:latest"
echo "box: built $image:$recipe from $from in $(( $(date +%s) - started ))s"
