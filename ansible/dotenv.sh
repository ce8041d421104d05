# Sourced, never run: the reader of .env for the shell scripts, the Makefile and the tests, in POSIX sh (dash, and
# macOS's bash 3.2, run it), by the grammar in .env.example's header, as group_vars/all.yml and the Vagrantfile read
# it (tests/component/dotenv-readers.test.ts). Its variables are prefixed dotenv_: POSIX sh has no local ones.
#
#   dotenv_pairs FILE         prints FILE's variables as NAME=VALUE lines, each name once
#   dotenv_get FILE NAME      prints NAME's value; fails when FILE does not set NAME
#   dotenv_export FILE        exports FILE's variables to this shell
#   billing_vm_names FILE     prints the billing VMs' names: billing-vm, then billing-vm-2 … billing-vm-N
#                             (N = BILLING_VM_COUNT), as the Vagrantfile and group_vars/all.yml name them
#   monitor_vm_names FILE     prints monitor-vm with MONITOR_VM=true, nothing with false

dotenv_pairs() {
  awk -v q="'" '
    { sub(/^[ \t\r]+/, ""); sub(/[ \t\r]+$/, ""); sub(/^export[ \t]+/, "") }
    !/^[A-Za-z_][A-Za-z0-9_]*=/ { next }
    {
      eq = index($0, "="); name = substr($0, 1, eq - 1); value = substr($0, eq + 1)
      sub(/^[ \t]+/, "", value)
      first = substr(value, 1, 1)
      if (length(value) >= 2 && (first == "\"" || first == q) && substr(value, length(value)) == first)
        value = substr(value, 2, length(value) - 2)
      if (!(name in values)) names[++count] = name
      values[name] = value
    }
    END { for (i = 1; i <= count; i++) print names[i] "=" values[names[i]] }
  ' "$1"
}

dotenv_get() {
  dotenv_pairs "$1" | awk -v name="$2" '
    index($0, name "=") == 1 { print substr($0, length(name) + 2); found = 1 }
    END { exit !found }'
}

dotenv_export() {
  dotenv_vars=$(dotenv_pairs "$1") || return
  while IFS= read -r dotenv_pair; do
    [ -z "$dotenv_pair" ] || export "${dotenv_pair?}"
  done <<EOF
$dotenv_vars
EOF
  unset dotenv_vars dotenv_pair
}

billing_vm_names() {
  dotenv_count=$(dotenv_get "$1" BILLING_VM_COUNT) || dotenv_count=
  case $dotenv_count in
    '' | 0* | *[!0-9]*) echo "$1: BILLING_VM_COUNT must be a whole number, 1 or more." >&2; return 1 ;;
  esac
  awk -v count="$dotenv_count" 'BEGIN {
    names = "billing-vm"; for (k = 2; k <= count; k++) names = names " billing-vm-" k; print names }'
}

monitor_vm_names() {
  dotenv_monitor=$(dotenv_get "$1" MONITOR_VM) || dotenv_monitor=
  case $dotenv_monitor in
    true) echo monitor-vm ;;
    false) ;;
    *) echo "$1: MONITOR_VM must be true or false." >&2; return 1 ;;
  esac
}
