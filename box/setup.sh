#!/bin/sh
# Turns a Debian 12 root file system into a Vagrant box for the docker provider: systemd as PID 1, sshd, sudo,
# Python and Ansible (Vagrant's ansible_local finds it and installs nothing), and the `vagrant` user with Vagrant's
# insecure public key (replaced by a key of each machine's own at its first `vagrant up`), and the certificate
# authorities of the host that built it.
# Runs as root inside the image: from the Dockerfile (RUN) or in the debootstrap chroot of build.sh. Expects the
# insecure key at /tmp/vagrant.pub.
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

# Nothing starts while the image is built: there is no init.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d

cat > /etc/apt/sources.list <<SOURCES
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  systemd systemd-sysv dbus libpam-systemd openssh-server sudo ca-certificates iproute2 procps less \
  python3 python3-apt ansible rsync acl
# Besides Debian's, the authorities that build.sh copied to /usr/local/share/ca-certificates.
update-ca-certificates
# The package lists stay: Ansible's apt `cache_valid_time` would take an emptied lists folder for a fresh one.
apt-get clean

# The vagrant user: passwordless sudo, Vagrant's insecure key.
id vagrant >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --uid 1000 vagrant
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/vagrant
chmod 0440 /etc/sudoers.d/vagrant
install -d -o vagrant -g vagrant -m 0700 /home/vagrant/.ssh
install -o vagrant -g vagrant -m 0600 /tmp/vagrant.pub /home/vagrant/.ssh/authorized_keys
rm -f /tmp/vagrant.pub

# Each machine makes its own SSH host keys and machine-id at its first boot, not one set baked into the image.
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/host-keys.conf <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
systemctl enable ssh.service
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id

# Units that have nothing to do in a container.
systemctl mask systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service \
  sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount getty@tty1.service \
  systemd-remount-fs.service 2>/dev/null || true

rm -f /usr/sbin/policy-rc.d
