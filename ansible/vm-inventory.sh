#!/bin/sh
# Writes the inventory of the VMs that .env describes, .vagrant/inventory.ini (git ignores it): inventory.ini, whose
# [billing] and [monitor] hosts follow .env: billing-vm, then billing-vm-2 … billing-vm-N (N = BILLING_VM_COUNT), and
# monitor-vm unless MONITOR_VM=false. Their addresses are not written: every address comes from .env through
# group_vars/all.yml. The tracked inventory.ini stays as it is, and the copy is written only when it changes.
#
#   ansible/vm-inventory.sh [ENV_FILE [INVENTORY [OUT]]]
#     (defaults: .env, inventory.ini and .vagrant/inventory.ini at the repository root)
set -eu

root="$(cd "$(dirname "$0")/.." && pwd)"
env_file="${1:-$root/.env}"
inventory="${2:-$root/inventory.ini}"
out="${3:-$root/.vagrant/inventory.ini}"
# shellcheck source=ansible/dotenv.sh
. "$root/ansible/dotenv.sh"

billing=$(billing_vm_names "$env_file")
monitor=$(monitor_vm_names "$env_file")
for group in billing monitor; do
  grep -qx "\[$group\]" "$inventory" || { echo "$inventory has no [$group] group." >&2; exit 1; }
done

# with_hosts GROUP NAMES: stdin with the host lines of [GROUP] replaced by NAMES; its comments and the blank line
# before the next group stay.
with_hosts() {
  awk -v group="[$1]" -v names="$2" '
    /^\[/ {
      in_group = ($0 == group); print
      if (in_group) { count = split(names, hosts, " "); for (i = 1; i <= count; i++) print hosts[i] }
      next
    }
    in_group && /^[^#;[:space:]]/ { next }
    { print }
  '
}
updated="$(with_hosts billing "$billing" < "$inventory" | with_hosts monitor "$monitor")"

if [ ! -f "$out" ] || [ "$updated" != "$(cat "$out")" ]; then
  mkdir -p "$(dirname "$out")"
  printf '%s\n' "$updated" > "$out.tmp"
  mv "$out.tmp" "$out"
  echo "$out: [billing] $billing; [monitor] ${monitor:-no host}"
fi
