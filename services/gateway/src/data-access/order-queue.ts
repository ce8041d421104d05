import { connectBroker, type Logger, PUBLISHED_AT_MS_HEADER, type RabbitmqConfig, unavailable } from '@crud-master/shared';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { OrderPublisher } from '../domain/billing.js';
import type { GatewayMetrics, PublishOutcome } from '../metrics.js';

export interface OrderQueue extends OrderPublisher {
  isConnected(): boolean;
  close(): Promise<void>;
}

const NOT_ACCEPTED = 'The order queue is unavailable, so the order was not accepted. Retry later with this message_id as Idempotency-Key.';

/**
 * Publishes orders to billing_queue on a confirm channel. The gateway declares nothing (billing-consumer owns the
 * topology); a publish is `mandatory`, so a message no queue took (billing_queue deleted) comes back as basic.return,
 * which the broker sends before its confirm on the same channel: that order is not accepted. A publish the broker has
 * not confirmed within publishTimeoutMs (broker down, slow or blocked) is dropped from amqp-connection-manager's
 * buffer and rejected.
 *
 * With several nodes, a lost connection fails over to the next one. A publish awaiting its confirm then fails: amqplib
 * calls its callback with "channel closed" before the wrapper forgets the channel, so the wrapper rejects it rather
 * than sending it again (503 with its message_id; the node may still have queued it, and a retry with that id stores
 * one order). A publish made while disconnected waits in the wrapper's buffer for the next node, within the timeout.
 */
export function orderQueue(broker: RabbitmqConfig, publishTimeoutMs: number, confirms: GatewayMetrics['confirms'], logger: Logger): OrderQueue {
  const connection = connectBroker(broker, logger);
  // message ids returned by the broker and not yet seen by their publish (a count: a client may retry concurrently)
  const returned = new Map<string, number>();
  const takeReturned = (messageId: string): boolean => {
    const count = returned.get(messageId) ?? 0;
    if (count <= 1) returned.delete(messageId);
    else returned.set(messageId, count - 1);
    return count > 0;
  };
  const channel = connection.createChannel({
    confirm: true,
    json: false,
    publishTimeout: publishTimeoutMs,
    setup: (amqpChannel: ConfirmChannel) => {
      amqpChannel.on('return', (message: ConsumeMessage) => {
        const id: unknown = message.properties.messageId;
        if (typeof id === 'string') returned.set(id, (returned.get(id) ?? 0) + 1);
      });
    },
  });

  return {
    publish: async (order, messageId) => {
      const timer = confirms.startTimer();
      const publishedAt = Date.now();
      let confirmed = false;
      try {
        await channel.sendToQueue(broker.queue, Buffer.from(JSON.stringify(order)), {
          persistent: true,
          mandatory: true,
          contentType: 'application/json',
          messageId,
          // as RabbitMQ's message_timestamp plugin sets them: seconds (AMQP's convention) and milliseconds
          timestamp: Math.floor(publishedAt / 1000),
          headers: { [PUBLISHED_AT_MS_HEADER]: publishedAt },
        });
        confirmed = true;
      } catch (err) {
        logger.warn({ err, messageId }, 'the broker did not confirm an order');
      }
      const wasReturned = takeReturned(messageId);
      const outcome: PublishOutcome = wasReturned ? 'returned' : confirmed ? 'confirmed' : 'unconfirmed';
      timer({ outcome });
      if (wasReturned) logger.error({ messageId, queue: broker.queue }, 'the broker returned an order: no queue took it');
      if (outcome !== 'confirmed') throw unavailable(NOT_ACCEPTED, { message_id: messageId });
    },
    isConnected: () => connection.isConnected(),
    close: async () => {
      await channel.close();
      await connection.close();
    },
  };
}
