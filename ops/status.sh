#!/bin/sh
# `make status`: one screen of the deployment. On the VMs when `make up` made them (.vagrant/ssh_config), else on this
# host after `make local`. Each host's part is ops/host-status.sh from its release, run as root (over `vagrant ssh`'s
# own channel on the VMs). A VM that does not answer is named, and the others are still shown.
set -u
cd "$(dirname "$0")/.." || exit 1
# the deployed copy (the crud_build role's release): what each host runs
host_status=/opt/crud-master/ops/host-status.sh

if [ -s .vagrant/ssh_config ]; then
  awk '/^Host / { print $2 }' .vagrant/ssh_config | while IFS= read -r vm; do
    ssh -n -F .vagrant/ssh_config -o ConnectTimeout=5 -o BatchMode=yes "$vm" sudo -n sh "$host_status" 2>/dev/null \
      || echo "== $vm: no answer over SSH (vagrant status $vm)"
  done
elif [ -f "$host_status" ]; then
  if [ "$(id -u)" -eq 0 ]; then sh "$host_status"; else sudo sh "$host_status"; fi
else
  echo "Nothing deployed: make up (the VMs) or make local (this host) first." >&2
  exit 1
fi
