import { setTimeout as sleep } from 'node:timers/promises';
import { keepAliveAgent, rawRequest } from './raw-http.js';

/**
 * Orders under faults, as the chaos tests drive them: a steady stream of orders through the gateway, each with its
 * own Idempotency-Key, while faults happen to the stack; then what became of each order. Used by the single-host
 * chaos test (tests/chaos/) and the Vagrant stage's cluster run (tests/vagrant/scale.test.ts).
 */

/** 202, 503, 'connection error', or anything else as status and body (a failure). */
export type Outcome = number | string;

/** Something done to the stack while the orders arrive; it says what it did. */
export type Fault = () => Promise<string>;

/** Each order is its own user's (as many clients are): the per-user rate limit is not what these runs measure. */
const orderOf = (key: string) =>
  JSON.stringify({ user_id: `usr_${key}`.slice(0, 100), number_of_items: 1, total_amount: '1.00' });
/**
 * A socket for every order in flight (open loop): with a cap, orders sent while the broker is down would wait for a
 * socket behind those the gateway holds for up to PUBLISH_TIMEOUT_MS, and reach it only once it is back, hiding 503s.
 */
const openLoop = keepAliveAgent();
/**
 * The retries, though, all start at once: at most 256 of them on the wire. Through the Vagrant stage's forwarded port
 * (docker-proxy: 6 descriptors a connection, and it stops for good at the first EMFILE), 3,400 at once closed :8080.
 */
const retries = keepAliveAgent({ maxSockets: 256 });

/** Posts one order with its Idempotency-Key; a 503's problem body carries the message_id to retry with. */
export async function postOrder(
  gateway: string,
  key: string,
  agent = openLoop,
): Promise<{ outcome: Outcome; messageId?: string }> {
  try {
    const reply = await rawRequest(
      gateway,
      {
        method: 'POST',
        path: '/api/billing',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: orderOf(key),
      },
      undefined,
      agent,
    );
    if (reply.status === 202) return { outcome: 202 };
    if (reply.status === 503) {
      const messageId = (() => {
        try {
          return (JSON.parse(reply.body) as { message_id?: unknown }).message_id;
        } catch {
          return undefined;
        }
      })();
      return { outcome: 503, messageId: typeof messageId === 'string' ? messageId : undefined };
    }
    return { outcome: `${reply.status} ${reply.body.slice(0, 100)}` };
  } catch {
    return { outcome: 'connection error' };
  }
}

export interface OrdersUnderFaults {
  gateway: string;
  /** orders per second */
  rate: number;
  /** how many orders (at least, with untilFaultsDone) */
  orders: number;
  /** each fault starts this many ms after the first order, while the orders keep coming */
  faults: Array<[atMs: number, fault: Fault]>;
  /** keep sending past `orders` until every fault has finished */
  untilFaultsDone?: boolean;
  /** the Idempotency-Key of order i */
  keyOf: (i: number) => string;
}

export interface Sent {
  /** each order's key and what the gateway answered */
  outcomes: Map<string, Outcome>;
  /** the message_id of each order answered 503 (when its problem body had one) */
  messageIds: Map<string, string>;
  /** what each fault did, when it started and ended (seconds after the first order) */
  log: string[];
  /** how long the sending took, in seconds */
  seconds: number;
}

const since = (started: number) => ((Date.now() - started) / 1000).toFixed(1);

/** Sends the orders at a steady rate, starting each fault at its time, and waits for every answer and fault. */
export async function sendOrdersUnderFaults({
  gateway,
  rate,
  orders,
  faults,
  untilFaultsDone = false,
  keyOf,
}: OrdersUnderFaults): Promise<Sent> {
  const outcomes = new Map<string, Outcome>();
  const messageIds = new Map<string, string>();
  const log: string[] = [];
  const pending = [...faults].sort(([a], [b]) => a - b);
  const inFlight: Array<Promise<void>> = [];
  let faultsRunning = 0;
  const started = Date.now();
  for (let i = 0; i < orders || (untilFaultsDone && (pending.length > 0 || faultsRunning > 0)); i++) {
    const wait = started + (i * 1000) / rate - Date.now();
    if (wait > 0) await sleep(wait);
    while (pending.length > 0 && Date.now() - started >= pending[0]![0]) {
      const fault = pending.shift()![1];
      const at = since(started);
      faultsRunning++;
      inFlight.push(
        fault()
          .then((what) => void log.push(`${at}s ${what} (done at ${since(started)}s)`))
          .finally(() => faultsRunning--),
      );
    }
    const key = keyOf(i);
    inFlight.push(
      postOrder(gateway, key).then(({ outcome, messageId }) => {
        outcomes.set(key, outcome);
        if (messageId) messageIds.set(key, messageId);
      }),
    );
  }
  await Promise.all(inFlight);
  return { outcomes, messageIds, log, seconds: (Date.now() - started) / 1000 };
}

/**
 * Posts each order that was not accepted (a 503 or a connection error) again, as a client does: with the 503's
 * message_id (else its own key) as Idempotency-Key, every `delayMs`, until it gets a 202 or `attempts` run out; at
 * most 256 of them on the wire at once.
 * Returns each order's final outcome.
 */
export async function retryUntilAccepted(
  gateway: string,
  sent: Sent,
  attempts = 30,
  delayMs = 1000,
): Promise<Map<string, Outcome>> {
  const final = new Map(sent.outcomes);
  await Promise.all(
    [...sent.outcomes]
      .filter(([, outcome]) => outcome === 503 || outcome === 'connection error')
      .map(async ([key]) => {
        const retryKey = sent.messageIds.get(key) ?? key;
        for (let attempt = 0; attempt < attempts; attempt++) {
          const { outcome } = await postOrder(gateway, retryKey, retries);
          final.set(key, outcome);
          if (outcome === 202) return;
          await sleep(delayMs);
        }
      }),
  );
  return final;
}

/**
 * Polls until every key has at least one row in billing_db (or `limitMs` passes), then returns each key's number of
 * rows and how long that took.
 */
export async function countsWhenDrained(
  countsOf: (keys: string[]) => Promise<number[]>,
  keys: string[],
  limitMs: number,
) {
  const started = Date.now();
  let counts: number[] = [];
  for (;;) {
    counts = await countsOf(keys).catch(() => counts);
    if (counts.length === keys.length && counts.every((n) => n >= 1)) break;
    if (Date.now() - started > limitMs) break;
    await sleep(500);
  }
  return { counts, drainSeconds: (Date.now() - started) / 1000 };
}

/** How many orders had each outcome. */
export const tally = (outcomes: Map<string, Outcome>, outcome: Outcome) =>
  [...outcomes.values()].filter((o) => o === outcome).length;

/** How many of these outcomes there are of each kind, e.g. { '503': 12, 'connection error': 2 }. */
export const outcomeCounts = (outcomes: Iterable<Outcome>): Record<string, number> => {
  const counts: Record<string, number> = {};
  for (const outcome of outcomes) counts[outcome] = (counts[outcome] ?? 0) + 1;
  return counts;
};

/** The outcomes that are neither a 202, nor one a client retries (a 503, a connection error). */
export const unexpected = (outcomes: Map<string, Outcome>) =>
  [...outcomes.values()].filter((o) => o !== 202 && o !== 503 && o !== 'connection error');
