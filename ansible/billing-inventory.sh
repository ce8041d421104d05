#!/bin/sh
# Writes the host names of inventory.ini's [billing] group from .env: billing-vm, then billing-vm-2 … billing-vm-N
# (N = BILLING_VM_COUNT). Their addresses are not written: inventory.ini takes every address from .env through
# group_vars/all.yml. The rest of the file stays as it is, and the file is written only when its billing hosts differ.
#
#   ansible/billing-inventory.sh [ENV_FILE [INVENTORY]]     (defaults: .env and inventory.ini at the repository root)
set -eu

root="$(cd "$(dirname "$0")/.." && pwd)"
env_file="${1:-$root/.env}"
inventory="${2:-$root/inventory.ini}"
# shellcheck source=ansible/dotenv.sh
. "$root/ansible/dotenv.sh"

names=$(billing_vm_names "$env_file")
grep -qx '\[billing\]' "$inventory" || { echo "$inventory has no [billing] group." >&2; exit 1; }

# The host lines of [billing] are replaced; its comments and the blank line before the next group stay.
updated="$(awk -v names="$names" '
  /^\[/ {
    in_billing = ($0 == "[billing]"); print
    if (in_billing) { count = split(names, hosts, " "); for (i = 1; i <= count; i++) print hosts[i] }
    next
  }
  in_billing && /^[^#;[:space:]]/ { next }
  { print }
' "$inventory")"

if [ "$updated" != "$(cat "$inventory")" ]; then
  printf '%s\n' "$updated" > "$inventory.tmp"
  mv "$inventory.tmp" "$inventory"
  echo "inventory.ini: [billing] is now $names"
fi
