/**
 * The limiter phase: what the gateway's rate limits cost. Two copies of api-gateway from this checkout's build, beside
 * the deployed one: "on" with every limit set out of the bench's reach (the limiter counts every request, refuses
 * none) and "off" with every limit 0. Both get the same load at the same time, GET /api/movies/:id and then
 * POST /api/billing: on a shared machine whatever else runs slows both alike, so their ratio is the limiter's cost.
 * The connection caps stay on in both (they cannot be turned off, and work per connection, not per request).
 */
import { mkdirSync } from 'node:fs';
import type { ConfirmChannel } from 'amqplib';
import type pg from 'pg';
import { ORDER_REQUESTS } from './accept.js';
import { removeBenchOrders } from './billing.js';
import { DURATION_S, log, medianOf, paired, REPEATS, root, RUN, WARMUP_S } from './config.js';
import { load, type LoadResult } from './load.js';
import { trackProcessTree, untrackProcessTree } from './processes.js';
import { PROFILED, startCopy } from './profile.js';
import { getRequests, movies } from './proxy.js';

const LIMITS = ['REQUESTS', 'WRITES', 'ORDERS_PER_USER'].map((k) => `GATEWAY_RATE_LIMIT_${k}`);
const SIDES = ['on', 'off'] as const;
type Side = (typeof SIDES)[number];
const limitsOf = (side: Side) => Object.fromEntries(LIMITS.map((k) => [k, side === 'on' ? '1000000000' : '0']));

const sideSummary = (runs: LoadResult[], side: Side) => ({
  rps: medianOf(runs, (r) => r.rps, 0),
  p99_ms: medianOf(runs, (r) => r.p99_ms),
  cpu_ms_per_request: medianOf(runs, (r) => r.cpu_ms_per_request[`gateway-limiter-${side}`] ?? 0, 3),
  runs,
});
const summaries = (runs: Record<Side, LoadResult[]>) => ({
  on: sideSummary(runs.on, 'on'),
  off: sideSummary(runs.off, 'off'),
  /** 1 − rps_on / rps_off, the median over repeats */
  cost: paired(runs.on, runs.off, (on, off) => 1 - on.rps / off.rps),
});

export async function limiterPhase(db: pg.Pool, channel: ConfirmChannel) {
  const dir = `${root}bench/profiles/${RUN}/limiter`;
  mkdirSync(dir, { recursive: true });
  const gateway = PROFILED.find((p) => p.app === 'api-gateway')!;
  const rows = movies();
  const get: Record<Side, LoadResult[]> = { on: [], off: [] };
  const post: Record<Side, LoadResult[]> = { on: [], off: [] };
  const copies: Partial<Record<Side, Awaited<ReturnType<typeof startCopy>>>> = {};
  const stopCopies = async () => {
    for (const [side, copy] of Object.entries(copies)) {
      untrackProcessTree(copy.pid);
      await copy.stop();
      delete copies[side as Side];
    }
  };
  const both = async (requests: () => object[], okStatus: number, duration: number) => {
    const [on, off] = await Promise.all(
      SIDES.map((side) => load({ url: copies[side]!.url, connections: 100, duration, requests: requests() }, okStatus)),
    );
    return { on: on!, off: off! };
  };
  try {
    for (let rep = 0; rep < REPEATS; rep++) {
      // fresh copies, started in turn: two copies with the same limits differed by up to 20% for as long as they ran
      for (const side of rep % 2 === 0 ? SIDES : [...SIDES].reverse()) {
        copies[side] = await startCopy(gateway, [], `${dir}/${side}-${rep}.log`, limitsOf(side));
        trackProcessTree(copies[side].pid, `gateway-limiter-${side}`);
      }
      const paths = await rows.paths();
      for (const [what, runs, okStatus, requests] of [
        ['GET', get, 200, () => getRequests(paths)],
        ['POST', post, 202, () => ORDER_REQUESTS],
      ] as const) {
        await both(requests, okStatus, WARMUP_S);
        const { on, off } = await both(requests, okStatus, DURATION_S);
        runs.on.push(on);
        runs.off.push(off);
        const others = on.non_ok + off.non_ok;
        log(
          `limiter ${what}: on ${on.rps} req/s p99 ${on.p99_ms} ms, off ${off.rps} req/s p99 ${off.p99_ms} ms ` +
            `(${others} other statuses)`,
        );
      }
      await stopCopies();
    }
  } finally {
    await stopCopies();
    await rows.remove();
    const removed = await removeBenchOrders(db, channel);
    log(`limiter: copies stopped, seeded movies and ${removed} bench orders removed`);
  }
  return { get: summaries(get), post: summaries(post) };
}
