import { billingTopology, ConfigError, deadLetterQueueOf } from '@crud-master/shared';
import { migrate } from '@crud-master/shared/database';
import { expect } from 'chai';
import { openBroker, queueOf, type TestBroker } from '@crud-master/test-support/broker';
import { testEnv, unique } from '@crud-master/test-support/env';
import { eventually, request, urlOf } from '@crud-master/test-support/http';
import { relay } from '@crud-master/test-support/network';
import { moved, scrape } from '@crud-master/test-support/metrics';
import { openOrders, type TestOrders } from '@crud-master/test-support/orders';
import { expectProblem } from '@crud-master/test-support/problem';
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
      const readyz = await request(urlOf(consumer.server, '/readyz'));
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

  const readyzOf = (service: BillingConsumer) => request(urlOf(service.server, '/readyz'));

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

  it('When billing_queue of an earlier release (dead-letter arguments) holds orders, then the consumer drains it, stores each once and replaces it by a queue without them', async () => {
    await consumer!.stop();
    consumer = undefined;
    await broker.channel.deleteQueue(queue);
    await broker.channel.assertQueue(queue, { durable: true, deadLetterExchange: '', deadLetterRoutingKey: deadLetters });
    const ids = Array.from({ length: 20 }, () => unique('legacy'));
    for (const id of ids) await broker.publish(queue, order(), { messageId: id });
    consumer = await startConsumer();
    await storedOnce(ids);
    await eventually(async () => (Object.keys((await queueOf(queue))?.arguments ?? { pending: 1 }).length === 0 ? true : undefined), 10_000, 'the queue replaced');
    await eventually(async () => ((await broker.inspect(queue))?.consumerCount === 1 ? true : undefined), 5_000, 'consumed again');
    const readyz = await readyzOf(consumer);
    expect(readyz.status).to.equal(200);
    expect(readyz.body.details.queue).to.deep.equal({ type: 'classic', migrating: false });
    expect(await orders.countsOf(ids)).to.satisfy((counts: number[]) => counts.every((n) => n === 1));
  });

  it('When the dead-letter queue is missing, then a poison message is not acked into the void: it is dead-lettered once the queue is back', async () => {
    // the consumer declares the topology as it starts: delete the queue only after that
    await eventually(async () => ((await broker.inspect(queue))?.consumerCount === 1 ? true : undefined), 5_000, 'a consumer');
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
    const metricsUrl = () => urlOf(consumer!.metricsServer, '/metrics');
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
    const url = urlOf(consumer!.server);
    expect((await request(`${url}/healthz`)).status).to.equal(200);
    await eventually(async () => ((await request(`${url}/readyz`)).status === 200 ? true : undefined), 5_000, 'ready');
  });
});

describe('billing-consumer config', () => {
  it('When RABBITMQ_QUEUE_TYPE is neither classic nor quorum, then the config fails with one line that names it', () => {
    expect(() => loadConfig(testEnv({ RABBITMQ_QUEUE_TYPE: 'mirrored' })))
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/RABBITMQ_QUEUE_TYPE/)
      .and.not.match(/\n/);
  });

  it('When RABBITMQ_QUEUE_TYPE is not set, then the queues are classic, as on one broker', () => {
    const vars = testEnv();
    delete vars.RABBITMQ_QUEUE_TYPE;
    expect(loadConfig(vars).queueType).to.equal('classic');
    expect(loadConfig(testEnv({ RABBITMQ_QUEUE_TYPE: 'quorum' })).queueType).to.equal('quorum');
  });
});

/**
 * The queues' type (RABBITMQ_QUEUE_TYPE) and the consumer's migration of queues of the other type. Each test owns its
 * queues; the dead-letter queue holds dead letters of an operator's, which must survive.
 */
