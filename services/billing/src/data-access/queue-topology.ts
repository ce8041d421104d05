import { billingQueueOptions, billingTopology, QUEUE_TYPES, type QueueType, withTimeout } from '@crud-master/shared';
import type { AmqpConnectionManager } from 'amqp-connection-manager';
import type { Channel } from 'amqplib';

/** A queue that exists with other arguments than those declared: the broker refused the declare (406). */
export interface OtherQueue {
  /** Its type, when the refusal names it (null: the refusal is about another argument, e.g. of an earlier release). */
  type: QueueType | null;
}

const isPreconditionFailed = (err: unknown) => (err as { code?: unknown } | null)?.code === 406;

/** The type of the existing queue, from a refusal such as "inequivalent arg 'x-queue-type' … current is none". */
function typeNamedIn(err: unknown): QueueType | null {
  const text = err instanceof Error ? err.message : '';
  const current = /inequivalent arg 'x-queue-type'.* current is (?:none|the value '([\w-]+)')/.exec(text);
  if (!current) return null;
  const type = current[1] ?? 'classic';
  return (QUEUE_TYPES as readonly string[]).includes(type) ? (type as QueueType) : null;
}

class NotEmpty extends Error {}

/** How long one declare, check or replace may take: a blocked or stuck broker must not hang the consumer or /readyz. */
const BROKER_CALL_TIMEOUT_MS = 5_000;

/**
 * Declares billing_queue and its dead-letter queue with the configured type, and replaces them when they exist with
 * another type (or the arguments of an earlier release). Each declare runs on a channel of its own: the broker
 * answers a refused declare by closing the channel, which must not be the consumer's.
 */
export function queueTopology(connection: AmqpConnectionManager, queue: string, type: QueueType) {
  const names = billingTopology(queue);
  const options = billingQueueOptions(type);

  async function onOwnChannel<T>(operation: (channel: Channel) => Promise<T>): Promise<T> {
    const model = connection.connection;
    if (!model) throw new Error('not connected to RabbitMQ');
    const channel = await withTimeout(model.createChannel(), BROKER_CALL_TIMEOUT_MS, 'channel.open');
    channel.on('error', () => undefined);
    try {
      return await withTimeout(operation(channel), BROKER_CALL_TIMEOUT_MS, 'a queue declare or check');
    } finally {
      // not awaited: a channel of a stuck broker may never close
      channel.close().catch(() => undefined);
    }
  }

  /** Declares a queue with the configured type; returns the queue that stands in the way, if any. */
  async function declare(name: string): Promise<OtherQueue | undefined> {
    try {
      await onOwnChannel((channel) => channel.assertQueue(name, options));
      return undefined;
    } catch (err) {
      if (!isPreconditionFailed(err)) throw err;
      return { type: typeNamedIn(err) };
    }
  }

  /**
   * Deletes a queue of the other type and declares it again at once, on one channel, only if it holds no message.
   * A classic queue checks that itself, atomically (if-empty counts ready messages: those its consumers hold are
   * stored by them and acked into the void; for the dead-letter queue, if-unused spares a reader's unacked ones).
   * A quorum queue refuses if-empty and if-unused (with a connection error), so it is checked just before the
   * delete: a message that slips in between would be lost, which on billing_queue a consumer with free prefetch
   * makes unlikely (a quorum queue hands a message to it as it enqueues it).
   */
  async function replace(name: string, existing: OtherQueue, isDeadLetterQueue: boolean): Promise<boolean> {
    try {
      await onOwnChannel(async (channel) => {
        // still of that type? Another consumer may have replaced it meanwhile: then 406, and no delete
        if (existing.type) await channel.assertQueue(name, billingQueueOptions(existing.type));
        if (existing.type === 'quorum') {
          const { messageCount, consumerCount } = await channel.checkQueue(name);
          if (messageCount > 0 || (isDeadLetterQueue && consumerCount > 0)) throw new NotEmpty();
          await channel.deleteQueue(name);
        } else {
          await channel.deleteQueue(name, { ifEmpty: true, ifUnused: isDeadLetterQueue });
        }
        await channel.assertQueue(name, options);
        if (isDeadLetterQueue) await channel.bindQueue(name, names.deadLetterExchange, '');
      });
      return true;
    } catch (err) {
      if (err instanceof NotEmpty || isPreconditionFailed(err)) return false;
      throw err;
    }
  }

  /**
   * Declares a queue, or replaces the one of another type when it is empty. Returns the queue kept: it holds
   * messages (or another consumer got there first: the next attempt finds the new one declared).
   */
  async function declareOrReplace(name: string): Promise<OtherQueue | undefined> {
    const existing = await declare(name);
    if (!existing) return undefined;
    return (await replace(name, existing, name === names.deadLetterQueue)) ? undefined : existing;
  }

  return {
    names,
    declare,
    declareOrReplace,
    /** A queue's ready messages and consumers (passive declare: any type, any arguments), or null. */
    counts: (name: string) => onOwnChannel((channel) => channel.checkQueue(name)).catch(() => null),
  };
}

export type QueueTopology = ReturnType<typeof queueTopology>;
