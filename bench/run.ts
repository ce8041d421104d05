/**
 * `make bench`: the deployed stack (`make local`) against its own ceilings, measured side by side in one run.
 *
 *   proxy   GET /api/movies/:id through the gateway vs straight to inventory-api, at 10 and 100 connections
 *   accept  POST /api/billing 202/s through the gateway vs a raw amqplib confirm-channel publisher
 *   drain   billing-consumer draining a 50,000-message backlog into billing_db vs a raw consume+ack loop
 *   memory  RSS of every PM2 instance idle and under load, and a provisioning run with nothing to change
 *
 * Only ratios are compared with the targets: absolute numbers on a shared 2-core machine are noise.
 * Prints one table and writes bench/results.json. Every row and queue it makes is removed again, and
 * billing-consumer is running when it ends, whatever happened.
 *
 * Knobs (environment): BENCH_DURATION_S (10), BENCH_REPEATS (2), BENCH_DRAIN_MESSAGES (50000),
 * BENCH_PROVISION (1: time `make local-idempotent` when the checkout matches the deployed copy; 0: skip),
 * BENCH_GATEWAY_URL, BENCH_INVENTORY_URL (a candidate on another port), BENCH_ONLY (proxy,accept,drain,memory).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import amqplib, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import autocannon from 'autocannon';
import pg from 'pg';

const root = fileURLToPath(new URL('..', import.meta.url));
const envFile = `${root}.env`;
if (existsSync(envFile)) process.loadEnvFile(envFile);
const env = process.env;

const DURATION_S = Number(env.BENCH_DURATION_S ?? 10);
const WARMUP_S = Math.max(1, Math.round(DURATION_S / 4));
const REPEATS = Number(env.BENCH_REPEATS ?? 2);
const DRAIN_MESSAGES = Number(env.BENCH_DRAIN_MESSAGES ?? 50_000);
const ONLY = new Set((env.BENCH_ONLY ?? 'proxy,accept,drain,memory').split(','));
const GATEWAY = env.BENCH_GATEWAY_URL ?? `http://127.0.0.1:${env.GATEWAY_PORT ?? 8080}`;
const INVENTORY = env.BENCH_INVENTORY_URL ?? `http://127.0.0.1:${env.LOCAL_INVENTORY_API_PORT ?? 8081}`;
const BILLING_HEALTH = `http://127.0.0.1:${env.BILLING_HEALTH_PORT ?? 8082}`;
const QUEUE = env.RABBITMQ_QUEUE ?? 'billing_queue';
const MANAGEMENT = `http://127.0.0.1:${env.RABBITMQ_UI_PORT ?? 15672}/api`;
const CONSUMER = 'billing-consumer';
const APPS = ['api-gateway', 'inventory-api', CONSUMER] as const;
const RUN = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
// every order the bench makes carries this user_id, so that it finds (and removes) exactly its own rows
const BENCH_USER = 'bench';
const ORDER = { user_id: BENCH_USER, number_of_items: 1, total_amount: '1.00' };
const ORDER_JSON = JSON.stringify(ORDER);

const TARGETS = { proxy_ratio: 0.9, added_p99_ms: 2, accept_ratio: 0.7, drain_ratio: 0.5, idle_rss_mb: 80 };

const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;
const log = (message: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
/** A percentile of response times in ms, with sub-millisecond resolution (autocannon's own histogram is whole ms). */
const percentile = (sorted: Float64Array, p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : NaN);

// ---------------------------------------------------------------------------------------------------------------
// PM2 and memory

interface Pm2Instance {
  name: string;
  pm_id: number;
  pid: number;
  status: string;
  memory: number;
}

function pm2List(): Pm2Instance[] {
  const list = JSON.parse(execFileSync('pm2', ['jlist'], { encoding: 'utf8', maxBuffer: 64 << 20 })) as Array<{
    name: string;
    pm_id: number;
    pid: number;
    monit?: { memory?: number };
    pm2_env: { status: string };
  }>;
  return list.map((p) => ({ name: p.name, pm_id: p.pm_id, pid: p.pid, status: p.pm2_env.status, memory: p.monit?.memory ?? 0 }));
}

const pm2 = (...args: string[]) => execFileSync('pm2', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

type MemoryByApp = Record<string, { instances_mb: number[]; max_mb: number }>;

/** RSS of every instance from `pm2 jlist` (monit.memory). */
function pm2Memory(): MemoryByApp {
  const out: MemoryByApp = {};
  for (const p of pm2List().filter((p) => (APPS as readonly string[]).includes(p.name))) {
    const entry = (out[p.name] ??= { instances_mb: [], max_mb: 0 });
    const mb = round(p.memory / 2 ** 20, 1);
    entry.instances_mb.push(mb);
    entry.max_mb = Math.max(entry.max_mb, mb);
  }
  return out;
}

/** RSS of a process from /proc (what monit.memory reports), cheap enough to sample while the load runs. */
function procRssMb(pid: number): number | undefined {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? round(Number(kb) / 1024, 1) : undefined;
  } catch {
    return undefined;
  }
}

