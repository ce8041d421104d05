import { ConfigError } from '@crud-master/shared';
import { testEnv, unique } from '@crud-master/test-support/env';
import { request, urlOf } from '@crud-master/test-support/http';
import { moved, scrape } from '@crud-master/test-support/metrics';
import { relay } from '@crud-master/test-support/network';
import { expectProblem } from '@crud-master/test-support/problem';
import { expect } from 'chai';
import type { InventoryApi } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { startOnFreePort } from './inventory-under-test.js';

describe('inventory-api: errors, health, configuration and metrics', () => {
  let api: InventoryApi;
  let base: string;

  before(async () => {
    api = await startOnFreePort();
    base = urlOf(api.server);
  });

  after(() => api.stop());

  describe('errors, health and configuration', () => {
    it('When a route does not exist, then it answers 404 problem+json', async () => {
      expectProblem(await request(`${base}/api/nothing`), 404);
    });

    it('When a method is not allowed, then it answers 405 with Allow', async () => {
      const reply = await request(`${base}/api/movies`, { method: 'PATCH' });
      expectProblem(reply, 405);
      expect(reply.headers.get('allow')).to.match(/GET/);
    });

    it('When the database is reachable, then /healthz and /readyz answer 200', async () => {
      expect((await request(`${base}/healthz`)).body).to.deep.equal({ status: 'ok' });
      expect((await request(`${base}/readyz`)).body).to.deep.equal({ status: 'ready' });
    });

    it('When the database goes down, then /readyz and the API answer 503 with Retry-After, and recover', async () => {
      const database = await relay(Number(process.env.INVENTORY_DB_PORT ?? 5432));
      const behindRelay = await startOnFreePort({ INVENTORY_DB_PORT: database.port });
      try {
        const url = urlOf(behindRelay.server);
        expect((await request(`${url}/api/movies?limit=1`)).status).to.equal(200);
        database.cut();
        expect((await request(`${url}/healthz`)).status).to.equal(200);
        expectProblem(await request(`${url}/readyz`), 503);
        const reply = await request(`${url}/api/movies?limit=1`);
        expectProblem(reply, 503, /database/);
        expect(reply.headers.get('retry-after')).to.equal('5');
        database.restore();
        expect((await request(`${url}/api/movies?limit=1`)).status).to.equal(200);
        expect((await request(`${url}/readyz`)).status).to.equal(200);
      } finally {
        await behindRelay.stop();
        await database.close();
      }
    });

    it('When a variable is missing, then the config fails with one line that names it', () => {
      const vars = testEnv();
      delete vars.INVENTORY_DB_PASSWORD;
      expect(() => loadConfig({ ...vars, INVENTORY_API_PORT: 'x' }))
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(/INVENTORY_API_PORT/)
        .and.matches(/INVENTORY_DB_PASSWORD is required/)
        .and.not.match(/\n/);
    });
  });

  describe('metrics', () => {
    const metricsUrl = () => urlOf(api.metricsServer, '/metrics');

    it(
      'When movies are created, read, missed and deleted, ' +
        'then /metrics counts exactly those requests by method, route and status',
      async () => {
        const before = await scrape(metricsUrl());
        const ids: number[] = [];
        for (const title of [unique('metrics-a'), unique('metrics-b')]) {
          const reply = await request(`${base}/api/movies`, {
            method: 'POST',
            json: { title, description: 'counted' },
          });
          expect(reply.status).to.equal(201);
          ids.push(reply.body.id);
        }
        for (let i = 0; i < 3; i++) expect((await request(`${base}/api/movies/${ids[0]}`)).status).to.equal(200);
        expectProblem(await request(`${base}/api/movies/999999999999`), 404);
        expectProblem(await request(`${base}/no-such-route`), 404);
        for (const id of ids)
          expect((await request(`${base}/api/movies/${id}`, { method: 'DELETE' })).status).to.equal(204);
        const after = await scrape(metricsUrl());

        const counted = (method: string, route: string, status: number) =>
          moved(before, after, 'http_requests_total', { method, route, status });
        expect(counted('POST', '/api/movies', 201)).to.equal(2);
        expect(counted('GET', '/api/movies/:id', 200)).to.equal(3);
        expect(counted('GET', '/api/movies/:id', 404)).to.equal(1);
        expect(counted('GET', 'unmatched', 404)).to.equal(1);
        expect(counted('DELETE', '/api/movies/:id', 204)).to.equal(2);
        expect(
          moved(before, after, 'http_request_duration_seconds_count', {
            method: 'GET',
            route: '/api/movies/:id',
            status: 200,
          }),
        ).to.equal(3);
        expect(
          moved(before, after, 'http_request_duration_seconds_sum', {
            method: 'GET',
            route: '/api/movies/:id',
            status: 200,
          }),
        ).to.be.above(0);
      },
    );

    it(
      'When a client sends a method of its own, ' + 'then it is counted as "other": a client cannot add series at will',
      async () => {
        const before = await scrape(metricsUrl());
        const reply = await fetch(`${base}/api/movies`, { method: 'PROPFIND' });
        expect(reply.status).to.equal(405);
        const after = await scrape(metricsUrl());
        expect(
          moved(before, after, 'http_requests_total', { method: 'other', route: 'unmatched', status: 405 }),
          'no route takes PROPFIND',
        ).to.equal(1);
        expect([...after.keys()].some((key) => key.includes('PROPFIND'))).to.equal(false);
      },
    );

    it(
      'When /metrics is asked for on the API port, ' + 'then it is not there: metrics have a listener of their own',
      async () => {
        expectProblem(await request(`${base}/metrics`), 404);
        expect((await scrape(metricsUrl())).get('process_cpu_seconds_total')).to.be.a('number');
      },
    );
  });
});
