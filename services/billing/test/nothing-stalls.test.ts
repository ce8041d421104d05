import { execFileSync } from 'node:child_process';
import { unique } from '@crud-master/test-support/env';
import { eventually, request, urlOf } from '@crud-master/test-support/http';
import { management, managementAuth } from '@crud-master/test-support/operator';
import { scrape } from '@crud-master/test-support/metrics';
import { expect } from 'chai';
import pg from 'pg';
import { consumerUnderTest, order, readyzOf } from './consumer-under-test.js';

/** The broker on this host, as an operator drives it (sudo: without the .env variables the tests load). */
const rabbitmqctl = (...args: string[]) =>
  execFileSync('sudo', ['-n', 'rabbitmqctl', ...args], { encoding: 'utf8', cwd: '/' }).trim();
const psqlAsPostgres = (database: string, query: string) =>
  execFileSync('sudo', ['-u', 'postgres', 'psql', '-d', database, '-XtAc', query], {
    encoding: 'utf8',
    cwd: '/',
  }).trim();

/** Runs `body` under a broker memory alarm (a watermark of 0), and restores the watermark however it ends. */
async function underMemoryAlarm(body: () => Promise<void>): Promise<void> {
  const watermark = rabbitmqctl('eval', 'vm_memory_monitor:get_vm_memory_high_watermark().');
  const absolute = /^\{absolute,(\d+)\}$/.exec(watermark)?.[1];
  expect(Number(absolute ?? watermark), `the watermark to restore (${watermark})`).to.be.above(0);
  rabbitmqctl('set_vm_memory_high_watermark', '0');
  try {
    await body();
  } finally {
    rabbitmqctl('set_vm_memory_high_watermark', ...(absolute ? ['absolute', absolute] : [watermark]));
  }
}

/**
 * Closes the connection billing-consumer consumes on, found by its name (the tests log in as the .env administrator).
 */
