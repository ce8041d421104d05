import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';

/**
 * What `make test` prints of a failed mocha test at its end (tests/run-all.sh's "what failed", from
 * tests/stats-reporter.ts through tests/counts.sh): CI shows the end of a run, so the end must say why, not only which.
 */
describe('the counts of a test run', function () {
  this.timeout(30_000);
  const repo = fileURLToPath(new URL('../..', import.meta.url));
  let work: string;

  before(() => {
    work = mkdtempSync(path.join(tmpdir(), 'test-counts-'));
    writeFileSync(
      path.join(work, 'sample.test.ts'),
      [
        "import assert from 'node:assert';",
        "describe('a sample', () => {",
        "  it('passes', () => {});",
        "  it('fails on a status', () => { assert.strictEqual(503, 200); });",
        "  it('fails with a long message', () => { throw new Error(`first ${'x'.repeat(900)}`); });",
        '});',
      ].join('\n'),
    );
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('When a mocha test fails, then what failed names it with its error on one line, cut short', () => {
    const stats = path.join(work, 'stats.json');
    const reporter = path.join(repo, 'tests', 'stats-reporter.ts');
    const mocha = spawnSync(
      'npx',
      ['mocha', '--reporter', reporter, '--reporter-option', `stats=${stats}`, path.join(work, 'sample.test.ts')],
      {
        cwd: repo,
        encoding: 'utf8',
      },
    );
    expect(mocha.status, mocha.stderr).to.equal(2);
    const counts = spawnSync(
      'bash',
      ['-c', '. tests/counts.sh; report_counts mocha "$1"; report_failures mocha "$1"', 'sh', stats],
      { cwd: repo, encoding: 'utf8' },
    );
    const [total, ...failures] = counts.stdout.trim().split('\n');
    expect(total).to.equal('1 2');
    expect(failures[0]).to.equal('a sample fails on a status: Expected values to be strictly equal: 503 !== 200');
    expect(failures[1]).to.match(/^a sample fails with a long message: first x+$/);
    expect(failures[1]).to.have.length(300);
  });
});
