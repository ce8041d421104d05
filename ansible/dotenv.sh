# Sourced, never run: the one reader of .env for the shell scripts and the Makefile. It reads what
# group_vars/all.yml and the Vagrantfile read: KEY=VALUE lines, an optional `export `, surrounding quotes dropped;
# comments, blank lines and anything else skipped.
#
#   dotenv_read FILE ARRAY    fills the associative array ARRAY (the caller declares it) with FILE's variables
#   dotenv_export FILE        exports FILE's variables to this shell
#   billing_vm_names FILE     prints the billing VMs' names: billing-vm, then billing-vm-2 … billing-vm-N
#                             (N = BILLING_VM_COUNT), as the Vagrantfile and group_vars/all.yml name them

dotenv_read() {
  local -n dotenv_into=$2
  local line name value
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line#"${line%%[![:space:]]*}"}
    line=${line%"${line##*[![:space:]]}"}
    [[ $line =~ ^(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
    name=${BASH_REMATCH[2]} value=${BASH_REMATCH[3]}
    if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
    dotenv_into[$name]=$value
  done < "$1"
}

dotenv_export() {
  local -A dotenv_vars=()
  local name
  dotenv_read "$1" dotenv_vars || return
  for name in "${!dotenv_vars[@]}"; do export "$name=${dotenv_vars[$name]}"; done
}

billing_vm_names() {
  local -A dotenv_vars=()
  local count k
  dotenv_read "$1" dotenv_vars || return
  count=${dotenv_vars[BILLING_VM_COUNT]:-}
  [[ $count =~ ^[1-9][0-9]*$ ]] || { echo "$1: BILLING_VM_COUNT must be a whole number, 1 or more." >&2; return 1; }
  echo -n billing-vm
  for ((k = 2; k <= count; k++)); do echo -n " billing-vm-$k"; done
  echo
}
