import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { stripVTControlCharacters } from 'node:util';
import { unique } from '@crud-master/test-support/env';
import { onHost } from '@crud-master/test-support/hosts';
import { eventually, request, untilReady } from '@crud-master/test-support/http';
import { psqlBilling } from '@crud-master/test-support/operator';
import { stack } from '@crud-master/test-support/stack';
import { expect } from 'chai';

/**
 * `make status` and `make logs` as the operator paged at night runs them, from the checkout: on this host after
 * `make local`; in the Vagrant stage, from its copy of the checkout, on the VMs that `make up` made.
 */
const checkout = fileURLToPath(new URL('../..', import.meta.url));
const { gateway, billingHealth } = stack;
const make = (...args: string[]): string =>
  execFileSync('make', ['--no-print-directory', ...args], { cwd: checkout, encoding: 'utf8' });
/** A classic terminal's height: what `make status` must fit in. */
const SCREEN_LINES = 24;

describe("the operator's make targets", () => {
  describe('make status', () => {
    after(async () => {
      onHost('billing', 'pm2', ['restart', 'billing-consumer']);
      await untilReady(billingHealth, 30_000, 'billing-consumer ready after its restart');
    });

    it(
      'When billing-consumer is stopped and orders wait, ' +
        'then one screen shows it stopped, billing_queue deeper, and the rows',
      async function () {
        this.timeout(90_000);
        onHost('billing', 'pm2', ['stop', 'billing-consumer']);
        // rabbitmqctl's count, not the management API's (a few seconds behind)
        const readyIn = (status: string) => Number(/^\s+billing_queue\s+ready (\d+)/m.exec(status)?.[1]);
        const before = readyIn(make('status'));
        expect(before, 'billing_queue ready, before').to.be.a('number').and.not.NaN;
        for (let i = 0; i < 4; i++) {
          const reply = await request(`${gateway}/api/billing`, {
            method: 'POST',
            headers: { 'Idempotency-Key': unique('status') },
            json: { user_id: 'usr_status', number_of_items: 1, total_amount: '1.5' },
          });
          expect(reply.status).to.equal(202);
        }
        const status = await eventually(
          () => {
            const now = make('status');
            return readyIn(now) === before + 4 ? now : undefined;
          },
          30_000,
          'make status to show billing_queue 4 deeper',
        );
        console.log(status.replace(/^/gm, '      '));
        const lines = status.trimEnd().split('\n');
        expect(lines.length, 'lines of make status').to.be.at.most(SCREEN_LINES);
        expect(status).to.match(/^\s+billing-consumer\s+stopped\s+0\/1/m);
        expect(status).to.match(/^\s+api-gateway\s+online\s+(\d+)\/\1/m);
        expect(status).to.match(/^\s+inventory-api\s+online\s+(\d+)\/\1/m);
        expect(status).to.match(/^\s+(api-gateway|inventory-api)\s+\/readyz 200 ready$/m);
        expect(status).to.match(/^\s+billing-consumer\s+\/readyz no answer/m);
        expect(/^\s+billing_queue\.dead-letter\s+ready \d+/m.test(status), 'the dead-letter queue').to.equal(true);
        const orders = Number(psqlBilling('SELECT count(*) FROM orders'));
        expect(Number(/^\s+billing_db: .*\borders (\d+)/m.exec(status)?.[1]), 'billing_db rows').to.equal(orders);
        expect(status).to.match(/^\s+movies_db: movies \d+$/m);
      },
    );
  });

  describe('make logs', () => {
    it(
      'When make logs follows the gateway, ' + 'then a new request shows as a readable line, and Ctrl-C stops it all',
      async function () {
        this.timeout(30_000);
        const follower = spawn('make', ['--no-print-directory', 'logs', 'LOG_LINES=0', 'APP=api-gateway'], {
          cwd: checkout,
          detached: true,
        });
        let out = '';
        // pino-pretty colours its lines
        const read = (chunk: Buffer) => (out += stripVTControlCharacters(chunk.toString()));
        follower.stdout.on('data', read);
        follower.stderr.on('data', read);
        const exited = new Promise<number | null>((resolve) =>
          follower.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : null))),
        );
        try {
          const path = `/api/movies?title=${unique('logs')}`;
          // until the follower is attached, a request may come before it: ask again
          const line = await eventually(
            async () => {
              await request(`${gateway}${path}`);
              return out.split('\n').find((l) => l.includes(path));
            },
            20_000,
            `the request of ${path} in make logs`,
          );
          expect(line).to.match(/INFO.*\(api-gateway\): request/);
          expect(out, 'no raw JSON line').to.not.match(/^(\S+ \| )?\{"level":/m);
        } finally {
          process.kill(-follower.pid!, 'SIGINT');
        }
        const code = await Promise.race([
          exited,
          new Promise((resolve) => setTimeout(() => resolve('still running'), 5_000)),
        ]);
        expect(code, 'make logs after Ctrl-C').to.not.equal('still running');
      },
    );
  });
});
