import { closeBroker, confirmPublisher, connectBroker, type Logger, type RabbitmqConfig } from '@crud-master/shared';
import type { ConsumeMessage, Options } from 'amqplib';
import type { HeldDeadLetters } from '../data-access/held-dead-letters.js';
import type { DeadLetterCause } from '../domain/orders.js';
import type { ConsumerMetrics } from '../metrics.js';

export const DEAD_LETTER_REASON_HEADER = 'x-dead-letter-reason';

/** How long the broker has to confirm a dead letter before it is held in billing_db instead. */
const DEAD_LETTER_CONFIRM_MS = 5_000;
/** How often held dead letters are offered to the dead-letter exchange again, and how many at a time. */
const MOVE_HELD_EVERY_MS = 5_000;
const MOVE_HELD_BATCH = 100;

/** amqplib types message properties as any; the id is used only when it is a string. */
export const messageIdOf = (message: ConsumeMessage): string | undefined => {
  const id: unknown = message.properties.messageId;
  return typeof id === 'string' ? id : undefined;
};

/**
 * The original's properties, but those the broker would check or act on for this publisher (userId, expiration,
 * CC/BCC routing headers), and the reason.
 */
function deadLetterProperties(message: ConsumeMessage, reason: string): Options.Publish {
  const { contentType, contentEncoding, correlationId, messageId, timestamp, type, appId } =
    message.properties as Options.Publish;
  const headers = Object.fromEntries(
    Object.entries(message.properties.headers ?? {}).filter(([name]) => name !== 'CC' && name !== 'BCC'),
  );
  return {
    contentType,
    contentEncoding,
    correlationId,
    messageId,
    timestamp,
    type,
    appId,
    headers: { ...headers, [DEAD_LETTER_REASON_HEADER]: reason },
  };
}

interface DeadLetterOptions {
  broker: RabbitmqConfig;
  /** the dead-letter exchange */
  exchange: string;
  held: HeldDeadLetters;
  metrics: ConsumerMetrics;
  logger: Logger;
}

/**
 * Messages that can never be stored go to the dead-letter exchange, on a connection of their own: RabbitMQ blocks a
 * connection that publishes while a memory or disk alarm lasts, and the consuming connection must stay free to ack.
 * A dead letter the broker does not confirm in time, or that no queue takes (the dead-letter queue full, missing, or
 * blocked), is held in billing_db instead, so the original can be acked and the orders behind it are stored. Held
 * dead letters are offered to the exchange again every few seconds, and /readyz and the metrics show them.
 */
export function deadLetters({ broker, exchange, held, metrics, logger }: DeadLetterOptions) {
  const connection = connectBroker(broker, logger, 'billing-consumer dead letters');
  const publisher = confirmPublisher(connection, DEAD_LETTER_CONFIRM_MS, logger);
  const place = async (properties: Options.Publish, content: Buffer) =>
    (await publisher.publish(exchange, '', content, properties)) === 'confirmed';

  const mover = setInterval(() => {
    held
      .move(MOVE_HELD_BATCH, place)
      .then((moved) => moved > 0 && logger.info({ moved }, 'moved held dead letters to the dead-letter queue'))
      .catch((err: unknown) => logger.warn({ err }, 'could not move the held dead letters'));
  }, MOVE_HELD_EVERY_MS);
  mover.unref();

  return {
    /** Dead-letters a message, or holds it in billing_db; rejects only when neither worked (the caller retries). */
    async deadLetter(message: ConsumeMessage, cause: DeadLetterCause, reason: string): Promise<void> {
      const messageId = messageIdOf(message);
      const properties = deadLetterProperties(message, reason);
      if (await place(properties, message.content)) {
        metrics.deadLettered.inc({ cause });
        logger.error({ messageId, cause, reason }, 'dead-lettered a message');
        return;
      }
      await held.hold({ messageId, cause, reason, properties, content: message.content });
      metrics.heldAside.inc({ cause });
      logger.error(
        { messageId, cause, reason },
        'the broker did not take a dead letter: held in billing_db until it does',
      );
    },
    figures: held.figures,
    close: async () => {
      clearInterval(mover);
      await publisher.close();
      await closeBroker(connection);
    },
  };
}

export type DeadLetters = ReturnType<typeof deadLetters>;
