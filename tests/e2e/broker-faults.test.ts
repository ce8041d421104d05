import { setTimeout as sleep } from 'node:timers/promises';
import { unique } from '@crud-master/test-support/env';
import { onHost } from '@crud-master/test-support/hosts';
import { eventually, request, untilReady } from '@crud-master/test-support/http';
import { management, managementAuth, orderCounts } from '@crud-master/test-support/operator';
import { billingQueue, stack } from '@crud-master/test-support/stack';
import { expect } from 'chai';

/**
 * Broker faults against the deployed stack, as an operator could cause them: billing_queue deleted while orders
 * arrive, a memory alarm that blocks publishers, and RabbitMQ's consumer_timeout closing the consumer's channel during
 * a long database outage. Each restores what it changed. Addresses as in deployed-stack.test.ts.
 */
const env = process.env;
const { gateway, billingHealth } = stack;
const { vhost, queue } = billingQueue;
const queueUrl = `${management}/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}`;
const billingDb = env.BILLING_DB_NAME ?? 'billing_db';

const rabbitmqctl = (...args: string[]) => onHost('billing', 'sudo', ['-n', 'rabbitmqctl', ...args]).trim();
const psqlAsPostgres = (database: string, query: string) =>
  onHost('billing', 'sudo', ['-u', 'postgres', 'psql', '-d', database, '-tAc', query]).trim();
const countsOf = (keys: string[]) => orderCounts((query) => psqlAsPostgres(billingDb, query), keys);

const postOrder = (key: string | undefined, user = 'usr_broker_faults') =>
  request(`${gateway}/api/billing`, {
    method: 'POST',
    headers: key ? { 'Idempotency-Key': key } : {},
    json: { user_id: user, number_of_items: 1, total_amount: '3.00' },
  });

/** billing_queue's consumers as the management API shows them (its figures lag by a few seconds); 0 when it is gone. */
const consumersOfQueue = async (): Promise<number> => {
  const reply = await request(queueUrl, { headers: managementAuth });
  return reply.status === 200 ? Number(reply.body.consumers ?? 0) : 0;
};

/** The connection billing-consumer consumes on, as the management API names it. */
const consumerConnection = async (): Promise<string | undefined> => {
  const reply = await request(`${management}/consumers/${encodeURIComponent(vhost)}`, { headers: managementAuth });
  const consumers = reply.body as Array<{ queue: { name: string }; channel_details: { connection_name: string } }>;
  return consumers.find((c) => c.queue.name === queue)?.channel_details.connection_name;
};

const everyOnce = (keys: string[], timeoutMs: number, what: string) =>
  eventually(() => (countsOf(keys).every((n) => n === 1) ? true : undefined), timeoutMs, what);

