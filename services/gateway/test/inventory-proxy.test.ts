import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { testEnv } from '@crud-master/test-support/env';
import { urlOf } from '@crud-master/test-support/http';
import { closedPort } from '@crud-master/test-support/network';
import { rawRequest } from '@crud-master/test-support/raw-http';
import { expect } from 'chai';
import { type ApiGateway, start } from '../src/app.js';
import { loadConfig } from '../src/config.js';

/** Listens with the upstream on loopback, and starts a gateway in front of it. */
async function gatewayInFrontOf(upstream: Server): Promise<ApiGateway> {
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  // the broker is not needed here: a closed port keeps the gateway from connecting anywhere
  return start(
    loadConfig(
      testEnv({
        GATEWAY_HOST: '127.0.0.1',
        GATEWAY_PORT: 0,
        INVENTORY_API_URL: urlOf(upstream),
        RABBITMQ_PORT: await closedPort(),
      }),
    ),
  );
}

async function stopBoth(gateway: ApiGateway, upstream: Server): Promise<void> {
  await gateway.stop();
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream.close(resolve));
}

/**
 * The movies proxy against a real upstream HTTP server that records what it received and answers hop-by-hop headers.
 */
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
    gateway = await gatewayInFrontOf(upstream);
  });

  after(() => stopBoth(gateway, upstream));

  it(
    'When a client sends X-Forwarded-* and hop-by-hop headers, ' +
      'then inventory gets what the gateway saw and no hop-by-hop header',
    async () => {
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
      for (const name of [
        'x-client-hop',
        'keep-alive',
        'te',
        'upgrade',
        'proxy-authorization',
        'proxy-connection',
        'x-forwarded-port',
        'forwarded',
      ]) {
        expect(headers, `inventory got ${name}`).to.not.have.property(name);
      }
      expect(headers.connection ?? '').to.not.match(/x-client-hop/i);

      expect(reply.headers).to.include({ 'x-end-to-end': 'kept' });
      for (const name of ['x-upstream-hop', 'upgrade', 'proxy-authenticate']) {
        expect(reply.headers, `the client got ${name}`).to.not.have.property(name);
      }
      expect(String(reply.headers.connection)).to.not.match(/x-upstream-hop/i);
      expect(String(reply.headers['keep-alive'] ?? '')).to.not.match(/max=7/);
    },
  );
});

/**
 * The gateway keeps its connections to inventory open between requests. inventory closes one that idles past its
 * keep-alive timeout: a request the gateway sends on it just then meets a closed connection, and its client a 502. So
 * the gateway closes an idle one first, a second before the timeout that inventory's Keep-Alive header announces.
 */
describe('api-gateway: its idle connections to inventory', () => {
  const KEEP_ALIVE_S = 2;
  let upstream: Server;
  let gateway: ApiGateway;
  const closes: Array<{ byGateway: boolean; idleMs: number }> = [];

  before(async () => {
    upstream = createServer({ keepAliveTimeout: KEEP_ALIVE_S * 1_000 }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('[]', () => {
        const answered = performance.now();
        // the gateway's FIN arrives as 'end'; a connection that inventory times out itself ends without one
        let byGateway = false;
        res.socket?.once('end', () => (byGateway = true));
        res.socket?.once('close', () => closes.push({ byGateway, idleMs: performance.now() - answered }));
      });
    });
    gateway = await gatewayInFrontOf(upstream);
  });

  after(() => stopBoth(gateway, upstream));

  it(
    `When a connection to inventory idles and inventory announces a ${KEEP_ALIVE_S} s keep-alive ` +
      `timeout, ` +
      `then the gateway closes it a second before that`,
    async function () {
      this.timeout(10_000);
      expect((await rawRequest(urlOf(gateway.server), { method: 'GET', path: '/api/movies' })).status).to.equal(200);
      // Node's server announces timeout=2 and closes an idle connection a second later still
      const deadline = performance.now() + (KEEP_ALIVE_S + 2) * 1_000;
      while (closes.length === 0 && performance.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 50));
      expect(closes, 'the idle connection closed').to.have.length(1);
      expect(closes[0]!.byGateway, 'closed by the gateway, not by inventory').to.equal(true);
      expect(closes[0]!.idleMs, 'ms idle until it closed').to.be.within(
        (KEEP_ALIVE_S - 1) * 1_000 - 100,
        KEEP_ALIVE_S * 1_000,
      );
    },
  );
});
