import type { AmqpConnectionManager } from 'amqp-connection-manager';
import type { ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { BROKER_CLOSE_TIMEOUT_MS } from './billing-queue.js';
import type { Logger } from './logger.js';
import { backoffMs, withTimeout } from './retry.js';

/** What the broker did with a publish: confirmed it, returned it (no queue took it), or did not confirm it in time. */
export const PUBLISH_OUTCOMES = ['confirmed', 'returned', 'unconfirmed'] as const;
export type PublishOutcome = (typeof PUBLISH_OUTCOMES)[number];

/** Ties a basic.return to its own publish: a message id alone is not unique (two users' keys, a client's retry). */
const PUBLISH_ID_HEADER = 'x-publish-id';

export interface ConfirmPublisher {
  /** Publishes a persistent, mandatory message and tells what the broker did with it; it never rejects. */
  publish: (exchange: string, routingKey: string, content: Buffer, options: Options.Publish) => Promise<PublishOutcome>;
  /** Connected, with its confirm channel open. */
  isReady: () => boolean;
  close: () => Promise<void>;
}

/**
 * A confirm channel that publishes and never takes the process down. amqp-connection-manager emits 'error' when it
 * cannot open the channel after a (re)connect, and opens a new channel only after a reconnect: so a failed or closed
 * channel on a live connection forces a reconnect, with backoff. A publish not confirmed within publishTimeoutMs
 * (broker down, slow or blocked by an alarm) is dropped from the library's buffer and reported unconfirmed.
 */
export function confirmPublisher(
  connection: AmqpConnectionManager,
  publishTimeoutMs: number,
  logger: Logger,
): ConfirmPublisher {
  // publishes awaiting their confirm (by a number of this publisher's), and whether the broker returned each; a late
  // return finds none and is ignored. Returns come on this publisher's own channel, so its own count is unique enough.
  const returned = new Map<number, boolean>();
  let published = 0;
  let open: ConfirmChannel | undefined;
  let failures = 0;
  let closing = false;

  function reopen(err: unknown): void {
    open = undefined;
    if (closing) return;
    const waitMs = backoffMs(failures++);
    logger.warn({ err, waitMs }, 'the publishing channel is closed; reconnecting');
    setTimeout(() => {
      if (!closing && !open && connection.isConnected()) connection.reconnect();
    }, waitMs).unref();
  }

  const channel = connection.createChannel({
    confirm: true,
    json: false,
    publishTimeout: publishTimeoutMs,
    setup: (amqpChannel: ConfirmChannel) => {
      // listened to, or amqplib would rethrow a channel error on the connection
      amqpChannel.on('error', (err: Error) => logger.warn({ err }, 'the broker closed the publishing channel'));
      amqpChannel.on('close', () => {
        if (open === amqpChannel) reopen(undefined);
      });
      amqpChannel.on('return', (message: ConsumeMessage) => {
        const id: unknown = message.properties.headers?.[PUBLISH_ID_HEADER];
        if (typeof id === 'number' && returned.has(id)) returned.set(id, true);
      });
      open = amqpChannel;
      failures = 0;
    },
  });
  channel.on('error', reopen);

  return {
    publish: async (exchange, routingKey, content, options) => {
      const publishId = ++published;
      returned.set(publishId, false);
      const headers: Record<string, unknown> = {
        ...(options.headers as Record<string, unknown> | undefined),
        [PUBLISH_ID_HEADER]: publishId,
      };
      try {
        const publish: Options.Publish = { ...options, headers, persistent: true, mandatory: true };
        await channel.publish(exchange, routingKey, content, publish);
        return returned.get(publishId) ? 'returned' : 'confirmed';
      } catch (err) {
        logger.warn({ err, messageId: options.messageId }, 'the broker did not confirm a publish');
        return 'unconfirmed';
      } finally {
        returned.delete(publishId);
      }
    },
    isReady: () => open !== undefined && connection.isConnected(),
    close: async () => {
      closing = true;
      // a connection blocked by an alarm is not read by the broker: its close would never be answered
      await withTimeout(channel.close(), BROKER_CLOSE_TIMEOUT_MS, 'closing the publishing channel').catch(
        () => undefined,
      );
    },
  };
}
