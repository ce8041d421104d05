import { setTimeout as sleep } from 'node:timers/promises';
import { connectBroker, type Logger, PUBLISHED_AT_MS_HEADER, type QueueType, type RabbitmqConfig } from '@crud-master/shared';
import { isPermanentDataError } from '@crud-master/shared/database';
import type { AmqpConnectionManager, ChannelWrapper } from 'amqp-connection-manager';
import type { ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { Order, OrdersRepository } from '../data-access/orders-repository.js';
import { type OtherQueue, queueTopology } from '../data-access/queue-topology.js';
import { backoffMs, parseOrder, PoisonMessage } from '../domain/orders.js';
import type { ConsumerMetrics, DeadLetterCause } from '../metrics.js';

/** A delivery and the channel it came on: only that channel can ack it. */
interface Delivery {
  channel: ConfirmChannel;
  message: ConsumeMessage;
}

interface ParsedDelivery extends Delivery {
  order: Order;
}

/** amqplib types message properties as any; the id is used only when it is a string. */
const messageIdOf = (message: ConsumeMessage): string | undefined => {
  const id: unknown = message.properties.messageId;
  return typeof id === 'string' ? id : undefined;
};

export interface ConsumerState {
  consuming: boolean;
  /**
   * The billing_queue it consumes: its type (null when the broker did not name it), and whether it is one of
   * another type that it drains, to replace it with one of the configured type once it is empty.
   */
  queue: { type: QueueType | null; migrating: boolean };
  /** Whether the dead-letter queue is one of another type, kept until it is empty, then replaced. */
  deadLetterQueueMigrating: boolean;
  /** Messages waiting in the dead-letter queue (passive declare), or null when the broker cannot tell. */
  deadLetterDepth(): Promise<number | null>;
}

export interface OrderConsumer {
  connection: AmqpConnectionManager;
  state: ConsumerState;
  stop(): Promise<void>;
}

interface ConsumerOptions {
  broker: RabbitmqConfig;
  queueType: QueueType;
  prefetch: number;
  orders: OrdersRepository;
  metrics: ConsumerMetrics;
  logger: Logger;
}

export const DEAD_LETTER_REASON_HEADER = 'x-dead-letter-reason';

/** How often (with jitter) a consumer that drains a queue of another type looks whether it can replace it. */
const MIGRATION_CHECK_MS = 1_000;
/**
 * How long billing_queue must have delivered nothing to this consumer before it is replaced. RabbitMQ confirms a
 * message it routed to a queue that is deleted before the message reaches it: a publish in that instant would be
 * answered 202 and lost. After this lull no publish is in flight; under steady traffic the queue waits (README).
 */
const MIGRATION_QUIET_MS = 3_000;

/**
 * Consumes billing_queue. Deliveries that arrive while a batch is being stored wait and form the next batch (up to
 * half the prefetch), which is inserted in one statement and acked only after its commit, with one ack per batch.
 * Messages that can never be stored are dead-lettered: a copy goes to the dead-letter exchange with its reason, and
 * the original is acked only once the broker confirmed the copy. A database outage keeps the batch unacked and
 * retries it with backoff, so nothing is lost or dead-lettered.
 *
 * The consumer owns the topology and keeps consuming by itself: after a broker basic.cancel (billing_queue deleted)
 * it declares the topology again and consumes again on the same channel; after any other close of its channel
 * (consumer_timeout, a failed declare) it reconnects, and amqp-connection-manager runs the setup again. The library
 * alone would not: it re-creates a channel only after the connection dropped.
 *
 * Dead letters are published mandatory: one that finds no queue (the dead-letter queue deleted, or being replaced)
 * comes back, the original stays unacked and the copy is retried, instead of being confirmed into the void.
 *
 * It owns the queues' type too (RABBITMQ_QUEUE_TYPE), which a queue cannot change. A billing_queue of another type
 * (or with the arguments of an earlier release) is consumed as it is, as a consume needs no declare; once it is
 * empty and quiet, it is replaced by one of the configured type (queue-topology.ts), and the broker's basic.cancel brings the
 * consumer to the new one. Consumers on several billing VMs may race: the one that replaces the queue wins, the others
 * find the new queue, or a queue that is not empty yet, and go on consuming. A dead-letter queue of another type
 * keeps its name and its dead letters, which still reach it through the exchange, until it is empty (an operator
 * handles dead letters); moving them would need a third queue and read access to them, which the consumer has not.
 */
export function startConsumer({ broker, queueType, prefetch, orders, metrics, logger }: ConsumerOptions): OrderConsumer {
  const waiting: Delivery[] = [];
  let draining: Promise<void> | undefined;
  const stopped = new AbortController();
  const closedChannels = new WeakSet<ConfirmChannel>();
  // how many mandatory dead letters each channel got back
  const returnedOn = new WeakMap<ConfirmChannel, number>();
  let current: { channel: ConfirmChannel; consumerTag?: string } | undefined;
  let recoveries = 0;
  let lastDeliveryAt = 0;
  const recovering = new WeakSet<ConfirmChannel>();
  const connection = connectBroker(broker, logger);
  const queues = queueTopology(connection, broker.queue, queueType);
  const topology = queues.names;
  const state: ConsumerState = {
    consuming: false,
    queue: { type: queueType, migrating: false },
    deadLetterQueueMigrating: false,
    deadLetterDepth: async () => (await queues.counts(topology.deadLetterQueue))?.messageCount ?? null,
  };

  function noteQueue(kept: OtherQueue | undefined): void {
    if (kept && !state.queue.migrating) {
      logger.warn(
        { queue: broker.queue, existingType: kept.type, queueType },
        `${broker.queue} exists with another type or other arguments: it is consumed as it is, and replaced by a ${queueType} queue once it is empty and quiet`,
      );
    }
    if (!kept && state.queue.migrating) logger.info({ queue: broker.queue, queueType }, `${broker.queue} is now a ${queueType} queue`);
    state.queue = kept ? { type: kept.type, migrating: true } : { type: queueType, migrating: false };
  }

  function noteDeadLetterQueue(kept: OtherQueue | undefined): void {
    const queue = topology.deadLetterQueue;
    if (kept && !state.deadLetterQueueMigrating) {
      logger.warn(
        { queue, existingType: kept.type, queueType },
        `${queue} exists with another type or other arguments: it is kept as it is, and replaced by a ${queueType} queue once it is empty`,
      );
    }
    if (!kept && state.deadLetterQueueMigrating) logger.info({ queue, queueType }, `${queue} is now a ${queueType} queue`);
    state.deadLetterQueueMigrating = kept !== undefined;
  }

  /** Declares the topology (or finds queues of another type) and consumes billing_queue on this channel. */
  async function subscribe(channel: ConfirmChannel): Promise<void> {
    await channel.assertExchange(topology.deadLetterExchange, 'fanout', { durable: true });
    // a queue of another type is kept for now: migrationStep replaces it once that is safe
    const keptDeadLetterQueue = await queues.declare(topology.deadLetterQueue);
    // a bind checks no queue arguments: a kept dead-letter queue stays bound too
    await channel.bindQueue(topology.deadLetterQueue, topology.deadLetterExchange, '');
    const keptQueue = await queues.declare(broker.queue);
    noteDeadLetterQueue(keptDeadLetterQueue);
    noteQueue(keptQueue);
    const { consumerTag } = await channel.consume(broker.queue, (message) => {
      if (message !== null) return receive({ channel, message });
      // basic.cancel from the broker: the queue was deleted (replaced, or its node went away)
      state.consuming = false;
      logger[state.queue.migrating ? 'info' : 'warn']({ queue: broker.queue }, 'the broker cancelled the consumer; declaring the queue and consuming again');
      subscribe(channel).catch((err: unknown) => recover(channel, err));
    });
    current = { channel, consumerTag };
    state.consuming = true;
    lastDeliveryAt = Date.now();
    recoveries = 0;
    logger.info({ queue: broker.queue, consumerTag, ...state.queue }, 'consuming');
    scheduleMigration();
  }

  let migrationTimer: NodeJS.Timeout | undefined;
  let migrating: Promise<void> | undefined;

  function scheduleMigration(): void {
    if (migrationTimer || migrating || stopped.signal.aborted || !(state.queue.migrating || state.deadLetterQueueMigrating)) return;
    // jitter: consumers on several VMs do not all try at the same instant
    migrationTimer = setTimeout(
      () => {
        migrationTimer = undefined;
        migrating = migrationStep()
          .catch((err: unknown) => logger.warn({ err }, 'could not replace a queue of another type; trying again'))
          .finally(() => {
            migrating = undefined;
            scheduleMigration();
          });
      },
      MIGRATION_CHECK_MS / 2 + Math.random() * MIGRATION_CHECK_MS,
    ).unref();
  }

  /**
   * Replaces a queue of another type once it is empty, after a quiet spell with no delivery held: no order is in
   * flight to billing_queue then, nor a dead letter of this consumer to the dead-letter queue.
   */
  async function migrationStep(): Promise<void> {
    if (stopped.signal.aborted || !state.consuming) return;
    if (Date.now() - lastDeliveryAt < MIGRATION_QUIET_MS || waiting.length > 0 || draining) return;
    if (state.deadLetterQueueMigrating && (await queues.counts(topology.deadLetterQueue))?.messageCount === 0) {
      noteDeadLetterQueue(await queues.declareOrReplace(topology.deadLetterQueue));
    }
    if (state.queue.migrating && (await queues.counts(broker.queue))?.messageCount === 0) {
      // once replaced, the broker cancels this consumer, which subscribes to the new queue
      await queues.declareOrReplace(broker.queue);
    }
  }

  /** After a failure the channel cannot heal from: reconnect (with backoff), unless a newer channel took over. */
  function recover(channel: ConfirmChannel, err: unknown): void {
    state.consuming = false;
    if (stopped.signal.aborted || recovering.has(channel)) return;
    recovering.add(channel);
    const waitMs = backoffMs(recoveries++);
    logger.warn({ err, waitMs }, 'the consumer channel is unusable; reconnecting');
    setTimeout(() => {
      if (!stopped.signal.aborted && current?.channel === channel && connection.isConnected()) connection.reconnect();
    }, waitMs).unref();
  }

  const channel: ChannelWrapper = connection.createChannel({
    confirm: true,
    json: false,
    setup: async (amqpChannel: ConfirmChannel) => {
      current = { channel: amqpChannel };
      // listened to, so that amqplib does not rethrow a channel error into the connection; close handles it
      amqpChannel.on('error', (err: Error) => logger.warn({ err }, 'the broker closed the consumer channel'));
      amqpChannel.on('close', () => {
        closedChannels.add(amqpChannel);
        recover(amqpChannel, undefined);
      });
      // a mandatory dead letter that no queue took comes back before its confirm
      amqpChannel.on('return', () => returnedOn.set(amqpChannel, (returnedOn.get(amqpChannel) ?? 0) + 1));
      await amqpChannel.prefetch(prefetch);
      await subscribe(amqpChannel).catch((err: unknown) => {
        // a declare refused on a channel of its own leaves this one open: reconnect all the same
        recover(amqpChannel, err);
        throw err;
      });
    },
  });
  // a setup that failed is retried by recover(); this only keeps the error from crashing
  channel.on('error', (err) => logger.debug({ err }, 'consumer channel setup failed'));

  function receive(delivery: Delivery): void {
    lastDeliveryAt = Date.now();
    if (delivery.message.fields.redelivered) metrics.redeliveries.inc();
    waiting.push(delivery);
    draining ??= drain().finally(() => {
      draining = undefined;
    });
  }

  // A batch takes at most half the prefetch, so that the broker delivers the next batch while this one is stored:
  // with whole-prefetch batches the broker and the database would take turns waiting for each other.
  const batchSize = Math.max(1, Math.ceil(prefetch / 2));

  async function drain(): Promise<void> {
    while (waiting.length > 0 && !stopped.signal.aborted) {
      await storeBatch(waiting.splice(0, batchSize));
    }
  }

  /** Acks this delivery and every earlier one of its channel (multiple=true), in one frame. */
  function ackUpTo({ channel: amqpChannel, message }: Delivery, multiple = true): void {
    try {
      amqpChannel.ack(message, multiple);
    } catch (err) {
      // the channel closed: the broker redelivers the message, and the unique key makes that a no-op
      logger.warn({ err, messageId: messageIdOf(message) }, 'could not ack a delivery');
    }
  }

  /**
   * Publishes a confirmed, persistent copy to the dead-letter exchange, with the original's properties except those
   * the broker would check or act on for this publisher (userId, expiration, CC/BCC routing headers).
   */
  const publishDeadLetter = ({ channel: amqpChannel, message }: Delivery, reason: string) =>
    new Promise<void>((resolve, reject) => {
      const original: Options.Publish = message.properties;
      const { contentType, contentEncoding, correlationId, messageId, timestamp, type, appId } = original;
      const headers = Object.fromEntries(Object.entries(message.properties.headers ?? {}).filter(([name]) => name !== 'CC' && name !== 'BCC'));
      const options: Options.Publish = { contentType, contentEncoding, correlationId, messageId, timestamp, type, appId };
      // one dead letter at a time per channel: a return counted since this publish is this one's
      const returnedBefore = returnedOn.get(amqpChannel) ?? 0;
      amqpChannel.publish(
        topology.deadLetterExchange,
        '',
        message.content,
        { ...options, headers: { ...headers, [DEAD_LETTER_REASON_HEADER]: reason }, persistent: true, mandatory: true },
        (err) => {
          if (err) reject(err as Error);
          else if ((returnedOn.get(amqpChannel) ?? 0) > returnedBefore) reject(new Error('no queue took the dead letter (the dead-letter queue is missing)'));
          else resolve();
        },
      );
    });

  /**
   * Dead-letters a delivery: the copy first, the ack of the original after the broker confirmed it. A refused copy
   * (the dead-letter queue is full) leaves the original unacked and is retried with backoff. Returns false when the
   * delivery could not be settled (stopping, or its channel closed: it will be redelivered).
   */
  async function deadLetter(delivery: Delivery, cause: DeadLetterCause, reason: string): Promise<boolean> {
    const messageId = messageIdOf(delivery.message);
    for (let attempt = 0; !stopped.signal.aborted && !closedChannels.has(delivery.channel); attempt++) {
      try {
        await publishDeadLetter(delivery, reason);
        ackUpTo(delivery, false);
        metrics.deadLettered.inc({ cause });
        logger.error({ messageId, cause, reason }, 'dead-lettered a message');
        return true;
      } catch (err) {
        const waitMs = backoffMs(attempt);
        logger.warn({ err, messageId, attempt, waitMs }, 'the dead-letter exchange refused a message; retrying');
        await sleep(waitMs, undefined, { signal: stopped.signal }).catch(() => undefined);
      }
    }
    return false;
  }

  async function storeBatch(batch: Delivery[]): Promise<void> {
    metrics.batchSize.observe(batch.length);
    const parsed: ParsedDelivery[] = [];
    for (const delivery of batch) {
      try {
        parsed.push({ ...delivery, order: parseOrder(delivery.message.content, messageIdOf(delivery.message)) });
      } catch (err) {
        if (!(err instanceof PoisonMessage)) throw err;
        // an unsettled delivery must not be covered by a later ack-up-to: stop here, the rest is redelivered
        if (!(await deadLetter(delivery, 'poison', err.message))) return;
      }
    }
    if (parsed.length > 0) await insertWithRetry(parsed);
  }

  /** Stores a batch and settles it; false when a delivery stayed unsettled (stopping, or its channel closed). */
  async function insertWithRetry(batch: ParsedDelivery[]): Promise<boolean> {
    for (let attempt = 0; !stopped.signal.aborted; attempt++) {
      try {
        const { added, conflicting } = await orders.insertMany(batch.map((delivery) => delivery.order));
        for (const position of conflicting) {
          const reason = 'the Idempotency-Key was already used by this user for a different order';
          if (!(await deadLetter(batch[position]!, 'key-reused-with-another-order', reason))) return false;
        }
        const stored = batch.filter((_, position) => !conflicting.includes(position));
        observeCommitted(stored, added);
        ackBatch(stored);
        logger.debug({ received: batch.length, added, conflicting: conflicting.length }, 'stored a batch of orders');
        return true;
      } catch (err) {
        if (isPermanentDataError(err)) return isolateBadRows(batch, err);
        const waitMs = backoffMs(attempt);
        logger.warn({ err, attempt, waitMs, batch: batch.length }, 'could not store orders; retrying');
        await sleep(waitMs, undefined, { signal: stopped.signal }).catch(() => undefined);
      }
    }
    // stopping: the batch stays unacked, and closing the channel returns it to the queue
    return false;
  }

  /** Counts the rows a commit inserted, and how long each stored order took from the gateway's publish. */
  function observeCommitted(stored: ParsedDelivery[], inserted: number): void {
    metrics.inserted.inc(inserted);
    const committedAt = Date.now();
    for (const { message } of stored) {
      const publishedAt: unknown = message.properties.headers?.[PUBLISHED_AT_MS_HEADER];
      if (typeof publishedAt === 'number') metrics.publishToCommit.observe(Math.max(0, committedAt - publishedAt) / 1000);
    }
  }

  /**
   * Acks a stored batch with one ack per channel: multiple=true on its last delivery. Batches are stored one at a
   * time in delivery order, so every earlier delivery of that channel is already settled (stored and acked, or
   * dead-lettered) or in this batch; the deliveries still waiting came later and are not covered.
   */
  function ackBatch(batch: ParsedDelivery[]): void {
    const lastOfChannel = new Map<ConfirmChannel, ParsedDelivery>();
    for (const delivery of batch) lastOfChannel.set(delivery.channel, delivery);
    for (const delivery of lastOfChannel.values()) ackUpTo(delivery);
  }

  /** One row of the batch breaks a constraint: store the others one by one and dead-letter the bad one. */
  async function isolateBadRows(batch: ParsedDelivery[], err: unknown): Promise<boolean> {
    if (batch.length === 1) {
      const reason = `the database rejects the order: ${err instanceof Error ? err.message : String(err)}`;
      return deadLetter(batch[0]!, 'rejected-by-database', reason);
    }
    for (const delivery of batch) if (!(await insertWithRetry([delivery]))) return false;
    return true;
  }

  return {
    connection,
    state,
    stop: async () => {
      stopped.abort();
      clearTimeout(migrationTimer);
      await migrating;
      state.consuming = false;
      const { channel: amqpChannel, consumerTag } = current ?? {};
      if (amqpChannel && consumerTag) await amqpChannel.cancel(consumerTag).catch(() => undefined);
      await draining;
      await channel.close();
      await connection.close();
    },
  };
}
