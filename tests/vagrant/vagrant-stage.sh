#!/usr/bin/env bash
# `make vagrant-test`, the last stage of `make test`: the VM path for real. The checkout's own Vagrantfile, with
# Vagrant's docker provider, brings up the machines of .env (`make up PROVIDER=docker`: systemd guests from `make box`,
# provisioned by ansible_local), and then, against the guests (the make steps run with no bash on PATH, as on a stock
# Mac):
#   - each guest runs systemd and the pinned Node.js, and has the address that the Vagrantfile derived and the
#     inventory resolves to;
#     root on it cannot write kernel.core_pattern nor load a module (the Vagrantfile's capabilities);
#   - the end-to-end suite (pm2 and psql over SSH on the guests) and the Postman collection through gateway-vm;
#   - the seed's scenario over `vagrant ssh`, and a `vagrant reload` of every machine with orders waiting
#     (vm-path.test.ts);
#   - orders at 100/s while billing-vm's broker stops and restarts, then billing-vm halts and comes back
#     (scale.test.ts: exactly once; the 503s are reported, to compare with make scale-test's);
#   - billing-vm's disk lost: `make backup`, `vagrant destroy -f billing-vm`, `make up`, `make restore` bring its
#     orders back row for row, and a new order is stored (stage-restore.sh; one billing VM only);
#   - `make provision-idempotent`: ansible-playbook over SSH (.vagrant/inventory.json) reports changed=0 on every host,
#     and refuses a machine whose host key is not the pinned one;
#   - isolation: which databases and broker logins each guest gets, and what each guest's firewall lets in (the host
#     scrapes RabbitMQ's metrics; inventory-api stays closed to it); gateway-vm's firewall caps the connections of
#     one address on :8080 while it serves another; each guest holds only its own secrets;
#   - `make destroy` leaves no container and no network.
# With VAGRANT_STAGE_BILLING_VMS=N >= 2 (`make scale-test`: 3, six machines) the checkout's .env says
# BILLING_VM_COUNT=N, and the stage runs the same checks on every machine, but not the end-to-end suite and the seed's
# scenario (one consumer per queue); tests/vagrant/scale.test.ts checks one RabbitMQ cluster, quorum queues with a
# replica on each billing VM, and orders at 100/s while billing-vm's broker stops and billing-vm-N halts (exactly
# once, <= 1% 503).
# Docker, the guests and every test packet live in a network namespace with NAT out (sandbox.sh); the stage tears it
# all down on every exit path.
# This file holds the counting and the helpers; the phases are the stage-*.sh files beside it, sourced in order.
#
# The last line: `vagrant-stage: N passed, M failed`, also written as JSON to counts.json in the logs with what failed
# (tests/run-all.sh reads it); the exit code is non-zero when anything failed.
# Settings (environment):
#   VAGRANT_STAGE_SOURCE  the checkout to deploy and test (this repository); e.g. a copy with a deliberate bug
#   VAGRANT_STAGE_BILLING_VMS  how many billing VMs (BILLING_VM_COUNT of the checkout's .env): 1, the three-VM layout
#   VAGRANT_STAGE_LOGS    where the logs go (.test-results/vagrant; .test-results/vagrant-scale with several
#                         billing VMs)
#   VAGRANT_STAGE_SKIP    phases not to run, of `provision isolation` (make test: the scale stage runs them on six
#                         machines, and the three-VM stage would only repeat them)
#   VAGRANT_STAGE_KEEP=1  leave the machines and the sandbox up at the end, to look around:
#                         `tests/vagrant/sandbox.sh exec sh -c 'cd DIR && vagrant ssh billing-vm'`
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source_dir=$(cd "${VAGRANT_STAGE_SOURCE:-$repo}" && pwd)
billing_vm_count=${VAGRANT_STAGE_BILLING_VMS:-1}
if [ "$billing_vm_count" -gt 1 ] 2>/dev/null; then scale=1; else scale=0; billing_vm_count=1; fi
# absolute: the suites write their reports from inside the stage's copy of the checkout
logs=$(realpath -m "${VAGRANT_STAGE_LOGS:-$repo/.test-results/vagrant$([ "$scale" = 1 ] && echo -scale)}")
keep=${VAGRANT_STAGE_KEEP:-0}
skip=" ${VAGRANT_STAGE_SKIP:-} "
sandbox=$here/sandbox.sh
export VAGRANT_CHECKPOINT_DISABLE=1 ANSIBLE_NOCOLOR=1
# shellcheck source=ansible/dotenv.sh
. "$repo/ansible/dotenv.sh"
# shellcheck source=tests/counts.sh
. "$repo/tests/counts.sh"

