import { ConfigError, deadLetterQueueOf } from '@crud-master/shared';
import { expect } from 'chai';
import { loadConfig as loadInventoryConfig } from '../../inventory/src/config.js';
import { type InventoryApi, start as startInventory } from '../../inventory/src/app.js';
import { openBroker, type TestBroker } from '@crud-master/test-support/broker';
import { testEnv, unique } from '@crud-master/test-support/env';
import { eventually, request, urlOf } from '@crud-master/test-support/http';
import { closedPort, relay, silentPeer, spareLoopback } from '@crud-master/test-support/network';
import { moved, scrape } from '@crud-master/test-support/metrics';
import { expectProblem } from '@crud-master/test-support/problem';
import { type ApiGateway, start } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { allStringsOrder, typedOrder } from '@crud-master/test-support/seed';


describe('api-gateway', () => {
  const queue = unique('billing-test');
  let inventory: InventoryApi;
  let gateway: ApiGateway;
  let base: string;
  let broker: TestBroker;

  const startGateway = (overrides: Record<string, string | number> = {}) =>
    start(loadConfig(testEnv({ GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: 0, INVENTORY_API_URL: urlOf(inventory.server), RABBITMQ_QUEUE: queue, ...overrides })));

  before(async () => {
    inventory = await startInventory(loadInventoryConfig(testEnv({ INVENTORY_API_HOST: '127.0.0.1', INVENTORY_API_PORT: 0 })));
    gateway = await startGateway();
    base = urlOf(gateway.server);
    broker = await openBroker();
    await broker.declare(queue);
    await eventually(async () => ((await request(`${base}/readyz`)).status === 200 ? true : undefined), 10_000, 'the gateway to be ready');
  });

  after(async () => {
    await gateway.stop();
    await inventory.stop();
    await broker.deleteQueues(queue, deadLetterQueueOf(queue));
    await broker.close();
  });

  describe('/api/movies proxy', () => {
    it('When a movie is posted through the gateway, then the inventory answer passes through unchanged', async () => {
      const title = unique('Proxied');
      const reply = await request(`${base}/api/movies`, { method: 'POST', json: { title, description: 'via gateway' } });
      expect(reply.status).to.equal(201);
      expect(reply.body).to.include({ title, description: 'via gateway' });
      expect(reply.headers.get('location')).to.equal(`/api/movies/${reply.body.id}`);
      const direct = await request(`${urlOf(inventory.server)}/api/movies/${reply.body.id}`);
      const proxied = await request(`${base}/api/movies/${reply.body.id}`);
      expect(proxied.status).to.equal(direct.status);
      expect(proxied.body).to.deep.equal(direct.body);
      expect(proxied.headers.get('content-type')).to.equal(direct.headers.get('content-type'));
    });

    it('When the query, PUT and DELETE go through the gateway, then they reach the inventory', async () => {
      const tag = unique('Query');
      const created = await request(`${base}/api/movies`, { method: 'POST', json: { title: `${tag} 50% off` } });
      const search = await request(`${base}/api/movies?title=${encodeURIComponent(`${tag} 50%`)}&limit=5`);
      expect(search.body).to.deep.equal([created.body]);
      const updated = await request(`${base}/api/movies/${created.body.id}`, { method: 'PUT', json: { description: 'updated' } });
      expect(updated.body.description).to.equal('updated');
      expect((await request(`${base}/api/movies/${created.body.id}`, { method: 'DELETE' })).status).to.equal(204);
    });

    it('When the inventory answers an error, then its status, problem body and headers pass through', async () => {
      const direct = await request(`${urlOf(inventory.server)}/api/movies/abc`);
      const proxied = await request(`${base}/api/movies/abc`);
      expectProblem(proxied, 400);
      expect(proxied.body).to.deep.equal(direct.body);
      expectProblem(await request(`${base}/api/movies`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' }), 415);
    });

    it('When a request carries an X-Request-Id, then the inventory gets the same id and the client sees it', async () => {
      const reply = await request(`${base}/api/movies?limit=1`, { headers: { 'X-Request-Id': 'trace-me-42' } });
      expect(reply.headers.get('x-request-id')).to.equal('trace-me-42');
      const fresh = await request(`${base}/api/movies?limit=1`);
      expect(fresh.headers.get('x-request-id')).to.match(/^[0-9a-f-]{36}$/);
    });

    it('When the inventory is unreachable, then the gateway answers 502 problem+json at once', async () => {
      const orphan = await startGateway({ INVENTORY_API_URL: `http://127.0.0.1:${await closedPort()}` });
      try {
        const reply = await request(`${urlOf(orphan.server)}/api/movies`);
        expectProblem(reply, 502, /unreachable/);
        expect(reply.ms).to.be.below(2_000);
      } finally {
        await orphan.stop();
      }
    });

    it('When the inventory does not answer in time, then the gateway answers 504 problem+json', async () => {
      const hung = await silentPeer();
      const impatient = await startGateway({ INVENTORY_API_URL: `http://127.0.0.1:${hung.port}`, UPSTREAM_TIMEOUT_MS: 300 });
      try {
        const reply = await request(`${urlOf(impatient.server)}/api/movies`, { method: 'POST', json: { title: 'x' } });
        expectProblem(reply, 504, /did not answer/);
      } finally {
        await impatient.stop();
        await hung.close();
      }
    });
  });

  describe('POST /api/billing', () => {
    it("When the seed's typed body is posted, then it answers 202 and a persistent JSON message is queued", async () => {
      const key = unique('idem');
      const reply = await request(`${base}/api/billing`, {
        method: 'POST',
        headers: { 'Idempotency-Key': key },
        json: typedOrder,
      });
      expect(reply.status, JSON.stringify(reply.body)).to.equal(202);
      const order = { user_id: 'usr_123', number_of_items: 3, total_amount: '99.97' };
      expect(reply.body).to.deep.equal({ message_id: key, status: 'queued', order });
      const message = await broker.take(queue);
      expect(message, 'a message in the queue').to.not.equal(undefined);
      expect(JSON.parse(message!.content.toString())).to.deep.equal(order);
      expect(message!.properties).to.include({ messageId: key, contentType: 'application/json', deliveryMode: 2 });
      const publishedAtMs: unknown = message!.properties.headers?.timestamp_in_ms;
      expect(publishedAtMs, 'the publish time in ms, for the consumer lag').to.be.a('number').within(Date.now() - 10_000, Date.now());
      expect(message!.properties.timestamp, 'AMQP timestamp, in seconds').to.equal(Math.floor((publishedAtMs as number) / 1000));
    });

    it("When the subject's all-strings body is posted, then it is normalised and gets a fresh UUID", async () => {
      const reply = await request(`${base}/api/billing`, { method: 'POST', json: allStringsOrder });
      expect(reply.status).to.equal(202);
      expect(reply.body.message_id).to.match(/^[0-9a-f-]{36}$/);
      const message = await broker.take(queue);
      expect(JSON.parse(message!.content.toString())).to.deep.equal({ user_id: '3', number_of_items: 5, total_amount: '180.00' });
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
        expectProblem(await request(`${base}/api/billing`, { method: 'POST', json: body }), 400, /Invalid body/);
        expect(await broker.count(queue)).to.equal(0);
      });
    }

    it('When the Idempotency-Key is not visible ASCII, then it answers 400', async () => {
      const reply = await request(`${base}/api/billing`, {
        method: 'POST',
        headers: { 'Idempotency-Key': 'x'.repeat(201) },
        json: { user_id: 'u', number_of_items: 1, total_amount: 1 },
      });
      expectProblem(reply, 400, /Idempotency-Key/);
    });

    it('When the body is malformed, not JSON or too large, then it answers 400, 415 or 413', async () => {
      const post = (body: string, type = 'application/json') => request(`${base}/api/billing`, { method: 'POST', headers: { 'content-type': type }, body });
      expectProblem(await post('{"user_id":'), 400);
      expectProblem(await post('user_id=1', 'application/x-www-form-urlencoded'), 415);
      expectProblem(await post(JSON.stringify({ user_id: 'x'.repeat(20_000), number_of_items: 1, total_amount: 1 })), 413);
    });

    it('When the broker is down, then it answers 503 with Retry-After within the publish timeout', async () => {
      const cutOff = await startGateway({ RABBITMQ_PORT: await closedPort(), PUBLISH_TIMEOUT_MS: 500 });
      try {
        const reply = await request(`${urlOf(cutOff.server)}/api/billing`, { method: 'POST', json: { user_id: 'u', number_of_items: 1, total_amount: 1 } });
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
      const stalled = await startGateway({ RABBITMQ_PORT: mute.port, PUBLISH_TIMEOUT_MS: 500 });
      try {
        const key = unique('stalled');
        const reply = await request(`${urlOf(stalled.server)}/api/billing`, { method: 'POST', headers: { 'Idempotency-Key': key }, json: { user_id: 'u', number_of_items: 1, total_amount: 1 } });
        expectProblem(reply, 503);
        expect(reply.body.message_id, 'the key to retry with').to.equal(key);
      } finally {
        await stalled.stop();
        await mute.close();
      }
    });
  });

  describe('POST /api/billing without billing_queue', () => {
    it('When billing_queue does not exist, then the broker returns the message and it answers 503 with the message_id, never 202', async () => {
      const missing = unique('billing-missing');
      const orphan = await startGateway({ RABBITMQ_QUEUE: missing });
      try {
        await eventually(async () => ((await request(`${urlOf(orphan.server)}/readyz`)).status === 200 ? true : undefined), 10_000, 'connected');
        for (let i = 0; i < 3; i++) {
          const reply = await request(`${urlOf(orphan.server)}/api/billing`, { method: 'POST', json: { user_id: 'u', number_of_items: 1, total_amount: 1 } });
          expectProblem(reply, 503, /not accepted/);
          expect(reply.body.message_id).to.match(/^[0-9a-f-]{36}$/);
          expect(reply.ms, 'answered at the return, not at the publish timeout').to.be.below(1_000);
        }
        expect(await broker.inspect(missing), 'the gateway declares nothing').to.equal(undefined);
      } finally {
        await orphan.stop();
      }
    });
  });

  describe('POST /api/billing with several RabbitMQ nodes', () => {
    const brokerPort = Number(process.env.RABBITMQ_PORT ?? 5672);
    const liveHost = (process.env.RABBITMQ_HOST ?? '127.0.0.1').split(',')[0]!.trim();
    const anOrder = { user_id: 'usr_nodes', number_of_items: 1, total_amount: '1.00' };
    const postOrder = (url: string, key = unique('nodes')) => request(`${url}/api/billing`, { method: 'POST', headers: { 'Idempotency-Key': key }, json: anOrder });
    const readyGateway = async (hosts: string[], overrides: Record<string, string | number> = {}) => {
      const service = await startGateway({ RABBITMQ_HOST: hosts.join(','), ...overrides });
      await eventually(async () => ((await request(`${urlOf(service.server)}/readyz`)).status === 200 ? true : undefined), 10_000, 'connected to a node');
      return service;
    };
    const queuedIds = async () => {
      const ids: unknown[] = [];
      for (let message = await broker.take(queue); message; message = await broker.take(queue)) ids.push(message.properties.messageId);
      return ids;
    };

    it('When RABBITMQ_HOST lists a node that is down first and a live one second, then the gateway connects to the second and answers 202', async () => {
      const gatewayOfTwo = await readyGateway([await spareLoopback(brokerPort), liveHost]);
      try {
        const key = unique('second-node');
        expect((await postOrder(urlOf(gatewayOfTwo.server), key)).status).to.equal(202);
        expect(await queuedIds()).to.deep.equal([key]);
      } finally {
        await gatewayOfTwo.stop();
      }
    });

    it('When the live node is listed first and a node that is down second, then it answers 202, and after its connection drops it comes back through the dead node to the live one', async () => {
      const node = await relay(brokerPort, { host: await spareLoopback(brokerPort), port: brokerPort });
      const gatewayOfTwo = await readyGateway([node.host, await spareLoopback(brokerPort)]);
      try {
        expect((await postOrder(urlOf(gatewayOfTwo.server))).status).to.equal(202);
        node.cut();
        node.restore();
        await eventually(async () => ((await request(`${urlOf(gatewayOfTwo.server)}/readyz`)).status === 503 ? true : undefined), 5_000, 'the drop seen');
        await eventually(async () => ((await request(`${urlOf(gatewayOfTwo.server)}/readyz`)).status === 200 ? true : undefined), 10_000, 'back on the live node');
        expect((await postOrder(urlOf(gatewayOfTwo.server))).status).to.equal(202);
        expect(await queuedIds()).to.have.length(2);
      } finally {
        await gatewayOfTwo.stop();
        await node.close();
      }
    });

    it('When the node the gateway publishes to goes away before it confirms, then that order answers 503 with its message_id, never 202, and the next ones go to the other node', async () => {
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
        await eventually(async () => ((await request(`${urlOf(gatewayOfTwo.server)}/readyz`)).status === 200 ? true : undefined), 10_000, 'on the other node');
        const next = unique('after-failover');
        expect((await postOrder(urlOf(gatewayOfTwo.server), next)).status).to.equal(202);
        // the node had queued the unconfirmed order: a retry with its message_id makes it one order in billing_db
        expect(await queuedIds()).to.deep.equal([key, next]);
      } finally {
        await gatewayOfTwo.stop();
        await node.close();
      }
    });
  });

  describe('metrics', () => {
    const metricsUrlOf = (service: ApiGateway) => urlOf(service.metricsServer, '/metrics');
    const postOrder = (url: string, json: unknown) => request(`${url}/api/billing`, { method: 'POST', json });
    const anOrder = { user_id: 'usr_metrics', number_of_items: 1, total_amount: '1.50' };

    it('When orders are accepted and refused and movies are proxied, then /metrics moves by exactly those counts', async () => {
      const before = await scrape(metricsUrlOf(gateway));
      for (let i = 0; i < 3; i++) expect((await postOrder(base, anOrder)).status).to.equal(202);
      expectProblem(await postOrder(base, { ...anOrder, number_of_items: 0 }), 400);
      expectProblem(await request(`${base}/api/billing`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' }), 415);
      for (let i = 0; i < 2; i++) expect((await request(`${base}/api/movies?title=${unique('none')}`)).status).to.equal(200);
      expectProblem(await request(`${base}/api/movies/999999999999`), 404);
      const after = await scrape(metricsUrlOf(gateway));
      await broker.channel.purgeQueue(queue);

      expect(moved(before, after, 'gateway_orders_total', { outcome: 'accepted' })).to.equal(3);
      expect(moved(before, after, 'gateway_orders_total', { outcome: 'invalid' })).to.equal(2);
      expect(moved(before, after, 'gateway_orders_total', { outcome: 'unavailable' })).to.equal(0);
      expect(moved(before, after, 'gateway_broker_confirm_seconds_count', { outcome: 'confirmed' })).to.equal(3);
      expect(moved(before, after, 'gateway_broker_confirm_seconds_sum', { outcome: 'confirmed' })).to.be.above(0);
      const counted = (method: string, route: string, status: number) => moved(before, after, 'http_requests_total', { method, route, status });
      expect(counted('POST', '/api/billing', 202)).to.equal(3);
      expect(counted('POST', '/api/billing', 400)).to.equal(1);
      expect(counted('POST', '/api/billing', 415)).to.equal(1);
      expect(counted('GET', '/api/movies', 200), 'the status inventory answered through the proxy').to.equal(2);
      expect(counted('GET', '/api/movies/:id', 404)).to.equal(1);
      expect(moved(before, after, 'http_request_duration_seconds_count', { method: 'GET', route: '/api/movies', status: 200 })).to.equal(2);
    });

    it('When the broker is down, or no queue takes an order, then the order counts as unavailable and the publish as unconfirmed or returned', async () => {
      const cutOff = await startGateway({ RABBITMQ_PORT: await closedPort(), PUBLISH_TIMEOUT_MS: 300 });
      const orphan = await startGateway({ RABBITMQ_QUEUE: unique('billing-missing') });
      try {
        await eventually(async () => ((await request(`${urlOf(orphan.server)}/readyz`)).status === 200 ? true : undefined), 10_000, 'connected');
        for (const service of [cutOff, orphan]) expectProblem(await postOrder(urlOf(service.server), anOrder), 503);
        const [down, returned] = await Promise.all([scrape(metricsUrlOf(cutOff)), scrape(metricsUrlOf(orphan))]);
        const none = new Map<string, number>();
        expect(moved(none, down, 'gateway_orders_total', { outcome: 'unavailable' })).to.equal(1);
        expect(moved(none, down, 'gateway_broker_confirm_seconds_count', { outcome: 'unconfirmed' })).to.equal(1);
        expect(moved(none, returned, 'gateway_orders_total', { outcome: 'unavailable' })).to.equal(1);
        expect(moved(none, returned, 'gateway_broker_confirm_seconds_count', { outcome: 'returned' })).to.equal(1);
        expect(moved(none, returned, 'gateway_broker_confirm_seconds_count', { outcome: 'confirmed' })).to.equal(0);
      } finally {
        await Promise.all([cutOff.stop(), orphan.stop()]);
      }
    });

    it('When GATEWAY_PUBLIC_METRICS is not true, then the public port has no /metrics; when it is, it serves the same registry', async () => {
      expectProblem(await request(`${base}/metrics`), 404);
      const open = await startGateway({ GATEWAY_PUBLIC_METRICS: 'true' });
      try {
        const reply = await fetch(`${urlOf(open.server)}/metrics`);
        expect(reply.status).to.equal(200);
        expect(await reply.text()).to.include('gateway_orders_total{outcome="accepted"} 0');
      } finally {
        await open.stop();
      }
    });
  });

  describe('health', () => {
    it('When the broker is connected, then /healthz and /readyz answer 200', async () => {
      expect((await request(`${base}/healthz`)).body).to.deep.equal({ status: 'ok' });
      expect((await request(`${base}/readyz`)).body).to.deep.equal({ status: 'ready' });
    });

    it('When a route does not exist, then the gateway answers 404 problem+json', async () => {
      expectProblem(await request(`${base}/api/moviesX`), 404);
      expectProblem(await request(`${base}/api/billing`), 405);
    });
  });
});

describe('api-gateway config', () => {
  it('When RABBITMQ_HOST lists several hosts, then each is a broker node; an empty one fails with one line that names it', () => {
    const vars = testEnv({ INVENTORY_API_URL: 'http://127.0.0.1:9' });
    expect(loadConfig({ ...vars, RABBITMQ_HOST: '192.168.56.12, 192.168.56.13,192.168.56.14' }).broker.hosts).to.deep.equal(['192.168.56.12', '192.168.56.13', '192.168.56.14']);
    expect(() => loadConfig({ ...vars, RABBITMQ_HOST: '192.168.56.12,,192.168.56.14' }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/RABBITMQ_HOST/)
      .and.not.match(/\n/);
  });
});
