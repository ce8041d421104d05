import { unique } from '@crud-master/test-support/env';
import { appHosts, onHost, type Host } from '@crud-master/test-support/hosts';
import { eventually, request, untilReady } from '@crud-master/test-support/http';
import { management, managementAuth, orderCounts, psqlBilling, readyInQueue } from '@crud-master/test-support/operator';
import { pm2ProcessesOn } from '@crud-master/test-support/pm2';
import { expectProblem } from '@crud-master/test-support/problem';
import { allStringsOrder, typedOrder } from '@crud-master/test-support/seed';
import { stack } from '@crud-master/test-support/stack';
import { expect } from 'chai';

/**
 * The stack that `make local` deployed, used as a user would: curl on :8080, pm2, the RabbitMQ management API and
 * psql as postgres. Addresses come from .env, as tests/support/stack.ts reads them.
 *
 * The defaults are the single host. The Vagrant stage (tests/vagrant/) runs the same suite against the VMs:
 *   E2E_GATEWAY_URL, E2E_INVENTORY_URL, E2E_BILLING_HEALTH_URL   the base URL of each service
 *   E2E_RABBITMQ_API_URL                                         the management API (…:15672/api)
 *   E2E_GATEWAY_EXEC, E2E_INVENTORY_EXEC, E2E_BILLING_EXEC       a command prefix that runs `pm2 …` and
 *                                                                `sudo -u postgres psql …` on that service's host
 *                                                                (tests/support/hosts.ts)
 */
const env = process.env;
const { gateway, inventory, billingHealth } = stack;
const pm2On = (host: Host, ...args: string[]) => onHost(host, 'pm2', args);
/** billing-consumer runs on billing-vm: the scenario's `pm2 stop/restart` run there. */
const pm2 = (...args: string[]) => pm2On('billing', ...args);

const countsOf = (keys: string[]): number[] => orderCounts(psqlBilling, keys);

const postOrder = (key: string, body: unknown) =>
  request(`${gateway}/api/billing`, { method: 'POST', headers: { 'Idempotency-Key': key }, json: body });

