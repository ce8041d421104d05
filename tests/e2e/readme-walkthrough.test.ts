import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { type Host, spawnOnHost } from '@crud-master/test-support/hosts';
import { eventually } from '@crud-master/test-support/http';
import { psqlBilling } from '@crud-master/test-support/operator';
import { expect } from 'chai';

/**
 * README.md's audit walkthrough, typed as written against the deployed stack: each block marked ```sh walkthrough
 * runs in the checkout (where .env is), and each marked ```sh walkthrough billing-vm on billing-consumer's host (this
 * one after make local, billing-vm over SSH in the Vagrant stage), as one shell session a block. Every command must
 * succeed, and one whose comment starts with a status (# 201 …) must answer that status, each time it answers. A
 * command that the README says to leave with Ctrl-C gets one (SIGINT) after a few seconds.
 */
const README = new URL('../../README.md', import.meta.url);
const CTRL_C_AFTER_S = 5;

interface Command {
  line: string;
  status?: string;
  ctrlC: boolean;
}
interface Block {
  host: Host | 'checkout';
  commands: Command[];
}

/** The walkthrough's blocks, in order, each as its commands (a line, with the lines its backslashes continue). */
function walkthroughBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  for (const [, where, body] of markdown.matchAll(/^```sh walkthrough( billing-vm)?\n([\s\S]*?)^```$/gm)) {
    const lines: string[] = [];
    for (const line of body!.split('\n').filter(Boolean)) {
      if (lines.at(-1)?.endsWith('\\')) lines.push(`${lines.pop()}\n${line}`);
      else lines.push(line);
    }
    const commands = lines
      // how to reach billing-vm: the runner is there already (and after make local, the README says to skip it)
      .filter((line) => !/^vagrant ssh /.test(line))
      .map((line) => ({ line, status: /\s#\s+(\d{3})\b/.exec(line)?.[1], ctrlC: /\s#.*Ctrl-C/.test(line) }));
    blocks.push({ host: where ? 'billing' : 'checkout', commands });
  }
  return blocks;
}

/** One shell session: after each command, a marker with its index and exit code, then its stdout, then its stderr. */
function script(commands: Command[]): string {
  const steps = commands.map(({ line, ctrlC }, index) => {
    const command = ctrlC ? `timeout -s INT ${CTRL_C_AFTER_S} ${line}` : line;
    // braces, not a subshell: a variable set here (id=…) is there for the next commands
    return (
      `{ ${command}\n} > "$out" 2> "$err" < /dev/null; code=$?; printf '\\n@@@ ${index} %s\\n' "$code"; ` +
      `cat "$out"; printf '\\n@@@ stderr\\n'; cat "$err"`
    );
  });
  return ['out=$(mktemp); err=$(mktemp)', ...steps, 'rm -f "$out" "$err"'].join('\n');
}

function run(block: Block): string {
  const result =
    block.host === 'checkout'
      ? spawnSync('sh', ['-c', script(block.commands)], { encoding: 'utf8' })
      : spawnOnHost(block.host, 'sh', ['-c', script(block.commands)]);
  expect(result.status, `the block's shell: ${result.stderr}`).to.equal(0);
  return result.stdout;
}

/** Each command's exit code, stdout and stderr, from a run's markers. */
const outcomes = (stdout: string): Array<{ code: number; output: string; errors: string }> =>
  [...stdout.matchAll(/\n@@@ \d+ (\d+)\n([\s\S]*?)\n@@@ stderr\n([\s\S]*?)(?=\n@@@ \d|$)/g)].map(
    ([, code, output, errors]) => ({
      code: Number(code),
      output: output!,
      errors: errors!,
    }),
  );

/** The statuses a command's output shows: curl -i's status lines, or the codes curl -w '%{http_code}' prints. */
const statusesIn = (output: string): string[] =>
  [...output.matchAll(/^(?:HTTP\/[\d.]+ (\d{3})\b.*|(\d{3}))$/gm)].map((m) => (m[1] ?? m[2])!);

const ordersOfUser3 = () => Number(psqlBilling("SELECT count(*) FROM orders WHERE user_id = '3'"));

describe("README.md's audit walkthrough, typed as written", function () {
  this.timeout(120_000);
  const blocks = walkthroughBlocks(readFileSync(README, 'utf8'));

  after(() => {
    // a failed block must not leave billing stopped for the suites after it
    spawnOnHost('billing', 'sudo', ['pm2', 'restart', 'billing-consumer']);
  });

  it(
    'When README.md is read, ' +
      'then its walkthrough has the blocks of the host and of billing-vm, with statuses to check',
    () => {
      expect(blocks.map((block) => block.host)).to.deep.equal(['checkout', 'billing', 'checkout', 'billing']);
      expect(blocks.flatMap((block) => block.commands).filter((command) => command.status).length).to.be.above(5);
    },
  );

  it(
    'When each command of the walkthrough runs, ' +
      'then each succeeds, answers the status its comment says, and the three orders land once',
    async () => {
      const before = ordersOfUser3();
      const failures: string[] = [];
      for (const block of blocks) {
        const results = outcomes(run(block));
        expect(results, `the commands of a block on ${block.host}`).to.have.length(block.commands.length);
        block.commands.forEach((command, index) => {
          const { code, output, errors } = results[index]!;
          const what = `${command.line.split('\n')[0]} (on ${block.host})`;
          if (code !== 0 && !(command.ctrlC && code === 124))
            failures.push(`exit code ${code}: ${what}: ${errors.slice(0, 200)}`);
          if (command.status !== undefined) {
            const statuses = statusesIn(output);
            if (statuses.length === 0 || statuses.some((status) => status !== command.status)) {
              failures.push(
                `statuses ${statuses.join(', ') || 'none'}, not ${command.status}: ${what}: ${output.slice(0, 200)}`,
              );
            }
          }
        });
      }
      expect(failures.length, failures.join('\n')).to.equal(0);
      // the walkthrough's promise: the restart drains the queue, and each order lands exactly once
      await eventually(
        () => (ordersOfUser3() === before + 3 ? true : undefined),
        30_000,
        "three more orders of user '3'",
      );
    },
  );
});
