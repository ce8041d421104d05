import { unique } from '@crud-master/test-support/env';
import { eventually, request, untilReady } from '@crud-master/test-support/http';
import { management, managementAuth } from '@crud-master/test-support/operator';
import { expect } from 'chai';
import {
  billingDb,
  billingHealth,
  everyOnce,
  gateway,
  postOrder,
  psqlAsPostgres,
  queue,
  untilConsuming,
  vhost,
} from '@crud-master/test-support/broker-faults';

/**
 * One client's flood of a reused Idempotency-Key, while the dead-letter queue is full and a poison message waits,
 * against the deployed stack: nothing it sends may stall the other users' orders. Split from broker-faults.test.ts.
 */
describe('the deployed stack under a flood of reused keys', function () {
  this.timeout(180_000);

  before(untilConsuming);

  it(
    'When one client floods an Idempotency-Key reused for other orders while the dead-letter queue ' +
      'is full and a poison message waits, ' +
      "then every other user's order is stored within seconds, and each of the flood's 202s is " +
      'accounted for',
    async () => {
      // the deployed bound is 10,000: a policy of the test's, above the deployed one, makes the real queue full now
      const vhostPath = encodeURIComponent(vhost);
      const deadLetterQueue = `${queue}.dead-letter`;
      const depth = Number(
        (
          await request(`${management}/queues/${vhostPath}/${encodeURIComponent(deadLetterQueue)}`, {
            headers: managementAuth,
          })
        ).body.messages ?? 0,
      );
      const policyUrl = `${management}/policies/${vhostPath}/${encodeURIComponent(unique('e2e-full'))}`;
      const pattern = `^${deadLetterQueue.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
      const full = await request(policyUrl, {
        method: 'PUT',
        headers: managementAuth,
        json: {
          pattern,
          'apply-to': 'queues',
          priority: 100,
          definition: { 'max-length': depth, overflow: 'reject-publish' },
        },
      });
      expect(full.status).to.be.oneOf([201, 204]);
      const key = unique('flooded-key');
      const user = unique('usr_flood');
      const poison = unique('e2e-poison');
      const others = Array.from({ length: 20 }, () => unique('behind-the-flood'));
      try {
        // a message no gateway sends, as an administrator (or a replay of dead letters) could publish it
        const published = await request(`${management}/exchanges/${vhostPath}/amq.default/publish`, {
          method: 'POST',
          headers: managementAuth,
          json: {
            properties: { message_id: poison, delivery_mode: 2 },
            routing_key: queue,
            payload: 'not an order',
            payload_encoding: 'string',
          },
        });
        expect(published.body).to.deep.equal({ routed: true });
        const accepted: number[] = [];
        for (let items = 1; items <= 300; items++) {
          const reply = await request(`${gateway}/api/billing`, {
            method: 'POST',
            headers: { 'Idempotency-Key': key },
            json: { user_id: user, number_of_items: items, total_amount: '1.00' },
          });
          if (reply.status === 202) accepted.push(items);
        }
        for (const other of others) expect((await postOrder(other)).status).to.equal(202);
        const started = Date.now();
        await everyOnce(others, 15_000, "the other users' orders");
        const seconds = (Date.now() - started) / 1000;
        const stored = psqlAsPostgres(billingDb, `SELECT number_of_items FROM orders WHERE message_id = '${key}'`)
          .split('\n')
          .filter(Boolean)
          .map(Number);
        const rejected = await eventually(
          () => {
            const rows = psqlAsPostgres(
              billingDb,
              `SELECT number_of_items FROM rejected_orders WHERE message_id = '${key}'`,
            )
              .split('\n')
              .filter(Boolean)
              .map(Number);
            return rows.length + stored.length >= accepted.length ? rows : undefined;
          },
          15_000,
          'every 202 of the flood in orders or rejected_orders',
        );
        console.log(
          `      flood: ${accepted.length} × 202 of 300, 1 stored and ${rejected.length} recorded as rejected; the ` +
            `20 others stored within ${seconds} s`,
        );
        expect(stored, 'the first order of the key').to.have.length(1);
        expect([...stored, ...rejected].sort((a, b) => a - b)).to.deep.equal(accepted);
        const readiness = await eventually(
          async () => {
            const reply = await request(`${billingHealth}/readyz`);
            return reply.status === 503 && reply.body.details?.deadLetterQueue?.blocked
              ? reply.body.details
              : undefined;
          },
          15_000,
          '/readyz to say that dead-lettering is blocked',
        );
        expect(readiness.deadLetterQueue.held).to.be.at.least(1);
      } finally {
        await request(policyUrl, { method: 'DELETE', headers: managementAuth });
      }
      // the held poison message goes to the dead-letter queue once it has room
      await untilReady(billingHealth, 30_000, 'billing-consumer ready again, the held dead letter placed');
    },
  );
});
