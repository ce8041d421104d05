import { billingQueueOptions, billingTopology, type QueueType } from '@crud-master/shared';
import amqplib, { type Channel, type ChannelModel, type ConfirmChannel, type GetMessage } from 'amqplib';
import { management, managementAuth } from './operator.js';
import { billingQueue } from './stack.js';

/**
 * Declares a billing queue, its dead-letter exchange and queue, as billing-consumer does when it starts (the gateway
 * under test needs the queue before any consumer runs). The queue has no dead-letter arguments: the consumer
 * dead-letters by publishing to the exchange.
 */
async function declareBillingTopology(channel: Channel, queue: string, type: QueueType): Promise<void> {
  const names = billingTopology(queue);
  await channel.assertExchange(names.deadLetterExchange, 'fanout', { durable: true });
  await channel.assertQueue(names.deadLetterQueue, billingQueueOptions(type));
  await channel.bindQueue(names.deadLetterQueue, names.deadLetterExchange, '');
  await channel.assertQueue(names.queue, billingQueueOptions(type));
}

/** A plain amqplib connection to the test broker, to look into queues and publish raw messages. */
export async function openBroker() {
  const connection: ChannelModel = await amqplib.connect({
    // RABBITMQ_HOST may list the nodes of a cluster: the first one will do
    hostname: (process.env.RABBITMQ_HOST ?? '127.0.0.1').split(',')[0]!.trim(),
    port: Number(process.env.RABBITMQ_PORT ?? 5672),
    username: process.env.RABBITMQ_USER,
    password: process.env.RABBITMQ_PASSWORD,
    vhost: process.env.RABBITMQ_VHOST,
  });
  connection.on('error', () => undefined);
  const channel: ConfirmChannel = await connection.createConfirmChannel();
  return {
    connection,
    channel,
    /** Declares a billing queue and its dead-letter exchange and queue, as billing-consumer does. */
    declare: (queue: string, type: QueueType = 'classic') => declareBillingTopology(channel, queue, type),
    /** Takes the next message off a queue, or undefined when it is empty. */
    take: async (queue: string): Promise<GetMessage | undefined> =>
      (await channel.get(queue, { noAck: true })) || undefined,
    count: async (queue: string): Promise<number> => (await channel.checkQueue(queue)).messageCount,
    /** A queue's messages and consumers, undefined when it does not exist (asked on a throwaway channel, which a
     * missing queue closes). */
    inspect: async (queue: string): Promise<{ messageCount: number; consumerCount: number } | undefined> => {
      const probe = await connection.createChannel();
      probe.on('error', () => undefined);
      try {
        return await probe.checkQueue(queue);
      } catch {
        return undefined;
      } finally {
        await probe.close().catch(() => undefined);
      }
    },
    publish: async (queue: string, content: string | Buffer, options: amqplib.Options.Publish = {}) => {
      channel.sendToQueue(queue, Buffer.from(content), {
        persistent: true,
        contentType: 'application/json',
        ...options,
      });
      await channel.waitForConfirms();
    },
    deleteQueues: async (...queues: string[]) => {
      for (const queue of queues) await channel.deleteQueue(queue);
    },
    close: () => connection.close(),
  };
}

/** A queue's type and x-arguments as the management API shows them, or undefined when it does not exist. */
export async function queueOf(
  queue: string,
): Promise<{ type: string; arguments: Record<string, unknown> } | undefined> {
  const vhost = encodeURIComponent(billingQueue.vhost);
  const reply = await fetch(`${management}/queues/${vhost}/${encodeURIComponent(queue)}`, { headers: managementAuth });
  if (reply.status === 404) return undefined;
  if (!reply.ok) throw new Error(`the management API answered ${reply.status} for queue ${queue}`);
  const { type, arguments: args } = (await reply.json()) as { type: string; arguments: Record<string, unknown> };
  return { type, arguments: args };
}

export type TestBroker = Awaited<ReturnType<typeof openBroker>>;
