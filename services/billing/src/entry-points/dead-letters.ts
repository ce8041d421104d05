import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '@crud-master/shared';
import type { ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { backoffMs } from '../domain/orders.js';
import type { ConsumerMetrics, DeadLetterCause } from '../metrics.js';

/** A delivery and the channel it came on: only that channel can ack it. */
export interface Delivery {
  channel: ConfirmChannel;
  message: ConsumeMessage;
}

/** amqplib types message properties as any; the id is used only when it is a string. */
export const messageIdOf = (message: ConsumeMessage): string | undefined => {
  const id: unknown = message.properties.messageId;
  return typeof id === 'string' ? id : undefined;
};

export const DEAD_LETTER_REASON_HEADER = 'x-dead-letter-reason';

interface DeadLetterOptions {
  /** the dead-letter exchange */
  exchange: string;
  /** Acks the original (only it) once the broker confirmed its copy. */
  ack: (delivery: Delivery) => void;
  /** Whether a channel closed: its deliveries can no longer be settled (the broker redelivers them). */
  closed: (channel: ConfirmChannel) => boolean;
  /** aborted when the consumer stops */
  signal: AbortSignal;
  metrics: ConsumerMetrics;
  logger: Logger;
}

/**
 * Messages that can never be stored are dead-lettered: a copy goes to the dead-letter exchange with its reason, and
 * the original is acked only once the broker confirmed the copy. Dead letters are published mandatory: one that finds
 * no queue (the dead-letter queue deleted, or being replaced) comes back, the original stays unacked and the copy is
 * retried, instead of being confirmed into the void.
 */
export function deadLetters({ exchange, ack, closed, signal, metrics, logger }: DeadLetterOptions) {
  // how many mandatory dead letters each channel got back
  const returnedOn = new WeakMap<ConfirmChannel, number>();

  /**
   * Publishes a confirmed, persistent copy to the dead-letter exchange, with the original's properties except those
   * the broker would check or act on for this publisher (userId, expiration, CC/BCC routing headers).
   */
  const publishDeadLetter = ({ channel, message }: Delivery, reason: string) =>
    new Promise<void>((resolve, reject) => {
      const original: Options.Publish = message.properties;
      const { contentType, contentEncoding, correlationId, messageId, timestamp, type, appId } = original;
      const headers = Object.fromEntries(Object.entries(message.properties.headers ?? {}).filter(([name]) => name !== 'CC' && name !== 'BCC'));
      const options: Options.Publish = { contentType, contentEncoding, correlationId, messageId, timestamp, type, appId };
      // one dead letter at a time per channel: a return counted since this publish is this one's
      const returnedBefore = returnedOn.get(channel) ?? 0;
      channel.publish(
        exchange,
        '',
        message.content,
        { ...options, headers: { ...headers, [DEAD_LETTER_REASON_HEADER]: reason }, persistent: true, mandatory: true },
        (err) => {
          if (err) reject(err as Error);
          else if ((returnedOn.get(channel) ?? 0) > returnedBefore) reject(new Error('no queue took the dead letter (the dead-letter queue is missing)'));
          else resolve();
        },
      );
    });

  /** Counts the dead letters that come back on a new channel: a mandatory one that no queue took, before its confirm. */
  const watch = (channel: ConfirmChannel): void => {
    channel.on('return', () => returnedOn.set(channel, (returnedOn.get(channel) ?? 0) + 1));
  };

  /**
   * Dead-letters a delivery: the copy first, the ack of the original after the broker confirmed it. A refused copy
   * (the dead-letter queue is full) leaves the original unacked and is retried with backoff. Returns false when the
   * delivery could not be settled (stopping, or its channel closed: it will be redelivered).
   */
  async function deadLetter(delivery: Delivery, cause: DeadLetterCause, reason: string): Promise<boolean> {
    const messageId = messageIdOf(delivery.message);
    for (let attempt = 0; !signal.aborted && !closed(delivery.channel); attempt++) {
      try {
        await publishDeadLetter(delivery, reason);
        ack(delivery);
        metrics.deadLettered.inc({ cause });
        logger.error({ messageId, cause, reason }, 'dead-lettered a message');
        return true;
      } catch (err) {
        const waitMs = backoffMs(attempt);
        logger.warn({ err, messageId, attempt, waitMs }, 'the dead-letter exchange refused a message; retrying');
        await sleep(waitMs, undefined, { signal }).catch(() => undefined);
      }
    }
    return false;
  }

  return { watch, deadLetter };
}
