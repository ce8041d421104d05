import {
  closeBroker,
  confirmPublisher,
  connectBroker,
  type Logger,
  PUBLISHED_AT_MS_HEADER,
  type RabbitmqConfig,
  unavailable,
} from '@crud-master/shared';
import type { OrderPublisher } from '../domain/billing.js';
import type { GatewayMetrics } from '../metrics.js';

export interface OrderQueue extends OrderPublisher {
  /** Connected, with the confirm channel open: an order can be accepted now. */
  isReady: () => boolean;
  close: () => Promise<void>;
}

// openapi.yaml: a 503 may hide a publish the broker confirms later, so a retry must reuse the id
const NOT_CONFIRMED =
  'The order queue did not confirm the order, so it is not accepted yet, though a late confirm may still store it. ' +
  'Retry with this message_id as Idempotency-Key: the order is then stored once.';

/**
 * Publishes orders to billing_queue on a confirm channel (confirm-publisher.ts). The gateway declares nothing
 * (billing-consumer owns the topology); a publish is `mandatory`, so a message no queue took (billing_queue deleted)
 * comes back as basic.return, which the broker sends before its confirm on the same channel: that order is not
 * accepted.
 *
 * With several nodes, a lost connection fails over to the next one. A publish awaiting its confirm then fails: amqplib
 * calls its callback with "channel closed" before the wrapper forgets the channel, so the wrapper rejects it rather
 * than sending it again (503 with its message_id; the node may still have queued it, and a retry with that id stores
 * one order). A publish made while disconnected waits in the wrapper's buffer for the next node, within the timeout.
 */
export function orderQueue(
  broker: RabbitmqConfig,
  publishTimeoutMs: number,
  confirms: GatewayMetrics['confirms'],
  logger: Logger,
): OrderQueue {
  const connection = connectBroker(broker, logger, 'api-gateway');
  const publisher = confirmPublisher(connection, publishTimeoutMs, logger);

  return {
    publish: async (order, messageId) => {
      const timer = confirms.startTimer();
      const publishedAt = Date.now();
      const outcome = await publisher.publish('', broker.queue, Buffer.from(JSON.stringify(order)), {
        contentType: 'application/json',
        messageId,
        // as RabbitMQ's message_timestamp plugin sets them: seconds (AMQP's convention) and milliseconds
        timestamp: Math.floor(publishedAt / 1000),
        headers: { [PUBLISHED_AT_MS_HEADER]: publishedAt },
      });
      timer({ outcome });
      if (outcome === 'returned')
        logger.error({ messageId, queue: broker.queue }, 'the broker returned an order: no queue took it');
      if (outcome !== 'confirmed') throw unavailable(NOT_CONFIRMED, { message_id: messageId });
    },
    isReady: publisher.isReady,
    close: async () => {
      await publisher.close();
      await closeBroker(connection);
    },
  };
}
