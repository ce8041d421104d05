/**
 * The flood phase (issue 23): what a normal client's GETs take while slow connections from one address hold on to
 * the deployed gateway, against the same GETs just before with no flood. The flood and the client are issue 23's, as
 * tests/support/slow-flood.ts defines them; each GET goes on a new connection, one at a time, as a new visitor's
 * would. The end-to-end test (tests/e2e/slow-flood.test.ts) asserts what must hold; this phase measures the
 * latency, which only a quiet host can.
 */
import { Agent } from 'node:http';
import {
  CLIENT_FROM,
  FLOOD_CONNECTIONS,
  FLOOD_FROM,
  FLOOD_TRICKLE_MS,
  percentile,
  probeDuringFlood,
  probeWhile,
  type Probe,
} from '@crud-master/test-support/slow-flood';
import { DURATION_S, GATEWAY, log, round } from './config.js';

// between two GETs: about 100/s at most, far below any per-address rate limit worth deploying
const PAUSE_MS = 10;
// the flood connects within seconds; the gateway closes the ones it holds after its request timeout (10 s)
const FLOOD_LIMIT_MS = 60_000;

const latency = (probe: Probe) => ({
  gets: probe.latencies.length,
  p50_ms: round(percentile(probe.latencies, 50)),
  p99_ms: round(percentile(probe.latencies, 99)),
  max_ms: round(Math.max(...probe.latencies)),
  statuses: Object.fromEntries(probe.statuses),
  errors: probe.errors.length,
});

export async function floodPhase() {
  const agent = new Agent({ keepAlive: false, localAddress: CLIENT_FROM });
  const path = '/api/movies?limit=1';
  try {
    const quietUntil = Date.now() + DURATION_S * 1_000;
    const quiet = latency(await probeWhile(GATEWAY, path, agent, PAUSE_MS, () => Date.now() > quietUntil));
    log(`flood: no flood, ${quiet.gets} GETs p50 ${quiet.p50_ms} p99 ${quiet.p99_ms} ms`);
    const url = new URL(GATEWAY);
    const { probe, report } = await probeDuringFlood(
      {
        host: url.hostname,
        port: Number(url.port),
        localAddress: FLOOD_FROM,
        count: FLOOD_CONNECTIONS,
        trickleMs: FLOOD_TRICKLE_MS,
      },
      { base: GATEWAY, path, agent, pauseMs: PAUSE_MS },
      FLOOD_LIMIT_MS,
    );
    const during = latency(probe);
    log(
      `flood: ${FLOOD_CONNECTIONS} slow connections, ${during.gets} GETs p50 ${during.p50_ms} p99 ${during.p99_ms} ms`,
    );
    return {
      connections: FLOOD_CONNECTIONS,
      quiet,
      during,
      added_p99_ms: round(during.p99_ms - quiet.p99_ms),
      flood: {
        connected: report.connected,
        open_at_end: report.openNow,
        longest_ms: Math.round(report.longestMs),
        answers: report.answers,
      },
    };
  } finally {
    agent.destroy();
  }
}
