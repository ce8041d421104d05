import { setTimeout as sleep } from 'node:timers/promises';
import { unique } from '@crud-master/test-support/env';
import { eventually, request, untilReady } from '@crud-master/test-support/http';
import { management, managementAuth } from '@crud-master/test-support/operator';
import { expect } from 'chai';
import {
  billingDb,
  billingHealth,
  consumerConnection,
  consumersOfQueue,
  countsOf,
  everyOnce,
  postOrder,
  psqlAsPostgres,
  queueUrl,
  rabbitmqctl,
  untilConsuming,
} from '@crud-master/test-support/broker-faults';

/**
 * Broker faults against the deployed stack, as an operator could cause them: billing_queue deleted while orders
 * arrive, a memory alarm that blocks publishers, and RabbitMQ's consumer_timeout closing the consumer's channel during
 * a long database outage. Each restores what it changed. Addresses as in deployed-stack.test.ts.
 */
describe('the deployed stack under broker faults', function () {
  this.timeout(180_000);

  before(untilConsuming);

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
