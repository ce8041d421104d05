import { setTimeout as sleep } from 'node:timers/promises';
import { connectBroker, type Logger, PUBLISHED_AT_MS_HEADER, type QueueType, type RabbitmqConfig } from '@crud-master/shared';
import { isPermanentDataError } from '@crud-master/shared/database';
import type { AmqpConnectionManager, ChannelWrapper } from 'amqp-connection-manager';
import type { ConfirmChannel } from 'amqplib';
import type { Order, OrdersRepository } from '../data-access/orders-repository.js';
import { queueTopology } from '../data-access/queue-topology.js';
import { backoffMs, parseOrder, PoisonMessage } from '../domain/orders.js';
import type { ConsumerMetrics } from '../metrics.js';
import { deadLetters, type Delivery, messageIdOf } from './dead-letters.js';
import { queueMigration, type QueueTypeState } from './queue-migration.js';

interface ParsedDelivery extends Delivery {
  order: Order;
}

export interface ConsumerState extends QueueTypeState {
  consuming: boolean;
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

/**
 * Consumes billing_queue. Deliveries that arrive while a batch is being stored wait and form the next batch (up to
 * half the prefetch), which is inserted in one statement and acked only after its commit, with one ack per batch.
 * Messages that can never be stored are dead-lettered (dead-letters.ts). A database outage keeps the batch unacked
 * and retries it with backoff, so nothing is lost or dead-lettered.
 *
 * The consumer owns the topology and keeps consuming by itself: after a broker basic.cancel (billing_queue deleted)
 * it declares the topology again and consumes again on the same channel; after any other close of its channel
 * (consumer_timeout, a failed declare) it reconnects, and amqp-connection-manager runs the setup again. The library
 * alone would not: it re-creates a channel only after the connection dropped.
 *
 * It owns the queues' type too (RABBITMQ_QUEUE_TYPE): a billing_queue or dead-letter queue of another type is used
 * as it is, and replaced once it is empty and quiet (queue-migration.ts).
 */
export function startConsumer({ broker, queueType, prefetch, orders, metrics, logger }: ConsumerOptions): OrderConsumer {
  const waiting: Delivery[] = [];
  let draining: Promise<void> | undefined;
  const stopped = new AbortController();
  const closedChannels = new WeakSet<ConfirmChannel>();
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
  const migration = queueMigration({
    queues,
    queueType,
    state,
    quietFor: (quietMs) => !stopped.signal.aborted && state.consuming && Date.now() - lastDeliveryAt >= quietMs && waiting.length === 0 && !draining,
    logger,
  });
  const { watch: watchReturns, deadLetter } = deadLetters({
    exchange: topology.deadLetterExchange,
    ack: (delivery) => ackUpTo(delivery, false),
    closed: (amqpChannel) => closedChannels.has(amqpChannel),
    signal: stopped.signal,
    metrics,
    logger,
  });

  /** Declares the topology (or finds queues of another type) and consumes billing_queue on this channel. */
  async function subscribe(channel: ConfirmChannel): Promise<void> {
    await channel.assertExchange(topology.deadLetterExchange, 'fanout', { durable: true });
    // a queue of another type is kept for now: the migration replaces it once that is safe
    const keptDeadLetterQueue = await queues.declare(topology.deadLetterQueue);
    // a bind checks no queue arguments: a kept dead-letter queue stays bound too
    await channel.bindQueue(topology.deadLetterQueue, topology.deadLetterExchange, '');
    const keptQueue = await queues.declare(broker.queue);
    migration.declared(keptDeadLetterQueue, keptQueue);
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
    migration.schedule();
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
      watchReturns(amqpChannel);
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
      await migration.stop();
      state.consuming = false;
      const { channel: amqpChannel, consumerTag } = current ?? {};
      if (amqpChannel && consumerTag) await amqpChannel.cancel(consumerTag).catch(() => undefined);
      await draining;
      await channel.close();
      await connection.close();
    },
  };
}
