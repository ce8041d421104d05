import amqp, { type AmqpConnectionManager } from 'amqp-connection-manager';
import type { Channel, Options } from 'amqplib';
import type { Logger } from './logger.js';
import { z } from 'zod';
import type { RabbitmqConfig } from './config.js';
import { requiredText } from './validation.js';

const BROKER_HANDSHAKE_TIMEOUT_MS = 5_000;

/** Connects to RabbitMQ through amqp-connection-manager, which reconnects on its own after a failure. */
export function connectBroker(broker: RabbitmqConfig, logger: Logger): AmqpConnectionManager {
  const url: Options.Connect = {
    protocol: 'amqp',
    hostname: broker.host,
    port: broker.port,
    username: broker.user,
    password: broker.password,
    vhost: broker.vhost,
    heartbeat: 10,
  };
  const connection = amqp.connect([url], {
    reconnectTimeInSeconds: 1,
    // without it a broker that accepts TCP but never speaks AMQP would hang the connect, and close(), forever
    connectionOptions: { timeout: BROKER_HANDSHAKE_TIMEOUT_MS },
  });
  connection.on('connect', () => logger.info({ host: broker.host, vhost: broker.vhost }, 'connected to RabbitMQ'));
  connection.on('disconnect', ({ err }) => logger.warn({ err }, 'disconnected from RabbitMQ'));
  return connection;
}

export const deadLetterQueueOf = (queue: string) => `${queue}.dead-letter`;

/**
 * Declares the durable billing queue and its dead-letter queue. The gateway and the consumer both run this in their
 * channel's setup, with the same arguments, so whichever starts first creates them.
 */
export async function assertBillingQueue(channel: Channel, queue: string): Promise<void> {
  const deadLetterQueue = deadLetterQueueOf(queue);
  await channel.assertQueue(deadLetterQueue, { durable: true });
  await channel.assertQueue(queue, { durable: true, deadLetterExchange: '', deadLetterRoutingKey: deadLetterQueue });
}

/** The body of a billing_queue message: the normalised order. Money is a decimal string, never a float. */
export const orderMessage = z
  .object({
    user_id: requiredText(100),
    number_of_items: z.number().int().positive().max(2_147_483_647),
    total_amount: z.string().regex(/^\d{1,10}(\.\d{1,2})?$/),
  })
  .strict();

export type OrderMessage = z.infer<typeof orderMessage>;