describe('billing-consumer: the queue type', () => {
  let broker: TestBroker;
  let orders: TestOrders;
  let running: BillingConsumer[] = [];
  let owned: string[] = [];

  const ownQueue = (prefix: string) => {
    const queue = unique(prefix);
    owned.push(queue);
    return queue;
  };
  const launch = async (queue: string, type: 'classic' | 'quorum', overrides: Record<string, string | number> = {}) => {
    const consumer = await start(
      loadConfig(testEnv({ BILLING_HEALTH_HOST: '127.0.0.1', BILLING_HEALTH_PORT: 0, RABBITMQ_QUEUE: queue, RABBITMQ_QUEUE_TYPE: type, ...overrides })),
    );
    running.push(consumer);
    return consumer;
  };
  const readyzOf = (service: BillingConsumer) => request(urlOf(service.server, '/readyz'));
  const storedOnce = (ids: string[], timeoutMs = 20_000) =>
    eventually(async () => ((await orders.countsOf(ids)).every((n) => n === 1) ? true : undefined), timeoutMs, `${ids.length} rows`);
  const typeOf = async (queue: string) => (await queueOf(queue))?.type;
  const becomes = (queue: string, type: string, timeoutMs = 15_000) =>
    eventually(async () => ((await typeOf(queue)) === type ? true : undefined), timeoutMs, `${queue} a ${type} queue`);
  const ordersIn = async (queue: string, count: number) => {
    const ids = Array.from({ length: count }, () => unique('typed'));
    for (const id of ids) await broker.publish(queue, order('usr_typed'), { messageId: id });
    return ids;
  };
  /** Dead letters an operator has not handled yet, as billing-consumer publishes them. */
  const deadLettersIn = async (queue: string, count: number) => {
    const contents = Array.from({ length: count }, () => `a dead letter ${unique('kept')}`);
    for (const content of contents) await broker.publish(deadLetterQueueOf(queue), content, { messageId: unique('dead'), headers: { 'x-dead-letter-reason': 'poison' } });
    return contents;
  };
  const takeAll = async (queue: string) => {
    const contents: string[] = [];
    for (let message = await broker.take(queue); message; message = await broker.take(queue)) contents.push(message.content.toString());
    return contents;
  };

  before(async () => {
    await migrate(loadConfig(testEnv()).db, MIGRATIONS_DIR);
    orders = await openOrders();
    broker = await openBroker();
  });

  afterEach(async () => {
    await Promise.all(running.map((consumer) => consumer.stop()));
    for (const queue of owned) {
      const { deadLetterQueue, deadLetterExchange } = billingTopology(queue);
      await broker.deleteQueues(queue, deadLetterQueue);
      await broker.channel.deleteExchange(deadLetterExchange);
    }
    running = [];
    owned = [];
  });

  after(async () => {
    await broker.close();
    await orders.close();
  });

  it('When RABBITMQ_QUEUE_TYPE is quorum, then both queues are declared as quorum queues, and each order is stored once', async () => {
    const queue = ownQueue('quorum');
    const consumer = await launch(queue, 'quorum');
    await eventually(async () => ((await readyzOf(consumer)).status === 200 ? true : undefined), 10_000, 'ready');
    for (const name of [queue, deadLetterQueueOf(queue)]) expect(await queueOf(name), name).to.deep.equal({ type: 'quorum', arguments: { 'x-queue-type': 'quorum' } });
    const ids = await ordersIn(queue, 20);
    await broker.publish(queue, order('usr_typed'), { messageId: ids[0] });
    await broker.publish(queue, 'not an order', { messageId: unique('quorum-poison') });
    await storedOnce(ids);
    expect((await eventually(() => broker.take(deadLetterQueueOf(queue)), 5_000, 'a dead letter')).content.toString()).to.equal('not an order');
    const { details } = (await readyzOf(consumer)).body;
    expect(details.queue).to.deep.equal({ type: 'quorum', migrating: false });
    expect(details.deadLetterQueue).to.include({ migrating: false });
  });

  it('When billing_queue and its dead-letter queue are classic and the type becomes quorum, then every waiting order is stored once, billing_queue becomes quorum, and the dead letters are kept until an operator took them', async () => {
    const queue = ownQueue('to-quorum');
    await broker.declare(queue, 'classic');
    const ids = await ordersIn(queue, 300);
    await broker.publish(queue, 'not an order, dead-lettered during the migration', { messageId: unique('migrating-poison') });
    const kept = await deadLettersIn(queue, 3);
    const consumer = await launch(queue, 'quorum');
    await storedOnce(ids);
    await becomes(queue, 'quorum');
    await eventually(async () => ((await broker.inspect(queue))?.consumerCount === 1 ? true : undefined), 5_000, 'consuming the quorum queue');
    const { status, body } = await readyzOf(consumer);
    expect(status).to.equal(200);
    expect(body.details.queue).to.deep.equal({ type: 'quorum', migrating: false });
    expect(body.details.deadLetterQueue).to.deep.equal({ depth: 4, migrating: true });
    expect(await typeOf(deadLetterQueueOf(queue)), 'the dead-letter queue kept with its dead letters').to.equal('classic');
    expect(await takeAll(deadLetterQueueOf(queue))).to.deep.equal([...kept, 'not an order, dead-lettered during the migration']);
    await becomes(deadLetterQueueOf(queue), 'quorum');
    await eventually(async () => ((await readyzOf(consumer)).body.details.deadLetterQueue.migrating === false ? true : undefined), 5_000, 'no migration left');
    const after = await ordersIn(queue, 5);
    await broker.publish(queue, 'not an order, after the migration', { messageId: unique('quorum-poison') });
    await storedOnce(after);
    expect((await eventually(() => broker.take(deadLetterQueueOf(queue)), 5_000, 'a dead letter')).content.toString()).to.equal('not an order, after the migration');
  });

  it('When billing_queue is quorum and the type becomes classic, then /readyz shows the migration while the orders wait, and every order is stored once in the end, in a classic queue', async () => {
    const queue = ownQueue('to-classic');
    await broker.declare(queue, 'quorum');
    const kept = await deadLettersIn(queue, 2);
    const database = await relay(Number(process.env.BILLING_DB_PORT ?? 5432));
    try {
      // the pool connects as the consumer starts; the orders come within its first quiet spell, with the database cut
      const consumer = await launch(queue, 'classic', { BILLING_DB_PORT: database.port });
      await eventually(async () => ((await broker.inspect(queue))?.consumerCount === 1 ? true : undefined), 5_000, 'a consumer');
      database.cut();
      const ids = await ordersIn(queue, 100);
      // the orders are held unstored: the quorum queue stays, consumed as it is
      const waiting = await eventually(async () => {
        const { status, body } = await readyzOf(consumer);
        return status === 503 && body.details.consuming ? body.details : undefined;
      }, 10_000, 'consuming the quorum queue');
      expect(waiting.queue).to.deep.equal({ type: 'quorum', migrating: true });
      expect(waiting.deadLetterQueue).to.deep.equal({ depth: 2, migrating: true });
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect(await typeOf(queue), 'not replaced while it holds orders').to.equal('quorum');
      database.restore();
      await storedOnce(ids);
      await becomes(queue, 'classic');
      expect(await queueOf(queue)).to.deep.equal({ type: 'classic', arguments: {} });
      expect(await takeAll(deadLetterQueueOf(queue))).to.deep.equal(kept);
      await becomes(deadLetterQueueOf(queue), 'classic');
      const after = await ordersIn(queue, 5);
      await storedOnce(after);
      expect((await readyzOf(consumer)).body.details).to.deep.include({ queue: { type: 'classic', migrating: false } });
    } finally {
      await Promise.all(running.map((consumer) => consumer.stop()));
      running = [];
      await database.close();
    }
  });

  it('When two consumers configured quorum start at once on a classic queue with orders, while more are published, then it stays classic while orders flow, and once they pause each order is stored once and one quorum queue is left, consumed by both', async () => {
    const queue = ownQueue('race');
    await broker.declare(queue, 'classic');
    const before = await ordersIn(queue, 500);
    // published mandatory, as the gateway does: one that meets no queue (in the instant of the replacement) comes
    // back and is published again, as a client retries a 503
    const during: string[] = [];
    let publishing = true;
    const publisher = (async () => {
      const channel = await broker.connection.createConfirmChannel();
      let returned: string | undefined;
      channel.on('return', (message: { properties: { messageId: string } }) => (returned = message.properties.messageId));
      while (publishing) {
        const id = unique('during');
        do {
          returned = undefined;
          channel.sendToQueue(queue, Buffer.from(order('usr_typed')), { persistent: true, mandatory: true, contentType: 'application/json', messageId: id });
          await channel.waitForConfirms();
        } while (returned === id);
        during.push(id);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await channel.close();
    })();
    const consumers = await Promise.all([launch(queue, 'quorum'), launch(queue, 'quorum')]);
    await storedOnce(before, 30_000);
    // a queue deleted under a publish in flight would lose it, confirmed: the consumers wait for a pause
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    expect(await typeOf(queue), 'replaced while orders flow').to.equal('classic');
    for (const consumer of consumers) expect((await readyzOf(consumer)).body.details.queue).to.deep.equal({ type: 'classic', migrating: true });
    publishing = false;
    await publisher;
    await becomes(queue, 'quorum', 20_000);
    await storedOnce([...before, ...during], 30_000);
    await eventually(async () => ((await broker.inspect(queue))?.consumerCount === 2 ? true : undefined), 10_000, 'both consuming the quorum queue');
    for (const consumer of consumers) expect((await readyzOf(consumer)).body.details.queue).to.deep.equal({ type: 'quorum', migrating: false });
    expect(await typeOf(deadLetterQueueOf(queue))).to.equal('quorum');
    console.log(`      ${before.length} orders waiting, ${during.length} published during the migration`);
  });
});
