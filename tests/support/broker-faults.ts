import { onHost } from './hosts.js';
import { eventually, request } from './http.js';
import { management, managementAuth, orderCounts } from './operator.js';
import { billingQueue, stack } from './stack.js';

// What the broker-fault suites (tests/e2e/broker-faults.test.ts, dead-letter-flood.test.ts) share: billing's host,
// its queue in the management API, and the orders they post.
const env = process.env;
export const { gateway, billingHealth } = stack;
export const { vhost, queue } = billingQueue;
export const queueUrl = `${management}/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}`;
export const billingDb = env.BILLING_DB_NAME ?? 'billing_db';

export const rabbitmqctl = (...args: string[]) => onHost('billing', 'sudo', ['-n', 'rabbitmqctl', ...args]).trim();
export const psqlAsPostgres = (database: string, query: string) =>
  onHost('billing', 'sudo', ['-u', 'postgres', 'psql', '-d', database, '-tAc', query]).trim();
export const countsOf = (keys: string[]) => orderCounts((query) => psqlAsPostgres(billingDb, query), keys);

export const postOrder = (key: string | undefined, user = 'usr_broker_faults') =>
  request(`${gateway}/api/billing`, {
    method: 'POST',
    headers: key ? { 'Idempotency-Key': key } : {},
    json: { user_id: user, number_of_items: 1, total_amount: '3.00' },
  });

/** billing_queue's consumers as the management API shows them (its figures lag by a few seconds); 0 when it is gone. */
export const consumersOfQueue = async (): Promise<number> => {
  const reply = await request(queueUrl, { headers: managementAuth });
  return reply.status === 200 ? Number(reply.body.consumers ?? 0) : 0;
};

/** Waits until billing_queue has a consumer. */
export const untilConsuming = () =>
  eventually(async () => ((await consumersOfQueue()) >= 1 ? true : undefined), 30_000, 'billing_queue with a consumer');

/** The connection billing-consumer consumes on, as the management API names it. */
export const consumerConnection = async (): Promise<string | undefined> => {
  const reply = await request(`${management}/consumers/${encodeURIComponent(vhost)}`, { headers: managementAuth });
  const consumers = reply.body as Array<{ queue: { name: string }; channel_details: { connection_name: string } }>;
  return consumers.find((c) => c.queue.name === queue)?.channel_details.connection_name;
};

export const everyOnce = (keys: string[], timeoutMs: number, what: string) =>
  eventually(() => (countsOf(keys).every((n) => n === 1) ? true : undefined), timeoutMs, what);
