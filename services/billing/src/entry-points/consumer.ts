import { setTimeout as sleep } from 'node:timers/promises';
import { assertBillingQueue, connectBroker, type Logger, type RabbitmqConfig } from '@crud-master/shared';
import { isPermanentDataError } from '@crud-master/shared/database';
import type { AmqpConnectionManager, ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Order, OrdersRepository } from '../data-access/orders-repository.js';
import { backoffMs, parseOrder, PoisonMessage } from '../domain/orders.js';

/** A delivery and the channel it came on: only that channel can ack it. */
interface Delivery {
  channel: Channel;
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

export interface OrderConsumer {
  connection: AmqpConnectionManager;
  stop(): Promise<void>;
}

interface ConsumerOptions {
  broker: RabbitmqConfig;
  prefetch: number;
  orders: OrdersRepository;
  logger: Logger;
}

/**
 * Consumes billing_queue. Deliveries that arrive while a batch is being stored wait and form the next batch (up to
 * half the prefetch), which is inserted in one statement and acked only after its commit, with one ack per batch.
 * Poison messages are dead-lettered at once; a database outage keeps the batch unacked and retries it with backoff,
 * so nothing is lost or dead-lettered.
 */
export function startConsumer({ broker, prefetch, orders, logger }: ConsumerOptions): OrderConsumer {
  const waiting: Delivery[] = [];
  let draining: Promise<void> | undefined;
  const stopped = new AbortController();
  let current: { channel: Channel; consumerTag: string } | undefined;

  const connection = connectBroker(broker, logger);

  const channel: ChannelWrapper = connection.createChannel({
    json: false,
    setup: async (amqpChannel: Channel) => {
      await assertBillingQueue(amqpChannel, broker.queue);
      await amqpChannel.prefetch(prefetch);
      const { consumerTag } = await amqpChannel.consume(broker.queue, (message) => {
        if (message !== null) receive({ channel: amqpChannel, message });
      });
      current = { channel: amqpChannel, consumerTag };
    },
  });

  function receive(delivery: Delivery): void {
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

  /** 'ack-up-to' acks this delivery and every earlier one of its channel (multiple=true), in one frame. */
  function settle({ channel: amqpChannel, message }: Delivery, outcome: 'ack-up-to' | 'dead-letter'): void {
    try {
      if (outcome === 'dead-letter') amqpChannel.nack(message, false, false);
      else amqpChannel.ack(message, true);
    } catch (err) {
      // the channel closed: the broker redelivers the message, and the unique message_id makes that a no-op
      logger.warn({ err, messageId: messageIdOf(message) }, 'could not settle a delivery');
    }
  }

  async function storeBatch(batch: Delivery[]): Promise<void> {
    const parsed: ParsedDelivery[] = [];
    for (const delivery of batch) {
      try {
        parsed.push({ ...delivery, order: parseOrder(delivery.message.content, messageIdOf(delivery.message)) });
      } catch (err) {
        if (!(err instanceof PoisonMessage)) throw err;
        logger.error({ reason: err.message, messageId: messageIdOf(delivery.message) }, 'dead-lettering a poison message');
        settle(delivery, 'dead-letter');
      }
    }
    if (parsed.length > 0) await insertWithRetry(parsed);
  }

  async function insertWithRetry(batch: ParsedDelivery[]): Promise<void> {
    for (let attempt = 0; !stopped.signal.aborted; attempt++) {
      try {
        const added = await orders.insertMany(batch.map((delivery) => delivery.order));
        ackBatch(batch);
        logger.debug({ received: batch.length, added }, 'stored a batch of orders');
        return;
      } catch (err) {
        if (isPermanentDataError(err)) return isolateBadRows(batch, err);
        const waitMs = backoffMs(attempt);
        logger.warn({ err, attempt, waitMs, batch: batch.length }, 'could not store orders; retrying');
        await sleep(waitMs, undefined, { signal: stopped.signal }).catch(() => undefined);
      }
    }
    // stopping: the batch stays unacked, and closing the channel returns it to the queue
  }

  /**
   * Acks a stored batch with one ack per channel: multiple=true on its last delivery. Batches are stored one at a
   * time in delivery order, so every earlier delivery of that channel is already settled (stored and acked, or
   * dead-lettered) or in this batch; the deliveries still waiting came later and are not covered.
   */
  function ackBatch(batch: ParsedDelivery[]): void {
    const lastOfChannel = new Map<Channel, ParsedDelivery>();
    for (const delivery of batch) lastOfChannel.set(delivery.channel, delivery);
    for (const delivery of lastOfChannel.values()) settle(delivery, 'ack-up-to');
  }

  /** One row of the batch breaks a constraint: store the others one by one and dead-letter the bad one. */
  async function isolateBadRows(batch: ParsedDelivery[], err: unknown): Promise<void> {
    if (batch.length === 1) {
      logger.error({ err, messageId: batch[0]!.order.message_id }, 'dead-lettering an order the database rejects');
      settle(batch[0]!, 'dead-letter');
      return;
    }
    for (const delivery of batch) await insertWithRetry([delivery]);
  }

  return {
    connection,
    stop: async () => {
      stopped.abort();
      if (current) await current.channel.cancel(current.consumerTag).catch(() => undefined);
      await draining;
      await channel.close();
      await connection.close();
    },
  };
}
