# Sourced, never run: counts a test run from its runner's JSON report, for tests/run-all.sh and the Vagrant stage.
#
#   report_counts KIND FILE          prints "PASSED FAILED" of a report; nothing when there is none (the run died)
#       mocha   tests/stats-reporter.ts's stats (passes, failures: a failed hook counts as a failure)
#       newman  newman's JSON export (its assertions)
#       stage   tests/vagrant/vagrant-stage.sh's counts.json (its checks)
#   report_failures KIND FILE        prints what failed in a report, a line each (a test with its error)
#   add_counts KIND FILE EXIT_CODE   adds the counts to $passed and $failed, sets $run_failed to this run's failures
#                                    and the array $run_failures to what failed. A run that exited non-zero without a
#                                    failure in its report counts as one failure.

# counts|failures KIND FILE
report_of() {
  node -e '
    const [what, kind, file] = process.argv.slice(1);
    const report = JSON.parse(require("fs").readFileSync(file, "utf8"));
    const assertions = report.run?.stats.assertions;
    const of = {
      mocha: { counts: () => [report.passes, report.failures], failures: () => report.failedTitles },
      newman: {
        counts: () => [assertions.total - assertions.failed, assertions.failed],
        failures: () => report.run.failures.map((f) => `${f.source?.name}: ${f.error?.test ?? f.error?.message}`),
      },
      stage: { counts: () => [report.passed, report.failed], failures: () => report.failures },
    }[kind];
    if (what === "counts") {
      const counts = of.counts();
      if (!counts.every(Number.isInteger)) throw new Error(`${file}: no ${kind} counts`);
      console.log(counts.join(" "));
    } else {
      for (const name of of.failures() ?? []) console.log(String(name).replace(/\s+/g, " ").trim().slice(0, 300));
    }
  ' "$@" 2>/dev/null
}
report_counts() { report_of counts "$@"; }
report_failures() { report_of failures "$@"; }

add_counts() {
  local ok=0 bad=0
  read -r ok bad < <(report_counts "$1" "$2")
  run_failures=()
  if [ "${bad:-0}" -gt 0 ]; then
    mapfile -t run_failures < <(report_failures "$1" "$2")
  elif [ "$3" -ne 0 ]; then
    bad=1 run_failures=("exited with $3 before its end, or with no failure in its report")
  fi
  run_failed=${bad:-0}
  passed=$((passed + ${ok:-0}))
  failed=$((failed + run_failed))
}
