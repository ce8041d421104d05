/**
 * The drain phase: billing-consumer draining a backlog of DRAIN_MESSAGES orders into billing_db (`pm2 stop`, preload,
 * `pm2 start`) vs a raw amqplib consume+ack loop over as many messages with the consumer's prefetch and no database;
 * DRAIN_RUNS (3) times, the ratio being their median.
 */
import { spawn } from 'node:child_process';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import type pg from 'pg';
import { eventually } from '@crud-master/test-support/http';
import { pm2, pm2Processes } from '@crud-master/test-support/pm2';
import {
  consumerPrefetch,
  countBenchRows,
  deleteBenchRows,
  preload,
  queueEmpty,
  removeBenchOrders,
} from './billing.js';
import {
  BENCH_USER,
  CONSUMER,
  deployedEnvFile,
  DRAIN_MESSAGES,
  DRAIN_RUNS,
  env,
  log,
  median,
  QUEUE,
  root,
  round,
  RUN,
} from './config.js';
import { cpuPerRequest, cpuSnapshot, mergeMax, procRssMb, type CpuGroups, type MemoryByApp } from './processes.js';

/** Starts the deployed billing-consumer again unless it is online (whatever failed, the bench leaves it running). */
export function restoreConsumer(): void {
  if (pm2Processes().some((p) => p.name === CONSUMER && p.status !== 'online')) pm2('start', CONSUMER);
}

/**
 * The consumer under test: the deployed billing-consumer (pm2 start), or with BENCH_CANDIDATE_CONSUMER=1 a copy built
 * from this checkout (node services/billing/dist/main.js with the deployed env file), to measure a change side by side
 * without deploying it. BENCH_CANDIDATE_NODE_ARGS gives that copy node flags.
 */
function startConsumerUnderTest(): { pid: () => number; stop: () => Promise<void> } {
  if (env.BENCH_CANDIDATE_CONSUMER !== '1') {
    pm2('start', CONSUMER);
    return { pid: () => pm2Processes().find((p) => p.name === CONSUMER)?.pid ?? 0, stop: () => Promise.resolve() };
  }
  const args = [
    ...(env.BENCH_CANDIDATE_NODE_ARGS ?? '').split(' ').filter(Boolean),
    `--env-file=${deployedEnvFile(CONSUMER)}`,
    'services/billing/dist/main.js',
  ];
  log(`drain: candidate consumer: node ${args.join(' ')}`);
  const child = spawn('node', args, {
    cwd: root,
    env: { ...env, BILLING_HEALTH_PORT: '18092', BILLING_METRICS_PORT: '0' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return {
    pid: () => child.pid ?? 0,
    stop: async () => {
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

/** billing-consumer: stopped, a backlog in billing_queue, started; its rate from the first stored row to the last. */
async function consumerDrain(db: pg.Pool, channel: ConfirmChannel, prefix: string, memory: { load: MemoryByApp }) {
  const count = DRAIN_MESSAGES;
  await removeBenchOrders(db, channel);
  log('drain: pm2 stop billing-consumer');
  pm2('stop', CONSUMER);
  try {
    const before = await countBenchRows(db);
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
      const done = await eventually(
        async () => {
          const rows = await countBenchRows(db);
          const at = performance.now();
          peakRss = Math.max(peakRss, procRssMb(consumer.pid()) ?? 0);
          if (rows > 0 && !first) first = { at, rows };
          return rows >= count ? { at, rows } : undefined;
        },
        600_000,
        `billing_db to hold ${count} bench orders`,
      );
      memory.load = mergeMax(memory.load, { [CONSUMER]: { instances_mb: [peakRss], max_mb: peakRss } });
      // the management API lists a consumer some seconds after it started
      const prefetch = await eventually(
        () => consumerPrefetch().catch(() => undefined),
        30_000,
        'the consumer to show in the management API',
      );
      const seconds = (done.at - first!.at) / 1000;
      return {
        prefetch,
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
    restoreConsumer();
  }
}

/** The raw ceiling: the same messages in a scratch queue, the consumer's prefetch, one ack per message, no database. */
async function rawDrain(connection: ChannelModel, channel: ConfirmChannel, prefetch: number) {
  const count = DRAIN_MESSAGES;
  const scratch = `bench-drain-${RUN}`;
  log(`drain raw: preloading ${count} messages into ${scratch}`);
  await channel.assertQueue(scratch, { durable: true });
  try {
    await preload(channel, scratch, count, `bench-raw-${RUN}`);
    const consumer = await connection.createChannel();
    await consumer.prefetch(prefetch);
    const cpuBefore = cpuSnapshot();
    const raw = await new Promise<{ rate: number; seconds: number; cpu_ms_per_message: CpuGroups }>(
      (resolve, reject) => {
        let acked = 0;
        let first = 0;
        consumer
          .consume(scratch, (message) => {
            if (message === null) return;
            if (acked === 0) first = performance.now();
            consumer.ack(message);
            if (++acked === count) {
              const seconds = (performance.now() - first) / 1000;
              resolve({
                rate: round((count - 1) / seconds, 0),
                seconds: round(seconds, 2),
                cpu_ms_per_message: cpuPerRequest(cpuBefore, cpuSnapshot(), count),
              });
            }
          })
          .catch(reject);
      },
    );
    await consumer.close();
    return raw;
  } finally {
    await channel.deleteQueue(scratch).catch(() => undefined);
  }
}

async function drainOnce(
  db: pg.Pool,
  connection: ChannelModel,
  channel: ConfirmChannel,
  run: number,
  memory: { load: MemoryByApp },
) {
  const prefix = `bench-drain-${RUN}-${run}`;
  const consumer = await consumerDrain(db, channel, prefix, memory);
  const drained = await countBenchRows(db);
  const { rows: dupes } = await db.query<{ n: string }>(
    "SELECT count(*) - count(DISTINCT message_id) AS n FROM orders WHERE user_id = $1 AND message_id LIKE $2 || '-%'",
    [BENCH_USER, prefix],
  );
  log(`drain consumer: ${consumer.rate} msg/s, ${drained} rows, prefetch ${consumer.prefetch}`);
  await queueEmpty(channel, QUEUE, 60_000);
  log(`drain: removed ${await deleteBenchRows(db)} bench orders`);
  const raw = await rawDrain(connection, channel, consumer.prefetch);
  log(`drain raw: ${raw.rate} msg/s`);
  return {
    consumer,
    raw,
    ratio: round(consumer.rate / raw.rate, 3),
    drained_rows: drained,
    duplicate_rows: Number(dupes[0]!.n),
  };
}

export async function drainPhase(
  db: pg.Pool,
  connection: ChannelModel,
  channel: ConfirmChannel,
  memory: { load: MemoryByApp },
) {
  const runs = [];
  for (let run = 1; run <= DRAIN_RUNS; run++) {
    log(`drain: run ${run} of ${DRAIN_RUNS}`);
    runs.push(await drainOnce(db, connection, channel, run, memory));
  }
  // the run whose ratio is the median stands for the phase in the table
  const ratio = round(median(runs.map((r) => r.ratio)), 3);
  const typical = runs.find((r) => r.ratio === ratio) ?? runs[0]!;
  return {
    messages: DRAIN_MESSAGES,
    prefetch: typical.consumer.prefetch,
    consumer: typical.consumer,
    raw: typical.raw,
    ratio,
    /** the fewest rows any run stored: DRAIN_MESSAGES when every run stored every message */
    drained_rows: Math.min(...runs.map((r) => r.drained_rows)),
    duplicate_rows: runs.reduce((sum, r) => sum + r.duplicate_rows, 0),
    runs,
  };
}
