import { deadLetterQueueOf } from '@crud-master/shared';
import { migrate } from '@crud-master/shared/database';
import { expect } from 'chai';
import { openBroker, type TestBroker } from '../../../tests/support/broker.js';
import { testEnv, unique } from '../../../tests/support/env.js';
import { eventually, request } from '../../../tests/support/http.js';
import { relay } from '../../../tests/support/network.js';
import { openOrders, type TestOrders } from '../../../tests/support/orders.js';
import { expectProblem } from '../../../tests/support/problem.js';
import { type BillingConsumer, start } from '../src/app.js';
import { loadConfig, MIGRATIONS_DIR } from '../src/config.js';

const order = (user = 'usr_123') => JSON.stringify({ user_id: user, number_of_items: 3, total_amount: '99.97' });

describe('billing-consumer', () => {
  const queue = unique('billing-test');
  const deadLetters = deadLetterQueueOf(queue);
  let broker: TestBroker;
  let orders: TestOrders;
  let consumer: BillingConsumer | undefined;

  const startConsumer = (overrides: Record<string, string | number> = {}) =>
    start(loadConfig(testEnv({ BILLING_HEALTH_HOST: '127.0.0.1', BILLING_HEALTH_PORT: 0, RABBITMQ_QUEUE: queue, ...overrides })));

  const storedOnce = (ids: string[]) =>
    eventually(async () => ((await orders.countsOf(ids)).every((n) => n === 1) ? true : undefined), 10_000, `${ids.length} rows`);

  before(async () => {
    await migrate(loadConfig(testEnv()).db, MIGRATIONS_DIR);
    orders = await openOrders();
    broker = await openBroker();
    await broker.declare(queue);
    consumer = await startConsumer();
  });

  afterEach(async () => {
    await consumer?.stop();
    consumer = await startConsumer();
  });

  after(async () => {
    await consumer?.stop();
    await broker.deleteQueues(queue, deadLetters);
    await broker.close();
    await orders.close();
  });

  it('When a valid order is queued, then it is stored with its message id and the money exact', async () => {
    const id = unique('msg');
    await broker.publish(queue, order('usr_exact'), { messageId: id });
    await storedOnce([id]);
    expect(await orders.rowsOf([id])).to.deep.equal([{ user_id: 'usr_exact', number_of_items: 3, total_amount: '99.97', message_id: id }]);
  });

  it('When the same message is delivered twice, then it is stored once and both are acked', async () => {
    const id = unique('dup');
    await broker.publish(queue, order(), { messageId: id });
    await broker.publish(queue, order(), { messageId: id });
    await storedOnce([id]);
    await eventually(async () => ((await broker.count(queue)) === 0 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await orders.countsOf([id])).to.deep.equal([1]);
    expect(await broker.count(deadLetters)).to.equal(0);
  });

  const poison: Array<[string, string, string | undefined]> = [
    ['is not JSON', 'not json at all', 'poison-1'],
    ['has the wrong shape', JSON.stringify({ user_id: 'u', number_of_items: -2, total_amount: 5.5 }), 'poison-2'],
    ['has no messageId', order(), undefined],
  ];
  for (const [what, content, messageId] of poison) {
    it(`When a message ${what}, then it is dead-lettered at once and the next order is still stored`, async () => {
      const next = unique('after-poison');
      await broker.publish(queue, content, messageId ? { messageId: unique(messageId) } : {});
      await broker.publish(queue, order(), { messageId: next });
      await storedOnce([next]);
      const dead = await eventually(() => broker.take(deadLetters), 5_000, 'a dead letter');
      expect(dead.content.toString()).to.equal(content);
      expect(await broker.count(queue)).to.equal(0);
    });
  }

  it('When orders waited in the queue, then the consumer drains them all at start', async () => {
    await consumer!.stop();
    consumer = undefined;
    const ids = Array.from({ length: 250 }, () => unique('backlog'));
    for (const id of ids) await broker.publish(queue, order(), { messageId: id });
    expect(await broker.count(queue)).to.equal(250);
    expect(await orders.countsOf(ids)).to.satisfy((counts: number[]) => counts.every((n) => n === 0));
    consumer = await startConsumer();
    await storedOnce(ids);
    expect(await broker.count(queue)).to.equal(0);
  });

  it('When the database is down, then the order stays queued, is not dead-lettered, and is stored once it is back', async () => {
    await consumer!.stop();
    const database = await relay(Number(process.env.BILLING_DB_PORT ?? 5432));
    try {
      consumer = await startConsumer({ BILLING_DB_PORT: database.port });
      database.cut();
      const id = unique('outage');
      await broker.publish(queue, order(), { messageId: id });
      const readyz = await request(`http://127.0.0.1:${(consumer.server.address() as { port: number }).port}/readyz`);
      expectProblem(readyz, 503);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(await orders.countsOf([id])).to.deep.equal([0]);
      expect(await broker.count(deadLetters)).to.equal(0);
      database.restore();
      await storedOnce([id]);
    } finally {
      await consumer?.stop();
      consumer = undefined;
      await database.close();
    }
  });

  it('When the database and broker are reachable, then /healthz and /readyz answer 200', async () => {
    const url = `http://127.0.0.1:${(consumer!.server.address() as { port: number }).port}`;
    expect((await request(`${url}/healthz`)).status).to.equal(200);
    await eventually(async () => ((await request(`${url}/readyz`)).status === 200 ? true : undefined), 5_000, 'ready');
  });
});
