# Sourced, never run: counts a test run from its runner's JSON report, for tests/run-all.sh and the Vagrant stage.
#
#   report_counts KIND FILE          prints "PASSED FAILED" of a report; nothing when there is none (the run died)
#       mocha   tests/stats-reporter.ts's stats (passes, failures: a failed hook counts as a failure)
#       newman  newman's JSON export (its assertions)
#       stage   tests/vagrant/vagrant-stage.sh's counts.json (its checks)
#   add_counts KIND FILE EXIT_CODE   adds them to $passed and $failed, and sets $run_failed to this run's failures. A
#                                    run that exited non-zero without a failure in its report counts as one failure.

report_counts() {
  node -e '
    const [kind, file] = process.argv.slice(1);
    const report = JSON.parse(require("fs").readFileSync(file, "utf8"));
    const assertions = report.run?.stats.assertions;
    const counts = {
      mocha: () => [report.passes, report.failures],
      newman: () => [assertions.total - assertions.failed, assertions.failed],
      stage: () => [report.passed, report.failed],
    }[kind]();
    if (!counts.every(Number.isInteger)) throw new Error(`${file}: no ${kind} counts`);
    console.log(counts.join(" "));
  ' "$1" "$2" 2>/dev/null
}

add_counts() {
  local ok=0 bad=0
  read -r ok bad < <(report_counts "$1" "$2")
  if [ "$3" -ne 0 ] && [ "${bad:-0}" -eq 0 ]; then bad=1; fi
  run_failed=${bad:-0}
  passed=$((passed + ${ok:-0}))
  failed=$((failed + run_failed))
}