/** Samples the RSS of the given apps' instances every 250 ms until stopped; keeps each instance's peak. */
function rssSampler(apps: readonly string[]) {
  const instances = pm2List().filter((p) => apps.includes(p.name) && p.pid > 0);
  const peak = new Map<Pm2Instance, number>();
  const sample = () => {
    for (const p of instances) peak.set(p, Math.max(peak.get(p) ?? 0, procRssMb(p.pid) ?? 0));
  };
  sample();
  const timer = setInterval(sample, 250);
  return {
    stop: (): MemoryByApp => {
      clearInterval(timer);
      sample();
      const out: MemoryByApp = {};
      for (const [p, mb] of peak) {
        const entry = (out[p.name] ??= { instances_mb: [], max_mb: 0 });
        entry.instances_mb.push(mb);
        entry.max_mb = Math.max(entry.max_mb, mb);
      }
      return out;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// CPU time per process group, from /proc: what each request costs, whatever else the machine is doing

const TICKS_PER_S = 100;
type CpuGroups = Record<string, number>;

/** CPU seconds used so far by each group: every PM2 app, the PM2 daemon, PostgreSQL, RabbitMQ, this load generator. */
function cpuSnapshot(): CpuGroups {
  const apps = new Map(pm2List().map((p) => [p.pid, p.name]));
  const groups: CpuGroups = {};
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    let group = apps.get(pid);
    if (!group && pid === process.pid) group = 'load-generator';
    else if (!group && comm.startsWith('PM2')) group = 'pm2-daemon';
    else if (!group && comm === 'postgres') group = 'postgres';
    else if (!group && comm === 'beam.smp') group = 'rabbitmq';
    if (group) groups[group] = (groups[group] ?? 0) + ticks / TICKS_PER_S;
  }
  return groups;
}

/** CPU milliseconds per request (or message) of each group between two snapshots. */
function cpuPerRequest(before: CpuGroups, after: CpuGroups, requests: number): CpuGroups {
  const out: CpuGroups = {};
  let total = 0;
  for (const [group, seconds] of Object.entries(after)) {
    const ms = ((seconds - (before[group] ?? 0)) * 1000) / Math.max(1, requests);
    if (ms > 0) {
      out[group] = round(ms, 3);
      total += ms;
    }
  }
  out.total = round(total, 3);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP load

interface LoadResult {
  rps: number;
  ok: number;
  errors: number;
  non_ok: number;
  p50_ms: number;
  p99_ms: number;
  seconds: number;
  /** CPU ms per answered request, per process group (the sum is what one request costs the machine) */
  cpu_ms_per_request: CpuGroups;
}

/** One autocannon run; only the expected status counts as done, and latencies are kept with full precision. */
async function load(options: autocannon.Options, okStatus: number): Promise<LoadResult> {
  const times: number[] = [];
  let ok = 0;
  let nonOk = 0;
  const cpuBefore = cpuSnapshot();
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(options, (err, res) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(res)));
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (status === okStatus) {
        ok++;
        times.push(ms);
      } else nonOk++;
    });
  });
  const cpu = cpuPerRequest(cpuBefore, cpuSnapshot(), ok);
  const sorted = Float64Array.from(times).sort();
  const seconds = result.duration;
  return {
    rps: round(ok / seconds, 0),
    ok,
    errors: result.errors + result.timeouts,
    non_ok: nonOk,
    p50_ms: round(percentile(sorted, 50)),
    p99_ms: round(percentile(sorted, 99)),
    seconds: round(seconds, 1),
    cpu_ms_per_request: cpu,
  };
}

async function http(method: string, url: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const response = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: text && /json/.test(response.headers.get('content-type') ?? '') ? (JSON.parse(text) as unknown) : text };
}

// ---------------------------------------------------------------------------------------------------------------
// RabbitMQ and billing_db

async function openBroker(): Promise<ChannelModel> {
  const connection = await amqplib.connect({
    // RABBITMQ_HOST may list the nodes of a cluster: the first one will do
    hostname: (env.RABBITMQ_HOST ?? '127.0.0.1').split(',')[0]!.trim(),
    port: Number(env.RABBITMQ_PORT ?? 5672),
    username: env.RABBITMQ_USER,
    password: env.RABBITMQ_PASSWORD,
    vhost: env.RABBITMQ_VHOST,
  });
  connection.on('error', () => undefined);
  return connection;
}

const billingDb = () =>
  new pg.Pool({
    host: env.BILLING_DB_HOST ?? '127.0.0.1',
    port: Number(env.BILLING_DB_PORT ?? 5432),
    database: env.BILLING_DB_NAME,
    user: env.BILLING_DB_USER,
    password: env.BILLING_DB_PASSWORD,
    max: 2,
  });

