import { writeFileSync } from 'node:fs';
import Mocha from 'mocha';

/**
 * mocha's spec output, and the run's counts (mocha's stats: tests, passes, failures, pending) with the full title and
 * the error of each failed test or hook (failedTitles) as JSON in the file of the reporter option `stats`, which
 * tests/run-all.sh and the Vagrant stage count from (tests/counts.sh):
 *   mocha --reporter tests/stats-reporter.ts --reporter-option stats=FILE …
 * A run that dies before its end writes no file.
 */
export default class StatsReporter extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    const file = (options?.reporterOptions as { stats?: string } | undefined)?.stats;
    if (!file) return;
    const failedTitles: string[] = [];
    runner.on(Mocha.Runner.constants.EVENT_TEST_FAIL, (test, error: Error) =>
      failedTitles.push(`${test.fullTitle()}: ${error.message}`),
    );
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () =>
      writeFileSync(file, `${JSON.stringify({ ...this.stats, failedTitles })}\n`),
    );
  }
}
