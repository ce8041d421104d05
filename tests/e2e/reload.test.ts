import { unique } from '@crud-master/test-support/env';
import { type Host, onHostAsync } from '@crud-master/test-support/hosts';
import { request } from '@crud-master/test-support/http';
import { rawRequest } from '@crud-master/test-support/raw-http';
import { stack } from '@crud-master/test-support/stack';
import { expect } from 'chai';

/**
 * `pm2 reload` of the HTTP services (PM2 cluster mode: new instances first, then the old ones drain and stop) under
 * a steady load through :8080, over keep-alive connections: not one request may fail.
 */
const { gateway } = stack;
/** `pm2 …` on the host of the app (this one, or through E2E_*_EXEC in the Vagrant stage). */
const pm2On = (host: Host, ...args: string[]) => onHostAsync(host, 'pm2', args);
const CLIENTS = 16;
// each client waits this long between its requests: a steady load, at most 800/s, well under the gateway's rate
// limit per address (GATEWAY_RATE_LIMIT_REQUESTS, 10,000 per 10 s per instance by default)
const PAUSE_MS = 20;

describe('graceful reload under load', function () {
  this.timeout(120_000);

  it('When api-gateway and then inventory-api are reloaded under a steady load, then no request fails', async () => {
    const movie = (await request(`${gateway}/api/movies`, { method: 'POST', json: { title: unique('Reload') } }))
      .body as { id: number };
    const failures: string[] = [];
    let answered = 0;
    let reloading = true;
    const client = async () => {
      while (reloading) {
        try {
          const reply = await rawRequest(gateway, { method: 'GET', path: `/api/movies/${movie.id}` });
          if (reply.status === 200) answered++;
          else failures.push(`${reply.status} ${reply.body.slice(0, 120)}`);
        } catch (error) {
          failures.push(String(error));
        }
        await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
      }
    };
    const load = Array.from({ length: CLIENTS }, client);
    const pause = () => new Promise((resolve) => setTimeout(resolve, 1_500));
    try {
      await pause();
      await pm2On('gateway', 'reload', 'api-gateway');
      await pause();
      await pm2On('inventory', 'reload', 'inventory-api');
      await pause();
    } finally {
      // a failed reload must not leave the load running
      reloading = false;
      await Promise.all(load);
    }
    await request(`${gateway}/api/movies/${movie.id}`, { method: 'DELETE' });

    console.log(`      reload: ${answered} answered 200, ${failures.length} failed`);
    expect(
      failures.length,
      `requests that failed during the reloads, the first: ${failures.slice(0, 3).join('; ')}`,
    ).to.equal(0);
    expect(answered, 'the load really ran').to.be.above(200);
  });
});
