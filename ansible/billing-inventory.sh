#!/usr/bin/env bash
# Writes the [billing] group of inventory.ini from .env: billing-vm at BILLING_VM_IP, then billing-vm-2 …
# billing-vm-N (N = BILLING_VM_COUNT) at the addresses after it, as the Vagrantfile and group_vars/all.yml derive
# them. The rest of the file stays as it is, and the file is written only when its billing lines differ.
#
#   ansible/billing-inventory.sh [ENV_FILE [INVENTORY]]     (defaults: .env and inventory.ini at the repository root)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_file="${1:-$root/.env}"
inventory="${2:-$root/inventory.ini}"

value() { sed -nE "s/^(export[[:space:]]+)?$1=[\"']?([^\"']*)[\"']?[[:space:]]*\$/\\2/p" "$env_file" | tail -1; }
count="$(value BILLING_VM_COUNT)"
ip="$(value BILLING_VM_IP)"
[[ $count =~ ^[0-9]+$ ]] && [ "$count" -ge 1 ] || { echo "$env_file: BILLING_VM_COUNT must be a whole number, 1 or more." >&2; exit 1; }
[[ $ip =~ ^([0-9]+\.[0-9]+\.[0-9]+\.)([0-9]+)$ ]] || { echo "$env_file: BILLING_VM_IP is not an IPv4 address." >&2; exit 1; }
prefix="${BASH_REMATCH[1]}"
last="${BASH_REMATCH[2]}"
[ $((last + count - 1)) -le 254 ] || { echo "$env_file: $count billing VMs from $ip go past .254." >&2; exit 1; }

lines="billing-vm ansible_host=$ip"
for ((k = 2; k <= count; k++)); do
  lines+=$'\n'"billing-vm-$k ansible_host=$prefix$((last + k - 1))"
done

# The host lines of [billing] are replaced; its comments and the blank line before the next group stay.
updated="$(awk -v lines="$lines" '
  /^\[/ { in_billing = ($0 == "[billing]") ; print; if (in_billing) print lines; next }
  in_billing && /^[^#;[:space:]]/ { next }
  { print }
' "$inventory")"
grep -qx '\[billing\]' "$inventory" || { echo "$inventory has no [billing] group." >&2; exit 1; }

if [ "$updated" != "$(cat "$inventory")" ]; then
  printf '%s\n' "$updated" > "$inventory.tmp"
  mv "$inventory.tmp" "$inventory"
  echo "inventory.ini: [billing] is now $(echo "$lines" | awk '{ print $1 }' | tr '\n' ' ')(BILLING_VM_COUNT=$count)"
fi
