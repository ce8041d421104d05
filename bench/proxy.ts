/**
 * The proxy phase: GET /api/movies/:id straight to inventory-api (direct), through api-gateway, and through nginx, Go's
 * httputil proxy and a bare Node http-proxy in front of the same inventory-api, side by side. First closed loop
 * (autocannon, 10 and 100 connections: capacity), then open loop at half of direct's capacity measured just before
 * (latency when not saturated).
 */
import { request } from '@crud-master/test-support/http';
import {
  DURATION_S,
  GATEWAY,
  INVENTORY,
  log,
  medianOf,
  paired,
  PROFILE,
  REPEATS,
  round,
  RUN,
  WARMUP_S,
} from './config.js';
import { load, type LoadResult } from './load.js';
import { startNginx } from './nginx.js';
import { startPeer } from './peers.js';
import { openLoop, type OpenLoopResult } from './open-loop.js';
import { mergeMax, rssSampler, settle, type CpuGroups, type MemoryByApp } from './processes.js';
import { PROFILED, profileWhile } from './profile.js';

const SIDES = ['direct', 'gateway', 'nginx', 'go', 'node'] as const;
type Side = (typeof SIDES)[number];

// the open loop compares latency at a rate all of these sustain; the peers are there for capacity and CPU
const OPEN_LOOP_SIDES = ['direct', 'gateway', 'nginx'] as const;

/** Each repeat runs the sides in turn, reversed every other time, so that a drift of the machine favours none. */
const orderOf = <T>(rep: number, sides: readonly T[]) => (rep % 2 === 0 ? sides : [...sides].reverse());

/** The per-group medians of CPU ms per request over runs. */
function cpuMedians(runs: Array<{ cpu_ms_per_request: CpuGroups }>): CpuGroups {
  const groups = new Set(runs.flatMap((r) => Object.keys(r.cpu_ms_per_request)));
  return Object.fromEntries([...groups].map((g) => [g, medianOf(runs, (r) => r.cpu_ms_per_request[g] ?? 0, 3)]));
}

/** A process group's CPU ms per request in a run (NaN when it used none: a ratio of it is then no number). */
const ownCpu = (run: LoadResult, group: string) => run.cpu_ms_per_request[group] ?? NaN;

const summary = (runs: LoadResult[]) => ({
  rps: medianOf(runs, (r) => r.rps, 0),
  p50_ms: medianOf(runs, (r) => r.p50_ms),
  p99_ms: medianOf(runs, (r) => r.p99_ms),
  cpu_ms_per_request: cpuMedians(runs),
  runs,
});
const openSummary = (runs: OpenLoopResult[]) => ({
  p50_ms: medianOf(runs, (r) => r.p50_ms),
  p99_ms: medianOf(runs, (r) => r.p99_ms),
  max_ms: medianOf(runs, (r) => r.max_ms),
  send_lag_p99_ms: medianOf(runs, (r) => r.send_lag_p99_ms),
  cpu_ms_per_request: cpuMedians(runs),
  runs,
});

/** autocannon requests that GET each of `paths` in turn. */
export function getRequests(paths: string[]) {
  let n = 0;
  return [{ method: 'GET' as const, setupRequest: (req: object) => ({ ...req, path: paths[n++ % paths.length]! }) }];
}

/** 100 movies straight into inventory-api, kept there while the phase runs (again if someone else removed them). */
export function movies() {
  const ids: number[] = [];
  let paths: string[] = [];
  let reseeded = 0;
  const remove = async () => {
    for (const id of ids.splice(0))
      await request(`${INVENTORY}/api/movies/${id}`, { method: 'DELETE' }).catch(() => undefined);
  };
  const seed = async () => {
    log(`proxy: seeding 100 movies straight into inventory-api (${INVENTORY})`);
    await remove();
    for (let i = 0; i < 100; i++) {
      const reply = await request(`${INVENTORY}/api/movies`, {
        method: 'POST',
        json: { title: `bench-${RUN}-${i}`, description: 'benchmark row' },
      });
      if (reply.status !== 201) throw new Error(`seeding a movie gave ${reply.status}: ${JSON.stringify(reply.body)}`);
      ids.push((reply.body as { id: number }).id);
    }
    paths = ids.map((id) => `/api/movies/${id}`);
  };
  return {
    /** The movies' paths, seeded again first when they vanished (another suite emptied movies_db). */
    paths: async () => {
      const there =
        ids.length > 0 &&
        (await Promise.all(ids.map((id) => fetch(`${INVENTORY}/api/movies/${id}`).then((r) => r.status)))).every(
          (s) => s === 200,
        );
      if (!there) {
        if (ids.length) reseeded++;
        await seed();
      }
      return paths;
    },
    reseeded: () => reseeded,
    remove,
  };
}