const publishOptions = (messageId: string) => ({ persistent: true, contentType: 'application/json', messageId });

/** Publishes one message on a confirm channel and resolves on the broker's confirm. */
const publishConfirmed = (channel: ConfirmChannel, queue: string, body: Buffer, messageId: string) =>
  new Promise<void>((resolve, reject) => {
    channel.sendToQueue(queue, body, publishOptions(messageId), (err) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve()));
  });

/** Publishes `count` messages with `window` confirms outstanding; ids are `${prefix}-${i}`. */
async function preload(channel: ConfirmChannel, queue: string, count: number, prefix: string, window = 500): Promise<void> {
  const body = Buffer.from(ORDER_JSON);
  let next = 0;
  await Promise.all(
    Array.from({ length: window }, async () => {
      while (next < count) {
        const i = next++;
        await publishConfirmed(channel, queue, body, `${prefix}-${i}`);
      }
    }),
  );
}

/** `concurrency` publishers, each waiting for its confirm before the next: what the gateway does per request. */
async function rawPublish(channel: ConfirmChannel, concurrency: number, seconds: number): Promise<{ rate: number; confirmed: number; cpu_ms_per_message: CpuGroups }> {
  const deadline = performance.now() + seconds * 1000;
  const cpuBefore = cpuSnapshot();
  let confirmed = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        // the gateway serialises the order per request; so does this
        await publishConfirmed(channel, QUEUE, Buffer.from(JSON.stringify(ORDER)), randomUUID());
        confirmed++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  return { rate: round(confirmed / elapsed, 0), confirmed, cpu_ms_per_message: cpuPerRequest(cpuBefore, cpuSnapshot(), confirmed) };
}

