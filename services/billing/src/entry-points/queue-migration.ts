import type { Logger, QueueType } from '@crud-master/shared';
import type { OtherQueue, QueueTopology } from '../data-access/queue-topology.js';

/** How often (with jitter) a consumer that drains a queue of another type looks whether it can replace it. */
const MIGRATION_CHECK_MS = 1_000;
/**
 * How long billing_queue must have delivered nothing to this consumer before it is replaced. RabbitMQ confirms a
 * message it routed to a queue that is deleted before the message reaches it: a publish in that instant would be
 * answered 202 and lost. After this lull no publish is in flight; under steady traffic the queue waits
 * (docs/messaging.md). The lull says so for the whole cluster only while this consumer is the queue's only one: with
 * several, each sees a share of the deliveries, so the queue waits until the others stopped (WAIT_FOR_OTHER_CONSUMERS).
 */
const MIGRATION_QUIET_MS = 3_000;

const WAIT_FOR_OTHER_CONSUMERS =
  'the queue has other consumers, whose deliveries this one cannot see: it is replaced once this is the only one ' +
  '(stop billing-consumer on the other billing VMs until it is replaced)';

/** The queues' type as the consumer found them (shown by /readyz). */
export interface QueueTypeState {
  /**
   * The billing_queue it consumes: its type (null when the broker did not name it), and whether it is one of
   * another type that it drains, to replace it with one of the configured type once it is empty.
   */
  queue: { type: QueueType | null; migrating: boolean };
  /** Whether the dead-letter queue is one of another type, kept until it is empty, then replaced. */
  deadLetterQueueMigrating: boolean;
}

interface MigrationOptions {
  queues: QueueTopology;
  queueType: QueueType;
  state: QueueTypeState;
  /** Whether the consumer consumes and has held no delivery for `quietMs`: no order or dead letter of its in flight. */
  quietFor: (quietMs: number) => boolean;
  logger: Logger;
}

/**
 * The consumer owns the queues' type (RABBITMQ_QUEUE_TYPE), which a queue cannot change. A billing_queue of another
 * type (or with the arguments of an earlier release) is consumed as it is, as a consume needs no declare; once it is
 * empty and quiet, it is replaced by one of the configured type (queue-topology.ts), and the broker's basic.cancel
 * brings the consumer to the new one. Consumers on several billing VMs may race: the one that replaces the queue wins,
 * the others find the new queue, or a queue that is not empty yet, and go on consuming. A dead-letter queue of another
 * type keeps its name and its dead letters, which still reach it through the exchange, until it is empty (an operator
 * handles dead letters); moving them would need a third queue and read access to them, which the consumer has not.
 */
export function queueMigration({ queues, queueType, state, quietFor, logger }: MigrationOptions) {
  const { queue, deadLetterQueue } = queues.names;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let waitingForOthers = false;

  function noteQueue(kept: OtherQueue | undefined): void {
    if (kept && !state.queue.migrating) {
      logger.warn(
        { queue, existingType: kept.type, queueType },
        `${queue} exists with another type or other arguments: it is consumed as it is, and replaced by a ` +
          `${queueType} queue once it is empty and quiet`,
      );
    }
    if (!kept && state.queue.migrating) logger.info({ queue, queueType }, `${queue} is now a ${queueType} queue`);
    state.queue = kept ? { type: kept.type, migrating: true } : { type: queueType, migrating: false };
  }

  function noteDeadLetterQueue(kept: OtherQueue | undefined): void {
    if (kept && !state.deadLetterQueueMigrating) {
      logger.warn(
        { queue: deadLetterQueue, existingType: kept.type, queueType },
        `${deadLetterQueue} exists with another type or other arguments: it is kept as it is, and replaced by a ` +
          `${queueType} queue once it is empty`,
      );
    }
    if (!kept && state.deadLetterQueueMigrating)
      logger.info({ queue: deadLetterQueue, queueType }, `${deadLetterQueue} is now a ${queueType} queue`);
    state.deadLetterQueueMigrating = kept !== undefined;
  }

  function schedule(): void {
    if (timer || running || stopped || !(state.queue.migrating || state.deadLetterQueueMigrating)) return;
    // jitter: consumers on several VMs do not all try at the same instant
    timer = setTimeout(
      () => {
        timer = undefined;
        running = step()
          .catch((err: unknown) => logger.warn({ err }, 'could not replace a queue of another type; trying again'))
          .finally(() => {
            running = undefined;
            schedule();
          });
      },
      MIGRATION_CHECK_MS / 2 + Math.random() * MIGRATION_CHECK_MS,
    ).unref();
  }

  /**
   * Replaces a queue of another type once it is empty, after a quiet spell with no delivery held: no order is in
   * flight to billing_queue then, nor a dead letter of this consumer to the dead-letter queue.
   */
  async function step(): Promise<void> {
    if (stopped || !quietFor(MIGRATION_QUIET_MS)) return;
    if (state.deadLetterQueueMigrating && (await queues.counts(deadLetterQueue))?.messageCount === 0) {
      noteDeadLetterQueue(await queues.declareOrReplace(deadLetterQueue));
    }
    if (!state.queue.migrating) return;
    const counts = await queues.counts(queue);
    if (counts === null || counts.messageCount > 0) return;
    if (counts.consumerCount > 1) {
      if (!waitingForOthers) logger.warn({ queue, consumers: counts.consumerCount }, WAIT_FOR_OTHER_CONSUMERS);
      waitingForOthers = true;
      return;
    }
    waitingForOthers = false;
    // once replaced, the broker cancels the consumer, which subscribes to the new queue
    await queues.declareOrReplace(queue);
  }

  return {
    /** Notes what a subscribe's declares found: each queue kept with another type, or undefined. */
    declared(keptDeadLetterQueue: OtherQueue | undefined, keptQueue: OtherQueue | undefined): void {
      noteDeadLetterQueue(keptDeadLetterQueue);
      noteQueue(keptQueue);
    },
    /** Looks, from time to time, whether a queue of another type can be replaced yet (while there is one). */
    schedule,
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
