/**
 * The limiter phase: what the gateway's rate limits cost. Two copies of api-gateway from this checkout's build, beside
 * the deployed one: "on" with every limit set out of the bench's reach (the limiter counts every request, refuses
 * none) and "off" with every limit 0. Each gets GET /api/movies/:id and POST /api/billing, side by side.
 */
import { mkdirSync } from 'node:fs';
import type { ConfirmChannel } from 'amqplib';
import type pg from 'pg';
import { ORDER_REQUESTS } from './accept.js';
import { removeBenchOrders } from './billing.js';
import { DURATION_S, log, median, medianOf, REPEATS, root, round, RUN, WARMUP_S } from './config.js';
import { load, type LoadResult } from './load.js';
import { trackProcessTree, untrackProcessTree } from './processes.js';
import { PROFILED, startCopy } from './profile.js';
import { getRequests, movies, orderOf } from './proxy.js';

/** Every GATEWAY_RATE_LIMIT_* setting; `0` turns a limit off. */
export const RATE_LIMITS = ['WINDOW_S', 'REQUESTS', 'WRITES', 'ORDERS_PER_USER'].map((k) => `GATEWAY_RATE_LIMIT_${k}`);
const UNREACHABLE = '1000000000';
const SIDES = ['on', 'off'] as const;
type Side = (typeof SIDES)[number];
const limitsOf = (side: Side) =>
  Object.fromEntries(
    RATE_LIMITS.filter((k) => k !== 'GATEWAY_RATE_LIMIT_WINDOW_S').map((k) => [k, side === 'on' ? UNREACHABLE : '0']),
  );

const sideSummary = (runs: LoadResult[], side: Side) => ({
  rps: medianOf(runs, (r) => r.rps, 0),
  p99_ms: medianOf(runs, (r) => r.p99_ms),
  cpu_ms_per_request: medianOf(runs, (r) => r.cpu_ms_per_request[`gateway-limiter-${side}`] ?? 0, 3),
  runs,
});
/** 1 − rps_on / rps_off, the median over repeats of paired runs. */
const cost = (runs: Record<Side, LoadResult[]>) =>
  round(median(runs.on.map((on, i) => 1 - on.rps / runs.off[i]!.rps)), 3);

export async function limiterPhase(db: pg.Pool, channel: ConfirmChannel) {
  const dir = `${root}bench/profiles/${RUN}/limiter`;
  mkdirSync(dir, { recursive: true });
  const gateway = PROFILED.find((p) => p.app === 'api-gateway')!;
  const rows = movies();
  const copies: Partial<Record<Side, Awaited<ReturnType<typeof startCopy>>>> = {};
  const get: Record<Side, LoadResult[]> = { on: [], off: [] };
  const post: Record<Side, LoadResult[]> = { on: [], off: [] };
  try {
    for (const side of SIDES) {
      copies[side] = await startCopy(gateway, [], `${dir}/${side}.log`, limitsOf(side));
      trackProcessTree(copies[side].pid, `gateway-limiter-${side}`);
    }
    const measure = async (side: Side, requests: () => Promise<object[]>, okStatus: number) => {
      const options = { url: copies[side]!.url, connections: 100 };
      await load({ ...options, duration: WARMUP_S, requests: await requests() }, okStatus);
      return load({ ...options, duration: DURATION_S, requests: await requests() }, okStatus);
    };
    for (let rep = 0; rep < REPEATS; rep++) {
      for (const side of orderOf(rep, SIDES)) {
        const g = await measure(side, async () => getRequests(await rows.paths()), 200);
        get[side].push(g);
        const p = await measure(side, () => Promise.resolve(ORDER_REQUESTS), 202);
        post[side].push(p);
        const others = g.non_ok + p.non_ok;
        log(`limiter ${side}: GET ${g.rps} req/s p99 ${g.p99_ms} ms, POST ${p.rps} 202/s p99 ${p.p99_ms} ms`);
        if (others) log(`limiter ${side}: ${others} answers other than 200/202`);
      }
    }
  } finally {
    for (const copy of Object.values(copies)) {
      untrackProcessTree(copy.pid);
      await copy.stop();
    }
    await rows.remove();
    const removed = await removeBenchOrders(db, channel);
    log(`limiter: copies stopped, seeded movies and ${removed} bench orders removed`);
  }
  return {
    get: { on: sideSummary(get.on, 'on'), off: sideSummary(get.off, 'off') },
    post: { on: sideSummary(post.on, 'on'), off: sideSummary(post.off, 'off') },
    proxy_cost: cost(get),
    accept_cost: cost(post),
  };
}