started=$(date +%s)
passed=0
failed=0
failures=()
pass() { passed=$((passed + 1)); echo "  ok    $1"; }
fail() {
  failed=$((failed + 1)); failures+=("$1 -- $(printf '%s' "$2" | tr -s '\n' ' ')")
  echo "  FAIL  $1"
  printf '%s\n' "$2" | sed 's/^/        /'
}
step() { echo; echo "==> $* ($(( $(date +%s) - started ))s)"; }
summary() {
  echo
  echo "vagrant-stage: took $(( $(date +%s) - started ))s; logs in $logs"
  if [ "${#failures[@]}" -gt 0 ]; then
    echo "vagrant-stage: what failed:"
    printf '  - %s\n' "${failures[@]}" | cut -c1-600
  fi
  mkdir -p "$logs" && node -e '
    const [passed, failed, ...failures] = process.argv.slice(1);
    console.log(JSON.stringify({ passed: Number(passed), failed: Number(failed), failures }));
  ' "$passed" "$failed" "${failures[@]}" > "$logs/counts.json"
  echo "vagrant-stage: $passed passed, $failed failed"
}

tmp=""
checkout=""
tunnels=()
# Stops the SSH tunnels of the end-to-end suite (ours, by pid).
close_tunnels() {
  local pid
  for pid in "${tunnels[@]}"; do kill "$pid" 2>/dev/null; done
  tunnels=()
}
teardown() {
  close_tunnels
  [ -n "$tmp" ] || return 0
  if [ "$keep" = 1 ]; then
    echo "vagrant-stage: VAGRANT_STAGE_KEEP=1: the machines run in $checkout; tear down with:" \
      "$sandbox exec make -C $checkout destroy && $sandbox down && rm -rf $tmp"
    tmp=""
    return 0
  fi
  [ -d "$checkout/.vagrant/machines" ] \
    && in_sandbox make -C "$checkout" --no-print-directory destroy > "$logs/teardown.log" 2>&1
  "$sandbox" down >> "$logs/teardown.log" 2>&1
  rm -rf "$tmp"
  tmp=""
}
trap teardown EXIT
trap 'echo "vagrant-stage: interrupted"; exit 130' INT TERM

# Fails the whole run now (a step that the rest depends on).
abort() { fail "$1" "$2"; teardown; summary; exit 1; }

in_sandbox() { "$sandbox" exec "$@"; }
# COMMAND… as root on a guest (the on-vm script of stage-up.sh).
on_vm() { in_sandbox "$tmp/on-vm" "$@"; }
# COMMAND… in a guest's network namespace, with this machine's programs (psql, node, curl).
net_of() {
  local vm=$1 pid; shift
  pid=$(in_sandbox docker inspect -f '{{.State.Pid}}' "crud-master-$vm") || return 1
  nsenter --net="/proc/$pid/ns/net" -- "$@"
}
# The task that failed and Ansible's message, from a provisioning log.
failed_task() { awk '/^TASK \[/ { task = $0 } /^(fatal|failed):/ { print task; print substr($0, 1, 700); exit }' "$1"; }

# The phases, in order. Each adds its checks to the counts; stage-up.sh aborts the run when the machines are not up.
for phase in up guests suites restore provision isolation; do
  case $phase in
    up | guests | suites | restore) ;;
    *) [[ $skip == *" $phase "* ]] && { step "$phase: skipped (VAGRANT_STAGE_SKIP)"; continue; } ;;
  esac
  # shellcheck source=/dev/null
  . "$here/stage-$phase.sh"
done

if [ "$keep" != 1 ]; then
  step "make destroy"
  t0=$(date +%s)
  on_host make -C "$checkout" --no-print-directory destroy > "$logs/destroy.log" 2>&1
  left=$(in_sandbox docker ps -a --filter name=crud-master- --format '{{.Names}}'
    in_sandbox docker network ls --filter name=vagrant_network --format '{{.Name}}')
  if [ -z "$left" ]; then
    pass "make destroy leaves no container and no network ($(( $(date +%s) - t0 ))s)"
  else
    fail "make destroy leaves no container and no network" \
      "left behind: $(tr '\n' ' ' <<<"$left") (log: $logs/destroy.log)"
  fi
fi

teardown
summary
[ "$failed" -eq 0 ]