/** The prefetch of billing-consumer's channel, as the broker sees it (management API), so the raw loop uses the same. */
async function consumerPrefetch(): Promise<number> {
  const auth = `Basic ${Buffer.from(`${env.RABBITMQ_USER}:${env.RABBITMQ_PASSWORD}`).toString('base64')}`;
  const url = `${MANAGEMENT}/queues/${encodeURIComponent(env.RABBITMQ_VHOST ?? '/')}/${encodeURIComponent(QUEUE)}`;
  const queue = (await (await fetch(url, { headers: { authorization: auth } })).json()) as { consumer_details?: Array<{ prefetch_count: number }> };
  const prefetch = queue.consumer_details?.[0]?.prefetch_count;
  if (!prefetch) throw new Error(`billing-consumer has no consumer on ${QUEUE} (management API: ${JSON.stringify(queue).slice(0, 200)})`);
  return prefetch;
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The phases

async function preflight(): Promise<void> {
  for (const [name, url] of [
    ['api-gateway', `${GATEWAY}/readyz`],
    ['inventory-api', `${INVENTORY}/readyz`],
    [CONSUMER, `${BILLING_HEALTH}/readyz`],
  ] as const) {
    const status = await fetch(url).then((r) => r.status, (err: Error) => err.message);
    if (status !== 200) throw new Error(`${name} is not ready (${url}: ${status}). Run \`make local\` first.`);
  }
  const offline = pm2List().filter((p) => (APPS as readonly string[]).includes(p.name) && p.status !== 'online');
  if (offline.length) throw new Error(`PM2 apps not online: ${offline.map((p) => `${p.name}#${p.pm_id} ${p.status}`).join(', ')}`);
}

interface Side {
  rps: number;
  p50_ms: number;
  p99_ms: number;
  runs: LoadResult[];
}
const side = (runs: LoadResult[]): Side => ({
  rps: round(median(runs.map((r) => r.rps)), 0),
  p50_ms: round(median(runs.map((r) => r.p50_ms))),
  p99_ms: round(median(runs.map((r) => r.p99_ms))),
  runs,
});

async function proxyPhase(memory: { load: MemoryByApp }) {
  const ids: number[] = [];
  let paths: string[] = [];
  let reseeded = 0;
  /** 100 movies straight into inventory-api; again when they vanished (another suite emptied movies_db). */
  const seed = async () => {
    log(`proxy: seeding 100 movies straight into inventory-api (${INVENTORY})`);
    for (const id of ids.splice(0)) await http('DELETE', `${INVENTORY}/api/movies/${id}`).catch(() => undefined);
    for (let i = 0; i < 100; i++) {
      const { status, json } = await http('POST', `${INVENTORY}/api/movies`, { title: `bench-${RUN}-${i}`, description: 'benchmark row' });
      if (status !== 201) throw new Error(`seeding a movie gave ${status}: ${JSON.stringify(json)}`);
      ids.push((json as { id: number }).id);
    }
    paths = ids.map((id) => `/api/movies/${id}`);
  };
  await seed();
  const seeded = async () => (await Promise.all(ids.map((id) => http('GET', `${INVENTORY}/api/movies/${id}`)))).every((r) => r.status === 200);
  const getMovies = async (url: string, connections: number, duration: number): Promise<LoadResult> => {
    for (let attempt = 0; ; attempt++) {
      if (!(await seeded())) {
        reseeded++;
        await seed();
      }
      let n = 0;
      const result = await load(
        {
          url,
          connections,
          duration,
          requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: paths[n++ % paths.length]! }) }],
        },
        200,
      );
      // a run in which the rows vanished measured 404s, not the proxy: seed again and repeat it
      if (result.non_ok <= result.ok / 1000 || attempt === 2) return result;
      log(`proxy: ${result.non_ok} non-200 answers (rows removed by someone else?); repeating the run`);
    }
  };
  const out: Partial<
    Record<'c10' | 'c100', { cpu_ms_per_request: CpuGroups; cpu_bound_ratio: number; direct: Side; gateway: Side; ratio: number; added_p99_ms: number; added_p50_ms: number }>
  > = {};
  try {
    for (const connections of [10, 100]) {
      const direct: LoadResult[] = [];
      const gateway: LoadResult[] = [];
      for (let rep = 0; rep < REPEATS; rep++) {
        // ABBA: the order alternates, so a drift of the machine does not favour one side
        const order = rep % 2 === 0 ? (['direct', 'gateway'] as const) : (['gateway', 'direct'] as const);
        for (const which of order) {
          const url = which === 'direct' ? INVENTORY : GATEWAY;
          await getMovies(url, connections, WARMUP_S);
          const sampler = connections === 100 && which === 'gateway' ? rssSampler(['api-gateway', 'inventory-api']) : undefined;
          const result = await getMovies(url, connections, DURATION_S);
          if (sampler) Object.assign(memory.load, mergeMax(memory.load, sampler.stop()));
          (which === 'direct' ? direct : gateway).push(result);
          log(`proxy c=${connections} ${which}: ${result.rps} req/s p50 ${result.p50_ms} ms p99 ${result.p99_ms} ms (${result.non_ok} non-200, ${result.errors} errors)`);
        }
      }
      const d = side(direct);
      const g = side(gateway);
      const cpuOf = (runs: LoadResult[], group: string) => round(median(runs.map((r) => r.cpu_ms_per_request[group] ?? 0)), 3);
      const cpu = {
        direct_total: cpuOf(direct, 'total'),
        gateway_total: cpuOf(gateway, 'total'),
        'api-gateway': cpuOf(gateway, 'api-gateway'),
        'inventory-api_direct': cpuOf(direct, 'inventory-api'),
        'pm2-daemon_direct': cpuOf(direct, 'pm2-daemon'),
        'pm2-daemon_gateway': cpuOf(gateway, 'pm2-daemon'),
        'load-generator_direct': cpuOf(direct, 'load-generator'),
        'load-generator_gateway': cpuOf(gateway, 'load-generator'),
      };
      out[connections === 10 ? 'c10' : 'c100'] = {
        cpu_ms_per_request: cpu,
        // on a machine whose cores are all busy, req/s goes as 1 / CPU per request: the best ratio these costs allow
        cpu_bound_ratio: round(cpu.direct_total / cpu.gateway_total, 3),
        direct: d,
        gateway: g,
        ratio: round(median(gateway.map((r, i) => r.rps / direct[i]!.rps)), 3),
        added_p99_ms: round(median(gateway.map((r, i) => r.p99_ms - direct[i]!.p99_ms))),
        added_p50_ms: round(median(gateway.map((r, i) => r.p50_ms - direct[i]!.p50_ms))),
      };
    }
  } finally {
    for (const id of ids) await http('DELETE', `${INVENTORY}/api/movies/${id}`).catch(() => undefined);
    log('proxy: seeded movies removed');
  }
  return { ...out, reseeded };
}

