/** The bench's settings (environment knobs, the deployed stack's addresses) and the small helpers every phase uses. */
import { fileURLToPath } from 'node:url';
import { billingQueue, thisHost } from '@crud-master/test-support/stack';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const env = process.env;

export const DURATION_S = Number(env.BENCH_DURATION_S ?? 10);
export const WARMUP_S = Math.max(1, Math.round(DURATION_S / 4));
export const REPEATS = Number(env.BENCH_REPEATS ?? 2);
export const DRAIN_MESSAGES = Number(env.BENCH_DRAIN_MESSAGES ?? 50_000);
export const DRAIN_RUNS = Number(env.BENCH_DRAIN_RUNS ?? 3);
export const ONLY = new Set((env.BENCH_ONLY ?? 'proxy,accept,limiter,flood,drain,memory').split(','));
export const PROFILE = env.BENCH_PROFILE === '1';
export const GATEWAY = env.BENCH_GATEWAY_URL ?? thisHost.gateway;
export const INVENTORY = env.BENCH_INVENTORY_URL ?? thisHost.inventory;
export const BILLING_HEALTH = thisHost.billingHealth;
export const QUEUE = billingQueue.queue;
export const CONSUMER = 'billing-consumer';
export const APPS = ['api-gateway', 'inventory-api', CONSUMER] as const;
export const RUN = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
// every order the bench makes carries this user_id, so that it finds (and removes) exactly its own rows
export const BENCH_USER = 'bench';
export const ORDER = { user_id: BENCH_USER, number_of_items: 1, total_amount: '1.00' };
export const ORDER_JSON = JSON.stringify(ORDER);

export const TARGETS = {
  proxy_ratio: 0.9,
  nginx_ratio: 0.85,
  // gateway req/s / Go httputil proxy req/s, and the gateway's CPU per request / a bare Node http-proxy's
  go_ratio: 1.0,
  bare_node_cpu_ratio: 1.3,
  // inventory-api's CPU per request through the gateway / direct
  upstream_cpu_ratio: 1.1,
  added_p99_ms: 2,
  accept_ratio: 0.7,
  // 1 - req/s with the limiter on / req/s with it off, through two copies of the gateway side by side
  limiter_proxy_cost: 0.05,
  limiter_accept_cost: 0.05,
  // GET /api/movies p99 through the gateway while 15,000 slow connections from another address hold on to it
  flood_p99_ms: 100,
  drain_ratio: 0.5,
  idle_rss_mb: 80,
};

export const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;
export const log = (message: string) =>
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
export const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
/** A percentile of response times in ms, with sub-millisecond resolution (autocannon's own histogram is whole ms). */
export const percentile = (sorted: Float64Array, p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : NaN;
/** The median over runs of one number of each run. */
export const medianOf = <T>(runs: T[], of: (run: T) => number, digits = 2) => round(median(runs.map(of)), digits);
/** The median over repeats of a ratio (or difference) of two sides' runs taken side by side. */
export const paired = <T, U>(a: T[], b: U[], of: (x: T, y: U) => number, digits = 3) =>
  round(median(a.map((x, i) => of(x, b[i]!))), digits);
/** The env file that provisioning wrote for a PM2 app: the copies and candidates the bench starts read it too. */
export const deployedEnvFile = (app: string) => `/etc/crud-master/${app}.env`;
