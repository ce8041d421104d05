import { expect } from 'chai';
import { AckLedger } from '../src/domain/ack-ledger.js';

describe('billing-consumer: the ack ledger', () => {
  const a = { name: 'channel a' };
  const b = { name: 'channel b' };
  const receive = (ledger: AckLedger<object>, channel: object, ...tags: number[]) =>
    tags.forEach((tag) => ledger.received(channel, tag));

  it('When every delivery of a channel is settled, then one multiple ack covers them', () => {
    const ledger = new AckLedger<object>();
    receive(ledger, a, 1, 2, 3);
    [1, 2, 3].forEach((tag) => ledger.settle(a, tag));
    expect(ledger.takeAcks()).to.deep.equal([{ channel: a, tag: 3, multiple: true }]);
    expect(ledger.outstanding).to.equal(0);
  });

  it(
    'When a delivery is unsettled, ' +
      'then no multiple ack covers it, and the settled ones after it are acked one by one',
    () => {
      const ledger = new AckLedger<object>();
      receive(ledger, a, 1, 2, 3, 4, 5);
      [1, 2, 4, 5].forEach((tag) => ledger.settle(a, tag));
      expect(ledger.takeAcks()).to.deep.equal([
        { channel: a, tag: 2, multiple: true },
        { channel: a, tag: 4, multiple: false },
        { channel: a, tag: 5, multiple: false },
      ]);
      ledger.settle(a, 3);
      expect(ledger.takeAcks()).to.deep.equal([{ channel: a, tag: 3, multiple: false }]);
    },
  );

  it(
    'When a channel closes, ' +
      'then its deliveries are forgotten, and a redelivery on the new channel is never acked by the ' +
      "old one's settlement",
    () => {
      const ledger = new AckLedger<object>();
      // the interleaving of issue 22: a poison message of a closed channel, then the new channel's redeliveries
      receive(ledger, a, 1, 2);
      ledger.close(a);
      receive(ledger, b, 1, 2, 3);
      expect(ledger.settle(a, 2), 'a closed channel settles nothing').to.equal(false);
      ledger.settle(b, 3);
      expect(ledger.takeAcks()).to.deep.equal([{ channel: b, tag: 3, multiple: false }]);
      expect(ledger.isClosed(a)).to.equal(true);
      ledger.received(a, 9);
      expect(ledger.outstanding, 'b 1 and 2, unsettled; nothing of a').to.equal(2);
    },
  );

  it('When two channels are open, then each is acked on its own', () => {
    const ledger = new AckLedger<object>();
    receive(ledger, a, 1);
    receive(ledger, b, 7, 8);
    ledger.settle(a, 1);
    ledger.settle(b, 7);
    ledger.settle(b, 8);
    expect(ledger.takeAcks()).to.have.deep.members([
      { channel: a, tag: 1, multiple: false },
      { channel: b, tag: 8, multiple: true },
    ]);
  });
});
