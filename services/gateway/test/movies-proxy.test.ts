import { unique } from '@crud-master/test-support/env';
import { eventually, request, urlOf } from '@crud-master/test-support/http';
import { closedPort, silentPeer } from '@crud-master/test-support/network';
import { expectProblem } from '@crud-master/test-support/problem';
import { expect } from 'chai';
import { gatewayUnderTest } from './gateway-under-test.js';

describe('api-gateway: the /api/movies proxy', () => {
  const gw = gatewayUnderTest();

  it('When a movie is posted through the gateway, then the inventory answer passes through unchanged', async () => {
    const title = unique('Proxied');
    const reply = await request(`${gw.base}/api/movies`, {
      method: 'POST',
      json: { title, description: 'via gateway' },
    });
    expect(reply.status).to.equal(201);
    expect(reply.body).to.include({ title, description: 'via gateway' });
    expect(reply.headers.get('location')).to.equal(`/api/movies/${reply.body.id}`);
    const direct = await request(`${urlOf(gw.inventory.server)}/api/movies/${reply.body.id}`);
    const proxied = await request(`${gw.base}/api/movies/${reply.body.id}`);
    expect(proxied.status).to.equal(direct.status);
    expect(proxied.body).to.deep.equal(direct.body);
    expect(proxied.headers.get('content-type')).to.equal(direct.headers.get('content-type'));
  });

  it('When the query, PUT and DELETE go through the gateway, then they reach the inventory', async () => {
    const tag = unique('Query');
    const created = await request(`${gw.base}/api/movies`, { method: 'POST', json: { title: `${tag} 50% off` } });
    const search = await request(`${gw.base}/api/movies?title=${encodeURIComponent(`${tag} 50%`)}&limit=5`);
    expect(search.body).to.deep.equal([created.body]);
    const updated = await request(`${gw.base}/api/movies/${created.body.id}`, {
      method: 'PUT',
      json: { description: 'updated' },
    });
    expect(updated.body.description).to.equal('updated');
    expect((await request(`${gw.base}/api/movies/${created.body.id}`, { method: 'DELETE' })).status).to.equal(204);
  });

  it('When the inventory answers an error, then its status, problem body and headers pass through', async () => {
    const direct = await request(`${urlOf(gw.inventory.server)}/api/movies/abc`);
    const proxied = await request(`${gw.base}/api/movies/abc`);
    expectProblem(proxied, 400);
    expect(proxied.body).to.deep.equal(direct.body);
    expectProblem(
      await request(`${gw.base}/api/movies`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' }),
      415,
    );
  });

  it('When a request carries an X-Request-Id, then the inventory gets the same id and the client sees it', async () => {
    const reply = await request(`${gw.base}/api/movies?limit=1`, { headers: { 'X-Request-Id': 'trace-me-42' } });
    expect(reply.headers.get('x-request-id')).to.equal('trace-me-42');
    const fresh = await request(`${gw.base}/api/movies?limit=1`);
    expect(fresh.headers.get('x-request-id')).to.match(/^[0-9a-f-]{36}$/);
  });

  it('When the inventory is unreachable, then the gateway answers 502 problem+json at once', async () => {
    const orphan = await gw.startGateway({ INVENTORY_API_URL: `http://127.0.0.1:${await closedPort()}` });
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
    const impatient = await gw.startGateway({
      INVENTORY_API_URL: `http://127.0.0.1:${hung.port}`,
      UPSTREAM_TIMEOUT_MS: 300,
    });
    try {
      const reply = await request(`${urlOf(impatient.server)}/api/movies`, { method: 'POST', json: { title: 'x' } });
      expectProblem(reply, 504, /did not answer/);
    } finally {
      await impatient.stop();
      await hung.close();
    }
  });

  it(
    'When a client goes away while inventory has not answered, ' + 'then the gateway ends that request at once',
    async () => {
      const hung = await silentPeer();
      const patient = await gw.startGateway({
        INVENTORY_API_URL: `http://127.0.0.1:${hung.port}`,
        UPSTREAM_TIMEOUT_MS: 20_000,
      });
      const answered = async () => {
        const text = await (await fetch(`${urlOf(patient.metricsServer)}/metrics`)).text();
        return /^http_requests_total\{method="GET",route="\/api\/movies\/:id"/m.test(text) ? true : undefined;
      };
      try {
        const gone = AbortSignal.timeout(200);
        await fetch(`${urlOf(patient.server)}/api/movies/1`, { signal: gone }).catch(() => undefined);
        expect(gone.aborted).to.equal(true);
        // counted (and logged) only once the request's middleware has ended: long before the upstream timeout
        await eventually(answered, 2_000, 'the gateway to count the abandoned request');
      } finally {
        await patient.stop();
        await hung.close();
      }
    },
  );
});
