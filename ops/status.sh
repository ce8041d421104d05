#!/bin/sh
# `make status`: one screen of the deployment. On the VMs when `make up` made them (.vagrant/ssh_config), else on this
# host after `make local`. Each host's part is ops/host-status.sh from its release, run as root (over `vagrant ssh`'s
# own channel on the VMs). A VM that does not answer is named, and the others are still shown.
set -u
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=ops/deployment.sh
. ops/deployment.sh
host_status=$release/ops/host-status.sh
vms=$(deployed_vms)

if [ -n "$vms" ]; then
  for vm in $vms; do
    on_vm -n "$vm" sudo -n sh "$host_status" 2>/dev/null || echo "== $vm: no answer over SSH (vagrant status $vm)"
  done
elif [ -f "$host_status" ]; then
  as_root sh "$host_status"
else
  echo "Nothing deployed: make up (the VMs) or make local (this host) first." >&2
  exit 1
fi
