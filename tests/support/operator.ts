import './env.js';
import { onHost } from './hosts.js';
import { request, untilReady } from './http.js';
import { billingQueue, stack } from './stack.js';

/**
 * The deployed stack as an operator looks at it: RabbitMQ's management API with the .env administrator, and
 * billing_db through `psql` as postgres, wherever that runs (this host, a host prefix, `vagrant ssh`).
 */
const env = process.env;
export const { management } = stack;
export const managementAuth = {
  Authorization: `Basic ${Buffer.from(`${env.RABBITMQ_USER}:${env.RABBITMQ_PASSWORD}`).toString('base64')}`,
};
const queuePath = `${encodeURIComponent(billingQueue.vhost)}/${encodeURIComponent(billingQueue.queue)}`;

/** billing_queue's messages_ready, as the management API shows it (its counts lag by a few seconds). */
export const readyInQueue = async (): Promise<number> =>
  (await request(`${management}/queues/${queuePath}`, { headers: managementAuth })).body.messages_ready;

/** billing_db's rows per message id, selected by `condition` on message_id: `psql -tAc` runs the query. */
export const orderCountsQuery = (condition: string): string =>
  `SELECT message_id, count(*) FROM orders WHERE message_id ${condition} GROUP BY message_id`;

/** The count of each key in the rows of `orderCountsQuery` (`message_id|count` lines); 0 for a key with none. */
export function countsPerKey(rows: string, keys: readonly string[]): number[] {
  const counts = new Map(
    rows
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split('|') as [string, string]),
  );
  return keys.map((key) => Number(counts.get(key) ?? 0));
}

/** How many rows billing_db holds for each message id (exactly once: 1 each); `psql` runs `psql -tAc QUERY`. */
export function orderCounts(psql: (query: string) => string, keys: readonly string[]): number[] {
  const list = keys.map((key) => `'${key.replace(/'/g, "''")}'`).join(',');
  return countsPerKey(psql(orderCountsQuery(`IN (${list})`)), keys);
}

/** `psql -tAc QUERY` on billing_db as the postgres user, on billing-consumer's host (as an operator looks). */
export const psqlBilling = (query: string): string =>
  onHost('billing', 'sudo', [
    '-u',
    'postgres',
    'psql',
    '-d',
    env.BILLING_DB_NAME ?? 'billing_db',
    '-tAc',
    query,
  ]).trim();

/** The same on movies_db, on inventory-api's host. */
export const psqlMovies = (query: string): string =>
  onHost('inventory', 'sudo', [
    '-u',
    'postgres',
    'psql',
    '-d',
    env.INVENTORY_DB_NAME ?? 'movies_db',
    '-tAc',
    query,
  ]).trim();

/** `pm2 start billing-consumer` on its host, then until its /readyz answers 200. */
export async function startBillingConsumer(): Promise<void> {
  onHost('billing', 'pm2', ['start', 'billing-consumer']);
  await untilReady(stack.billingHealth, 30_000, 'billing-consumer ready after pm2 start');
}
