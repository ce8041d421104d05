#!/usr/bin/env bash
# One "VM" of `make hosts-test`, started by hosts-test.sh as PID 1 of fresh mount, UTS, IPC and PID namespaces,
# inside the host's own network namespace. It builds the host's filesystem view (an overlay of this machine's /,
# written to the host's own upper directory), prepares it the way a freshly booted Vagrant box is, then becomes the
# host's init (it reaps orphans) inside the chroot. When it exits, the kernel kills every process of the host and
# drops its mounts.
#
#   host-boot.sh NAME HOST_DIR SHARED_DIR
#     NAME        gateway-vm, inventory-vm or billing-vm (the hostname: RabbitMQ's node name depends on it)
#     HOST_DIR    upper/, work/, merged/ of the overlay; `booted` is created when the host is ready
#     SHARED_DIR  vagrant/ (the checkout, mounted read-only at /vagrant like Vagrant's synced folder), npm-cache/,
#                 inventory.ini
set -euo pipefail
name=$1
dir=$2
shared=$3
root=$dir/merged

hostname "$name"
mount -t overlay "hosts-test-$name" -o "lowerdir=/,upperdir=$dir/upper,workdir=$dir/work" "$root"

# This machine's own stack is in the lower layer: a fresh VM has none of its state. Removing it in the overlay only
# hides it from this host (whiteouts in the upper directory); the machine's files are untouched.
shopt -s nullglob
stale=(
  "$root"/var/lib/postgresql/* "$root"/etc/postgresql/* "$root"/var/log/postgresql/*
  "$root"/var/lib/rabbitmq/mnesia "$root"/var/log/rabbitmq/*
  "$root"/opt/crud-master "$root"/opt/pm2 "$root"/etc/crud-master "$root"/usr/local/bin/pm2
  "$root"/root/.pm2 "$root"/home/*/.pm2 "$root"/var/lib/*/.pm2 "$root"/etc/systemd/system/pm2-*.service
)
shopt -u nullglob
rm -rf "${stale[@]}"

# Kernel file systems and empty /run, /tmp, /dev/shm, as after a boot (no pid file or socket of the machine's stack).
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys" 2>/dev/null || mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
mkdir -m 1777 "$root/run/lock"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"

# /vagrant: the checkout, as Vagrant's synced folder (read-only: provisioning must not write into the checkout).
mkdir -p "$root/vagrant"
mount --bind "$shared/vagrant" "$root/vagrant"
mount -o remount,bind,ro "$root/vagrant"

# What the box and `vagrant up` give a VM: its hostname in /etc/hosts, the `vagrant` user with passwordless sudo.
echo "$name" > "$root/etc/hostname"
cat > "$root/etc/hosts" <<EOF
127.0.0.1 localhost
127.0.1.1 $name
::1 localhost ip6-localhost ip6-loopback
EOF
if ! chroot "$root" getent passwd vagrant >/dev/null; then
  chroot "$root" useradd --create-home --shell /bin/bash --user-group vagrant
fi
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > "$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"

# No network beyond the test bridge: apt uses the package lists and packages of this machine (a fresh apt cache, so
# the roles' `update_cache` with `cache_valid_time` does not try the mirrors), and npm works offline from a cache
# that hosts-test.sh warmed with the lockfile's packages and the pinned PM2.
mkdir -p "$root/var/lib/apt/periodic"
touch "$root/var/lib/apt/periodic/update-success-stamp"
mkdir -p "$root/var/cache/hosts-test-npm"
cp -a "$shared/npm-cache/." "$root/var/cache/hosts-test-npm/"
chmod -R a+rwX "$root/var/cache/hosts-test-npm"
# npm's built-in config file (<npm>/npmrc) applies to every user and every --prefix (the pm2 role installs with
# `--global --prefix /opt/pm2`, which moves the global npmrc).
npm_dir=$(dirname "$(dirname "$(chroot "$root" readlink -f "$(chroot "$root" sh -c 'command -v npm')")")")
{
  [ -f "$root$npm_dir/npmrc" ] && grep -v -e '^cache=' -e '^offline=' "$root$npm_dir/npmrc"
  echo 'cache=/var/cache/hosts-test-npm'
  echo 'offline=true'
} > "$root$npm_dir/npmrc.new" || true
mv "$root$npm_dir/npmrc.new" "$root$npm_dir/npmrc"

# The inventory that provisions this host (inventory.ini's groups, the test .env's addresses).
mkdir -p "$root/var/lib/hosts-test"
cp "$shared/inventory.ini" "$root/var/lib/hosts-test/inventory.ini"

touch "$dir/booted"
# The host's init: PID 1 reaps orphaned daemons' children and ends the host on SIGTERM.
exec chroot "$root" /usr/bin/python3 -c '
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.5)
'
