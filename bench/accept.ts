/** The accept phase: POST /api/billing 202/s through the gateway vs a raw amqplib confirm-channel publisher. */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConfirmChannel } from 'amqplib';
import type pg from 'pg';
import { countBenchRows, deleteBenchRows, publishConfirmed, queueEmpty } from './billing.js';
import {
  DURATION_S,
  GATEWAY,
  log,
  medianOf,
  ORDER,
  ORDER_JSON,
  paired,
  QUEUE,
  REPEATS,
  round,
  WARMUP_S,
} from './config.js';
import { load, type LoadResult } from './load.js';
import { cpuPerRequest, cpuSnapshot, mergeMax, rssSampler, type CpuGroups, type MemoryByApp } from './processes.js';

/** autocannon's POST /api/billing with the bench's order (user_id 'bench', removed after the phase). */
export const ORDER_REQUESTS = [
  { method: 'POST' as const, path: '/api/billing', headers: { 'content-type': 'application/json' }, body: ORDER_JSON },
];

/** `concurrency` publishers, each waiting for its confirm before the next: what the gateway does per request. */
async function rawPublish(
  channel: ConfirmChannel,
  concurrency: number,
  seconds: number,
): Promise<{ rate: number; confirmed: number; cpu_ms_per_message: CpuGroups }> {
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
  return {
    rate: round(confirmed / elapsed, 0),
    confirmed,
    cpu_ms_per_message: cpuPerRequest(cpuBefore, cpuSnapshot(), confirmed),
  };
}

export async function acceptPhase(db: pg.Pool, channel: ConfirmChannel, memory: { load: MemoryByApp }) {
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
        requests: ORDER_REQUESTS,
      },
      202,
    ).then(count);
  for (let rep = 0; rep < REPEATS; rep++) {
    const order = rep % 2 === 0 ? (['gateway', 'raw'] as const) : (['raw', 'gateway'] as const);
    for (const which of order) {
      if (which === 'gateway') {
        await postOrder(WARMUP_S);
        const sampler = rssSampler(['api-gateway', 'billing-consumer']);
        const result = await postOrder(DURATION_S);
        Object.assign(memory.load, mergeMax(memory.load, sampler.stop()));
        gateway.push(result);
        log(
          `accept gateway: ${result.rps} 202/s p99 ${result.p99_ms} ms (${result.non_ok} other statuses, ` +
            `${result.errors} errors)`,
        );
      } else {
        count(await rawPublish(channel, concurrency, WARMUP_S));
        const result = count(await rawPublish(channel, concurrency, DURATION_S));
        raw.push(result);
        log(`accept raw confirm-publish: ${result.rate} msg/s`);
      }
    }
  }
  // nothing lost: every 202 and every raw confirm (warm-ups too) becomes exactly one row
  await queueEmpty(channel, QUEUE, 180_000);
  await sleep(1000);
  const stored = await countBenchRows(db);
  const removed = await deleteBenchRows(db);
  log(`accept: ${accepted} accepted, ${stored} bench orders reached billing_db; removed ${removed}`);
  // autocannon drops the requests still in flight when a run ends; the gateway may have queued them all the same
  if (stored < accepted) throw new Error(`${accepted - stored} accepted orders never reached billing_db`);
  const g = {
    rate: medianOf(gateway, (r) => r.rps, 0),
    p99_ms: medianOf(gateway, (r) => r.p99_ms),
    cpu_ms_per_request: medianOf(gateway, (r) => r.cpu_ms_per_request.total ?? 0, 3),
    'api-gateway_cpu_ms_per_request': medianOf(gateway, (r) => r.cpu_ms_per_request['api-gateway'] ?? 0, 3),
    runs: gateway,
  };
  const r = {
    rate: medianOf(raw, (x) => x.rate, 0),
    cpu_ms_per_message: medianOf(raw, (x) => x.cpu_ms_per_message.total ?? 0, 3),
    runs: raw,
  };
  return {
    concurrency,
    gateway: g,
    raw: r,
    ratio: paired(gateway, raw, (g, r) => g.rps / r.rate),
    accepted,
    stored_rows: stored,
    lost: 0,
  };
}
