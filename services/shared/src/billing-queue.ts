import type { Channel, Options } from 'amqplib';
import { z } from 'zod';
import type { RabbitmqConfig } from './config.js';
import { requiredText } from './validation.js';

/** The broker connection of a service, for amqp-connection-manager (which reconnects on its own). */
export const brokerConnection = (broker: RabbitmqConfig): Options.Connect => ({
  protocol: 'amqp',
  hostname: broker.host,
  port: broker.port,
  username: broker.user,
  password: broker.password,
  vhost: broker.vhost,
  heartbeat: 10,
});

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
