#!/usr/bin/env bash
# `make test`: provision this host with the roles (ansible/local.sh, as `make local`, with no .env secret on any
# command line), prove the second run changes nothing, check the types and run every linter (make lint), then run the
# component suite, and against the deployed stack the end-to-end suite, the Postman collection (newman), the
# privileges of the deployment (links planted before a provisioning run), the hostile-input fuzz and the chaos test;
# last, the Vagrant stage (tests/vagrant/vagrant-stage.sh: the four machines of the Vagrantfile with the docker
# provider), and again with three billing VMs (as make scale-test: six machines), which alone runs the stage's
# provisioning and isolation checks. Every step runs even when an earlier one failed; each counts from its runner's
# JSON report (tests/counts.sh). The end lists what failed (each check, test or stage check by name), and the last
# line sums them all: `tests: N passed, M failed`.
set -uo pipefail
cd "$(dirname "$0")/.."
results=.test-results
rm -rf "$results" && mkdir -p "$results"
passed=0
failed=0
what_failed=()
# NAME: adds what the last add_counts found failed to the list of the end (five of it at most).
name_failures() {
  local what
  for what in "${run_failures[@]:0:5}"; do what_failed+=("$1: $what"); done
  [ "${#run_failures[@]}" -le 5 ] || what_failed+=("$1: and $(( ${#run_failures[@]} - 5 )) more (log: $results/$1.log)")
}

# A check counts as one test: its command's exit code.
check() {
  local name=$1; shift
  echo "==> $name"
  if "$@" 2>&1 | tee "$results/$name.log"; then
    passed=$((passed + 1)); echo "==> $name: passed"
  else
    failed=$((failed + 1)); echo "==> $name: FAILED (log: $results/$name.log)"
    what_failed+=("$name (log: $results/$name.log)")
  fi
}

# shellcheck source=tests/counts.sh
. tests/counts.sh

# A mocha suite counts its own tests, from the JSON that tests/stats-reporter.ts writes beside its spec output.
suite() {
  local name=$1; shift
  echo "==> suite $name"
  npx mocha --reporter tests/stats-reporter.ts --reporter-option "stats=$results/$name.json" "$@" 2>&1 \
    | tee "$results/$name.log"
  add_counts mocha "$results/$name.json" "${PIPESTATUS[0]}"
  name_failures "$name"
}

# The Postman collection counts its pm.test assertions, from newman's JSON report.
postman() {
  echo "==> postman"
  npx newman run postman/crud-master.postman_collection.json --env-var "baseUrl=${BASE_URL:-http://localhost:8080}" \
    --reporters cli,json --reporter-json-export "$results/postman.json" 2>&1 | tee "$results/postman.log"
  add_counts newman "$results/postman.json" "${PIPESTATUS[0]}"
  name_failures postman
}

# A Vagrant stage counts its own checks, in the counts.json of its logs ($results/NAME/): NAME [SETTING=VALUE…]
vagrant_stage() {
  local name=$1; shift
  echo "==> $name"
  env VAGRANT_STAGE_LOGS="$results/$name" "$@" tests/vagrant/vagrant-stage.sh 2>&1 | tee "$results/$name.log"
  add_counts stage "$results/$name/counts.json" "${PIPESTATUS[0]}"
  name_failures "$name"
}

# The first provisioning runs under a sampler of every process's command line: no .env secret may appear on one.
check provision tests/provision/secrets-on-cmdline.sh ansible/local.sh
check provision-idempotent ansible/check-idempotent.sh ansible/local.ini
check install npm ci --no-audit --no-fund
check build npm run build
# tsc over the tests and the bench, ESLint, knip (each workspace declares exactly what it imports), ansible-lint,
# yamllint, Redocly
check lint make --no-print-directory lint
# The alert rules of roles/monitor, against series made up for each alert (promtool comes with make local's monitor).
check alert-rules promtool test rules tests/monitor/crud-master.rules.test.yml
suite component 'services/*/test/**/*.test.ts' 'tests/component/**/*.test.ts'
suite e2e 'tests/e2e/**/*.test.ts'
# Links planted by the service and build users, then two provisioning runs: this host only.
suite privileges 'tests/privileges/**/*.test.ts'
postman
FUZZ_RUNS=2000 suite fuzz 'tests/fuzz/**/*.test.ts'
CHAOS_ORDERS=2000 suite chaos 'tests/chaos/**/*.test.ts'
# The scale stage provisions over SSH and checks each machine's isolation on all six machines: not repeated here.
vagrant_stage vagrant VAGRANT_STAGE_SKIP="provision isolation"
# Three billing VMs by default (make test passes SCALE_BILLING_VMS): one RabbitMQ cluster, quorum queues.
vagrant_stage vagrant-scale VAGRANT_STAGE_BILLING_VMS="${SCALE_BILLING_VMS:-3}"

if [ "${#what_failed[@]}" -gt 0 ]; then
  echo "what failed:"
  printf '  - %s\n' "${what_failed[@]}"
fi
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