export async function proxyPhase(memory: { load: MemoryByApp }) {
  const rows = movies();
  /** One closed-loop run; a run in which the rows vanished measured 404s, not the proxy: it is repeated. */
  const getMovies = async (url: string, connections: number, duration: number): Promise<LoadResult> => {
    for (let attempt = 0; ; attempt++) {
      const paths = await rows.paths();
      const result = await load({ url, connections, duration, requests: getRequests(paths) }, 200);
      if (result.non_ok <= result.ok / 1000 || attempt === 2) return result;
      log(`proxy: ${result.non_ok} non-200 answers (rows removed by someone else?); repeating the run`);
    }
  };
  const closedLoop = (runs: Record<Side, LoadResult[]>) => ({
    direct: summary(runs.direct),
    gateway: summary(runs.gateway),
    nginx: summary(runs.nginx),
    go: summary(runs.go),
    node: summary(runs.node),
    /** gateway / direct */
    ratio: paired(runs.gateway, runs.direct, (g, d) => g.rps / d.rps),
    /** gateway / nginx */
    nginx_ratio: paired(runs.gateway, runs.nginx, (g, n) => g.rps / n.rps),
    nginx_vs_direct: paired(runs.nginx, runs.direct, (n, d) => n.rps / d.rps),
    /** gateway / Go's httputil proxy */
    go_ratio: paired(runs.gateway, runs.go, (g, go) => g.rps / go.rps),
    /** the gateway's own CPU per request over the bare Node http-proxy's */
    bare_node_cpu_ratio: paired(runs.gateway, runs.node, (g, n) => ownCpu(g, 'api-gateway') / ownCpu(n, 'node-proxy')),
    /** inventory-api's CPU per request through the gateway over direct */
    upstream_cpu_ratio: paired(
      runs.gateway,
      runs.direct,
      (g, d) => ownCpu(g, 'inventory-api') / ownCpu(d, 'inventory-api'),
    ),
    // on a machine whose cores are all busy, req/s goes as 1 / CPU per request: the best ratio these costs allow
    cpu_bound_ratio: round(
      medianOf(runs.direct, (r) => r.cpu_ms_per_request.total ?? 0, 3) /
        medianOf(runs.gateway, (r) => r.cpu_ms_per_request.total ?? 0, 3),
      3,
    ),
    saturated_added_p99_ms: paired(runs.gateway, runs.direct, (g, d) => g.p99_ms - d.p99_ms, 2),
  });
  const nginx = await startNginx(INVENTORY);
  const go = await startPeer('go', INVENTORY).catch(async (err: unknown) => {
    await nginx.stop();
    throw err;
  });
  const node = await startPeer('node', INVENTORY).catch(async (err: unknown) => {
    await Promise.all([nginx.stop(), go.stop()]);
    throw err;
  });
  const urls: Record<Side, string> = {
    direct: INVENTORY,
    gateway: GATEWAY,
    nginx: nginx.url,
    go: go.url,
    node: node.url,
  };
  const closed: Partial<Record<'c10' | 'c100', ReturnType<typeof closedLoop>>> = {};
  let open;
  let profiles;
  let nginxRun;
  try {
    for (const connections of [10, 100]) {
      const runs: Record<Side, LoadResult[]> = { direct: [], gateway: [], nginx: [], go: [], node: [] };
      for (let rep = 0; rep < REPEATS; rep++) {
        for (const side of orderOf(rep, SIDES)) {
          await getMovies(urls[side], connections, WARMUP_S);
          const sampler =
            connections === 100 && side === 'gateway' ? rssSampler(['api-gateway', 'inventory-api']) : undefined;
          const result = await getMovies(urls[side], connections, DURATION_S);
          if (sampler) Object.assign(memory.load, mergeMax(memory.load, sampler.stop()));
          runs[side].push(result);
          log(
            `proxy c=${connections} ${side}: ${result.rps} req/s p50 ${result.p50_ms} ms p99 ${result.p99_ms} ms ` +
              `(${result.non_ok} non-200, ${result.errors} errors)`,
          );
        }
      }
      closed[connections === 10 ? 'c10' : 'c100'] = closedLoop(runs);
    }

    // open loop at half of direct's capacity at 100 connections, measured above in this run
    const rate = Math.max(1, Math.round(closed.c100!.direct.rps / 2));
    const runs: Record<(typeof OPEN_LOOP_SIDES)[number], Array<OpenLoopResult & { stack_cores_before: number }>> = {
      direct: [],
      gateway: [],
      nginx: [],
    };
    for (let rep = 0; rep < REPEATS; rep++) {
      for (const side of orderOf(rep, OPEN_LOOP_SIDES)) {
        const busy = await settle();
        const result = {
          ...(await openLoop(urls[side], await rows.paths(), rate, DURATION_S, WARMUP_S)),
          stack_cores_before: busy,
        };
        runs[side].push(result);
        log(
          `open loop ${rate}/s ${side}: p50 ${result.p50_ms} ms p99 ${result.p99_ms} ms max ${result.max_ms} ms ` +
            `(${result.non_ok} non-200, ${result.errors} errors, send lag p99 ${result.send_lag_p99_ms} ms)`,
        );
      }
    }
    open = {
      rate,
      direct: openSummary(runs.direct),
      gateway: openSummary(runs.gateway),
      nginx: openSummary(runs.nginx),
      added_p99_ms: paired(runs.gateway, runs.direct, (g, d) => g.p99_ms - d.p99_ms, 2),
      // above a side's closed-loop capacity its queue only grows: the p99 is then the run's length, not a proxy's cost
      over_capacity: OPEN_LOOP_SIDES.filter((side) => closed.c100![side].rps < rate),
      nginx_added_p99_ms: paired(runs.nginx, runs.direct, (n, d) => n.p99_ms - d.p99_ms, 2),
    };

    if (PROFILE) {
      profiles = [];
      for (const service of PROFILED) {
        const profiled = await profileWhile(service, async (url) => {
          await getMovies(url, 100, WARMUP_S);
          return getMovies(url, 100, DURATION_S);
        });
        profiles.push(profiled);
      }
    }
  } finally {
    nginxRun = { url: nginx.url, workers: nginx.workers, ...(await nginx.stop()) };
    await Promise.all([go.stop(), node.stop()]);
    await rows.remove();
    log('proxy: seeded movies removed');
  }
  return { ...closed, open_loop: open, nginx: nginxRun, profiles, reseeded: rows.reseeded() };
}
