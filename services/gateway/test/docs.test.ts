import { readFileSync } from 'node:fs';
import { testEnv } from '@crud-master/test-support/env';
import { request, urlOf } from '@crud-master/test-support/http';
import { closedPort } from '@crud-master/test-support/network';
import { expectProblem } from '@crud-master/test-support/problem';
import { expect } from 'chai';
import { type ApiGateway, start } from '../src/app.js';
import { loadConfig } from '../src/config.js';

describe('api-gateway: /openapi.yaml and /docs', () => {
  let gateway: ApiGateway;
  let base: string;

  before(async () => {
    // neither the inventory nor the broker is needed to serve the docs
    const port = await closedPort();
    gateway = await start(
      loadConfig(
        testEnv({
          GATEWAY_HOST: '127.0.0.1',
          GATEWAY_PORT: 0,
          INVENTORY_API_URL: `http://127.0.0.1:${port}`,
          RABBITMQ_PORT: port,
        }),
      ),
    );
    base = urlOf(gateway.server);
  });

  after(() => gateway.stop());

  it('When /openapi.yaml is asked for, then it answers the repository root openapi.yaml as YAML', async () => {
    const reply = await request(`${base}/openapi.yaml`);
    expect(reply.status).to.equal(200);
    expect(reply.headers.get('content-type')).to.match(/^application\/yaml/);
    expect(reply.body).to.equal(readFileSync(new URL('../../../openapi.yaml', import.meta.url), 'utf8'));
  });

  it('When /docs is asked for, then the Swagger UI page loads its assets from the gateway, not a CDN', async () => {
    const page = await request(`${base}/docs`);
    expect(page.status).to.equal(200);
    expect(page.headers.get('content-type')).to.match(/^text\/html/);
    const assets = [...(page.body as string).matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1]!);
    expect(assets).to.include.members(['/docs/swagger-ui.css', '/docs/swagger-ui-bundle.js']);
    for (const asset of assets) {
      expect(asset, 'a local path').to.match(/^\/docs\//);
      const reply = await request(`${base}${asset}`);
      expect(reply.status, asset).to.equal(200);
      expect(reply.body, asset).to.not.be.empty;
    }
    expect(page.body).to.include("url: '/openapi.yaml'");
  });

  it('When a file of swagger-ui-dist that the page does not use is asked for, then it answers 404', async () => {
    expectProblem(await request(`${base}/docs/package.json`), 404);
    expectProblem(await request(`${base}/docs/..%2F..%2Fpackage.json`), 404);
  });
});
