import { confirmPublisher, connectBroker, createLogger } from '@crud-master/shared';
import { unique } from '@crud-master/test-support/env';
import { eventually, request, untilReady, urlOf } from '@crud-master/test-support/http';
import { channelCutter } from '@crud-master/test-support/network';
import { management, managementAuth } from '@crud-master/test-support/operator';
import { expectProblem } from '@crud-master/test-support/problem';
import { expect } from 'chai';
import { gatewayUnderTest } from './gateway-under-test.js';

const order = { user_id: 'usr_channel', number_of_items: 1, total_amount: 1 };
const vhost = encodeURIComponent(process.env.RABBITMQ_VHOST ?? '');

/** A broker user of the test's, with these permissions on the vhost (set again by `permit`); `remove()` deletes it. */
async function brokerUser(write: string) {
  const name = unique('gateway-test');
  const password = unique('pw');
  const permit = async (writePriv: string) => {
    const reply = await request(`${management}/permissions/${vhost}/${encodeURIComponent(name)}`, {
      method: 'PUT',
      headers: managementAuth,
      json: { configure: '^$', write: writePriv, read: '^$' },
    });
    expect(reply.status, 'permissions set').to.be.below(300);
  };
  const created = await request(`${management}/users/${encodeURIComponent(name)}`, { method: 'PUT', headers: managementAuth, json: { password, tags: '' } });
  expect(created.status, 'user created').to.be.below(300);
  await permit(write);
  return { name, password, permit, remove: () => request(`${management}/users/${encodeURIComponent(name)}`, { method: 'DELETE', headers: managementAuth }) };
}

describe('api-gateway: its broker channel', function () {
  this.timeout(60_000);
  const gw = gatewayUnderTest();

  it('When the broker cuts every channel.open, then the process stays up: orders get 503, /readyz 503, and /api/movies is still served', async () => {
    const cutter = await channelCutter(Number(process.env.RABBITMQ_PORT ?? 5672));
    const gateway = await gw.startGateway({ RABBITMQ_PORT: cutter.port, PUBLISH_TIMEOUT_MS: 500 });
    try {
      const base = urlOf(gateway.server);
      // several reconnects, each of which fails to open the channel
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      expectProblem(await request(`${base}/api/billing`, { method: 'POST', json: order }), 503);
      expectProblem(await request(`${base}/readyz`), 503);
      expect((await request(`${base}/api/movies`)).status).to.equal(200);
    } finally {
      await gateway.stop();
      await cutter.close();
    }
  });

  it('When the broker closes the publishing channel alone (a publish refused), then the gateway opens a new one and accepts orders again once the cause is gone', async () => {
    const user = await brokerUser('^$');
    const gateway = await gw.startGateway({ RABBITMQ_USER: user.name, RABBITMQ_PASSWORD: user.password, PUBLISH_TIMEOUT_MS: 1_000 });
    try {
      const base = urlOf(gateway.server);
      await untilReady(base, 10_000, 'connected');
      // ACCESS_REFUSED closes the channel, not the connection
      expectProblem(await request(`${base}/api/billing`, { method: 'POST', json: order }), 503);
      await user.permit('^amq\\.default$');
      const accepted = await eventually(async () => {
        const reply = await request(`${base}/api/billing`, { method: 'POST', json: order });
        return reply.status === 202 ? reply : undefined;
      }, 15_000, 'an order accepted on a new channel');
      expect(await gw.broker.take(gw.queue)).to.not.equal(undefined);
      expect(accepted.body.status).to.equal('queued');
      expect((await request(`${base}/readyz`)).status).to.equal(200);
    } finally {
      await gateway.stop();
      await user.remove();
    }
  });
});

describe('the confirm publisher: returns', function () {
  this.timeout(30_000);
  const gw = gatewayUnderTest();

  it("When a return comes after its publish timed out, then a later publish with the same message id is not taken for it", async () => {
    const logger = createLogger('test', 'silent');
    const connection = connectBroker({ ...brokerOf(), queue: gw.queue }, logger, 'confirm-publisher-test');
    const publisher = confirmPublisher(connection, 5_000, logger);
    try {
      await eventually(() => (publisher.isReady() ? true : undefined), 10_000, 'a channel');
      const messageId = unique('late-return');
      // no such queue: returned, but after the 1 ms this publish waits for its confirm
      const missing = await publisher.publish('', unique('no-such-queue'), Buffer.from('{}'), { messageId, timeout: 1 } as never);
      expect(missing).to.equal('unconfirmed');
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(await publisher.publish('', gw.queue, Buffer.from('{}'), { messageId })).to.equal('confirmed');
      // two publishes with one id, one of them returned: each gets its own outcome
      const outcomes = await Promise.all([
        publisher.publish('', unique('no-such-queue'), Buffer.from('{}'), { messageId }),
        publisher.publish('', gw.queue, Buffer.from('{}'), { messageId }),
      ]);
      expect(outcomes).to.deep.equal(['returned', 'confirmed']);
    } finally {
      await publisher.close();
      await connection.close();
    }
  });
});

function brokerOf() {
  const env = process.env;
  return {
    hosts: (env.RABBITMQ_HOST ?? '127.0.0.1').split(','),
    port: Number(env.RABBITMQ_PORT ?? 5672),
    user: env.RABBITMQ_USER!,
    password: env.RABBITMQ_PASSWORD!,
    vhost: env.RABBITMQ_VHOST!,
  };
}