async function closeConsumerConnection(): Promise<void> {
  const listed = rabbitmqctl('list_connections', 'name', 'user', 'client_properties', '--formatter', 'json');
  const connections = JSON.parse(listed) as Array<{ name: string; user: string; client_properties: unknown }>;
  const ours = connections.filter(
    (c) => c.user === process.env.RABBITMQ_USER && JSON.stringify(c.client_properties).includes('"billing-consumer"'),
  );
  expect(ours, 'the consumer connection under test').to.have.length(1);
  // the management API learns of a new connection with its next statistics
  const url = `${management}/connections/${encodeURIComponent(ours[0]!.name)}`;
  await eventually(
    async () => ((await request(url, { method: 'DELETE', headers: managementAuth })).status === 204 ? true : undefined),
    10_000,
    'the connection closed',
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('billing-consumer: nothing a message or the broker does stalls billing', function () {
  this.timeout(90_000);
  const billing = consumerUnderTest();

  it(
    'When the channel closes while a batch is being stored and a poison message waits, ' +
      "then the new channel's redeliveries are all settled: every order stored once, and the poison " +
      'dead-lettered',
    async () => {
      await billing.consumer!.stop();
      // batches of 3, so that the closed channel's poison message and the new channel's redeliveries meet in one
      billing.consumer = await billing.startConsumer({ BILLING_PREFETCH: 6 });
      await eventually(
        async () => ((await billing.broker.inspect(billing.queue))?.consumerCount === 1 ? true : undefined),
        5_000,
        'a consumer',
      );
      const lock = new pg.Client({
        host: process.env.BILLING_DB_HOST ?? '127.0.0.1',
        user: process.env.BILLING_DB_USER,
        password: process.env.BILLING_DB_PASSWORD,
        database: process.env.BILLING_DB_NAME,
      });
      await lock.connect();
      const [first, second, poison] = [
        unique('before-reconnect'),
        unique('after-reconnect'),
        unique('poison-reconnect'),
      ];
      try {
        // the first order's batch waits on the lock; the poison message waits behind it
        await lock.query('BEGIN; LOCK TABLE orders IN EXCLUSIVE MODE');
        await billing.broker.publish(billing.queue, order('usr_reconnect'), { messageId: first });
        await sleep(500);
        await billing.broker.publish(billing.queue, 'not an order, across a reconnect', { messageId: poison });
        await sleep(300);
        await closeConsumerConnection();
        // the new channel gets both again, then a new order
        await sleep(2_500);
        await billing.broker.publish(billing.queue, order('usr_reconnect'), { messageId: second });
        await sleep(300);
      } finally {
        await lock.query('COMMIT');
        await lock.end();
      }
      await billing.storedOnce([first, second]);
      const dead = await eventually(
        () => billing.broker.take(billing.deadLetters),
        10_000,
        'the poison message in the dead-letter queue',
      );
      expect(dead.properties.messageId).to.equal(poison);
      await sleep(1_000);
      expect(await billing.broker.count(billing.queue)).to.equal(0);
    },
  );

  it(
    'When a memory alarm blocks publishers while a reused key, a poison message and orders wait, ' +
      'then the consumer stores every order and /readyz answers within 5 s',
    async () => {
      await billing.consumer!.stop();
      billing.consumer = undefined;
      const key = unique('alarm-key');
      await billing.broker.publish(billing.queue, order('usr_alarm', 1), { messageId: key });
      await billing.broker.publish(billing.queue, order('usr_alarm', 2), { messageId: key });
      await billing.broker.publish(billing.queue, 'not an order, under an alarm', {
        messageId: unique('alarm-poison'),
      });
      const others = Array.from({ length: 20 }, () => unique('under-alarm'));
      for (const id of others) await billing.broker.publish(billing.queue, order('usr_other'), { messageId: id });
      await underMemoryAlarm(async () => {
        billing.consumer = await billing.startConsumer();
        await billing.storedOnce([...others, key]);
        const started = Date.now();
        const reply = await readyzOf(billing.consumer);
        expect(Date.now() - started, '/readyz answered within').to.be.below(5_000);
        expect(reply.status, JSON.stringify(reply.body)).to.be.oneOf([200, 503]);
        expect(await billing.orders.rejectedOf([key])).to.have.length(1);
      });
    },
  );

  it(
    'When the database refuses every batch for a reason retrying cannot cure, ' +
      'then the orders stay queued and /readyz and a metric say so, until it is fixed',
    async () => {
      // billing_db as a consumer of another release finds it: no key that its ON CONFLICT names (SQLSTATE 42P10)
      const database = process.env.BILLING_DB_NAME ?? 'billing_db';
      const restoreKey = 'ALTER TABLE orders ADD CONSTRAINT orders_user_id_message_id_key UNIQUE (user_id, message_id)';
      psqlAsPostgres(database, 'ALTER TABLE orders DROP CONSTRAINT orders_user_id_message_id_key');
      let restored = false;
      const deadLettersBefore = await billing.broker.count(billing.deadLetters);
      try {
        const id = unique('schema');
        await billing.broker.publish(billing.queue, order('usr_schema'), { messageId: id });
        const failing = await eventually(
          async () => {
            const reply = await readyzOf(billing.consumer!);
            return reply.status === 503 && reply.body.details.storeFailure
              ? reply.body.details.storeFailure
              : undefined;
          },
          10_000,
          '/readyz to report the failing store',
        );
        expect(failing).to.include({ permanent: true });
        expect(failing.error).to.match(/unique or exclusion constraint/);
        expect(
          (await scrape(urlOf(billing.consumer!.metricsServer, '/metrics'))).get('billing_store_failing'),
        ).to.equal(1);
        expect(await billing.broker.count(billing.deadLetters), 'the order is not dead-lettered').to.equal(
          deadLettersBefore,
        );
        psqlAsPostgres(database, restoreKey);
        restored = true;
        await billing.storedOnce([id]);
        await eventually(
          async () => ((await readyzOf(billing.consumer!)).status === 200 ? true : undefined),
          10_000,
          '/readyz ready again',
        );
      } finally {
        if (!restored) psqlAsPostgres(database, restoreKey);
      }
    },
  );
});
