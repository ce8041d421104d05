#!/usr/bin/env bash
# `make test`: provision this host with the roles (`make local`, with no .env secret on any command line), prove the
# second run changes nothing, check the types and run every linter (make lint), then run the component suite, and against the deployed stack the end-to-end suite, the Postman collection
# (newman), the privileges of the deployment (links planted before a provisioning run), the hostile-input fuzz and
# the chaos test; last, the Vagrant stage (the three machines of the Vagrantfile with the docker provider,
# tests/vagrant/vagrant-stage.sh), and again with three billing VMs (make scale-test, five machines). Every step runs even when an earlier one failed; the last line sums them all:
# `tests: N passed, M failed`.
set -uo pipefail
cd "$(dirname "$0")/.."
results=.test-results
rm -rf "$results" && mkdir -p "$results"
passed=0
failed=0

# A check counts as one test: its command's exit code.
check() {
  local name=$1; shift
  echo "==> $name"
  if "$@" 2>&1 | tee "$results/$name.log"; then
    passed=$((passed + 1)); echo "==> $name: passed"
  else
    failed=$((failed + 1)); echo "==> $name: FAILED (log: $results/$name.log)"
  fi
}

# A mocha suite counts its own tests; a run that dies before its summary counts as one failure more.
suite() {
  local name=$1; shift
  echo "==> suite $name"
  npx mocha "$@" 2>&1 | tee "$results/$name.log"
  local code=${PIPESTATUS[0]}
  local passing failing
  passing=$(grep -Eo '^ +[0-9]+ passing' "$results/$name.log" | grep -Eo '[0-9]+' | tail -1)
  failing=$(grep -Eo '^ +[0-9]+ failing' "$results/$name.log" | grep -Eo '[0-9]+' | tail -1)
  passed=$((passed + ${passing:-0}))
  failed=$((failed + ${failing:-0}))
  if [ "$code" -ne 0 ] && [ -z "$failing" ]; then failed=$((failed + 1)); fi
}

# The Postman collection counts its pm.test assertions, from newman's JSON report; a run that fails without a failed
# assertion (no report, a broken script) counts as one failure more.
postman() {
  echo "==> postman"
  npx newman run postman/crud-master.postman_collection.json --env-var "baseUrl=${BASE_URL:-http://localhost:8080}" \
    --reporters cli,json --reporter-json-export "$results/postman.json" 2>&1 | tee "$results/postman.log"
  local code=${PIPESTATUS[0]} counts
  counts=$(node -e 'const { total, failed } = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).run.stats.assertions;
    console.log(total - failed, failed)' "$results/postman.json" 2>/dev/null) || counts='0 0'
  passed=$((passed + ${counts% *}))
  failed=$((failed + ${counts#* }))
  if [ "$code" -ne 0 ] && [ "${counts#* }" -eq 0 ]; then failed=$((failed + 1)); fi
}

# A Vagrant stage (make vagrant-test, make scale-test) counts its own checks in its last line.
vagrant_stage() {
  local target=$1
  echo "==> $target"
  make --no-print-directory "$target" 2>&1 | tee "$results/$target.log"
  local code=${PIPESTATUS[0]} line ok=0 bad=0
  line=$(grep -E '^vagrant-stage: [0-9]+ passed, [0-9]+ failed' "$results/$target.log" | tail -1)
  if [ -n "$line" ]; then read -r ok bad < <(grep -Eo '[0-9]+' <<<"$line" | tr '\n' ' '); fi
  passed=$((passed + ok))
  failed=$((failed + bad))
  if [ "$code" -ne 0 ] && [ "$bad" -eq 0 ]; then failed=$((failed + 1)); fi
}

# The first provisioning runs under a sampler of every process's command line: no .env secret may appear on one.
check provision tests/provision/secrets-on-cmdline.sh make --no-print-directory local
check provision-idempotent make --no-print-directory local-idempotent
check install npm ci --no-audit --no-fund
check build npm run build
check typecheck npx tsc -p tsconfig.test.json
# ESLint, knip (each workspace declares exactly what it imports), ansible-lint, yamllint, Redocly
check lint make --no-print-directory lint
suite component 'services/*/test/**/*.test.ts' 'tests/component/**/*.test.ts'
suite e2e 'tests/e2e/**/*.test.ts'
# Links planted by the service and build users, then two provisioning runs: this host only.
suite privileges 'tests/privileges/**/*.test.ts'
postman
FUZZ_RUNS=2000 suite fuzz 'tests/fuzz/**/*.test.ts'
CHAOS_ORDERS=2000 suite chaos 'tests/chaos/**/*.test.ts'
vagrant_stage vagrant-test
vagrant_stage scale-test

echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
