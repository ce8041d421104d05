import type { Agent } from 'node:http';
import { unique } from '@crud-master/test-support/env';
import { request, urlOf } from '@crud-master/test-support/http';
import { scrape, series } from '@crud-master/test-support/metrics';
import { keepAliveAgent, rawRequest } from '@crud-master/test-support/raw-http';
import { expect } from 'chai';
import type { ApiGateway } from '../src/app.js';
import { gatewayUnderTest } from './gateway-under-test.js';

const order = (userId: string) => JSON.stringify({ user_id: userId, number_of_items: 1, total_amount: '1.00' });

/** A client on another loopback address: the gateway sees 127.0.0.2. */
const fromOtherAddress = keepAliveAgent({ localAddress: '127.0.0.2' });

describe('api-gateway: rate limits', () => {
  const gw = gatewayUnderTest();
  const started: ApiGateway[] = [];
  const limited = async (overrides: Record<string, string | number>) => {
    const gateway = await gw.startGateway({ GATEWAY_RATE_LIMIT_WINDOW_S: 60, ...overrides });
    started.push(gateway);
    return gateway;
  };
  after(async () => {
    fromOtherAddress.destroy();
    await Promise.all(started.map((gateway) => gateway.stop()));
  });

  it(
    'When one address floods POST /api/billing, ' +
      'then it gets 429 with Retry-After and another address is still served',
    async () => {
      const gateway = await limited({ GATEWAY_RATE_LIMIT_WRITES: 3 });
      const post = (agent?: Agent) =>
        rawRequest(
          urlOf(gateway.server),
          {
            method: 'POST',
            path: '/api/billing',
            headers: { 'content-type': 'application/json' },
            body: order(unique('u')),
          },
          10_000,
          agent,
        );
      const statuses = [];
      for (let i = 0; i < 5; i++) statuses.push((await post()).status);
      expect(statuses).to.deep.equal([202, 202, 202, 429, 429]);
      const refused = await request(`${urlOf(gateway.server)}/api/billing`, {
        method: 'POST',
        json: JSON.parse(order('u')),
      });
      expect(refused.status).to.equal(429);
      expect(refused.headers.get('content-type')).to.match(/^application\/problem\+json/);
      expect(Number(refused.headers.get('retry-after'))).to.be.within(1, 60);
      expect(refused.body).to.include({ status: 429, title: 'Too Many Requests' });
      expect((await post(fromOtherAddress)).status, 'another address').to.equal(202);
    },
  );

  it('When an address has used its writes, then it can still read: writes have the stricter limit', async () => {
    const gateway = await limited({ GATEWAY_RATE_LIMIT_WRITES: 1, GATEWAY_RATE_LIMIT_REQUESTS: 4 });
    const base = urlOf(gateway.server);
    expect(
      (await request(`${base}/api/movies`, { method: 'POST', json: { title: unique('Limited') } })).status,
    ).to.equal(201);
    expect((await request(`${base}/api/movies/1`, { method: 'DELETE' })).status).to.equal(429);
    expect((await request(`${base}/api/movies?limit=1`)).status).to.equal(200);
    expect((await request(`${base}/healthz`)).status).to.equal(200);
    // 4 requests so far, the 429 included: every route counts towards the address's limit
    expect((await request(`${base}/healthz`)).status).to.equal(429);
  });

  it(
    'When one user_id floods POST /api/billing from two addresses, ' +
      'then it gets 429 and another user is still accepted',
    async () => {
      const gateway = await limited({ GATEWAY_RATE_LIMIT_ORDERS_PER_USER: 2 });
      const user = unique('flooder');
      const post = (userId: string, agent?: Agent, body = order(userId)) =>
        rawRequest(
          urlOf(gateway.server),
          { method: 'POST', path: '/api/billing', headers: { 'content-type': 'application/json' }, body },
          10_000,
          agent,
        );
      // an invalid order is refused before the user's limit is counted
      expect((await post(user, undefined, '{"user_id":"x"}')).status).to.equal(400);
      expect((await post(user)).status).to.equal(202);
      expect((await post(user, fromOtherAddress)).status).to.equal(202);
      const refused = await post(user, fromOtherAddress);
      expect(refused.status).to.equal(429);
      expect(refused.headers['retry-after']).to.match(/^\d+$/);
      expect(JSON.parse(refused.body).detail).to.match(/user_id/);
      expect((await post(unique('someone-else'))).status).to.equal(202);
    },
  );

  it('When two gateway instances run (PM2 cluster), then each keeps its own counters', async () => {
    const [first, second] = [
      await limited({ GATEWAY_RATE_LIMIT_REQUESTS: 2 }),
      await limited({ GATEWAY_RATE_LIMIT_REQUESTS: 2 }),
    ];
    const statuses = async (gateway: ApiGateway) => [
      (await request(`${urlOf(gateway.server)}/healthz`)).status,
      (await request(`${urlOf(gateway.server)}/healthz`)).status,
      (await request(`${urlOf(gateway.server)}/healthz`)).status,
    ];
    expect(await statuses(first)).to.deep.equal([200, 200, 429]);
    expect(await statuses(second), 'the other instance').to.deep.equal([200, 200, 429]);
  });

  it(
    'When a trusted proxy forwards for clients, ' +
      'then each client address is limited apart; an untrusted X-Forwarded-For is ignored',
    async () => {
      const trusting = await limited({ GATEWAY_RATE_LIMIT_REQUESTS: 1, GATEWAY_TRUSTED_PROXIES: '127.0.0.1' });
      const via = (gateway: ApiGateway, forwardedFor: string) =>
        rawRequest(urlOf(gateway.server), {
          method: 'GET',
          path: '/healthz',
          headers: { 'x-forwarded-for': forwardedFor },
        });
      expect((await via(trusting, '203.0.113.7')).status).to.equal(200);
      expect((await via(trusting, '6.6.6.6, 203.0.113.7')).status, 'the address the trusted proxy saw').to.equal(429);
      expect((await via(trusting, '203.0.113.8')).status).to.equal(200);
      const untrusting = await limited({ GATEWAY_RATE_LIMIT_REQUESTS: 1 });
      expect((await via(untrusting, '203.0.113.7')).status).to.equal(200);
      expect((await via(untrusting, '203.0.113.8')).status, 'the socket address').to.equal(429);
    },
  );

  it('When requests are limited, then gateway_rate_limited_total counts them by route and by reason', async () => {
    const gateway = await limited({ GATEWAY_RATE_LIMIT_WRITES: 1, GATEWAY_RATE_LIMIT_ORDERS_PER_USER: 1 });
    const base = urlOf(gateway.server);
    const user = unique('counted');
    await request(`${base}/api/billing`, { method: 'POST', json: JSON.parse(order(user)) });
    await rawRequest(
      base,
      { method: 'POST', path: '/api/billing', headers: { 'content-type': 'application/json' }, body: order(user) },
      10_000,
      fromOtherAddress,
    );
    await request(`${base}/api/movies/1`, { method: 'PUT', json: { title: 'x' } });
    const samples = await scrape(urlOf(gateway.metricsServer, '/metrics'));
    const limitedBy = (route: string, reason: string) =>
      samples.get(series('gateway_rate_limited_total', { route, reason }));
    expect(limitedBy('/api/billing', 'user')).to.equal(1);
    expect(limitedBy('/api/movies/:id', 'writes')).to.equal(1);
    expect(limitedBy('/api/movies', 'address'), 'every route and reason is shown from the start').to.equal(0);
  });
});
