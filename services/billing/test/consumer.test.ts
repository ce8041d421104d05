import { billingTopology } from '@crud-master/shared';
import { migrate } from '@crud-master/shared/database';
import { expect } from 'chai';
import { openBroker, type TestBroker } from '../../../tests/support/broker.js';
import { testEnv, unique } from '../../../tests/support/env.js';
import { eventually, request } from '../../../tests/support/http.js';
import { relay } from '../../../tests/support/network.js';
import { moved, scrape } from '../../../tests/support/metrics.js';
import { openOrders, type TestOrders } from '../../../tests/support/orders.js';
import { expectProblem } from '../../../tests/support/problem.js';
import { type BillingConsumer, start } from '../src/app.js';
import { loadConfig, MIGRATIONS_DIR } from '../src/config.js';

const order = (user = 'usr_123', items = 3) => JSON.stringify({ user_id: user, number_of_items: items, total_amount: '99.97' });

describe('billing-consumer', () => {
  const queue = unique('billing-test');
  const { deadLetterQueue: deadLetters, deadLetterExchange } = billingTopology(queue);
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
    await broker.channel.deleteExchange(deadLetterExchange);
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
      expect(dead.properties.headers?.['x-dead-letter-reason']).to.match(/messageId|JSON|not an order/);
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

  const readyzOf = (service: BillingConsumer) => request(`http://127.0.0.1:${(service.server.address() as { port: number }).port}/readyz`);

  it('When two users place orders with the same Idempotency-Key, then both orders are stored', async () => {
    const key = unique('shared-key');
    await broker.publish(queue, order('usr_alice'), { messageId: key });
    await broker.publish(queue, order('usr_bob'), { messageId: key });
    await eventually(async () => ((await orders.rowsOf([key])).length === 2 ? true : undefined), 10_000, 'two orders');
    expect((await orders.rowsOf([key])).map((row) => row.user_id)).to.deep.equal(['usr_alice', 'usr_bob']);
    expect(await broker.count(deadLetters)).to.equal(0);
  });

  it('When a user reuses an Idempotency-Key for a different order, then it is dead-lettered with its reason and counted, and the first order stays', async () => {
    const key = unique('reused-key');
    await broker.publish(queue, order('usr_carol', 1), { messageId: key });
    await storedOnce([key]);
    await broker.publish(queue, order('usr_carol', 1), { messageId: key });
    await broker.publish(queue, order('usr_carol', 9), { messageId: key });
    const dead = await eventually(() => broker.take(deadLetters), 5_000, 'a dead letter');
    expect(JSON.parse(dead.content.toString())).to.include({ user_id: 'usr_carol', number_of_items: 9 });
    expect(dead.properties).to.include({ messageId: key, contentType: 'application/json', deliveryMode: 2 });
    expect(dead.properties.headers?.['x-dead-letter-reason']).to.match(/Idempotency-Key .* different order/);
    expect(await orders.rowsOf([key])).to.deep.equal([{ user_id: 'usr_carol', number_of_items: 1, total_amount: '99.97', message_id: key }]);
    expect(await broker.count(queue)).to.equal(0);
    expect((await readyzOf(consumer!)).body.details.deadLettered).to.include({ 'key-reused-with-another-order': 1 });
  });

  it('When a poison message is dead-lettered, then /readyz shows the dead-letter queue deeper and the count', async () => {
    const before = (await readyzOf(consumer!)).body.details;
    await broker.publish(queue, 'not an order', { messageId: unique('poison-depth') });
    const after = await eventually(async () => {
      const details = (await readyzOf(consumer!)).body.details;
      return details.deadLetterQueue.depth === before.deadLetterQueue.depth + 1 ? details : undefined;
    }, 5_000, 'a deeper dead-letter queue');
    expect(after.deadLettered.poison).to.equal(before.deadLettered.poison + 1);
    await broker.take(deadLetters);
  });

  it('When billing_queue is deleted under the consumer, then it declares it again and consumes within seconds', async () => {
    await eventually(async () => ((await broker.inspect(queue))?.consumerCount === 1 ? true : undefined), 5_000, 'a consumer');
    await broker.channel.deleteQueue(queue);
    const started = Date.now();
    await eventually(async () => ((await broker.inspect(queue))?.consumerCount === 1 ? true : undefined), 5_000, 'the queue back with a consumer');
    console.log(`      back with a consumer after ${Date.now() - started} ms`);
    const id = unique('after-delete');
    await broker.publish(queue, order(), { messageId: id });
    await storedOnce([id]);
    expect((await readyzOf(consumer!)).status).to.equal(200);
  });

  it('When billing_queue of an earlier release (other arguments) holds a message, then /readyz answers 503 and it is kept; once empty, it is replaced and consumed', async () => {
    await consumer!.stop();
    consumer = undefined;
    await broker.channel.deleteQueue(queue);
    await broker.channel.assertQueue(queue, { durable: true, deadLetterExchange: '', deadLetterRoutingKey: deadLetters });
    await broker.publish(queue, '{}');
    consumer = await startConsumer();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const readyz = await readyzOf(consumer);
    expectProblem(readyz, 503);
    expect(readyz.body.details).to.include({ consuming: false });
    expect((await broker.inspect(queue))?.messageCount, 'the message of the old queue is kept').to.equal(1);
    await broker.take(queue);
    await eventually(async () => ((await readyzOf(consumer!)).status === 200 ? true : undefined), 45_000, 'ready again');
    expect((await broker.inspect(queue))?.consumerCount).to.equal(1);
  });

  it('When the dead-letter queue is missing, then a poison message is not acked into the void: it is dead-lettered once the queue is back', async () => {
    await broker.channel.deleteQueue(deadLetters);
    const content = 'not an order, and no dead-letter queue';
    await broker.publish(queue, content, { messageId: unique('no-dead-letter-queue') });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(await broker.inspect(deadLetters)).to.equal(undefined);
    await broker.declare(queue);
    const dead = await eventually(() => broker.take(deadLetters), 10_000, 'the dead letter, once its queue is back');
    expect(dead.content.toString()).to.equal(content);
  });

  describe('metrics', () => {
    const metricsUrl = () => `http://127.0.0.1:${(consumer!.metricsServer.address() as { port: number }).port}/metrics`;
    const published = (at = Date.now()) => ({ headers: { timestamp_in_ms: at } });

    it('When orders, a duplicate, a poison message and a redelivery arrive, then /metrics moves by exactly those counts', async () => {
      const before = await scrape(metricsUrl());
      const ids = Array.from({ length: 4 }, () => unique('counted'));
      for (const id of ids) await broker.publish(queue, order('usr_metrics'), { messageId: id, ...published() });
      await broker.publish(queue, order('usr_metrics'), { messageId: ids[0], ...published() });
      await broker.publish(queue, 'not an order', { messageId: unique('counted-poison') });
      await storedOnce(ids);
      await eventually(async () => ((await broker.count(queue)) === 0 ? true : undefined), 5_000, 'an empty queue');
      await eventually(() => broker.take(deadLetters), 5_000, 'the dead letter');
      const after = await scrape(metricsUrl());

      expect(moved(before, after, 'billing_orders_inserted_total'), 'the duplicate adds no row').to.equal(4);
      expect(moved(before, after, 'billing_dead_lettered_total', { cause: 'poison' })).to.equal(1);
      expect(moved(before, after, 'billing_batch_size_sum'), 'every delivery went through a batch').to.equal(6);
      expect(moved(before, after, 'billing_publish_to_commit_seconds_count'), 'stored orders with a publish time').to.equal(5);
      expect(moved(before, after, 'billing_redeliveries_total')).to.equal(0);
      expect(after.get('billing_consuming')).to.equal(1);
    });

    it('When a delivery comes back from another consumer unacked, then it counts as a redelivery, and the lag as publish to commit', async () => {
      await consumer!.stop();
      consumer = undefined;
      const id = unique('redelivered');
      await broker.publish(queue, order('usr_metrics'), { messageId: id, ...published(Date.now() - 2_000) });
      const taken = await eventually(async () => (await broker.channel.get(queue, { noAck: false })) || undefined, 5_000, 'the order');
      broker.channel.nack(taken, false, true);
      consumer = await startConsumer();
      await storedOnce([id]);
      const scraped = await scrape(metricsUrl());
      const none = new Map<string, number>();
      expect(moved(none, scraped, 'billing_redeliveries_total')).to.equal(1);
      expect(moved(none, scraped, 'billing_publish_to_commit_seconds_count')).to.equal(1);
      expect(moved(none, scraped, 'billing_publish_to_commit_seconds_bucket', { le: 1 }), 'published 2 s before').to.equal(0);
      expect(moved(none, scraped, 'billing_publish_to_commit_seconds_bucket', { le: 30 })).to.equal(1);
    });
  });

  it('When the database and broker are reachable, then /healthz and /readyz answer 200', async () => {
    const url = `http://127.0.0.1:${(consumer!.server.address() as { port: number }).port}`;
    expect((await request(`${url}/healthz`)).status).to.equal(200);
    await eventually(async () => ((await request(`${url}/readyz`)).status === 200 ? true : undefined), 5_000, 'ready');
  });
});
