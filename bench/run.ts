/**
 * `make bench`: the deployed stack (`make local`) against its own ceilings, measured side by side in one run.
 *
 *   proxy   GET /api/movies/:id through the gateway vs straight to inventory-api vs through nginx (proxy.ts):
 *           closed loop at 10 and 100 connections, then open loop at half of direct's capacity
 *   accept  POST /api/billing 202/s through the gateway vs a raw amqplib confirm-channel publisher (accept.ts)
 *   limiter two gateway copies, rate limits on vs off, under the same GET and POST load at once (limiter.ts)
 *   flood   a client's GETs while 15,000 slow connections from another address hold the gateway vs none (flood.ts)
 *   drain   billing-consumer draining a 50,000-message backlog into billing_db vs a raw consume+ack loop (drain.ts)
 *   memory  RSS of every PM2 instance idle and under load, and a provisioning run with nothing to change
 *
 * Only ratios are compared with the targets: absolute numbers on a shared 2-core machine are noise.
 * Prints one table and writes bench/results.json. Every row and queue it makes is removed again, nginx is stopped,
 * and billing-consumer is running when it ends, whatever happened. The knobs are in config.ts and bench/README.md.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { openBroker } from '@crud-master/test-support/broker';
import { pm2Processes } from '@crud-master/test-support/pm2';
import { acceptPhase } from './accept.js';
import { billingDb, removeBenchOrders } from './billing.js';
import {
  APPS,
  BILLING_HEALTH,
  CONSUMER,
  deployedEnvFile,
  DURATION_S,
  GATEWAY,
  INVENTORY,
  log,
  ONLY,
  PROFILE,
  REPEATS,
  root,
  round,
  TARGETS,
  WARMUP_S,
} from './config.js';
import { drainPhase, restoreConsumer } from './drain.js';
import { floodPhase } from './flood.js';
import { limiterPhase } from './limiter.js';
import { pm2Memory, type MemoryByApp } from './processes.js';
import { provisioningRun } from './provisioning.js';
import { proxyPhase } from './proxy.js';
import { profileReport, summary, table, type Results } from './report.js';

/**
 * The deployed gateway's per-address limits that the selected phases would run into from the bench's one address
 * (the limiter phase starts its own copies with its own limits). On, they turn the measure into a count of 429s.
 */
function limitsInTheWay(): string[] {
  const deployed = parseEnv(readFileSync(deployedEnvFile('api-gateway'), 'utf8'));
  const names = [
    ...(ONLY.has('proxy') || ONLY.has('accept') ? ['GATEWAY_RATE_LIMIT_REQUESTS'] : []),
    ...(ONLY.has('accept') ? ['GATEWAY_RATE_LIMIT_WRITES', 'GATEWAY_RATE_LIMIT_ORDERS_PER_USER'] : []),
  ];
  // thousands of requests a second from one address for minutes: a limit below a billion is in reach
  const inReach = (value = '0') => Number(value) > 0 && Number(value) < 1e9;
  return names.filter((name) => inReach(deployed[name])).map((name) => `${name}=${deployed[name]}`);
}

/** Why the bench cannot run now (said in one line, before any load), or undefined. */
async function refusal(): Promise<string | undefined> {
  for (const [name, url] of [
    ['api-gateway', `${GATEWAY}/readyz`],
    ['inventory-api', `${INVENTORY}/readyz`],
    [CONSUMER, `${BILLING_HEALTH}/readyz`],
  ] as const) {
    const status = await fetch(url).then(
      (r) => r.status,
      (err: Error) => err.message,
    );
    if (status !== 200) return `${name} is not ready (${url}: ${status}). Run \`make local\` first.`;
  }
  const offline = pm2Processes().filter((p) => (APPS as readonly string[]).includes(p.name) && p.status !== 'online');
  if (offline.length)
    return `PM2 apps not online: ${offline.map((p) => `${p.name}#${p.pm_id} ${p.status}`).join(', ')}`;
  const limits = limitsInTheWay();
  if (limits.length) {
    return (
      `the deployed gateway rate-limits the bench's one address (${limits.join(', ')}): set them to 0 or ` +
      '1000000000 in .env and run `make local`, or leave out proxy and accept (BENCH_ONLY=limiter,flood,drain,memory).'
    );
  }
}

