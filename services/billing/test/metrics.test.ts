import { unique } from '@crud-master/test-support/env';
import { eventually, urlOf } from '@crud-master/test-support/http';
import { moved, scrape } from '@crud-master/test-support/metrics';
import { expect } from 'chai';
import { consumerUnderTest, order } from './consumer-under-test.js';

describe('billing-consumer: metrics', () => {
  const billing = consumerUnderTest();

  const metricsUrl = () => urlOf(billing.consumer!.metricsServer, '/metrics');
  const published = (at = Date.now()) => ({ headers: { timestamp_in_ms: at } });

  it(
    'When orders, a duplicate, a poison message and a redelivery arrive, ' +
      'then /metrics moves by exactly those counts',
    async () => {
      const before = await scrape(metricsUrl());
      const ids = Array.from({ length: 4 }, () => unique('counted'));
      for (const id of ids)
        await billing.broker.publish(billing.queue, order('usr_metrics'), { messageId: id, ...published() });
      await billing.broker.publish(billing.queue, order('usr_metrics'), { messageId: ids[0], ...published() });
      await billing.broker.publish(billing.queue, 'not an order', { messageId: unique('counted-poison') });
      await billing.storedOnce(ids);
      await eventually(
        async () => ((await billing.broker.count(billing.queue)) === 0 ? true : undefined),
        5_000,
        'an empty queue',
      );
      await eventually(() => billing.broker.take(billing.deadLetters), 5_000, 'the dead letter');
      // a dead letter is counted once its confirm arrives, which can be after the queue shows it
      const after = await eventually(
        async () => {
          const scraped = await scrape(metricsUrl());
          return moved(before, scraped, 'billing_dead_lettered_total', { cause: 'poison' }) > 0 ? scraped : undefined;
        },
        10_000,
        'the dead letter counted',
      );

      expect(moved(before, after, 'billing_orders_inserted_total'), 'the duplicate adds no row').to.equal(4);
      expect(moved(before, after, 'billing_dead_lettered_total', { cause: 'poison' })).to.equal(1);
      expect(moved(before, after, 'billing_batch_size_sum'), 'every delivery went through a batch').to.equal(6);
      expect(
        moved(before, after, 'billing_publish_to_commit_seconds_count'),
        'stored orders with a publish time',
      ).to.equal(5);
      expect(moved(before, after, 'billing_redeliveries_total')).to.equal(0);
      expect(after.get('billing_consuming')).to.equal(1);
    },
  );

  it(
    'When a delivery comes back from another consumer unacked, ' +
      'then it counts as a redelivery, and the lag as publish to commit',
    async () => {
      await billing.consumer!.stop();
      billing.consumer = undefined;
      const id = unique('redelivered');
      await billing.broker.publish(billing.queue, order('usr_metrics'), {
        messageId: id,
        ...published(Date.now() - 2_000),
      });
      const taken = await eventually(
        async () => (await billing.broker.channel.get(billing.queue, { noAck: false })) || undefined,
        5_000,
        'the order',
      );
      billing.broker.channel.nack(taken, false, true);
      billing.consumer = await billing.startConsumer();
      await billing.storedOnce([id]);
      const scraped = await scrape(metricsUrl());
      const none = new Map<string, number>();
      expect(moved(none, scraped, 'billing_redeliveries_total')).to.equal(1);
      expect(moved(none, scraped, 'billing_publish_to_commit_seconds_count')).to.equal(1);
      expect(
        moved(none, scraped, 'billing_publish_to_commit_seconds_bucket', { le: 1 }),
        'published 2 s before',
      ).to.equal(0);
      expect(moved(none, scraped, 'billing_publish_to_commit_seconds_bucket', { le: 30 })).to.equal(1);
    },
  );
});
