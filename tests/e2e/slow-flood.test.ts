import '@crud-master/test-support/env';
import { readFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { isThisHost } from '@crud-master/test-support/hosts';
import { instancesOf, instanceUrls, scrape } from '@crud-master/test-support/metrics';
import { pm2ProcessesOn } from '@crud-master/test-support/pm2';
import {
  CLIENT_FROM,
  describeFlood,
  FLOOD_CONNECTIONS as FLOOD,
  FLOOD_FROM,
  FLOOD_TRICKLE_MS,
  probeDuringFlood,
} from '@crud-master/test-support/slow-flood';
import { stack, thisHost } from '@crud-master/test-support/stack';
import { expect } from 'chai';

/**
 * Issue 23: while 15,000 slow connections from one address hold on to the deployed gateway (:8080, two PM2 instances),
 * a client on another address gets every GET answered, the flood's connections are closed within the request timeout,
 * and no instance restarts; on one host, with no firewall in front. Each flood connection sends a POST head and then
 * trickles its body: the head arrives at once, so HTTP_REQUEST_TIMEOUT_MS, not the headers timeout, bounds it; each
 * instance holds HTTP_MAX_CONNECTIONS_PER_ADDRESS of them and closes the others at once.
 *
 * It runs where the gateway is this host's own PM2 stack (make local). In the Vagrant stage the suite reaches
 * gateway-vm through a forwarded port, where every client is one address to the gateway and a firewall caps the
 * connections of a source: the flood would measure the sandbox, so the test skips there.
 */
const env = process.env;
// the flood opens 100 connections every 30 ms (slow-flood-child.ts): 4.5 s, if its own CPU keeps up (on a busy
// 2-core host it took 8 to 23 s)
const CONNECTING_MS = 25_000;
const requestTimeoutMs = Number(env.HTTP_REQUEST_TIMEOUT_MS ?? 10_000);
// Node looks for requests past their timeouts once a second (1 s). A connection counts from its connect, so the time
// before the gateway's clock starts counts too: an instance accepts it while its event loop is busy with the flood's
// burst (up to about 1.5 s on 2 cores): 2 s. The flood's own lag is added at the end: it is
// the error of the flood's own measure.
const closedWithinMs = requestTimeoutMs + 1_000 + 2_000;
// one GET at a time, this far apart: even if every one lands on the same instance, half of its budget per address
// (GATEWAY_RATE_LIMIT_REQUESTS per GATEWAY_RATE_LIMIT_WINDOW_S) at most, so that a 429 can only mean a fault
const rateLimit = Number(env.GATEWAY_RATE_LIMIT_REQUESTS ?? 10_000);
const windowMs = Number(env.GATEWAY_RATE_LIMIT_WINDOW_S ?? 10) * 1_000;
const PAUSE_MS = rateLimit > 0 ? Math.max(10, Math.ceil((2 * windowMs) / rateLimit)) : 10;
const gatewayHere = isThisHost('gateway') && stack.gateway === thisHost.gateway;

/** api-gateway's instances: PM2 id, pid and restarts; a restart changes a pid or a count. */
const gatewayInstances = () =>
  pm2ProcessesOn('gateway')
    .filter((p) => p.name === 'api-gateway')
    .map(({ pm_id, pid, restarts, status }) => ({ pm_id, pid, restarts, status }));

describe('slow connections against the deployed gateway', () => {
  it(
    `When ${FLOOD.toLocaleString('en')} slow connections from one address hold on to :8080, ` +
      `then another address gets every GET answered, the flood is closed in time, and no instance ` +
      `restarts`,
    async function () {
      this.timeout(CONNECTING_MS + closedWithinMs + 15_000);
      if (!gatewayHere) {
        console.log(
          "      skipped: the gateway is not this host's own PM2 stack (E2E_GATEWAY_EXEC or E2E_GATEWAY_URL)",
        );
        this.skip();
      }
      // each flood connection binds a local port of FLOOD_FROM (32768-60999 by default)
      const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/).map(Number);
      expect(high! - low! + 1, 'local ports (net.ipv4.ip_local_port_range)').to.be.above(FLOOD + 1_000);

      const before = gatewayInstances();
      const online = Array(instancesOf('api-gateway')).fill('online');
      expect(
        before.map((p) => p.status),
        'api-gateway instances before',
      ).to.deep.equal(online);
      const url = new URL(stack.gateway);
      // each GET on a new connection, as a new visitor comes: it is accepted by either instance, among the flood's
      const client = new Agent({ keepAlive: false, localAddress: CLIENT_FROM });
      try {
        // from the flood's first connect until the last of its connections is closed (or it is late for that)
        const { probe, report, settledMs } = await probeDuringFlood(
          {
            host: url.hostname,
            port: Number(url.port),
            localAddress: FLOOD_FROM,
            count: FLOOD,
            trickleMs: FLOOD_TRICKLE_MS,
          },
          { base: stack.gateway, path: '/api/movies?limit=1', agent: client, pauseMs: PAUSE_MS },
          CONNECTING_MS + closedWithinMs + 2_000,
        );
        const after = gatewayInstances();
        // what delays the answers and the closes: each instance's event loop (its max since Prometheus' last scrape)
        const metrics = instanceUrls('api-gateway', url.hostname, Number(env.GATEWAY_METRICS_PORT ?? 9100));
        const lags = (await Promise.all(metrics.map(scrape))).map((m) => m.get('nodejs_eventloop_lag_max_seconds')!);
        console.log(
          '      slow flood, settled in ' +
            `${settledMs === undefined ? 'more than the limit' : `${Math.round(settledMs)} ms`}: ` +
            `${describeFlood(probe, report, CLIENT_FROM)}`,
        );
        console.log(
          `      api-gateway before ${JSON.stringify(before)}, after ${JSON.stringify(after)}; ` +
            `event loop lag, max: ${lags.map((lag) => `${Math.round(lag * 1_000)} ms`).join(', ')}`,
        );

        expect(report.opened, 'flood connections opened').to.equal(FLOOD);
        expect(report.connected, 'flood connections that connected').to.be.above(0);
        // those the gateway turned away (no answer) show how late it picked a connection up
        const late =
          'ms the longest flood connection lived, from its connect (turned away: ' +
          `${report.longestByAnswer.none} ms)`;
        expect(report.longestMs, late).to.be.below(closedWithinMs + report.lagMs);
        expect(report.answers, 'the flood: closed by the request timeout (408)').to.have.property('408');
        expect(Object.keys(report.answers), 'the flood: answers (none: closed by a cap)').to.have.members([
          '408',
          'none',
        ]);
        expect(report.openNow, 'flood connections still open at the end').to.equal(0);
        expect(probe.errors, `errors of ${CLIENT_FROM}`).to.deep.equal([]);
        expect(Object.fromEntries(probe.statuses), `statuses of ${CLIENT_FROM}`).to.deep.equal({
          200: probe.latencies.length,
        });
        expect(probe.latencies.length, 'GETs answered').to.be.above(100);
        expect(after, 'api-gateway instances after (pids and restarts)').to.deep.equal(before);
      } finally {
        client.destroy();
      }
    },
  );
});
