import { unique } from '@crud-master/test-support/env';
import { eventually } from '@crud-master/test-support/http';
import { expect } from 'chai';
import { boundDeadLetters, consumerUnderTest, order, readyzOf } from './consumer-under-test.js';

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

  it(
    'When a user reuses an Idempotency-Key for a different order, ' +
      'then it is recorded in rejected_orders with its reason and counted, not dead-lettered, and the ' +
      'first order stays',
    async () => {
      const key = unique('reused-key');
      await billing.broker.publish(billing.queue, order('usr_carol', 1), { messageId: key });
      await billing.storedOnce([key]);
      await billing.broker.publish(billing.queue, order('usr_carol', 1), { messageId: key });
      await billing.broker.publish(billing.queue, order('usr_carol', 9), { messageId: key });
      const rejected = await eventually(
        async () => {
          const rows = await billing.orders.rejectedOf([key]);
          return rows.length > 0 ? rows : undefined;
        },
        5_000,
        'a rejected order',
      );
      expect(rejected).to.have.length(1);
      expect(rejected[0]).to.include({
        user_id: 'usr_carol',
        number_of_items: 9,
        total_amount: '99.97',
        message_id: key,
      });
      expect(rejected[0]!.reason).to.match(/Idempotency-Key .* different order/);
      expect(await billing.orders.rowsOf([key])).to.deep.equal([
        { user_id: 'usr_carol', number_of_items: 1, total_amount: '99.97', message_id: key },
      ]);
      expect(await billing.broker.count(billing.queue)).to.equal(0);
      expect(await billing.broker.count(billing.deadLetters), 'nothing dead-lettered').to.equal(0);
    },
  );

  it(
    'When the dead-letter queue is full, ' +
      'then a flood of reused keys larger than its bound and a poison message stop no order: every ' +
      'order is stored within seconds, each conflict is recorded, and the poison is held aside, ' +
      'visibly, until the queue has room',
    async () => {
      const bound = await boundDeadLetters(billing.deadLetters, 3);
      try {
        for (let i = 0; i < 3; i++)
          await billing.broker.publish(billing.queue, 'fills the dead-letter queue', { messageId: unique('filler') });
        await eventually(
          async () => ((await billing.broker.count(billing.deadLetters)) === 3 ? true : undefined),
          10_000,
          'a full dead-letter queue',
        );
        const key = unique('flooded-key');
        const poison = unique('poison-when-full');
        // more conflicting orders than the dead-letter queue holds, a poison message, then other users' orders
        for (let items = 1; items <= 20; items++)
          await billing.broker.publish(billing.queue, order('usr_flood', items), { messageId: key });
        await billing.broker.publish(billing.queue, 'not an order, and no room for it', { messageId: poison });
        const others = Array.from({ length: 20 }, () => unique('behind-the-flood'));
        for (const id of others) await billing.broker.publish(billing.queue, order('usr_other'), { messageId: id });
        const started = Date.now();
        await billing.storedOnce(others);
        console.log(`      20 orders behind the flood stored within ${Date.now() - started} ms`);
        expect(await billing.orders.rowsOf([key]), 'the first order of the reused key').to.have.length(1);
        expect(
          (await billing.orders.rejectedOf([key])).map((row) => row.number_of_items),
          'every other one recorded',
        ).to.have.members(Array.from({ length: 19 }, (_, i) => i + 2));
        const blocked = await eventually(
          async () => {
            const reply = await readyzOf(billing.consumer!);
            return reply.status === 503 && reply.body.details.deadLetterQueue.held === 1
              ? reply.body.details
              : undefined;
          },
          15_000,
          '/readyz to say that dead-lettering is blocked',
        );
        expect(blocked.deadLetterQueue).to.include({ blocked: true, depth: 3 });
        expect(await billing.orders.heldOf([poison])).to.deep.equal([poison]);
        expect(await billing.broker.count(billing.queue), 'nothing left unsettled in billing_queue').to.equal(0);
      } finally {
        await bound.remove();
      }
      for (let i = 0; i < 3; i++) await billing.broker.take(billing.deadLetters);
      const moved = await eventually(
        () => billing.broker.take(billing.deadLetters),
        15_000,
        'the held dead letter, once the queue has room',
      );
      expect(moved.content.toString()).to.equal('not an order, and no room for it');
      await eventually(
        async () => ((await readyzOf(billing.consumer!)).status === 200 ? true : undefined),
        10_000,
        '/readyz ready again',
      );
    },
  );

  it(
    'When a poison message is dead-lettered, ' + 'then /readyz shows the dead-letter queue deeper and the count',
    async () => {
      const before = (await readyzOf(billing.consumer!)).body.details;
      await billing.broker.publish(billing.queue, 'not an order', { messageId: unique('poison-depth') });
      // placed at once, or (the broker slow to confirm) held for a few seconds and then placed: counted either way.
      // The queue can show the message before its confirm reaches the consumer, so both are awaited together.
      const counted = (details: typeof before) => details.deadLettered.poison + details.heldAside.poison;
      await eventually(
        async () => {
          const details = (await readyzOf(billing.consumer!)).body.details;
          const deeper = details.deadLetterQueue.depth === before.deadLetterQueue.depth + 1;
          return deeper && counted(details) === counted(before) + 1 ? true : undefined;
        },
        15_000,
        'a deeper dead-letter queue, and the dead letter counted once',
      );
      await billing.broker.take(billing.deadLetters);
    },
  );

  it(
    'When the dead-letter queue is missing, ' +
      'then a poison message is not acked into the void: it is dead-lettered once the queue is back',
    async () => {
      // the consumer declares the topology as it starts: delete the queue only after that
      await eventually(
        async () => ((await billing.broker.inspect(billing.queue))?.consumerCount === 1 ? true : undefined),
        5_000,
        'a consumer',
      );
      await billing.broker.channel.deleteQueue(billing.deadLetters);
      const content = 'not an order, and no dead-letter queue';
      await billing.broker.publish(billing.queue, content, { messageId: unique('no-dead-letter-queue') });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(await billing.broker.inspect(billing.deadLetters)).to.equal(undefined);
      await billing.broker.declare(billing.queue);
      const dead = await eventually(
        () => billing.broker.take(billing.deadLetters),
        10_000,
        'the dead letter, once its queue is back',
      );
      expect(dead.content.toString()).to.equal(content);
    },
  );
});
