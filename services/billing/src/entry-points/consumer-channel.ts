import {
  backoffMs,
  BROKER_CLOSE_TIMEOUT_MS,
  closeBroker,
  connectBroker,
  type Logger,
  type QueueType,
  type RabbitmqConfig,
  withTimeout,
} from '@crud-master/shared';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { queueTopology } from '../data-access/queue-topology.js';
import { queueMigration, type QueueTypeState } from './queue-migration.js';

/** How long a subscribe (declares, bind, basic.consume) may take before the channel is given up and reconnected. */
const SUBSCRIBE_TIMEOUT_MS = 10_000;

/** A delivery and the channel it came on: only that channel can ack it. */
export interface Delivery {
  channel: ConfirmChannel;
  message: ConsumeMessage;
}

export interface ConsumerChannelState extends QueueTypeState {
  consuming: boolean;
}

interface ConsumerChannelOptions {
  broker: RabbitmqConfig;
  queueType: QueueType;
  prefetch: number;
  /** Each delivery, in order. */
  onDelivery: (delivery: Delivery) => void;
  /** A channel closed: its unacked deliveries go back to the queue, and can no longer be acked on it. */
  onClose: (channel: ConfirmChannel) => void;
  /** Whether no delivery is held and none came for `quietMs` (for the queue-type migration). */
  quietFor: (quietMs: number) => boolean;
  logger: Logger;
}

/**
 * The channel supervisor: consumes billing_queue, and keeps consuming by itself. It owns the topology: after a broker
 * basic.cancel (billing_queue deleted) it declares the topology again and consumes again on the same channel; after
 * any other close of its channel (consumer_timeout, a failed or stuck declare) it reconnects, and
 * amqp-connection-manager runs the setup again. The library alone would not: it re-creates a channel only after the
 * connection dropped. It owns the queues' type too (RABBITMQ_QUEUE_TYPE): a queue of another type is used as it is,
 * and replaced once it is empty and quiet (queue-migration.ts). This connection never publishes.
 */
export function consumerChannel({
  broker,
  queueType,
  prefetch,
  onDelivery,
  onClose,
  quietFor,
  logger,
}: ConsumerChannelOptions) {
  let stopped = false;
  let current: { channel: ConfirmChannel; consumerTag?: string } | undefined;
  let recoveries = 0;
  const recovering = new WeakSet<ConfirmChannel>();
  const connection = connectBroker(broker, logger, 'billing-consumer');
  const queues = queueTopology(connection, broker.queue, queueType);
  const topology = queues.names;
  const state: ConsumerChannelState = {
    consuming: false,
    queue: { type: queueType, migrating: false },
    deadLetterQueueMigrating: false,
  };
  const migration = queueMigration({
    queues,
    queueType,
    state,
    quietFor: (quietMs) => !stopped && state.consuming && quietFor(quietMs),
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
      if (message !== null) return onDelivery({ channel, message });
      // basic.cancel from the broker: the queue was deleted (replaced, or its node went away)
      state.consuming = false;
      const level = state.queue.migrating ? 'info' : 'warn';
      logger[level](
        { queue: broker.queue },
        'the broker cancelled the consumer; declaring the queue and consuming again',
      );
      subscribeWithin(channel).catch((err: unknown) => recover(channel, err));
    });
    current = { channel, consumerTag };
    state.consuming = true;
    recoveries = 0;
    logger.info({ queue: broker.queue, consumerTag, ...state.queue }, 'consuming');
    migration.schedule();
  }

  const subscribeWithin = (channel: ConfirmChannel) =>
    withTimeout(subscribe(channel), SUBSCRIBE_TIMEOUT_MS, 'subscribing to the queue');

  /** After a failure the channel cannot heal from: reconnect (with backoff), unless a newer channel took over. */
  function recover(channel: ConfirmChannel, err: unknown): void {
    state.consuming = false;
    if (stopped || recovering.has(channel)) return;
    recovering.add(channel);
    const waitMs = backoffMs(recoveries++);
    logger.warn({ err, waitMs }, 'the consumer channel is unusable; reconnecting');
    setTimeout(() => {
      if (!stopped && current?.channel === channel && connection.isConnected()) connection.reconnect();
    }, waitMs).unref();
  }

  const wrapper = connection.createChannel({
    confirm: true,
    json: false,
    setup: async (channel: ConfirmChannel) => {
      current = { channel };
      // listened to, so that amqplib does not rethrow a channel error into the connection; close handles it
      channel.on('error', (err: Error) => logger.warn({ err }, 'the broker closed the consumer channel'));
      channel.on('close', () => {
        onClose(channel);
        recover(channel, undefined);
      });
      await channel.prefetch(prefetch);
      await subscribeWithin(channel).catch((err: unknown) => {
        // a declare refused on a channel of its own leaves this one open: reconnect all the same
        recover(channel, err);
        throw err;
      });
    },
  });
  // a setup that failed is retried by recover(); this only keeps the error from crashing
  wrapper.on('error', (err) => logger.debug({ err }, 'consumer channel setup failed'));

  return {
    state,
    isConsuming: () => state.consuming && connection.isConnected(),
    /** Ready messages and consumers of the dead-letter queue (passive declare, with a timeout), or null. */
    deadLetterQueue: () => queues.counts(topology.deadLetterQueue),
    deadLetterExchange: topology.deadLetterExchange,
    /** Stops consuming: basic.cancel, so the broker delivers nothing more; unacked deliveries stay until close(). */
    cancel: async () => {
      stopped = true;
      await migration.stop();
      state.consuming = false;
      const { channel, consumerTag } = current ?? {};
      if (channel && consumerTag)
        await withTimeout(channel.cancel(consumerTag), SUBSCRIBE_TIMEOUT_MS, 'basic.cancel').catch(() => undefined);
    },
    close: async () => {
      await withTimeout(wrapper.close(), BROKER_CLOSE_TIMEOUT_MS, 'closing the consumer channel').catch(
        () => undefined,
      );
      await closeBroker(connection);
    },
  };
}