describe('the deployed stack under broker faults', function () {
  this.timeout(180_000);

  before(async () => {
    await eventually(
      async () => ((await consumersOfQueue()) >= 1 ? true : undefined),
      30_000,
      'billing_queue with a consumer',
    );
  });

  it(
    'When billing_queue is deleted while orders arrive, ' +
      'then no 202 is lost but the one in flight at the delete, and the queue is back with a consumer ' +
      'within seconds',
    async () => {
      const outcomes = new Map<string, number>();
      const spans = new Map<string, [number, number]>();
      const sending = (async () => {
        for (let i = 0; i < 80; i++) {
          const key = unique('queue-deleted');
          const started = Date.now();
          outcomes.set(key, (await postOrder(key)).status);
          spans.set(key, [started, Date.now()]);
          await sleep(50);
        }
      })();
      await sleep(1_500);
      const deleteStarted = Date.now();
      const deleted = await request(queueUrl, { method: 'DELETE', headers: managementAuth });
      expect(deleted.status, 'the management API deleted billing_queue').to.equal(204);
      const deletedAt = Date.now();
      await eventually(
        async () => ((await consumersOfQueue()) >= 1 ? true : undefined),
        15_000,
        'billing_queue back with a consumer',
      );
      const backSeconds = (Date.now() - deletedAt) / 1000;
      await sending;

      const accepted = [...outcomes].filter(([, status]) => status === 202).map(([key]) => key);
      const others = [...outcomes.values()].filter((status) => status !== 202 && status !== 503);
      await everyOnce(accepted, 30_000, 'every accepted order in billing_db').catch(() => undefined);
      const counts = countsOf(accepted);
      // RabbitMQ confirms a message it routed to a queue that an operator deletes before the message reaches it: the
      // order whose publish overlapped the DELETE may be lost with the queue, as the messages in it would be
      const overlapping = new Set(
        accepted.filter((key) => spans.get(key)![0] < deletedAt && spans.get(key)![1] > deleteStarted),
      );
      const lostWithQueue = accepted.filter((key, i) => counts[i] === 0 && overlapping.has(key));
      console.log(
        `      sent ${outcomes.size}: ${accepted.length} × 202, ${outcomes.size - accepted.length - others.length} ` +
          `× 503, ${lostWithQueue.length} lost with the queue; back with a consumer (as the management API shows ` +
          `it) after ${backSeconds} s`,
      );
      expect(others, 'answers other than 202 or 503').to.deep.equal([]);
      expect(counts.filter((n) => n > 1).length, 'orders stored more than once').to.equal(0);
      expect(
        accepted.filter((key, i) => counts[i] === 0 && !overlapping.has(key)),
        'orders answered 202 but not stored, that were not in flight at the delete',
      ).to.deep.equal([]);
      expect(lostWithQueue.length, 'orders lost with the queue (sent one at a time)').to.be.at.most(1);
      expect((await request(`${billingHealth}/readyz`)).status).to.equal(200);
    },
  );

  it(
    'When a memory alarm blocks the broker, ' +
      'then POST /api/billing answers 503 with a message_id, and a retry with it stores one order',
    async () => {
      const watermark = rabbitmqctl('eval', 'vm_memory_monitor:get_vm_memory_high_watermark().');
      const restore = /^\{absolute,(\d+)\}$/.exec(watermark)?.slice(1) ?? [watermark];
      expect(Number(restore.at(-1)), `the watermark to restore (${watermark})`).to.be.above(0);
      const keyed = unique('alarm');
      let blocked: Array<Awaited<ReturnType<typeof postOrder>>>;
      rabbitmqctl('set_vm_memory_high_watermark', '0');
      try {
        blocked = await Promise.all([postOrder(keyed), postOrder(undefined)]);
      } finally {
        rabbitmqctl('set_vm_memory_high_watermark', ...(restore.length === 1 ? restore : ['absolute', restore[0]!]));
      }
      for (const reply of blocked) {
        expect(reply.status, JSON.stringify(reply.body)).to.equal(503);
        expect(reply.headers.get('retry-after')).to.match(/^\d+$/);
      }
      expect(blocked[0]!.body.message_id).to.equal(keyed);
      const generated: string = blocked[1]!.body.message_id;
      expect(generated).to.match(/^[0-9a-f-]{36}$/);

      // A retry that meets a closed connection retries again, as a client would: the synchronous rabbitmqctl above
      // holds this process's event loop for seconds, past the gateway's keep-alive timeout, so a pooled connection can
      // be closed by the gateway just as a retry is sent on it ("other side closed").
      const retries = await eventually(
        async () => {
          const replies = await Promise.all([postOrder(keyed), postOrder(generated)]).catch(() => undefined);
          return replies?.every((reply) => reply.status === 202) ? replies : undefined;
        },
        30_000,
        'the retries accepted once the alarm cleared',
      );
      expect(retries.map((reply) => reply.body.message_id)).to.deep.equal([keyed, generated]);
      await everyOnce([keyed, generated], 30_000, 'both orders in billing_db');
      await sleep(2_000); // the publishes that timed out may be confirmed late: still one order each
      expect(countsOf([keyed, generated])).to.deep.equal([1, 1]);
    },
  );

  it(
    'When one client floods an Idempotency-Key reused for other orders while the dead-letter queue ' +
      'is full and a poison message waits, ' +
      "then every other user's order is stored within seconds, and each of the flood's 202s is " +
      'accounted for',
    async () => {
      // the deployed bound is 10,000: a policy of the test's, above the deployed one, makes the real queue full now
      const vhostPath = encodeURIComponent(vhost);
      const deadLetterQueue = `${queue}.dead-letter`;
      const depth = Number(
        (
          await request(`${management}/queues/${vhostPath}/${encodeURIComponent(deadLetterQueue)}`, {
            headers: managementAuth,
          })
        ).body.messages ?? 0,
      );
      const policyUrl = `${management}/policies/${vhostPath}/${encodeURIComponent(unique('e2e-full'))}`;
      const pattern = `^${deadLetterQueue.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
      const full = await request(policyUrl, {
        method: 'PUT',
        headers: managementAuth,
        json: {
          pattern,
          'apply-to': 'queues',
          priority: 100,
          definition: { 'max-length': depth, overflow: 'reject-publish' },
        },
      });
      expect(full.status).to.be.oneOf([201, 204]);
      const key = unique('flooded-key');
      const user = unique('usr_flood');
      const poison = unique('e2e-poison');
      const others = Array.from({ length: 20 }, () => unique('behind-the-flood'));
      try {
        // a message no gateway sends, as an administrator (or a replay of dead letters) could publish it
        const published = await request(`${management}/exchanges/${vhostPath}/amq.default/publish`, {
          method: 'POST',
          headers: managementAuth,
          json: {
            properties: { message_id: poison, delivery_mode: 2 },
            routing_key: queue,
            payload: 'not an order',
            payload_encoding: 'string',
          },
        });
        expect(published.body).to.deep.equal({ routed: true });
        const accepted: number[] = [];
        for (let items = 1; items <= 300; items++) {
          const reply = await request(`${gateway}/api/billing`, {
            method: 'POST',
            headers: { 'Idempotency-Key': key },
            json: { user_id: user, number_of_items: items, total_amount: '1.00' },
          });
          if (reply.status === 202) accepted.push(items);
        }
        for (const other of others) expect((await postOrder(other)).status).to.equal(202);
        const started = Date.now();
        await everyOnce(others, 15_000, "the other users' orders");
        const seconds = (Date.now() - started) / 1000;
        const stored = psqlAsPostgres(billingDb, `SELECT number_of_items FROM orders WHERE message_id = '${key}'`)
          .split('\n')
          .filter(Boolean)
          .map(Number);
        const rejected = await eventually(
          () => {
            const rows = psqlAsPostgres(
              billingDb,
              `SELECT number_of_items FROM rejected_orders WHERE message_id = '${key}'`,
            )
              .split('\n')
              .filter(Boolean)
              .map(Number);
            return rows.length + stored.length >= accepted.length ? rows : undefined;
          },
          15_000,
          'every 202 of the flood in orders or rejected_orders',
        );
        console.log(
          `      flood: ${accepted.length} × 202 of 300, 1 stored and ${rejected.length} recorded as rejected; the ` +
            `20 others stored within ${seconds} s`,
        );
        expect(stored, 'the first order of the key').to.have.length(1);
        expect([...stored, ...rejected].sort((a, b) => a - b)).to.deep.equal(accepted);
        const readiness = await eventually(
          async () => {
            const reply = await request(`${billingHealth}/readyz`);
            return reply.status === 503 && reply.body.details?.deadLetterQueue?.blocked
              ? reply.body.details
              : undefined;
          },
          15_000,
          '/readyz to say that dead-lettering is blocked',
        );
        expect(readiness.deadLetterQueue.held).to.be.at.least(1);
      } finally {
        await request(policyUrl, { method: 'DELETE', headers: managementAuth });
      }
      // the held poison message goes to the dead-letter queue once it has room
      await untilReady(billingHealth, 30_000, 'billing-consumer ready again, the held dead letter placed');
    },
  );

  it(
    "When RabbitMQ's consumer_timeout closes the consumer's channel during a long database outage, " +
      'then it recovers by itself and stores the order',
    async function () {
      // the broker checks consumer timeouts about once a minute
      this.timeout(240_000);
      const previous = /^\{ok,(\d+)\}$/.exec(
        rabbitmqctl('eval', 'application:get_env(rabbit, consumer_timeout).'),
      )?.[1];
      const key = unique('consumer-timeout');
      rabbitmqctl('eval', 'application:set_env(rabbit, consumer_timeout, 2000).');
      // a channel reads consumer_timeout when it opens: close the consumer's connection, so that it opens a new one
      const old = await consumerConnection();
      await request(`${management}/connections/${encodeURIComponent(old!)}`, {
        method: 'DELETE',
        headers: managementAuth,
      });
      const before = await eventually(
        async () => {
          const now = await consumerConnection();
          return now !== undefined && now !== old ? now : undefined;
        },
        30_000,
        'the consumer on a new connection',
      );
      psqlAsPostgres('postgres', `ALTER DATABASE ${billingDb} ALLOW_CONNECTIONS false`);
      let closedAfter: number;
      try {
        psqlAsPostgres(
          'postgres',
          `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '${billingDb}'`,
        );
        expect((await postOrder(key)).status).to.equal(202);
        const started = Date.now();
        await eventually(
          async () => {
            const now = await consumerConnection();
            return now !== undefined && now !== before ? now : undefined;
          },
          150_000,
          'the broker to close the channel and the consumer to consume on a new connection',
        );
        closedAfter = (Date.now() - started) / 1000;
      } finally {
        psqlAsPostgres('postgres', `ALTER DATABASE ${billingDb} ALLOW_CONNECTIONS true`);
        const restored =
          previous === undefined
            ? 'application:unset_env(rabbit, consumer_timeout).'
            : `application:set_env(rabbit, consumer_timeout, ${previous}).`;
        rabbitmqctl('eval', restored);
      }
      await everyOnce([key], 60_000, 'the order in billing_db once the database is back');
      await untilReady(billingHealth, 30_000, 'billing-consumer ready');
      console.log(
        `      consuming on a new connection ${closedAfter} s after the order; consumer_timeout restored to ` +
          `${previous ?? 'unset'}`,
      );
    },
  );
});
