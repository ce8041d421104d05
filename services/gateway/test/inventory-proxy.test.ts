import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { testEnv } from '@crud-master/test-support/env';
import { urlOf } from '@crud-master/test-support/http';
import { closedPort } from '@crud-master/test-support/network';
import { rawRequest } from '@crud-master/test-support/raw-http';
import { expect } from 'chai';
import { type ApiGateway, start } from '../src/app.js';
import { loadConfig } from '../src/config.js';

/** The movies proxy against a real upstream HTTP server that records what it received and answers hop-by-hop headers. */
describe('api-gateway: the /api/movies proxy headers', () => {
  let upstream: Server;
  let gateway: ApiGateway;
  let received: IncomingHttpHeaders[];

  before(async () => {
    received = [];
    upstream = createServer((req, res) => {
      received.push(req.headers);
      res.writeHead(200, {
        'content-type': 'application/json',
        connection: 'keep-alive, X-Upstream-Hop',
        'x-upstream-hop': 'for the gateway only',
        'keep-alive': 'timeout=99, max=7',
        upgrade: 'h2c',
        'proxy-authenticate': 'Basic realm="upstream"',
        'x-end-to-end': 'kept',
      });
      res.end('[]');
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    // the broker is not needed here: a closed port keeps the gateway from connecting anywhere
    gateway = await start(
      loadConfig(testEnv({ GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: 0, INVENTORY_API_URL: urlOf(upstream), RABBITMQ_PORT: await closedPort() })),
    );
  });

  after(async () => {
    await gateway.stop();
    upstream.closeAllConnections();
    await new Promise((resolve) => upstream.close(resolve));
  });

  it('When a client sends X-Forwarded-* and hop-by-hop headers, then inventory gets what the gateway saw and no hop-by-hop header', async () => {
    const reply = await rawRequest(urlOf(gateway.server), {
      method: 'GET',
      path: '/api/movies?limit=1',
      headers: {
        host: 'movies.example:8080',
        connection: 'keep-alive, X-Client-Hop',
        'x-client-hop': 'for the gateway only',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        upgrade: 'websocket',
        'proxy-authorization': 'Basic c2VjcmV0OnNlY3JldA==',
        'proxy-connection': 'keep-alive',
        'x-forwarded-for': '203.0.113.66',
        'x-forwarded-proto': 'https',
        'x-forwarded-host': 'forged.example',
        'x-forwarded-port': '443',
        forwarded: 'for=203.0.113.66;proto=https',
        'x-end-to-end': 'kept',
      },
    });
    expect(reply.status).to.equal(200);
    const headers = received.at(-1)!;
    expect(headers).to.include({
      'x-forwarded-for': '127.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'movies.example:8080',
      'x-end-to-end': 'kept',
    });
    for (const name of ['x-client-hop', 'keep-alive', 'te', 'upgrade', 'proxy-authorization', 'proxy-connection', 'x-forwarded-port', 'forwarded']) {
      expect(headers, `inventory got ${name}`).to.not.have.property(name);
    }
    expect(headers.connection ?? '').to.not.match(/x-client-hop/i);

    expect(reply.headers).to.include({ 'x-end-to-end': 'kept' });
    for (const name of ['x-upstream-hop', 'upgrade', 'proxy-authenticate']) {
      expect(reply.headers, `the client got ${name}`).to.not.have.property(name);
    }
    expect(String(reply.headers.connection)).to.not.match(/x-upstream-hop/i);
    expect(String(reply.headers['keep-alive'] ?? '')).to.not.match(/max=7/);
  });
});
