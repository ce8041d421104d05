import { unique } from '@crud-master/test-support/env';
import { request, untilReady, urlOf } from '@crud-master/test-support/http';
import { moved, scrape } from '@crud-master/test-support/metrics';
import { closedPort } from '@crud-master/test-support/network';
import { expectProblem } from '@crud-master/test-support/problem';
import { expect } from 'chai';
import type { ApiGateway } from '../src/app.js';
import { gatewayUnderTest } from './gateway-under-test.js';

describe('api-gateway: metrics', () => {
  const gw = gatewayUnderTest();

  const metricsUrlOf = (service: ApiGateway) => urlOf(service.metricsServer, '/metrics');
  const postOrder = (url: string, json: unknown) => request(`${url}/api/billing`, { method: 'POST', json });
  const anOrder = { user_id: 'usr_metrics', number_of_items: 1, total_amount: '1.50' };

  it(
    'When orders are accepted and refused and movies are proxied, ' + 'then /metrics moves by exactly those counts',
    async () => {
      const before = await scrape(metricsUrlOf(gw.gateway));
      for (let i = 0; i < 3; i++) expect((await postOrder(gw.base, anOrder)).status).to.equal(202);
      expectProblem(await postOrder(gw.base, { ...anOrder, number_of_items: 0 }), 400);
      expectProblem(
        await request(`${gw.base}/api/billing`, {
          method: 'POST',
          headers: { 'content-type': 'text/plain' },
          body: 'x',
        }),
        415,
      );
      for (let i = 0; i < 2; i++)
        expect((await request(`${gw.base}/api/movies?title=${unique('none')}`)).status).to.equal(200);
      expectProblem(await request(`${gw.base}/api/movies/999999999999`), 404);
      const after = await scrape(metricsUrlOf(gw.gateway));
      await gw.broker.channel.purgeQueue(gw.queue);

      expect(moved(before, after, 'gateway_orders_total', { outcome: 'accepted' })).to.equal(3);
      expect(moved(before, after, 'gateway_orders_total', { outcome: 'invalid' })).to.equal(2);
      expect(moved(before, after, 'gateway_orders_total', { outcome: 'unavailable' })).to.equal(0);
      expect(moved(before, after, 'gateway_broker_confirm_seconds_count', { outcome: 'confirmed' })).to.equal(3);
      expect(moved(before, after, 'gateway_broker_confirm_seconds_sum', { outcome: 'confirmed' })).to.be.above(0);
      const counted = (method: string, route: string, status: number) =>
        moved(before, after, 'http_requests_total', { method, route, status });
      expect(counted('POST', '/api/billing', 202)).to.equal(3);
      expect(counted('POST', '/api/billing', 400)).to.equal(1);
      expect(counted('POST', '/api/billing', 415)).to.equal(1);
      expect(counted('GET', '/api/movies', 200), 'the status inventory answered through the proxy').to.equal(2);
      expect(counted('GET', '/api/movies/:id', 404)).to.equal(1);
      expect(
        moved(before, after, 'http_request_duration_seconds_count', {
          method: 'GET',
          route: '/api/movies',
          status: 200,
        }),
      ).to.equal(2);
    },
  );

  it(
    'When the broker is down, or no queue takes an order, ' +
      'then the order counts as unavailable and the publish as unconfirmed or returned',
    async () => {
      const cutOff = await gw.startGateway({ RABBITMQ_PORT: await closedPort(), PUBLISH_TIMEOUT_MS: 300 });
      const orphan = await gw.startGateway({ RABBITMQ_QUEUE: unique('billing-missing') });
      try {
        await untilReady(urlOf(orphan.server), 10_000, 'connected');
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
    },
  );

  it(
    'When GATEWAY_PUBLIC_METRICS is not true, ' +
      'then the public port has no /metrics; when it is, it serves the same registry',
    async () => {
      expectProblem(await request(`${gw.base}/metrics`), 404);
      const open = await gw.startGateway({ GATEWAY_PUBLIC_METRICS: 'true' });
      try {
        const reply = await fetch(`${urlOf(open.server)}/metrics`);
        expect(reply.status).to.equal(200);
        expect(await reply.text()).to.include('gateway_orders_total{outcome="accepted"} 0');
      } finally {
        await open.stop();
      }
    },
  );
});
