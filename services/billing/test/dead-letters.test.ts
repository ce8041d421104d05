import { unique } from '@crud-master/test-support/env';
import { eventually } from '@crud-master/test-support/http';
import { expect } from 'chai';
import { consumerUnderTest, order, readyzOf } from './consumer-under-test.js';

describe('billing-consumer: dead letters', () => {
  const billing = consumerUnderTest();

  const poison: Array<[string, string, string | undefined]> = [
    ['is not JSON', 'not json at all', 'poison-1'],
    ['has the wrong shape', JSON.stringify({ user_id: 'u', number_of_items: -2, total_amount: 5.5 }), 'poison-2'],
    ['has no messageId', order(), undefined],
  ];
  for (const [what, content, messageId] of poison) {
    it(`When a message ${what}, then it is dead-lettered at once and the next order is still stored`, async () => {
      const next = unique('after-poison');
      await billing.broker.publish(billing.queue, content, messageId ? { messageId: unique(messageId) } : {});
      await billing.broker.publish(billing.queue, order(), { messageId: next });
      await billing.storedOnce([next]);
      const dead = await eventually(() => billing.broker.take(billing.deadLetters), 5_000, 'a dead letter');
      expect(dead.content.toString()).to.equal(content);
      expect(dead.properties.headers?.['x-dead-letter-reason']).to.match(/messageId|JSON|not an order/);
      expect(await billing.broker.count(billing.queue)).to.equal(0);
    });
  }

  it('When a user reuses an Idempotency-Key for a different order, then it is dead-lettered with its reason and counted, and the first order stays', async () => {
    const key = unique('reused-key');
    await billing.broker.publish(billing.queue, order('usr_carol', 1), { messageId: key });
    await billing.storedOnce([key]);
    await billing.broker.publish(billing.queue, order('usr_carol', 1), { messageId: key });
    await billing.broker.publish(billing.queue, order('usr_carol', 9), { messageId: key });
    const dead = await eventually(() => billing.broker.take(billing.deadLetters), 5_000, 'a dead letter');
    expect(JSON.parse(dead.content.toString())).to.include({ user_id: 'usr_carol', number_of_items: 9 });
    expect(dead.properties).to.include({ messageId: key, contentType: 'application/json', deliveryMode: 2 });
    expect(dead.properties.headers?.['x-dead-letter-reason']).to.match(/Idempotency-Key .* different order/);
    expect(await billing.orders.rowsOf([key])).to.deep.equal([{ user_id: 'usr_carol', number_of_items: 1, total_amount: '99.97', message_id: key }]);
    expect(await billing.broker.count(billing.queue)).to.equal(0);
    expect((await readyzOf(billing.consumer!)).body.details.deadLettered).to.include({ 'key-reused-with-another-order': 1 });
  });

  it('When a poison message is dead-lettered, then /readyz shows the dead-letter queue deeper and the count', async () => {
    const before = (await readyzOf(billing.consumer!)).body.details;
    await billing.broker.publish(billing.queue, 'not an order', { messageId: unique('poison-depth') });
    const after = await eventually(async () => {
      const details = (await readyzOf(billing.consumer!)).body.details;
      return details.deadLetterQueue.depth === before.deadLetterQueue.depth + 1 ? details : undefined;
    }, 5_000, 'a deeper dead-letter queue');
    expect(after.deadLettered.poison).to.equal(before.deadLettered.poison + 1);
    await billing.broker.take(billing.deadLetters);
  });

  it('When the dead-letter queue is missing, then a poison message is not acked into the void: it is dead-lettered once the queue is back', async () => {
    // the consumer declares the topology as it starts: delete the queue only after that
    await eventually(async () => ((await billing.broker.inspect(billing.queue))?.consumerCount === 1 ? true : undefined), 5_000, 'a consumer');
    await billing.broker.channel.deleteQueue(billing.deadLetters);
    const content = 'not an order, and no dead-letter queue';
    await billing.broker.publish(billing.queue, content, { messageId: unique('no-dead-letter-queue') });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(await billing.broker.inspect(billing.deadLetters)).to.equal(undefined);
    await billing.broker.declare(billing.queue);
    const dead = await eventually(() => billing.broker.take(billing.deadLetters), 10_000, 'the dead letter, once its queue is back');
    expect(dead.content.toString()).to.equal(content);
  });
});
