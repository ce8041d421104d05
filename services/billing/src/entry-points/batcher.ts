import type { Logger } from '@crud-master/shared';

/**
 * Deliveries that arrive while a batch is being stored wait, and form the next batch, of at most `size`. Batches are
 * stored one at a time, in delivery order.
 */
export function batcher<D>(size: number, store: (batch: D[]) => Promise<void>, logger: Logger) {
  let waiting: D[] = [];
  let draining: Promise<void> | undefined;
  let stopped = false;

  async function drain(): Promise<void> {
    while (waiting.length > 0 && !stopped) {
      // a batch that fails in an unforeseen way stays unacked: its channel's close gives it back to the queue
      await store(waiting.splice(0, size)).catch((err: unknown) => logger.error({ err }, 'a batch failed'));
    }
  }

  return {
    push(delivery: D): void {
      waiting.push(delivery);
      draining ??= drain().finally(() => {
        draining = undefined;
      });
    },
    /** Drops the waiting deliveries that `gone` picks (a closed channel's: the broker delivers them again). */
    drop(gone: (delivery: D) => boolean): void {
      waiting = waiting.filter((delivery) => !gone(delivery));
    },
    /** No delivery waits, and no batch is being stored. */
    isIdle: () => waiting.length === 0 && draining === undefined,
    /** Stores no further batch; resolves once the one under way ended. */
    stop: async () => {
      stopped = true;
      await draining;
    },
  };
}
