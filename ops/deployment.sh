# Sourced, never run, from the checkout's root: where the deployment is, for ops/status.sh, ops/logs.sh and the
# Makefile's known-hosts.
#   release        the crud_build role's release on each host: what it runs, ops/ and pino-pretty included
#   deployed_vms   the VMs that `make up` made, a name a line (from .vagrant/ssh_config); nothing without them
#   on_vm [SSH_OPTION…] VM COMMAND   ssh to a VM with the key Vagrant made, failing fast rather than asking
#   as_root COMMAND…                 on this host, as root (through sudo unless root already)
# shellcheck disable=SC2034 # release is for the scripts that source this
release=/opt/crud-master

deployed_vms() {
  [ -s .vagrant/ssh_config ] && awk '/^Host / { print $2 }' .vagrant/ssh_config
}

on_vm() {
  ssh -F .vagrant/ssh_config -o ConnectTimeout=5 -o BatchMode=yes "$@"
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
