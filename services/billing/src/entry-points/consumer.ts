import { setTimeout as sleep } from 'node:timers/promises';
import {
  backoffMs,
  type Logger,
  PUBLISHED_AT_MS_HEADER,
  type QueueType,
  type RabbitmqConfig,
} from '@crud-master/shared';
import { isDatabaseUnavailable } from '@crud-master/shared/database';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { HeldDeadLetters } from '../data-access/held-dead-letters.js';
import type { OrdersRepository, StoreOutcome } from '../data-access/orders-repository.js';
import { AckLedger } from '../domain/ack-ledger.js';
import { settleBatch } from '../domain/settle-batch.js';
import type { ConsumerMetrics } from '../metrics.js';
import { batcher } from './batcher.js';
import { consumerChannel, type ConsumerChannelState, type Delivery } from './consumer-channel.js';
import { deadLetters, messageIdOf } from './dead-letters.js';

/** A delivery as the settle-batch use case reads it. */
interface Received extends Delivery {
  content: Buffer;
  messageId: string | undefined;
}

/** Why the last attempt to store a batch failed, while it keeps failing. */
export interface StoreFailure {
  since: string;
  error: string;
  /** true when retrying cannot cure it (e.g. the schema does not match this release): an operator must act */
  permanent: boolean;
}

export interface ConsumerState extends ConsumerChannelState {
  /** Set while storing keeps failing: the orders wait in the queue, unacked. */
  storeFailure?: StoreFailure;
}

/**
 * The dead-letter queue's depth and the dead letters held in billing_db; null where the broker or database cannot tell.
 */
export interface DeadLettering {
  depth: number | null;
  held: number | null;
  oldestHeldSeconds: number | null;
}

export interface OrderConsumer {
  state: ConsumerState;
  isConsuming: () => boolean;
  /** The dead-letter queue's depth (null when the broker cannot tell), and the dead letters held in billing_db. */
  deadLettering: () => Promise<DeadLettering>;
  stop: () => Promise<void>;
}

interface ConsumerOptions {
  broker: RabbitmqConfig;
  queueType: QueueType;
  prefetch: number;
  orders: OrdersRepository;
  held: HeldDeadLetters;
  metrics: ConsumerMetrics;
  logger: Logger;
}

/**
 * Consumes billing_queue: the channel supervisor (consumer-channel.ts) hands each delivery to the batcher, the
 * settle-batch use case settles each batch (stored in one transaction, a reused key recorded as rejected, poison
 * dead-lettered), and the ack ledger acks what was settled, with one multiple ack per channel where it may. A
 * database outage keeps the batch unacked and retries it with backoff, so nothing is lost or dead-lettered.
 */
export function startConsumer({
  broker,
  queueType,
  prefetch,
  orders,
  held,
  metrics,
  logger,
}: ConsumerOptions): OrderConsumer {
  const stopped = new AbortController();
  const ledger = new AckLedger<ConfirmChannel>();
  let lastDeliveryAt = Date.now();
  // A batch takes at most half the prefetch, so that the broker delivers the next batch while this one is stored:
  // with whole-prefetch batches the broker and the database would take turns waiting for each other.
  const batches = batcher<Received>(Math.max(1, Math.ceil(prefetch / 2)), storeBatch, logger);
  const supervisor = consumerChannel({
    broker,
    queueType,
    prefetch,
    onDelivery: ({ channel, message }) => {
      lastDeliveryAt = Date.now();
      if (message.fields.redelivered) metrics.redeliveries.inc();
      ledger.received(channel, message.fields.deliveryTag);
      batches.push({ channel, message, content: message.content, messageId: messageIdOf(message) });
    },
    onClose: (channel) => {
      ledger.close(channel);
      batches.drop((delivery) => delivery.channel === channel);
    },
    quietFor: (quietMs) => Date.now() - lastDeliveryAt >= quietMs && batches.isIdle(),
    logger,
  });
  const dead = deadLetters({ broker, exchange: supervisor.deadLetterExchange, held, metrics, logger });
  const state: ConsumerState = supervisor.state;

  async function storeBatch(batch: Received[]): Promise<void> {
    metrics.batchSize.observe(batch.length);
    await settleBatch(batch, {
      store: async (items) => {
        const outcome = await orders.store(items.map(({ order }) => order));
        if (state.storeFailure) logger.info({ failingSince: state.storeFailure.since }, 'storing orders works again');
        delete state.storeFailure;
        observeStored(
          items.map(({ delivery }) => delivery),
          outcome,
        );
        return outcome;
      },
      deadLetter: (delivery, cause, reason) => dead.deadLetter(delivery.message, cause, reason),
      settle: ({ channel, message }) => ledger.settle(channel, message.fields.deliveryTag),
      isLive: ({ channel }) => !ledger.isClosed(channel),
      retryAfter: async (err, attempt) => {
        noteFailure(err);
        const waitMs = backoffMs(attempt);
        logger[state.storeFailure?.permanent ? 'error' : 'warn'](
          { err, attempt, waitMs, batch: batch.length },
          'could not settle a batch; retrying',
        );
        await sleep(waitMs, undefined, { signal: stopped.signal }).catch(() => undefined);
        return !stopped.signal.aborted;
      },
    });
    ackSettled();
  }

  function noteFailure(err: unknown): void {
    const permanent = !isDatabaseUnavailable(err);
    const error = err instanceof Error ? err.message : String(err);
    state.storeFailure = { since: state.storeFailure?.since ?? new Date().toISOString(), error, permanent };
    metrics.storeFailures.inc({ kind: permanent ? 'permanent' : 'passing' });
  }

  /** Counts what a commit stored and rejected, and how long each order took from the gateway's publish. */
  function observeStored(committed: Received[], { added, rejected }: StoreOutcome): void {
    metrics.inserted.inc(added);
    metrics.rejected.inc(rejected.length);
    const committedAt = Date.now();
    for (const { message } of committed) {
      const publishedAt: unknown = message.properties.headers?.[PUBLISHED_AT_MS_HEADER];
      if (typeof publishedAt === 'number')
        metrics.publishToCommit.observe(Math.max(0, committedAt - publishedAt) / 1000);
    }
  }

  function ackSettled(): void {
    for (const { channel, tag, multiple } of ledger.takeAcks()) {
      try {
        // amqplib reads only the delivery tag of the message it is given
        channel.ack({ fields: { deliveryTag: tag } } as ConsumeMessage, multiple);
      } catch (err) {
        // the channel closed: the broker redelivers, and the unique key makes that a no-op
        logger.warn({ err, tag }, 'could not ack a delivery');
      }
    }
  }

  return {
    state,
    isConsuming: supervisor.isConsuming,
    // each figure on its own: a database outage must not hide the queue's depth, nor a broker outage the held ones
    deadLettering: async () => {
      const [queue, figures] = await Promise.all([supervisor.deadLetterQueue(), dead.figures().catch(() => undefined)]);
      return {
        depth: queue?.messageCount ?? null,
        held: figures?.held ?? null,
        oldestHeldSeconds: figures?.oldestSeconds ?? null,
      };
    },
    stop: async () => {
      stopped.abort();
      await supervisor.cancel();
      await batches.stop();
      await supervisor.close();
      await dead.close();
    },
  };
}