async function acceptPhase(db: pg.Pool, channel: ConfirmChannel, memory: { load: MemoryByApp }) {
  const concurrency = 100;
  const gateway: LoadResult[] = [];
  const raw: Array<Awaited<ReturnType<typeof rawPublish>>> = [];
  // every 202 and every raw confirm, warm-ups included: each must become exactly one row
  let accepted = 0;
  const count = <T extends { ok?: number; confirmed?: number }>(result: T): T => {
    accepted += result.ok ?? result.confirmed ?? 0;
    return result;
  };
  const postOrder = (duration: number) =>
    load(
      {
        url: GATEWAY,
        connections: concurrency,
        duration,
        requests: [{ method: 'POST', path: '/api/billing', headers: { 'content-type': 'application/json' }, body: ORDER_JSON }],
      },
      202,
    ).then(count);
  for (let rep = 0; rep < REPEATS; rep++) {
    const order = rep % 2 === 0 ? (['gateway', 'raw'] as const) : (['raw', 'gateway'] as const);
    for (const which of order) {
      if (which === 'gateway') {
        await postOrder(WARMUP_S);
        const sampler = rssSampler(['api-gateway', CONSUMER]);
        const result = await postOrder(DURATION_S);
        Object.assign(memory.load, mergeMax(memory.load, sampler.stop()));
        gateway.push(result);
        log(`accept gateway: ${result.rps} 202/s p99 ${result.p99_ms} ms (${result.non_ok} other statuses, ${result.errors} errors)`);
      } else {
        count(await rawPublish(channel, concurrency, WARMUP_S));
        const result = count(await rawPublish(channel, concurrency, DURATION_S));
        raw.push(result);
        log(`accept raw confirm-publish: ${result.rate} msg/s`);
      }
    }
  }
  // nothing lost: every 202 and every raw confirm (warm-ups too) becomes exactly one row
  const backlog = await waitFor('billing-consumer to drain the accept phase', 180_000, async () => {
    const { messageCount } = await channel.checkQueue(QUEUE);
    return messageCount === 0 ? messageCount : undefined;
  });
  await sleep(1000);
  const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM orders WHERE user_id = $1', [BENCH_USER]);
  const removed = await db.query('DELETE FROM orders WHERE user_id = $1', [BENCH_USER]);
  const stored = Number(rows[0]!.n);
  log(`accept: ${accepted} accepted, ${stored} bench orders reached billing_db (queue ${backlog}); removed ${removed.rowCount}`);
  // autocannon drops the requests still in flight when a run ends; the gateway may have queued them all the same
  if (stored < accepted) throw new Error(`${accepted - stored} accepted orders never reached billing_db`);
  const g = {
    rate: round(median(gateway.map((r) => r.rps)), 0),
    p99_ms: round(median(gateway.map((r) => r.p99_ms))),
    cpu_ms_per_request: round(median(gateway.map((r) => r.cpu_ms_per_request.total ?? 0)), 3),
    'api-gateway_cpu_ms_per_request': round(median(gateway.map((r) => r.cpu_ms_per_request['api-gateway'] ?? 0)), 3),
    runs: gateway,
  };
  const r = { rate: round(median(raw.map((x) => x.rate)), 0), cpu_ms_per_message: round(median(raw.map((x) => x.cpu_ms_per_message.total ?? 0)), 3), runs: raw };
  return { concurrency, gateway: g, raw: r, ratio: round(median(gateway.map((x, i) => x.rps / raw[i]!.rate)), 3), accepted, stored_rows: stored, lost: 0 };
}

/** Lets billing-consumer empty billing_queue, then deletes every bench order (also what a failed run left behind). */
async function removeBenchOrders(db: pg.Pool, channel: ConfirmChannel): Promise<number> {
  await waitFor('billing_queue to be empty', 300_000, async () => ((await channel.checkQueue(QUEUE)).messageCount === 0 ? true : undefined), 500);
  await sleep(1000);
  return (await db.query('DELETE FROM orders WHERE user_id = $1', [BENCH_USER])).rowCount ?? 0;
}

/**
 * The consumer under test: the deployed billing-consumer (pm2 start), or with BENCH_CANDIDATE_CONSUMER=1 a copy built
 * from this checkout (node services/billing/dist/main.js with the deployed env file), to measure a change side by side
 * without deploying it. BENCH_CANDIDATE_NODE_ARGS gives that copy node flags.
 */
