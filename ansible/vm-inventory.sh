#!/bin/sh
# Writes the host names of inventory.ini's groups that follow .env: [billing], billing-vm, then billing-vm-2 …
# billing-vm-N (N = BILLING_VM_COUNT); [monitor], monitor-vm unless MONITOR_VM=false. Their addresses are not written:
# inventory.ini takes every address from .env through group_vars/all.yml. The rest of the file stays as it is, and
# the file is written only when those hosts differ.
#
#   ansible/vm-inventory.sh [ENV_FILE [INVENTORY]]     (defaults: .env and inventory.ini at the repository root)
set -eu

root="$(cd "$(dirname "$0")/.." && pwd)"
env_file="${1:-$root/.env}"
inventory="${2:-$root/inventory.ini}"
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

if [ "$updated" != "$(cat "$inventory")" ]; then
  printf '%s\n' "$updated" > "$inventory.tmp"
  mv "$inventory.tmp" "$inventory"
  echo "inventory.ini: [billing] is now $billing; [monitor] ${monitor:-has no host}"
fi
