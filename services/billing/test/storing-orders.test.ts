import { unique } from '@crud-master/test-support/env';
import { eventually, request, untilReady, urlOf } from '@crud-master/test-support/http';
import { relay } from '@crud-master/test-support/network';
import { expectProblem } from '@crud-master/test-support/problem';
import { expect } from 'chai';
import { consumerUnderTest, order, readyzOf } from './consumer-under-test.js';

describe('billing-consumer: storing orders', () => {
  const billing = consumerUnderTest();

  it('When a valid order is queued, then it is stored with its message id and the money exact', async () => {
    const id = unique('msg');
    await billing.broker.publish(billing.queue, order('usr_exact'), { messageId: id });
    await billing.storedOnce([id]);
    expect(await billing.orders.rowsOf([id])).to.deep.equal([
      { user_id: 'usr_exact', number_of_items: 3, total_amount: '99.97', message_id: id },
    ]);
  });

  it('When the same message is delivered twice, then it is stored once and both are acked', async () => {
    const id = unique('dup');
    await billing.broker.publish(billing.queue, order(), { messageId: id });
    await billing.broker.publish(billing.queue, order(), { messageId: id });
    await billing.storedOnce([id]);
    await eventually(async () => ((await billing.broker.count(billing.queue)) === 0 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await billing.orders.countsOf([id])).to.deep.equal([1]);
    expect(await billing.broker.count(billing.deadLetters)).to.equal(0);
  });

  it('When orders waited in the queue, then the consumer drains them all at start', async () => {
    await billing.consumer!.stop();
    billing.consumer = undefined;
    const ids = Array.from({ length: 250 }, () => unique('backlog'));
    for (const id of ids) await billing.broker.publish(billing.queue, order(), { messageId: id });
    expect(await billing.broker.count(billing.queue)).to.equal(250);
    expect(await billing.orders.countsOf(ids)).to.satisfy((counts: number[]) => counts.every((n) => n === 0));
    billing.consumer = await billing.startConsumer();
    await billing.storedOnce(ids);
    expect(await billing.broker.count(billing.queue)).to.equal(0);
  });

  it(
    'When the database is down, ' + 'then the order stays queued, is not dead-lettered, and is stored once it is back',
    async () => {
      await billing.consumer!.stop();
      const database = await relay(Number(process.env.BILLING_DB_PORT ?? 5432));
      try {
        billing.consumer = await billing.startConsumer({ BILLING_DB_PORT: database.port });
        database.cut();
        const id = unique('outage');
        await billing.broker.publish(billing.queue, order(), { messageId: id });
        const readyz = await readyzOf(billing.consumer);
        expectProblem(readyz, 503);
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        expect(await billing.orders.countsOf([id])).to.deep.equal([0]);
        expect(await billing.broker.count(billing.deadLetters)).to.equal(0);
        database.restore();
        await billing.storedOnce([id]);
      } finally {
        await billing.consumer?.stop();
        billing.consumer = undefined;
        await database.close();
      }
    },
  );

  it('When two users place orders with the same Idempotency-Key, then both orders are stored', async () => {
    const key = unique('shared-key');
    await billing.broker.publish(billing.queue, order('usr_alice'), { messageId: key });
    await billing.broker.publish(billing.queue, order('usr_bob'), { messageId: key });
    await eventually(
      async () => ((await billing.orders.rowsOf([key])).length === 2 ? true : undefined),
      10_000,
      'two orders',
    );
    expect((await billing.orders.rowsOf([key])).map((row) => row.user_id)).to.deep.equal(['usr_alice', 'usr_bob']);
    expect(await billing.broker.count(billing.deadLetters)).to.equal(0);
  });

  it('When the database and broker are reachable, then /healthz and /readyz answer 200', async () => {
    const url = urlOf(billing.consumer!.server);
    expect((await request(`${url}/healthz`)).status).to.equal(200);
    await untilReady(url, 5_000, 'ready');
  });
});
