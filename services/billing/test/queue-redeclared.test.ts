import { queueOf } from '@crud-master/test-support/broker';
import { unique } from '@crud-master/test-support/env';
import { eventually } from '@crud-master/test-support/http';
import { expect } from 'chai';
import { consumerUnderTest, order, readyzOf } from './consumer-under-test.js';

describe('billing-consumer: billing_queue declared again', () => {
  const billing = consumerUnderTest();

  it(
    'When billing_queue is deleted under the consumer, ' + 'then it declares it again and consumes within seconds',
    async () => {
      await eventually(
        async () => ((await billing.broker.inspect(billing.queue))?.consumerCount === 1 ? true : undefined),
        5_000,
        'a consumer',
      );
      await billing.broker.channel.deleteQueue(billing.queue);
      const started = Date.now();
      await eventually(
        async () => ((await billing.broker.inspect(billing.queue))?.consumerCount === 1 ? true : undefined),
        5_000,
        'the queue back with a consumer',
      );
      console.log(`      back with a consumer after ${Date.now() - started} ms`);
      const id = unique('after-delete');
      await billing.broker.publish(billing.queue, order(), { messageId: id });
      await billing.storedOnce([id]);
      expect((await readyzOf(billing.consumer!)).status).to.equal(200);
    },
  );

  it(
    'When billing_queue of an earlier release (dead-letter arguments) holds orders, ' +
      'then the consumer drains it, stores each once and replaces it by a queue without them',
    async () => {
      await billing.consumer!.stop();
      billing.consumer = undefined;
      await billing.broker.channel.deleteQueue(billing.queue);
      await billing.broker.channel.assertQueue(billing.queue, {
        durable: true,
        deadLetterExchange: '',
        deadLetterRoutingKey: billing.deadLetters,
      });
      const ids = Array.from({ length: 20 }, () => unique('legacy'));
      for (const id of ids) await billing.broker.publish(billing.queue, order(), { messageId: id });
      billing.consumer = await billing.startConsumer();
      await billing.storedOnce(ids);
      await eventually(
        async () =>
          Object.keys((await queueOf(billing.queue))?.arguments ?? { pending: 1 }).length === 0 ? true : undefined,
        10_000,
        'the queue replaced',
      );
      await eventually(
        async () => ((await billing.broker.inspect(billing.queue))?.consumerCount === 1 ? true : undefined),
        5_000,
        'consumed again',
      );
      const readyz = await readyzOf(billing.consumer);
      expect(readyz.status).to.equal(200);
      expect(readyz.body.details.queue).to.deep.equal({ type: 'classic', migrating: false });
      expect(await billing.orders.countsOf(ids)).to.satisfy((counts: number[]) => counts.every((n) => n === 1));
    },
  );
});
