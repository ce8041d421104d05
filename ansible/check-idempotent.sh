#!/bin/sh
# Proves that the playbook is idempotent: runs ansible/site.yml (again) and fails unless every host of the
# PLAY RECAP reports changed=0, failed=0 and unreachable=0.
#
#   ansible/check-idempotent.sh [INVENTORY] [extra ansible-playbook arguments…]
#
# INVENTORY defaults to ansible/local.ini (this host). Only the tasks that changed or failed are printed, so a
# clean run shows the recap alone. The output is kept in $IDEMPOTENCE_LOG when set; otherwise in a temporary file
# that is removed when the check passes.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
inventory="${1:-$here/local.ini}"
[ "$#" -gt 0 ] && shift

if [ -n "${IDEMPOTENCE_LOG:-}" ]; then
  log="$IDEMPOTENCE_LOG"
else
  log="$(mktemp -t crud-master-idempotence.XXXXXX)"
  remove_log_on_success=1
fi
export ANSIBLE_CONFIG="${ANSIBLE_CONFIG:-$here/ansible.cfg}"
export ANSIBLE_DISPLAY_OK_HOSTS=false
export ANSIBLE_DISPLAY_SKIPPED_HOSTS=false
export ANSIBLE_NOCOLOR=true

echo "Idempotence check: ansible-playbook -i $inventory $here/site.yml${1+ $*} (log: $log)"
started=$(date +%s)
# The playbook's exit code, past tee (POSIX sh has no pipefail): written to fd 3, read by the substitution.
{ status=$({ { rc=0; ansible-playbook -i "$inventory" "$here/site.yml" ${1+"$@"} 2>&1 || rc=$?; echo "$rc" >&3; } \
  | tee "$log" >&4; } 3>&1); } 4>&1
elapsed=$(( $(date +%s) - started ))

if [ "$status" -ne 0 ]; then
  echo "FAIL: the playbook exited with $status (after ${elapsed}s)." >&2
  exit 1
fi

recap="$(awk '/^PLAY RECAP/ { found = 1; next } found && /ok=[0-9]+/' "$log")"
if [ -z "$recap" ]; then
  echo "FAIL: no PLAY RECAP in the output." >&2
  exit 1
fi

bad=0
while IFS= read -r line; do
  host="${line%% *}"
  changed="$(printf '%s\n' "$line" | sed -n 's/.*changed=\([0-9]*\).*/\1/p')"
  failed="$(printf '%s\n' "$line" | sed -n 's/.*failed=\([0-9]*\).*/\1/p')"
  unreachable="$(printf '%s\n' "$line" | sed -n 's/.*unreachable=\([0-9]*\).*/\1/p')"
  if [ "$changed" != 0 ] || [ "$failed" != 0 ] || [ "$unreachable" != 0 ]; then
    echo "FAIL: $host reports changed=$changed failed=$failed unreachable=$unreachable." >&2
    bad=1
  fi
done <<RECAP
$recap
RECAP

if [ "$bad" -ne 0 ]; then
  echo "The tasks above marked 'changed' are not idempotent." >&2
  exit 1
fi
echo "OK: every host reports changed=0 (second run took ${elapsed}s)."
[ -n "${remove_log_on_success:-}" ] && rm -f "$log"
exit 0