function startConsumerUnderTest(): { pid: () => number; stop: () => Promise<void> } {
  if (env.BENCH_CANDIDATE_CONSUMER !== '1') {
    pm2('start', CONSUMER);
    return { pid: () => pm2List().find((p) => p.name === CONSUMER)?.pid ?? 0, stop: () => Promise.resolve() };
  }
  const args = [...(env.BENCH_CANDIDATE_NODE_ARGS ?? '').split(' ').filter(Boolean), `--env-file=/etc/crud-master/${CONSUMER}.env`, 'services/billing/dist/main.js'];
  log(`drain: candidate consumer: node ${args.join(' ')}`);
  const child = spawn('node', args, { cwd: root, env: { ...env, BILLING_HEALTH_PORT: '18092', BILLING_METRICS_PORT: '0' }, stdio: ['ignore', 'ignore', 'inherit'] });
  return {
    pid: () => child.pid ?? 0,
    stop: async () => {
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

async function drainPhase(db: pg.Pool, connection: ChannelModel, channel: ConfirmChannel, memory: { load: MemoryByApp }) {
  const count = DRAIN_MESSAGES;
  // billing-consumer: stopped, a 50,000-message backlog in billing_queue, started; time until billing_db holds it all
  const prefix = `bench-drain-${RUN}`;
  const countRows = async () =>
    Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM orders WHERE user_id = $1', [BENCH_USER])).rows[0]!.n);
  await removeBenchOrders(db, channel);
  log('drain: pm2 stop billing-consumer');
  pm2('stop', CONSUMER);
  let consumerResult;
  let prefetch: number | undefined;
  try {
    const before = await countRows();
    if (before !== 0) throw new Error(`billing_db already holds ${before} bench orders`);
    log(`drain: preloading ${count} messages into ${QUEUE}`);
    await preload(channel, QUEUE, count, prefix);
    const started = performance.now();
    const cpuBefore = cpuSnapshot();
    log('drain: starting the consumer');
    const consumer = startConsumerUnderTest();
    try {
      let first: { at: number; rows: number } | undefined;
      let peakRss = 0;
      const done = await waitFor(
        `billing_db to hold ${count} bench orders`,
        600_000,
        async () => {
          const rows = await countRows();
          const at = performance.now();
          peakRss = Math.max(peakRss, procRssMb(consumer.pid()) ?? 0);
          if (rows > 0 && !first) first = { at, rows };
          return rows >= count ? { at, rows } : undefined;
        },
        100,
      );
      memory.load = mergeMax(memory.load, { [CONSUMER]: { instances_mb: [peakRss], max_mb: peakRss } });
      // the management API lists a consumer some seconds after it started
      prefetch = await waitFor('the consumer to show in the management API', 30_000, () => consumerPrefetch().catch(() => undefined), 1000);
      const seconds = (done.at - first!.at) / 1000;
      consumerResult = {
        candidate: env.BENCH_CANDIDATE_CONSUMER === '1',
        rate: round((done.rows - first!.rows) / seconds, 0),
        seconds: round(seconds, 2),
        seconds_incl_startup: round((done.at - started) / 1000, 2),
        cpu_ms_per_message: cpuPerRequest(cpuBefore, cpuSnapshot(), count),
      };
    } finally {
      await consumer.stop();
    }
  } finally {
    // billing-consumer runs again whatever happened
    if (pm2List().some((p) => p.name === CONSUMER && p.status !== 'online')) pm2('start', CONSUMER);
  }
  const drained = await countRows();
  const { rows: dupes } = await db.query<{ n: string }>(
    "SELECT count(*) - count(DISTINCT message_id) AS n FROM orders WHERE user_id = $1 AND message_id LIKE $2 || '-%'",
    [BENCH_USER, prefix],
  );
  log(`drain consumer: ${consumerResult.rate} msg/s, ${drained} rows, prefetch ${prefetch}`);
  await waitFor('billing_queue to be empty', 60_000, async () => ((await channel.checkQueue(QUEUE)).messageCount === 0 ? true : undefined));
  const removed = await db.query('DELETE FROM orders WHERE user_id = $1', [BENCH_USER]);
  log(`drain: removed ${removed.rowCount} bench orders`);

  // the raw ceiling: the same messages, the consumer's prefetch, one ack per message, no database
  const scratch = `bench-drain-${RUN}`;
  log(`drain raw: preloading ${count} messages into ${scratch}`);
  await channel.assertQueue(scratch, { durable: true });
  let raw: { rate: number; seconds: number; cpu_ms_per_message: CpuGroups };
  try {
    await preload(channel, scratch, count, `bench-raw-${RUN}`);
    const consumer = await connection.createChannel();
    await consumer.prefetch(prefetch ?? 100);
    const cpuBefore = cpuSnapshot();
    raw = await new Promise<typeof raw>((resolve, reject) => {
      let acked = 0;
      let first = 0;
      consumer
        .consume(scratch, (message) => {
          if (message === null) return;
          if (acked === 0) first = performance.now();
          consumer.ack(message);
          if (++acked === count) {
            const seconds = (performance.now() - first) / 1000;
            resolve({ rate: round((count - 1) / seconds, 0), seconds: round(seconds, 2), cpu_ms_per_message: cpuPerRequest(cpuBefore, cpuSnapshot(), count) });
          }
        })
        .catch(reject);
    });
    await consumer.close();
  } finally {
    await channel.deleteQueue(scratch).catch(() => undefined);
  }
  log(`drain raw: ${raw.rate} msg/s`);
  return {
    messages: count,
    prefetch: prefetch ?? 0,
    consumer: consumerResult,
    raw,
    ratio: round(consumerResult.rate / raw.rate, 3),
    drained_rows: drained,
    duplicate_rows: Number(dupes[0]!.n),
  };
}

function mergeMax(a: MemoryByApp, b: MemoryByApp): MemoryByApp {
  const out: MemoryByApp = { ...a };
  for (const [app, entry] of Object.entries(b)) {
    const old = out[app];
    if (!old || entry.max_mb > old.max_mb) out[app] = entry;
  }
  return out;
}

/** The files that a provisioning run would copy to /opt/crud-master: none, or it is not a "nothing to change" run. */
function deployDrift(): string[] {
  const dest = '/opt/crud-master/';
  if (!existsSync(dest)) return ['/opt/crud-master does not exist'];
  const excludes = ['.git/', '.vagrant/', '.env', '.deploy/', 'node_modules/', 'dist/', '*.tsbuildinfo', '*.log', 'coverage/', '.test-results/', 'ansible/', 'roles/'];
  const out = execFileSync(
    'rsync',
    ['-rlpn', '--checksum', '--delete', '-i', '--omit-dir-times', '--filter=:-_.gitignore', ...excludes.map((e) => `--exclude=${e}`), root, dest],
    { encoding: 'utf8' },
  );
  return out.split('\n').filter((line) => line.trim() && !/^\.d/.test(line) && !/^cd\+\+/.test(line));
}

async function provisioningRun() {
  if (env.BENCH_PROVISION === '0') return { skipped: 'BENCH_PROVISION=0' };
  const drift = deployDrift();
  if (drift.length > 0) {
    log(`memory: not timing the provisioning run, it would deploy: ${drift.join('; ')}`);
    return { skipped: `checkout != deployed copy (${drift.length} files): it would deploy` };
  }
  log('memory: timing `make local-idempotent` (a provisioning run with nothing to change)');
  const started = performance.now();
  const code = await new Promise<number>((resolve) => {
    const child = spawn('make', ['local-idempotent'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-2000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('close', (c) => {
      if (c !== 0) log(`make local-idempotent failed:\n${tail}`);
      resolve(c ?? 1);
    });
  });
  return { seconds: round((performance.now() - started) / 1000, 1), changed_0: code === 0 };
}

// ---------------------------------------------------------------------------------------------------------------

type Footprint = { idle_mb: MemoryByApp; load_mb: MemoryByApp; idle_after_mb: MemoryByApp; provisioning: Awaited<ReturnType<typeof provisioningRun>> };
interface Results {
  proxy?: Awaited<ReturnType<typeof proxyPhase>>;
  accept?: Awaited<ReturnType<typeof acceptPhase>>;
  drain?: Awaited<ReturnType<typeof drainPhase>>;
  footprint?: Footprint;
  [key: string]: unknown;
}

function table(results: Results): string {
  const rows: string[][] = [['measure', 'through the service', 'ceiling', 'ratio', 'target', '']];
  const mark = (ok: boolean | undefined) => (ok === undefined ? '' : ok ? 'ok' : 'MISS');
  for (const c of ['c10', 'c100'] as const) {
    const p = results.proxy?.[c];
    if (!p) continue;
    rows.push([
      `proxy GET /api/movies/:id ${c.slice(1)} conn`,
      `${p.gateway.rps} req/s p50 ${p.gateway.p50_ms} p99 ${p.gateway.p99_ms} ms`,
      `${p.direct.rps} req/s p50 ${p.direct.p50_ms} p99 ${p.direct.p99_ms} ms`,
      `${p.ratio}x, p99 +${p.added_p99_ms} ms`,
      c === 'c100' ? `>= ${TARGETS.proxy_ratio}x, <= ${TARGETS.added_p99_ms} ms` : '',
      c === 'c100' ? mark(p.ratio >= TARGETS.proxy_ratio && p.added_p99_ms <= TARGETS.added_p99_ms) : '',
    ]);
  }
  const c100 = results.proxy?.c100;
  if (c100) {
    const cpu = c100.cpu_ms_per_request;
    rows.push([
      '  CPU ms per GET, all processes',
      `${cpu.gateway_total} (api-gateway ${cpu['api-gateway']}, pm2 ${cpu['pm2-daemon_gateway']})`,
      `${cpu.direct_total} (inventory ${cpu['inventory-api_direct']}, pm2 ${cpu['pm2-daemon_direct']})`,
      `${c100.cpu_bound_ratio}x`,
      'CPU-bound ceiling',
      '',
    ]);
  }
  if (results.accept) {
    const a = results.accept;
    rows.push([
      `billing accept, ${a.concurrency} outstanding`,
      `${a.gateway.rate} 202/s p99 ${a.gateway.p99_ms} ms; CPU ${a.gateway.cpu_ms_per_request} ms/req (gw ${a.gateway['api-gateway_cpu_ms_per_request']})`,
      `${a.raw.rate} confirms/s (raw amqplib); CPU ${a.raw.cpu_ms_per_message} ms/msg`,
      `${a.ratio}x`,
      `>= ${TARGETS.accept_ratio}x`,
      mark(a.ratio >= TARGETS.accept_ratio),
    ]);
  }
  if (results.drain) {
    const d = results.drain;
    rows.push([
      `drain ${d.messages} msgs, prefetch ${d.prefetch}${d.consumer.candidate ? ' (checkout copy)' : ''}`,
      `${d.consumer.rate} msg/s, ${d.drained_rows} rows (${d.consumer.seconds_incl_startup} s incl. start); CPU ${d.consumer.cpu_ms_per_message.total} ms/msg`,
      `${d.raw.rate} msg/s (raw consume+ack); CPU ${d.raw.cpu_ms_per_message.total} ms/msg`,
      `${d.ratio}x`,
      `>= ${TARGETS.drain_ratio}x, ${d.messages} rows`,
      mark(d.ratio >= TARGETS.drain_ratio && d.drained_rows === d.messages && d.duplicate_rows === 0),
    ]);
  }
  if (results.footprint) {
    const f = results.footprint;
    for (const app of APPS) {
      const idle = f.idle_mb[app];
      if (!idle) continue;
      rows.push([
        `RSS ${app} (${idle.instances_mb.length} inst.)`,
        `idle ${idle.instances_mb.join('/')} MB; load ${f.load_mb[app]?.instances_mb.join('/') ?? '-'} MB`,
        `after load idle ${f.idle_after_mb[app]?.instances_mb.join('/') ?? '-'} MB`,
        `max ${idle.max_mb} MB`,
        `<= ${TARGETS.idle_rss_mb} MB`,
        mark(idle.max_mb <= TARGETS.idle_rss_mb),
      ]);
    }
    const pr = f.provisioning;
    rows.push([
      'provisioning, nothing to change',
      'skipped' in pr ? `skipped: ${pr.skipped}` : `${pr.seconds} s`,
      '',
      'skipped' in pr ? '' : `changed=0: ${pr.changed_0}`,
      '',
      '',
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

async function main(): Promise<void> {
  await preflight();
  const started = Date.now();
  const memory = { load: {} as MemoryByApp };
  const results: Results = {
    run_at: new Date().toISOString(),
    machine: { cpus: os.cpus().length, node: process.version, load_average_1m: round(os.loadavg()[0]!) },
    settings: { duration_s: DURATION_S, warmup_s: WARMUP_S, repeats: REPEATS, gateway: GATEWAY, inventory: INVENTORY },
    targets: TARGETS,
  };
  // a PM2 instance that restarted during the run (someone else's deploy or chaos test) makes the run suspect
  const pidsAtStart = new Map(pm2List().map((p) => [`${p.name}#${p.pm_id}`, p.pid]));
  const idle = ONLY.has('memory') ? pm2Memory() : undefined;
  const connection = await openBroker();
  const channel = await connection.createConfirmChannel();
  const db = billingDb();
  try {
    if (ONLY.has('proxy')) results.proxy = await proxyPhase(memory);
    if (ONLY.has('accept')) results.accept = await acceptPhase(db, channel, memory);
    if (ONLY.has('drain')) results.drain = await drainPhase(db, connection, channel, memory);
    if (idle) {
      // V8's memory reducer gives the heap back some 20 s after a load ends: idle means after that
      log('memory: 30 s idle before reading RSS again');
      await sleep(30_000);
      results.footprint = { idle_mb: idle, load_mb: memory.load, idle_after_mb: pm2Memory(), provisioning: await provisioningRun() };
    }
  } catch (err) {
    log(`failed (${err instanceof Error ? err.message : String(err)}); removing the bench orders before exiting`);
    if (pm2List().some((p) => p.name === CONSUMER && p.status !== 'online')) pm2('start', CONSUMER);
    await removeBenchOrders(db, channel).catch((cleanup: unknown) => log(`could not remove the bench orders: ${String(cleanup)}`));
    throw err;
  } finally {
    await db.end();
    await connection.close().catch(() => undefined);
  }
  const restarted = pm2List()
    .filter((p) => p.name !== CONSUMER && pidsAtStart.has(`${p.name}#${p.pm_id}`) && pidsAtStart.get(`${p.name}#${p.pm_id}`) !== p.pid)
    .map((p) => `${p.name}#${p.pm_id}`);
  results.restarted_during_run = restarted;
  results.machine = { ...(results.machine as object), load_average_1m_end: round(os.loadavg()[0]!) };
  const seconds = Math.round((Date.now() - started) / 1000);
  results.seconds = seconds;
  const summary = {
    proxy_ratio: results.proxy?.c100?.ratio ?? null,
    added_p99_ms: results.proxy?.c100?.added_p99_ms ?? null,
    accept_ratio: results.accept?.ratio ?? null,
    drain_ratio: results.drain?.ratio ?? null,
    drained_rows: results.drain?.drained_rows ?? null,
    idle_rss_mb: results.footprint ? Object.fromEntries(Object.entries(results.footprint.idle_mb).map(([app, m]) => [app, m.max_mb])) : null,
  };
  writeFileSync(`${root}bench/results.json`, `${JSON.stringify({ ...summary, ...results }, null, 2)}\n`);
  console.log(`\n${table(results)}\n\nratios measured side by side in this run; details in bench/results.json (${seconds} s)`);
  if (restarted.length) console.log(`WARNING: restarted during the run (someone else's deploy or test?): ${restarted.join(', ')}; run again.`);
}

main().catch((err: unknown) => {
  // billing-consumer is left running, whatever failed
  try {
    if (pm2List().some((p) => p.name === CONSUMER && p.status !== 'online')) pm2('start', CONSUMER);
  } catch {
    /* pm2 itself is unavailable: nothing to restore */
  }
  console.error(`bench failed: ${err instanceof Error ? err.stack : String(err)}`);
  process.exitCode = 1;
});
