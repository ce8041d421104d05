import amqp, { type AmqpConnectionManager } from 'amqp-connection-manager';
import type { Options } from 'amqplib';
import type { Logger } from './logger.js';
import { z } from 'zod';
import type { RabbitmqConfig } from './config.js';
import { withTimeout } from './retry.js';
import { requiredText } from './validation.js';

const BROKER_HANDSHAKE_TIMEOUT_MS = 5_000;

/**
 * Connects to RabbitMQ through amqp-connection-manager, which reconnects on its own after a failure. With several
 * hosts (the nodes of a cluster) it tries them in turn: each reconnect goes to the next host of the list. The
 * management UI shows the connection under `name`.
 */
export function connectBroker(broker: RabbitmqConfig, logger: Logger, name: string): AmqpConnectionManager {
  const urls = broker.hosts.map((hostname): Options.Connect => ({
    protocol: 'amqp',
    hostname,
    port: broker.port,
    username: broker.user,
    password: broker.password,
    vhost: broker.vhost,
    heartbeat: 10,
  }));
  const connection = amqp.connect(urls, {
    reconnectTimeInSeconds: 1,
    // without it a broker that accepts TCP but never speaks AMQP would hang the connect, and close(), forever
    connectionOptions: { timeout: BROKER_HANDSHAKE_TIMEOUT_MS, clientProperties: { connection_name: name } },
  });
  // only objects are passed: a URL string would carry the password
  const hostOf = (url: string | Options.Connect | undefined) => (typeof url === 'object' ? url.hostname : undefined);
  let host: string | undefined;
  connection.on('connect', ({ url }) => {
    host = hostOf(url);
    logger.info({ host, port: broker.port, vhost: broker.vhost }, 'connected to RabbitMQ');
  });
  connection.on('disconnect', ({ err }) => logger.warn({ err, host }, 'disconnected from RabbitMQ'));
  // debug: a node that stays down would log this every second
  connection.on('connectFailed', ({ err, url }) =>
    logger.debug({ err, host: hostOf(url) }, 'could not connect to RabbitMQ; trying the next host'),
  );
  return connection;
}

/**
 * How long a close may wait: a connection that an alarm blocks is not read by the broker, so its close is never
 * answered.
 */
export const BROKER_CLOSE_TIMEOUT_MS = 2_000;

/** Closes a broker connection, or gives up on it after BROKER_CLOSE_TIMEOUT_MS: a stop must not hang. */
export const closeBroker = (connection: AmqpConnectionManager): Promise<void> =>
  withTimeout(connection.close(), BROKER_CLOSE_TIMEOUT_MS, 'closing the broker connection').catch(() => undefined);

/**
 * When the gateway published a message, in ms since the epoch (the header RabbitMQ's message_timestamp plugin sets).
 */
export const PUBLISHED_AT_MS_HEADER = 'timestamp_in_ms';

/** The names of the billing topology; all derive from RABBITMQ_QUEUE. */
export const billingTopology = (queue: string) => ({
  queue,
  deadLetterExchange: `${queue}.dlx`,
  deadLetterQueue: `${queue}.dead-letter`,
});

export const deadLetterQueueOf = (queue: string) => billingTopology(queue).deadLetterQueue;

/** The queue types billing-consumer declares: classic on one broker, quorum (replicated) on a cluster. */
export const QUEUE_TYPES = ['classic', 'quorum'] as const;
export type QueueType = (typeof QUEUE_TYPES)[number];

/**
 * How billing_queue and its dead-letter queue are declared. A classic queue has no x-arguments, as the queues of
 * earlier releases. x-quorum-initial-group-size is left out on purpose: it is checked on every declare, so changing it
 * later would refuse every consumer; the broker's default (all nodes, up to 3) is used.
 */
export const billingQueueOptions = (type: QueueType): Options.AssertQueue =>
  type === 'quorum' ? { durable: true, arguments: { 'x-queue-type': 'quorum' } } : { durable: true };

/** The body of a billing_queue message: the normalised order. Money is a decimal string, never a float. */
export const orderMessage = z
  .object({
    user_id: requiredText(100),
    number_of_items: z.number().int().positive().max(2_147_483_647),
    total_amount: z.string().regex(/^\d{1,10}(\.\d{1,2})?$/),
  })
  .strict();

export type OrderMessage = z.infer<typeof orderMessage>;
