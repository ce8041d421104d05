import { billingTopology } from '@crud-master/shared';
import { migrate } from '@crud-master/shared/database';
import { openBroker, type TestBroker } from '@crud-master/test-support/broker';
import { testEnv, unique } from '@crud-master/test-support/env';
import { eventually, request, urlOf } from '@crud-master/test-support/http';
import { management, managementAuth } from '@crud-master/test-support/operator';
import { openOrders, type TestOrders } from '@crud-master/test-support/orders';
import { type BillingConsumer, start } from '../src/app.js';
import { loadConfig, MIGRATIONS_DIR } from '../src/config.js';

/** An order as the gateway publishes it. */
export const order = (user = 'usr_123', items = 3) =>
  JSON.stringify({ user_id: user, number_of_items: items, total_amount: '99.97' });

/** A billing-consumer with these settings, its health API on a free loopback port. */
export const startConsumer = (overrides: Record<string, string | number> = {}) =>
  start(loadConfig(testEnv({ BILLING_HEALTH_HOST: '127.0.0.1', BILLING_HEALTH_PORT: 0, ...overrides })));

export const readyzOf = (consumer: BillingConsumer) => request(urlOf(consumer.server, '/readyz'));

/** Resolves once billing_db holds each message id exactly once. */
export const storedOnce = (orders: TestOrders, ids: string[], timeoutMs = 10_000) =>
  eventually(
    async () => ((await orders.countsOf(ids)).every((n) => n === 1) ? true : undefined),
    timeoutMs,
    `${ids.length} rows`,
  );

/**
 * Bounds a dead-letter queue as the rabbitmq role's policy does (max-length, reject-publish), with a bound of the
 * test's; `remove()` takes the policy away again.
 */
export async function boundDeadLetters(queue: string, maxLength: number) {
  const vhost = encodeURIComponent(process.env.RABBITMQ_VHOST ?? '');
  const url = `${management}/policies/${vhost}/${encodeURIComponent(`bound-${queue}`)}`;
  const definition = { 'max-length': maxLength, overflow: 'reject-publish' };
  const body = { pattern: `^${queue.replace(/[.-]/g, '\\$&')}$`, definition, 'apply-to': 'queues', priority: 10 };
  const put = await request(url, { method: 'PUT', headers: managementAuth, json: body });
  if (put.status >= 300) throw new Error(`the management API refused the policy: ${put.status}`);
  return { remove: () => request(url, { method: 'DELETE', headers: managementAuth }) };
}

/** billing_db (migrated) and the test broker. */
export async function openStores() {
  await migrate(loadConfig(testEnv()).db, MIGRATIONS_DIR);
  const orders = await openOrders();
  const broker = await openBroker();
  return {
    broker,
    orders,
    close: async () => {
      await broker.close();
      await orders.close();
    },
  };
}

/**
 * A billing-consumer on a billing queue of its own, started fresh for each test of the calling suite (a test may stop
 * it, or replace it with one of other settings). Its fields are set once the suite's before() ran.
 */
export function consumerUnderTest() {
  const queue = unique('billing-test');
  const { deadLetterQueue, deadLetterExchange } = billingTopology(queue);
  let close = async () => {};
  const under = {
    queue,
    deadLetters: deadLetterQueue,
    broker: undefined as unknown as TestBroker,
    orders: undefined as unknown as TestOrders,
    consumer: undefined as BillingConsumer | undefined,
    startConsumer: (overrides: Record<string, string | number> = {}) =>
      startConsumer({ RABBITMQ_QUEUE: queue, ...overrides }),
    storedOnce: (ids: string[]) => storedOnce(under.orders, ids),
  };

  before(async () => {
    ({ broker: under.broker, orders: under.orders, close } = await openStores());
    await under.broker.declare(queue);
    under.consumer = await under.startConsumer();
  });

  afterEach(async () => {
    await under.consumer?.stop();
    under.consumer = await under.startConsumer();
  });

  after(async () => {
    await under.consumer?.stop();
    await under.broker.deleteQueues(queue, deadLetterQueue);
    await under.broker.channel.deleteExchange(deadLetterExchange);
    await close();
  });

  return under;
}
