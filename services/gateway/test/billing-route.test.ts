import { unique } from '@crud-master/test-support/env';
import { request, untilReady, urlOf } from '@crud-master/test-support/http';
import { closedPort, silentPeer } from '@crud-master/test-support/network';
import { expectProblem } from '@crud-master/test-support/problem';
import { allStringsOrder, typedOrder } from '@crud-master/test-support/seed';
import { expect } from 'chai';
import { gatewayUnderTest } from './gateway-under-test.js';

describe('api-gateway: POST /api/billing', () => {
  const gw = gatewayUnderTest();

  it("When the seed's typed body is posted, then it answers 202 and a persistent JSON message is queued", async () => {
    const key = unique('idem');
    const reply = await request(`${gw.base}/api/billing`, {
      method: 'POST',
      headers: { 'Idempotency-Key': key },
      json: typedOrder,
    });
    expect(reply.status, JSON.stringify(reply.body)).to.equal(202);
    const order = { user_id: 'usr_123', number_of_items: 3, total_amount: '99.97' };
    expect(reply.body).to.deep.equal({ message_id: key, status: 'queued', order });
    const message = await gw.broker.take(gw.queue);
    expect(message, 'a message in the queue').to.not.equal(undefined);
    expect(JSON.parse(message!.content.toString())).to.deep.equal(order);
    expect(message!.properties).to.include({ messageId: key, contentType: 'application/json', deliveryMode: 2 });
    const publishedAtMs: unknown = message!.properties.headers?.timestamp_in_ms;
    expect(publishedAtMs, 'the publish time in ms, for the consumer lag')
      .to.be.a('number')
      .within(Date.now() - 10_000, Date.now());
    expect(message!.properties.timestamp, 'AMQP timestamp, in seconds').to.equal(
      Math.floor((publishedAtMs as number) / 1000),
    );
  });

  it("When the subject's all-strings body is posted, then it is normalised and gets a fresh UUID", async () => {
    const reply = await request(`${gw.base}/api/billing`, { method: 'POST', json: allStringsOrder });
    expect(reply.status).to.equal(202);
    expect(reply.body.message_id).to.match(/^[0-9a-f-]{36}$/);
    const message = await gw.broker.take(gw.queue);
    expect(JSON.parse(message!.content.toString())).to.deep.equal({
      user_id: '3',
      number_of_items: 5,
      total_amount: '180.00',
    });
    expect(message!.properties.messageId).to.equal(reply.body.message_id);
  });

  const invalidOrders: Array<[string, unknown]> = [
    ['user_id is missing', { number_of_items: 1, total_amount: 1 }],
    ['user_id is blank', { user_id: ' ', number_of_items: 1, total_amount: 1 }],
    ['number_of_items is zero', { user_id: 'u', number_of_items: 0, total_amount: 1 }],
    ['number_of_items is a fraction', { user_id: 'u', number_of_items: 1.5, total_amount: 1 }],
    ['number_of_items is not a number', { user_id: 'u', number_of_items: 'five', total_amount: 1 }],
    ['total_amount is negative', { user_id: 'u', number_of_items: 1, total_amount: -1 }],
    ['total_amount has three decimals', { user_id: 'u', number_of_items: 1, total_amount: '1.999' }],
    ['total_amount is huge', { user_id: 'u', number_of_items: 1, total_amount: 1e12 }],
    ['total_amount is null', { user_id: 'u', number_of_items: 1, total_amount: null }],
    ['the body is an array', [{ user_id: 'u', number_of_items: 1, total_amount: 1 }]],
  ];
  for (const [when, body] of invalidOrders) {
    it(`When ${when}, then it answers 400 and queues nothing`, async () => {
      expectProblem(await request(`${gw.base}/api/billing`, { method: 'POST', json: body }), 400, /Invalid body/);
      expect(await gw.broker.count(gw.queue)).to.equal(0);
    });
  }

  it(
    'When user_id is a JSON number above 2^53 - 1, ' +
      'then it answers 400 and says to send a string, rather than round it into another user',
    async () => {
      for (const userId of ['9007199254740993', '9007199254740992', '1.5', '1e300']) {
        const body = `{"user_id":${userId},"number_of_items":1,"total_amount":1}`;
        const reply = await request(`${gw.base}/api/billing`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        expectProblem(reply, 400, /Invalid body/);
        expect(JSON.stringify(reply.body), userId).to.match(/as a string/);
      }
      const safe = await request(`${gw.base}/api/billing`, {
        method: 'POST',
        json: { user_id: 9007199254740991, number_of_items: 1, total_amount: 1 },
      });
      expect(safe.status).to.equal(202);
      expect(safe.body.order.user_id).to.equal('9007199254740991');
      expect(await gw.broker.count(gw.queue)).to.equal(1);
      await gw.broker.take(gw.queue);
    },
  );

  it('When the Idempotency-Key is not visible ASCII, then it answers 400', async () => {
    const reply = await request(`${gw.base}/api/billing`, {
      method: 'POST',
      headers: { 'Idempotency-Key': 'x'.repeat(201) },
      json: { user_id: 'u', number_of_items: 1, total_amount: 1 },
    });
    expectProblem(reply, 400, /Idempotency-Key/);
  });

  it('When the body is malformed, not JSON or too large, then it answers 400, 415 or 413', async () => {
    const post = (body: string, type = 'application/json') =>
      request(`${gw.base}/api/billing`, { method: 'POST', headers: { 'content-type': type }, body });
    expectProblem(await post('{"user_id":'), 400);
    expectProblem(await post('user_id=1', 'application/x-www-form-urlencoded'), 415);
    expectProblem(
      await post(JSON.stringify({ user_id: 'x'.repeat(20_000), number_of_items: 1, total_amount: 1 })),
      413,
    );
  });

  it('When the broker is down, then it answers 503 with Retry-After within the publish timeout', async () => {
    const cutOff = await gw.startGateway({ RABBITMQ_PORT: await closedPort(), PUBLISH_TIMEOUT_MS: 500 });
    try {
      const reply = await request(`${urlOf(cutOff.server)}/api/billing`, {
        method: 'POST',
        json: { user_id: 'u', number_of_items: 1, total_amount: 1 },
      });
      expectProblem(reply, 503, /not accepted/);
      expect(reply.body.message_id).to.match(/^[0-9a-f-]{36}$/);
      expect(reply.headers.get('retry-after')).to.equal('5');
      expect(reply.ms).to.be.below(3_000);
      expectProblem(await request(`${urlOf(cutOff.server)}/readyz`), 503);
    } finally {
      await cutOff.stop();
    }
  });

  it('When the broker accepts TCP but never confirms, then it answers 503, not 202', async () => {
    const mute = await silentPeer();
    const stalled = await gw.startGateway({ RABBITMQ_PORT: mute.port, PUBLISH_TIMEOUT_MS: 500 });
    try {
      const key = unique('stalled');
      const reply = await request(`${urlOf(stalled.server)}/api/billing`, {
        method: 'POST',
        headers: { 'Idempotency-Key': key },
        json: { user_id: 'u', number_of_items: 1, total_amount: 1 },
      });
      expectProblem(reply, 503);
      expect(reply.body.message_id, 'the key to retry with').to.equal(key);
    } finally {
      await stalled.stop();
      await mute.close();
    }
  });

  describe('without billing_queue', () => {
    it(
      'When billing_queue does not exist, ' +
        'then the broker returns the message and it answers 503 with the message_id, never 202',
      async () => {
        const missing = unique('billing-missing');
        const orphan = await gw.startGateway({ RABBITMQ_QUEUE: missing });
        try {
          await untilReady(urlOf(orphan.server), 10_000, 'connected');
          for (let i = 0; i < 3; i++) {
            const reply = await request(`${urlOf(orphan.server)}/api/billing`, {
              method: 'POST',
              json: { user_id: 'u', number_of_items: 1, total_amount: 1 },
            });
            expectProblem(reply, 503, /not accepted/);
            expect(reply.body.message_id).to.match(/^[0-9a-f-]{36}$/);
            expect(reply.ms, 'answered at the return, not at the publish timeout').to.be.below(1_000);
          }
          expect(await gw.broker.inspect(missing), 'the gateway declares nothing').to.equal(undefined);
        } finally {
          await orphan.stop();
        }
      },
    );
  });
});
