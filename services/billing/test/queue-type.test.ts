import { billingTopology, ConfigError, deadLetterQueueOf } from '@crud-master/shared';
import { queueOf, type TestBroker } from '@crud-master/test-support/broker';
import { testEnv, unique } from '@crud-master/test-support/env';
import { eventually } from '@crud-master/test-support/http';
import { relay } from '@crud-master/test-support/network';
import type { TestOrders } from '@crud-master/test-support/orders';
import { expect } from 'chai';
import type { BillingConsumer } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { openStores, order, readyzOf, startConsumer, storedOnce as storedOnceIn } from './consumer-under-test.js';

describe('billing-consumer config: RABBITMQ_QUEUE_TYPE', () => {
  it(
    'When RABBITMQ_QUEUE_TYPE is neither classic nor quorum, ' + 'then the config fails with one line that names it',
    () => {
      expect(() => loadConfig(testEnv({ RABBITMQ_QUEUE_TYPE: 'mirrored' })))
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(/RABBITMQ_QUEUE_TYPE/)
        .and.not.match(/\n/);
    },
  );

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
    const consumer = await startConsumer({ RABBITMQ_QUEUE: queue, RABBITMQ_QUEUE_TYPE: type, ...overrides });
    running.push(consumer);
    return consumer;
  };
  const storedOnce = (ids: string[], timeoutMs = 20_000) => storedOnceIn(orders, ids, timeoutMs);
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
    for (const content of contents)
      await broker.publish(deadLetterQueueOf(queue), content, {
        messageId: unique('dead'),
        headers: { 'x-dead-letter-reason': 'poison' },
      });
    return contents;
  };
  const takeAll = async (queue: string) => {
    const contents: string[] = [];
    for (let message = await broker.take(queue); message; message = await broker.take(queue))
      contents.push(message.content.toString());
    return contents;
  };

  let close = async () => {};

  before(async () => {
    ({ broker, orders, close } = await openStores());
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

  after(() => close());

  it(
    'When RABBITMQ_QUEUE_TYPE is quorum, ' +
      'then both queues are declared as quorum queues, and each order is stored once',
    async () => {
      const queue = ownQueue('quorum');
      const consumer = await launch(queue, 'quorum');
      await eventually(async () => ((await readyzOf(consumer)).status === 200 ? true : undefined), 10_000, 'ready');
      for (const name of [queue, deadLetterQueueOf(queue)])
        expect(await queueOf(name), name).to.deep.equal({ type: 'quorum', arguments: { 'x-queue-type': 'quorum' } });
      const ids = await ordersIn(queue, 20);
      await broker.publish(queue, order('usr_typed'), { messageId: ids[0] });
      await broker.publish(queue, 'not an order', { messageId: unique('quorum-poison') });
      await storedOnce(ids);
      expect(
        (await eventually(() => broker.take(deadLetterQueueOf(queue)), 5_000, 'a dead letter')).content.toString(),
      ).to.equal('not an order');
      const { details } = (await readyzOf(consumer)).body;
      expect(details.queue).to.deep.equal({ type: 'quorum', migrating: false });
      expect(details.deadLetterQueue).to.include({ migrating: false });
    },
  );

  it(
    'When billing_queue and its dead-letter queue are classic and the type becomes quorum, ' +
      'then every waiting order is stored once, billing_queue becomes quorum, and the dead letters are ' +
      'kept until an operator took them',
    async () => {
      const queue = ownQueue('to-quorum');
      await broker.declare(queue, 'classic');
      const ids = await ordersIn(queue, 300);
      await broker.publish(queue, 'not an order, dead-lettered during the migration', {
        messageId: unique('migrating-poison'),
      });
      const kept = await deadLettersIn(queue, 3);
      const consumer = await launch(queue, 'quorum');
      await storedOnce(ids);
      await becomes(queue, 'quorum');
      await eventually(
        async () => ((await broker.inspect(queue))?.consumerCount === 1 ? true : undefined),
        5_000,
        'consuming the quorum queue',
      );
      const { status, body } = await readyzOf(consumer);
      expect(status).to.equal(200);
      expect(body.details.queue).to.deep.equal({ type: 'quorum', migrating: false });
      expect(body.details.deadLetterQueue).to.include({ depth: 4, migrating: true, blocked: false });
      expect(await typeOf(deadLetterQueueOf(queue)), 'the dead-letter queue kept with its dead letters').to.equal(
        'classic',
      );
      expect(await takeAll(deadLetterQueueOf(queue))).to.deep.equal([
        ...kept,
        'not an order, dead-lettered during the migration',
      ]);
      await becomes(deadLetterQueueOf(queue), 'quorum');
      await eventually(
        async () => ((await readyzOf(consumer)).body.details.deadLetterQueue.migrating === false ? true : undefined),
        5_000,
        'no migration left',
      );
      const after = await ordersIn(queue, 5);
      await broker.publish(queue, 'not an order, after the migration', { messageId: unique('quorum-poison') });
      await storedOnce(after);
      expect(
        (await eventually(() => broker.take(deadLetterQueueOf(queue)), 5_000, 'a dead letter')).content.toString(),
      ).to.equal('not an order, after the migration');
    },
  );

  it(
    'When billing_queue is quorum and the type becomes classic, ' +
      'then /readyz shows the migration while the orders wait, and every order is stored once in the ' +
      'end, in a classic queue',
    async () => {
      const queue = ownQueue('to-classic');
      await broker.declare(queue, 'quorum');
      const kept = await deadLettersIn(queue, 2);
      const database = await relay(Number(process.env.BILLING_DB_PORT ?? 5432));
      try {
        // the pool connects as the consumer starts; the orders come within its first quiet spell, with the database cut
        const consumer = await launch(queue, 'classic', { BILLING_DB_PORT: database.port });
        await eventually(
          async () => ((await broker.inspect(queue))?.consumerCount === 1 ? true : undefined),
          5_000,
          'a consumer',
        );
        database.cut();
        const ids = await ordersIn(queue, 100);
        // the orders are held unstored: the quorum queue stays, consumed as it is
        const waiting = await eventually(
          async () => {
            const { status, body } = await readyzOf(consumer);
            return status === 503 && body.details.consuming ? body.details : undefined;
          },
          10_000,
          'consuming the quorum queue',
        );
        expect(waiting.queue).to.deep.equal({ type: 'quorum', migrating: true });
        expect(waiting.deadLetterQueue).to.include({ depth: 2, migrating: true });
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
        expect((await readyzOf(consumer)).body.details).to.deep.include({
          queue: { type: 'classic', migrating: false },
        });
      } finally {
        await Promise.all(running.map((consumer) => consumer.stop()));
        running = [];
        await database.close();
      }
    },
  );

  it(
    'When two consumers configured quorum consume a classic queue, ' +
      'then it is not replaced while one sees a lull the other does not, and once one stops the other ' +
      'replaces it and every order is stored once',
    async () => {
      const queue = ownQueue('two-consumers');
      await broker.declare(queue, 'classic');
      const consumers = await Promise.all([launch(queue, 'quorum'), launch(queue, 'quorum')]);
      await eventually(
        async () => ((await broker.inspect(queue))?.consumerCount === 2 ? true : undefined),
        5_000,
        'two consumers',
      );
      // one order every 2 s, shared round-robin: each consumer sees one every 4 s, a lull past the 3 s it waits for
      const paced: string[] = [];
      for (let i = 0; i < 6; i++) {
        paced.push(...(await ordersIn(queue, 1)));
        await new Promise((resolve) => setTimeout(resolve, 2_000));
      }
      expect(await typeOf(queue), 'replaced while the other consumer still received orders').to.equal('classic');
      for (const consumer of consumers)
        expect((await readyzOf(consumer)).body.details.queue).to.deep.equal({ type: 'classic', migrating: true });
      await consumers[1].stop();
      running = running.filter((consumer) => consumer !== consumers[1]);
      await becomes(queue, 'quorum', 20_000);
      const after = await ordersIn(queue, 5);
      await storedOnce([...paced, ...after], 30_000);
      expect((await readyzOf(consumers[0])).body.details.queue).to.deep.equal({ type: 'quorum', migrating: false });
    },
  );
});