async function main(): Promise<void> {
  const refused = await refusal();
  if (refused) {
    console.error(`bench refused: ${refused}`);
    process.exitCode = 1;
    return;
  }
  const started = Date.now();
  const memory = { load: {} as MemoryByApp };
  const results: Results = {
    run_at: new Date().toISOString(),
    machine: { cpus: os.cpus().length, node: process.version, load_average_1m: round(os.loadavg()[0]!) },
    settings: {
      duration_s: DURATION_S,
      warmup_s: WARMUP_S,
      repeats: REPEATS,
      gateway: GATEWAY,
      inventory: INVENTORY,
      profile: PROFILE,
    },
    targets: TARGETS,
  };
  // a PM2 instance that restarted during the run (someone else's deploy or chaos test) makes the run suspect
  const pidsAtStart = new Map(pm2Processes().map((p) => [`${p.name}#${p.pm_id}`, p.pid]));
  const idle = ONLY.has('memory') ? pm2Memory() : undefined;
  const { connection, channel } = await openBroker();
  const db = billingDb();
  try {
    if (ONLY.has('proxy')) results.proxy = await proxyPhase(memory);
    if (ONLY.has('accept')) results.accept = await acceptPhase(db, channel, memory);
    if (ONLY.has('limiter')) results.limiter = await limiterPhase(db, channel);
    if (ONLY.has('flood')) results.flood = await floodPhase();
    if (ONLY.has('drain')) results.drain = await drainPhase(db, connection, channel, memory);
    if (idle) {
      // V8's memory reducer gives the heap back some 20 s after a load ends: idle means after that
      log('memory: 30 s idle before reading RSS again');
      await sleep(30_000);
      results.footprint = {
        idle_mb: idle,
        load_mb: memory.load,
        idle_after_mb: pm2Memory(),
        provisioning: await provisioningRun(),
      };
    }
  } catch (err) {
    log(`failed (${err instanceof Error ? err.message : String(err)}); removing the bench orders before exiting`);
    restoreConsumer();
    await removeBenchOrders(db, channel).catch((cleanup: unknown) =>
      log(`could not remove the bench orders: ${String(cleanup)}`),
    );
    throw err;
  } finally {
    await db.end();
    await connection.close().catch(() => undefined);
  }
  const restarted = pm2Processes()
    .filter(
      (p) =>
        p.name !== CONSUMER &&
        pidsAtStart.has(`${p.name}#${p.pm_id}`) &&
        pidsAtStart.get(`${p.name}#${p.pm_id}`) !== p.pid,
    )
    .map((p) => `${p.name}#${p.pm_id}`);
  results.restarted_during_run = restarted;
  results.machine = { ...(results.machine as object), load_average_1m_end: round(os.loadavg()[0]!) };
  const seconds = Math.round((Date.now() - started) / 1000);
  results.seconds = seconds;
  writeFileSync(`${root}bench/results.json`, `${JSON.stringify({ ...summary(results), ...results }, null, 2)}\n`);
  console.log(
    `\n${table(results)}\n\nratios measured side by side in this run; details in bench/results.json (${seconds} s)`,
  );
  if (PROFILE) console.log(`\n${profileReport(results)}`);
  if (restarted.length)
    console.log(
      `WARNING: restarted during the run (someone else's deploy or test?): ${restarted.join(', ')}; run again.`,
    );
}

main().catch((err: unknown) => {
  // billing-consumer is left running, whatever failed
  try {
    restoreConsumer();
  } catch {
    /* pm2 itself is unavailable: nothing to restore */
  }
  console.error(`bench failed: ${err instanceof Error ? err.stack : String(err)}`);
  process.exitCode = 1;
});
