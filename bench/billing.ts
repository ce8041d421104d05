/** RabbitMQ and billing_db as the accept and drain phases use them: publishing, preloading, counting, cleaning up. */
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '@crud-master/test-support/http';
import { management, managementAuth } from '@crud-master/test-support/operator';
import { billingQueue } from '@crud-master/test-support/stack';
import type { ConfirmChannel } from 'amqplib';
import pg from 'pg';
import { BENCH_USER, env, ORDER_JSON, QUEUE } from './config.js';

export const billingDb = () =>
  new pg.Pool({
    host: env.BILLING_DB_HOST ?? '127.0.0.1',
    port: Number(env.BILLING_DB_PORT ?? 5432),
    database: env.BILLING_DB_NAME,
    user: env.BILLING_DB_USER,
    password: env.BILLING_DB_PASSWORD,
    max: 2,
  });

/** The bench's orders (user_id 'bench') in billing_db. */
export const countBenchRows = async (db: pg.Pool) =>
  Number(
    (await db.query<{ n: string }>('SELECT count(*) AS n FROM orders WHERE user_id = $1', [BENCH_USER])).rows[0]!.n,
  );

export const deleteBenchRows = async (db: pg.Pool) =>
  (await db.query('DELETE FROM orders WHERE user_id = $1', [BENCH_USER])).rowCount ?? 0;

/** Resolves once `queue` holds no message. */
export const queueEmpty = (channel: ConfirmChannel, queue: string, timeoutMs: number) =>
  eventually(
    async () => ((await channel.checkQueue(queue)).messageCount === 0 ? true : undefined),
    timeoutMs,
    `${queue} to be empty`,
  );

/** Publishes one message on a confirm channel and resolves on the broker's confirm. */
export const publishConfirmed = (channel: ConfirmChannel, queue: string, body: Buffer, messageId: string) =>
  new Promise<void>((resolve, reject) => {
    channel.sendToQueue(queue, body, { persistent: true, contentType: 'application/json', messageId }, (err) =>
      err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(),
    );
  });

/** Publishes `count` messages with `window` confirms outstanding; ids are `${prefix}-${i}`. */
export async function preload(
  channel: ConfirmChannel,
  queue: string,
  count: number,
  prefix: string,
  window = 500,
): Promise<void> {
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

/**
 * The prefetch of billing-consumer's channel, as the broker sees it (management API), so the raw loop uses the same.
 */
export async function consumerPrefetch(): Promise<number> {
  const url = `${management}/queues/${encodeURIComponent(billingQueue.vhost)}/${encodeURIComponent(QUEUE)}`;
  const queue = (await (await fetch(url, { headers: managementAuth })).json()) as {
    consumer_details?: Array<{ prefetch_count: number }>;
  };
  const prefetch = queue.consumer_details?.[0]?.prefetch_count;
  if (!prefetch)
    throw new Error(
      `billing-consumer has no consumer on ${QUEUE} (management API: ${JSON.stringify(queue).slice(0, 200)})`,
    );
  return prefetch;
}

/** Lets billing-consumer empty billing_queue, then deletes every bench order (also what a failed run left behind). */
export async function removeBenchOrders(db: pg.Pool, channel: ConfirmChannel): Promise<number> {
  await queueEmpty(channel, QUEUE, 300_000);
  await sleep(1000);
  return deleteBenchRows(db);
}
