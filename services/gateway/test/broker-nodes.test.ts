import { ConfigError } from '@crud-master/shared';
import { testEnv, unique } from '@crud-master/test-support/env';
import { eventually, request, untilReady, urlOf } from '@crud-master/test-support/http';
import { relay, spareLoopback } from '@crud-master/test-support/network';
import { expectProblem } from '@crud-master/test-support/problem';
import { expect } from 'chai';
import { loadConfig } from '../src/config.js';
import { gatewayUnderTest } from './gateway-under-test.js';

describe('api-gateway: POST /api/billing with several RabbitMQ nodes', () => {
  const gw = gatewayUnderTest();

  const brokerPort = Number(process.env.RABBITMQ_PORT ?? 5672);
  const liveHost = (process.env.RABBITMQ_HOST ?? '127.0.0.1').split(',')[0]!.trim();
  const anOrder = { user_id: 'usr_nodes', number_of_items: 1, total_amount: '1.00' };
  const postOrder = (url: string, key = unique('nodes')) =>
    request(`${url}/api/billing`, { method: 'POST', headers: { 'Idempotency-Key': key }, json: anOrder });
  const readyGateway = async (hosts: string[], overrides: Record<string, string | number> = {}) => {
    const service = await gw.startGateway({ RABBITMQ_HOST: hosts.join(','), ...overrides });
    await untilReady(urlOf(service.server), 10_000, 'connected to a node');
    return service;
  };
  const queuedIds = async () => {
    const ids: unknown[] = [];
    for (let message = await gw.broker.take(gw.queue); message; message = await gw.broker.take(gw.queue))
      ids.push(message.properties.messageId);
    return ids;
  };

  it(
    'When RABBITMQ_HOST lists a node that is down first and a live one second, ' +
      'then the gateway connects to the second and answers 202',
    async () => {
      const gatewayOfTwo = await readyGateway([await spareLoopback(brokerPort), liveHost]);
      try {
        const key = unique('second-node');
        expect((await postOrder(urlOf(gatewayOfTwo.server), key)).status).to.equal(202);
        expect(await queuedIds()).to.deep.equal([key]);
      } finally {
        await gatewayOfTwo.stop();
      }
    },
  );

  it(
    'When the live node is listed first and a node that is down second, ' +
      'then it answers 202, and after its connection drops it comes back through the dead node to the ' +
      'live one',
    async () => {
      const node = await relay(brokerPort, { host: await spareLoopback(brokerPort), port: brokerPort });
      const gatewayOfTwo = await readyGateway([node.host, await spareLoopback(brokerPort)]);
      try {
        expect((await postOrder(urlOf(gatewayOfTwo.server))).status).to.equal(202);
        node.cut();
        node.restore();
        await eventually(
          async () => ((await request(`${urlOf(gatewayOfTwo.server)}/readyz`)).status === 503 ? true : undefined),
          5_000,
          'the drop seen',
        );
        await untilReady(urlOf(gatewayOfTwo.server), 10_000, 'back on the live node');
        expect((await postOrder(urlOf(gatewayOfTwo.server))).status).to.equal(202);
        expect(await queuedIds()).to.have.length(2);
      } finally {
        await gatewayOfTwo.stop();
        await node.close();
      }
    },
  );

  it(
    'When the node the gateway publishes to goes away before it confirms, ' +
      'then that order answers 503 with its message_id, never 202, and the next ones go to the other ' +
      'node',
    async () => {
      const node = await relay(brokerPort, { host: await spareLoopback(brokerPort), port: brokerPort });
      // a long publish timeout: the 503 must come from the lost connection, not from the timeout
      const gatewayOfTwo = await readyGateway([node.host, liveHost], { PUBLISH_TIMEOUT_MS: 20_000 });
      try {
        node.hold();
        const key = unique('in-flight');
        const pending = postOrder(urlOf(gatewayOfTwo.server), key);
        await new Promise((resolve) => setTimeout(resolve, 500));
        node.cut();
        const reply = await pending;
        expectProblem(reply, 503, /not accepted/);
        expect(reply.body.message_id, 'the key to retry with').to.equal(key);
        expect(reply.ms, 'answered when the connection dropped').to.be.below(5_000);
        await untilReady(urlOf(gatewayOfTwo.server), 10_000, 'on the other node');
        const next = unique('after-failover');
        expect((await postOrder(urlOf(gatewayOfTwo.server), next)).status).to.equal(202);
        // the node had queued the unconfirmed order: a retry with its message_id makes it one order in billing_db
        expect(await queuedIds()).to.deep.equal([key, next]);
      } finally {
        await gatewayOfTwo.stop();
        await node.close();
      }
    },
  );
});

describe('api-gateway config', () => {
  it(
    'When RABBITMQ_HOST lists several hosts, ' +
      'then each is a broker node; an empty one fails with one line that names it',
    () => {
      const vars = testEnv({ INVENTORY_API_URL: 'http://127.0.0.1:9' });
      expect(
        loadConfig({ ...vars, RABBITMQ_HOST: '192.168.56.12, 192.168.56.13,192.168.56.14' }).broker.hosts,
      ).to.deep.equal(['192.168.56.12', '192.168.56.13', '192.168.56.14']);
      expect(() => loadConfig({ ...vars, RABBITMQ_HOST: '192.168.56.12,,192.168.56.14' }))
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(/RABBITMQ_HOST/)
        .and.not.match(/\n/);
    },
  );
});
