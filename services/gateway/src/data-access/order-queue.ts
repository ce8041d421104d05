import { assertBillingQueue, connectBroker, type Logger, type RabbitmqConfig, unavailable } from '@crud-master/shared';
import type { ConfirmChannel } from 'amqplib';
import type { OrderPublisher } from '../domain/billing.js';

export interface OrderQueue extends OrderPublisher {
  isConnected(): boolean;
  close(): Promise<void>;
}

/**
 * Publishes orders to billing_queue on a confirm channel. A publish the broker has not confirmed within
 * publishTimeoutMs (broker down, slow or refusing) is dropped from amqp-connection-manager's buffer and rejected.
 */
export function orderQueue(broker: RabbitmqConfig, publishTimeoutMs: number, logger: Logger): OrderQueue {
  const connection = connectBroker(broker, logger);
  const channel = connection.createChannel({
    confirm: true,
    json: false,
    publishTimeout: publishTimeoutMs,
    // a publish to a missing queue would still be confirmed, so the queue is declared on every (re)connect
    setup: (amqpChannel: ConfirmChannel) => assertBillingQueue(amqpChannel, broker.queue),
  });

  return {
    publish: async (order, messageId) => {
      try {
        await channel.sendToQueue(broker.queue, Buffer.from(JSON.stringify(order)), {
          persistent: true,
          contentType: 'application/json',
          messageId,
        });
      } catch (err) {
        logger.warn({ err, messageId }, 'the broker did not confirm an order');
        throw unavailable('The order queue is unavailable, so the order was not accepted. Retry later with the same Idempotency-Key.');
      }
    },
    isConnected: () => connection.isConnected(),
    close: async () => {
      await channel.close();
      await connection.close();
    },
  };
}
