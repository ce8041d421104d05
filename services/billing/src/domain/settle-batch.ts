import { isPermanentDataError } from '@crud-master/shared/database';
import type { Order, StoreOutcome } from '../data-access/orders-repository.js';
import { type DeadLetterCause, parseOrder, PoisonMessage } from './orders.js';

/** What the use case reads of a delivery. */
export interface Incoming {
  content: Buffer;
  messageId: string | undefined;
}

export interface SettleBatchPorts<D extends Incoming> {
  /** Stores the orders in one transaction; one whose key holds another order is recorded as rejected in it. */
  store: (items: readonly Parsed<D>[]) => Promise<StoreOutcome>;
  /**
   * Moves a message that can never be stored out of the way (dead-letter queue, or held aside); rejects if it could
   * not.
   */
  deadLetter: (delivery: D, cause: DeadLetterCause, reason: string) => Promise<void>;
  /** The delivery is settled: it may be acked. */
  settle: (delivery: D) => void;
  /** False once the delivery's channel closed: the broker delivers it again, so it leaves the batch. */
  isLive: (delivery: D) => boolean;
  /** After a failed attempt: waits its backoff; false when the consumer stops (the deliveries stay unacked). */
  retryAfter: (error: unknown, attempt: number) => Promise<boolean>;
}

export interface Parsed<D> {
  delivery: D;
  order: Order;
}

/**
 * Settles every delivery of a batch, each one way: stored, recorded as rejected (a reused key), or dead-lettered
 * (poison, or a row the database refuses). A passing failure (the database or the broker down) is retried with
 * backoff for as long as a delivery of the batch is live; a delivery of a closed channel leaves the batch, as the
 * broker delivers it again. Nothing here acks: the ack ledger decides that from what was settled.
 */
export async function settleBatch<D extends Incoming>(batch: readonly D[], ports: SettleBatchPorts<D>): Promise<void> {
  const parsed: Parsed<D>[] = [];
  for (const delivery of batch) {
    try {
      parsed.push({ delivery, order: parseOrder(delivery.content, delivery.messageId) });
    } catch (err) {
      if (!(err instanceof PoisonMessage)) throw err;
      await settleAside(delivery, 'poison', err.message, ports);
    }
  }
  await store(parsed, ports);
}

/** Runs `attempt` until it succeeds, retrying with backoff while `live()` and the consumer does not stop. */
async function retrying(
  live: () => boolean,
  attempt: () => Promise<void>,
  retryAfter: SettleBatchPorts<Incoming>['retryAfter'],
) {
  for (let n = 0; live(); n++) {
    try {
      await attempt();
      return;
    } catch (err) {
      if (!(await retryAfter(err, n))) return;
    }
  }
}

function settleAside<D extends Incoming>(
  delivery: D,
  cause: DeadLetterCause,
  reason: string,
  ports: SettleBatchPorts<D>,
) {
  return retrying(
    () => ports.isLive(delivery),
    async () => {
      await ports.deadLetter(delivery, cause, reason);
      ports.settle(delivery);
    },
    ports.retryAfter,
  );
}

async function store<D extends Incoming>(batch: readonly Parsed<D>[], ports: SettleBatchPorts<D>): Promise<void> {
  const live = () => batch.filter(({ delivery }) => ports.isLive(delivery));
  await retrying(
    () => live().length > 0,
    async () => {
      const items = live();
      try {
        await ports.store(items);
      } catch (err) {
        if (!isPermanentDataError(err)) throw err;
        // one row breaks a constraint: the others are stored one by one, and that one is dead-lettered
        if (items.length > 1) {
          for (const item of items) await store([item], ports);
          return;
        }
        const reason = `the database rejects the order: ${err instanceof Error ? err.message : String(err)}`;
        await settleAside(items[0]!.delivery, 'rejected-by-database', reason, ports);
        return;
      }
      for (const { delivery } of items) ports.settle(delivery);
    },
    ports.retryAfter,
  );
}
