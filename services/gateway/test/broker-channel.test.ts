import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { confirmPublisher, connectBroker, createLogger, deadLetterQueueOf } from '@crud-master/shared';
import { loadConfig } from '../src/config.js';
import { testEnv, unique } from '@crud-master/test-support/env';
import { eventually, request, untilReady, urlOf } from '@crud-master/test-support/http';
import { channelCutter, closedPort, relay } from '@crud-master/test-support/network';
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
  const created = await request(`${management}/users/${encodeURIComponent(name)}`, {
    method: 'PUT',
    headers: managementAuth,
    json: { password, tags: '' },
  });
  expect(created.status, 'user created').to.be.below(300);
  await permit(write);
  return {
    name,
    password,
    permit,
    remove: () =>
      request(`${management}/users/${encodeURIComponent(name)}`, { method: 'DELETE', headers: managementAuth }),
  };
}

describe('api-gateway: its broker channel', function () {
  this.timeout(60_000);
  const gw = gatewayUnderTest();

  it(
    'When the broker cuts every channel.open, ' +
      'then the gateway process stays up: orders get 503, /readyz 503, and /api/movies is still served',
    async () => {
      const cutter = await channelCutter(Number(process.env.RABBITMQ_PORT ?? 5672));
      // a process of its own, as PM2 runs it: an unhandled 'error' would end it
      const port = await closedPort();
      const env = testEnv({
        GATEWAY_HOST: '127.0.0.1',
        GATEWAY_PORT: port,
        INVENTORY_API_URL: urlOf(gw.inventory.server),
        RABBITMQ_PORT: cutter.port,
        PUBLISH_TIMEOUT_MS: 500,
        RABBITMQ_QUEUE: gw.queue,
      });
      const gateway = spawn(process.execPath, [fileURLToPath(new URL('../dist/main.js', import.meta.url))], {
        env,
        stdio: 'ignore',
      });
      let exited: number | null | undefined;
      gateway.on('exit', (code) => (exited = code));
      try {
        const base = `http://127.0.0.1:${port}`;
        await eventually(
          async () => ((await fetch(`${base}/healthz`).catch(() => undefined))?.ok ? true : undefined),
          10_000,
          'the gateway up',
        );
        // several reconnects, each of which fails to open the channel
        await new Promise((resolve) => setTimeout(resolve, 4_000));
        expect(exited, 'the gateway process exited').to.equal(undefined);
        expectProblem(await request(`${base}/api/billing`, { method: 'POST', json: order }), 503);
        expectProblem(await request(`${base}/readyz`), 503);
        expect((await request(`${base}/api/movies`)).status).to.equal(200);
      } finally {
        gateway.kill('SIGTERM');
        await cutter.close();
      }
    },
  );

  it(
    'When the broker closes the publishing channel alone (a publish refused), ' +
      'then the gateway opens a new one and accepts orders again once the cause is gone',
    async () => {
      const user = await brokerUser('^$');
      const gateway = await gw.startGateway({
        RABBITMQ_USER: user.name,
        RABBITMQ_PASSWORD: user.password,
        PUBLISH_TIMEOUT_MS: 1_000,
      });
      try {
        const base = urlOf(gateway.server);
        await untilReady(base, 10_000, 'connected');
        // ACCESS_REFUSED closes the channel, not the connection
        expectProblem(await request(`${base}/api/billing`, { method: 'POST', json: order }), 503);
        await user.permit('^amq\\.default$');
        const accepted = await eventually(
          async () => {
            const reply = await request(`${base}/api/billing`, { method: 'POST', json: order });
            return reply.status === 202 ? reply : undefined;
          },
          15_000,
          'an order accepted on a new channel',
        );
        expect(await gw.broker.take(gw.queue)).to.not.equal(undefined);
        expect(accepted.body.status).to.equal('queued');
        expect((await request(`${base}/readyz`)).status).to.equal(200);
      } finally {
        await gateway.stop();
        await user.remove();
      }
    },
  );
});

describe('api-gateway: broker returns', function () {
  this.timeout(30_000);
  const gw = gatewayUnderTest();

  it(
    'When a return comes after its publish timed out, ' +
      'then the retry with the same key is accepted, not answered by that stale return',
    async () => {
      const missing = unique('late-queue');
      const link = await relay(Number(process.env.RABBITMQ_PORT ?? 5672));
      const gateway = await gw.startGateway({
        RABBITMQ_PORT: link.port,
        RABBITMQ_QUEUE: missing,
        PUBLISH_TIMEOUT_MS: 500,
      });
      const base = urlOf(gateway.server);
      const post = (key: string) =>
        request(`${base}/api/billing`, { method: 'POST', headers: { 'Idempotency-Key': key }, json: order });
      try {
        await untilReady(base, 10_000, 'connected');
        const key = unique('late');
        // no queue takes it, and its return comes only after its publish timed out
        link.hold();
        expectProblem(await post(key), 503);
        link.release();
        await new Promise((resolve) => setTimeout(resolve, 300));
        await gw.broker.declare(missing);
        const retry = await post(key);
        expect(retry.status, JSON.stringify(retry.body)).to.equal(202);
        expect((await gw.broker.take(missing))?.properties.messageId).to.equal(key);
      } finally {
        await gateway.stop();
        await link.close();
        await gw.broker.deleteQueues(missing, deadLetterQueueOf(missing));
      }
    },
  );

  it('When two publishes share a message id and only one is returned, then each gets its own outcome', async () => {
    const logger = createLogger('test', 'silent');
    const connection = connectBroker(
      loadConfig(testEnv({ INVENTORY_API_URL: 'http://127.0.0.1:1' })).broker,
      logger,
      'confirm-publisher-test',
    );
    const publisher = confirmPublisher(connection, 5_000, logger);
    try {
      await eventually(() => (publisher.isReady() ? true : undefined), 10_000, 'a channel');
      const messageId = unique('shared-id');
      const outcomes = await Promise.all([
        publisher.publish('', unique('no-such-queue'), Buffer.from('{}'), { messageId }),
        publisher.publish('', gw.queue, Buffer.from('{}'), { messageId }),
        publisher.publish('', unique('no-such-queue'), Buffer.from('{}'), { messageId }),
      ]);
      expect(outcomes).to.deep.equal(['returned', 'confirmed', 'returned']);
      await gw.broker.take(gw.queue);
    } finally {
      await publisher.close();
      await connection.close();
    }
  });
});