describe('the deployed stack (make local)', () => {
  describe('health', () => {
    for (const [name, url] of [
      ['api-gateway', gateway],
      ['inventory-api', inventory],
      ['billing-consumer', billingHealth],
    ]) {
      it(`When ${name} runs under PM2, then /healthz and /readyz answer 200`, async () => {
        for (const probe of ['healthz', 'readyz']) {
          const reply = await request(`${url}/${probe}`);
          expect(reply.status, `/${probe}: ${JSON.stringify(reply.body)}`).to.equal(200);
        }
      });
    }

    it('When pm2 lists the apps, then the three run online with the seed names', () => {
      const status: Record<string, string> = {};
      for (const [app, host] of Object.entries(appHosts)) {
        status[app] =
          pm2ProcessesOn(host).find((entry) => entry.name === app)?.status ?? `not in the pm2 list of the ${host} host`;
      }
      expect(status).to.deep.equal({
        'api-gateway': 'online',
        'inventory-api': 'online',
        'billing-consumer': 'online',
      });
    });
  });

  describe('movies through :8080', () => {
    it(
      'When a movie is created, read, searched, updated and deleted, ' + 'then each step answers as the contract says',
      async () => {
        const title = unique('E2E 100% Movie_');
        const created = await request(`${gateway}/api/movies`, {
          method: 'POST',
          json: { title, description: 'end to end' },
        });
        expect(created.status).to.equal(201);
        const location = created.headers.get('location');
        expect(location).to.equal(`/api/movies/${created.body.id}`);
        expect((await request(`${gateway}${location}`)).body).to.deep.equal(created.body);
        const found = await request(`${gateway}/api/movies?title=${encodeURIComponent(title.toUpperCase())}`);
        expect(found.body).to.deep.equal([created.body]);
        const updated = await request(`${gateway}${location}`, { method: 'PUT', json: { title: `${title} II` } });
        expect(updated.body).to.deep.equal({ ...created.body, title: `${title} II` });
        expect((await request(`${gateway}${location}`, { method: 'DELETE' })).status).to.equal(204);
        expectProblem(await request(`${gateway}${location}`), 404);
      },
    );

    it(
      'When ids, bodies or content types are bad, ' + 'then the gateway passes the 400, 404 and 415 problems through',
      async () => {
        expectProblem(await request(`${gateway}/api/movies/abc`), 400);
        expectProblem(await request(`${gateway}/api/movies/9000000000000000000`), 404);
        expectProblem(await request(`${gateway}/api/movies`, { method: 'POST', json: { title: '' } }), 400);
        expectProblem(
          await request(`${gateway}/api/movies`, {
            method: 'POST',
            headers: { 'content-type': 'text/plain' },
            body: 'x',
          }),
          415,
        );
        expectProblem(await request(`${gateway}/api/movies?limit=1000`), 400);
      },
    );

    it('When all movies are deleted, then the list is empty', async () => {
      await request(`${gateway}/api/movies`, { method: 'POST', json: { title: unique('Doomed') } });
      expect((await request(`${gateway}/api/movies`, { method: 'DELETE' })).status).to.equal(204);
      expect((await request(`${gateway}/api/movies`)).body).to.deep.equal([]);
    });
  });

  describe('billing through :8080', () => {
    it('When the seed and subject bodies are posted, then both answer 202 and land in billing_db once', async () => {
      const keys = [unique('e2e-typed'), unique('e2e-strings')];
      expect((await postOrder(keys[0]!, typedOrder)).status).to.equal(202);
      expect((await postOrder(keys[1]!, allStringsOrder)).status).to.equal(202);
      await eventually(
        () => (countsOf(keys).every((n) => n === 1) ? true : undefined),
        15_000,
        'both orders in billing_db',
      );
      expect(psqlBilling(`SELECT total_amount FROM orders WHERE message_id = '${keys[1]}'`)).to.equal('180.00');
    });

    it('When the body is invalid, then it answers 400 problem+json', async () => {
      expectProblem(await postOrder(unique('bad'), { user_id: 'u', number_of_items: 0, total_amount: 'x' }), 400);
    });
  });

  describe("the seed's resilience scenario", () => {
    // the next suite looks at its listeners: it must be up again, not restarting
    after(async () => {
      pm2('restart', 'billing-consumer');
      await untilReady(billingHealth, 30_000, 'billing-consumer ready after its restart');
    });

    it(
      'When billing-consumer is stopped, ' +
        'then orders get 202, wait Ready in billing_queue, and all land once after pm2 restart',
      async () => {
        pm2('stop', 'billing-consumer');
        const before = await readyInQueue();
        const keys = Array.from({ length: 5 }, () => unique('resilience'));
        for (const key of keys) {
          expect(
            (await postOrder(key, { user_id: 'usr_resilience', number_of_items: 1, total_amount: '12.34' })).status,
          ).to.equal(202);
        }
        await eventually(
          async () => ((await readyInQueue()) === before + 5 ? true : undefined),
          15_000,
          'the management API to show 5 more Ready',
        );
        expect(countsOf(keys)).to.deep.equal([0, 0, 0, 0, 0]);

        pm2('restart', 'billing-consumer');
        await eventually(
          () => (countsOf(keys).every((n) => n === 1) ? true : undefined),
          30_000,
          'all 5 orders in billing_db',
        );
        await eventually(async () => ((await readyInQueue()) === 0 ? true : undefined), 15_000, 'an empty queue');
      },
    );
  });

  describe('RabbitMQ', () => {
    it('When the management API lists users, then guest is gone and the .env user is an administrator', async () => {
      const users = (await request(`${management}/users`, { headers: managementAuth })).body as Array<{
        name: string;
        tags: string | string[];
      }>;
      expect(users.map((user) => user.name))
        .to.include(env.RABBITMQ_USER)
        .and.not.include('guest');
    });
  });
});
