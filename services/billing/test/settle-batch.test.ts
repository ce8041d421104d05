import { expect } from 'chai';
import type { Order } from '../src/data-access/orders-repository.js';
import { settleBatch, type SettleBatchPorts } from '../src/domain/settle-batch.js';
import { order } from './consumer-under-test.js';

interface FakeDelivery {
  content: Buffer;
  messageId: string | undefined;
  channel: string;
}

const delivery = (messageId: string, channel = 'a', content = order()): FakeDelivery => ({
  content: Buffer.from(content),
  messageId,
  channel,
});

/** Ports that record what the use case did; `failStores` makes that many store attempts fail with a passing cause. */
function recordingPorts({ failStores = 0, closed = new Set<string>(), onRetry = () => {} } = {}) {
  const seen = { stored: [] as Order[][], deadLettered: [] as string[], settled: [] as string[], retries: 0 };
  const ports: SettleBatchPorts<FakeDelivery> = {
    store: (items) => {
      if (seen.retries < failStores)
        return Promise.reject(Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' }));
      seen.stored.push(items.map(({ order: stored }) => stored));
      return Promise.resolve({ added: items.length, rejected: [] });
    },
    deadLetter: (d, cause) => Promise.resolve(void seen.deadLettered.push(`${d.messageId}:${cause}`)),
    settle: (d) => void seen.settled.push(d.messageId ?? '?'),
    isLive: (d) => !closed.has(d.channel),
    retryAfter: () => {
      seen.retries++;
      onRetry();
      return Promise.resolve(seen.retries < 20);
    },
  };
  return { ports, seen };
}

describe('billing-consumer: settling a batch', () => {
  it(
    'When a batch holds orders and a poison message, ' + 'then each is settled its own way and every one is settled',
    async () => {
      const { ports, seen } = recordingPorts();
      await settleBatch([delivery('o1'), delivery('p1', 'a', 'not json'), delivery('o2')], ports);
      expect(seen.deadLettered).to.deep.equal(['p1:poison']);
      expect(seen.stored.map((batch) => batch.map((o) => o.message_id))).to.deep.equal([['o1', 'o2']]);
      expect(seen.settled).to.have.members(['o1', 'p1', 'o2']);
    },
  );

  it(
    "When a poison message's channel is closed, " +
      'then the rest of the batch, of another channel, is still stored and settled',
    async () => {
      const { ports, seen } = recordingPorts({ closed: new Set(['a']) });
      await settleBatch([delivery('p1', 'a', 'not json'), delivery('r1', 'b'), delivery('r2', 'b')], ports);
      expect(seen.deadLettered).to.deep.equal([]);
      expect(seen.settled).to.deep.equal(['r1', 'r2']);
    },
  );

  it("When the database is down and every delivery's channel closes meanwhile, then the retries stop", async () => {
    const closed = new Set<string>();
    const { ports, seen } = recordingPorts({ failStores: 100, closed, onRetry: () => closed.add('a') });
    await settleBatch([delivery('o1'), delivery('o2')], ports);
    expect(seen.retries, 'one failed attempt, then the batch is gone with its channel').to.equal(1);
    expect(seen.settled).to.deep.equal([]);
  });

  it(
    'When the database is down, ' + 'then the batch is retried until it is stored, and only its live deliveries are',
    async () => {
      const closed = new Set<string>();
      const { ports, seen } = recordingPorts({ failStores: 2, closed, onRetry: () => closed.add('a') });
      await settleBatch([delivery('o1', 'a'), delivery('o2', 'b')], ports);
      expect(seen.stored.map((batch) => batch.map((o) => o.message_id))).to.deep.equal([['o2']]);
      expect(seen.settled).to.deep.equal(['o2']);
    },
  );
});
