import { orderMessage } from '@crud-master/shared';
import type { Order } from '../data-access/orders-repository.js';

/** A message that can never be stored, whatever the retries: it goes to the dead-letter queue at once. */
export class PoisonMessage extends Error {
  override name = 'PoisonMessage';
}

/** Why a message was dead-lettered: it is not an order, or the database refuses it as it is. */
export const DEAD_LETTER_CAUSES = ['poison', 'rejected-by-database'] as const;
export type DeadLetterCause = (typeof DEAD_LETTER_CAUSES)[number];

/** Why an order was recorded in rejected_orders instead of orders. */
export const KEY_REUSED = 'the Idempotency-Key was already used by this user for a different order';

/** Reads a billing_queue message: JSON, the order's shape, and a messageId to make redeliveries no-ops. */
export function parseOrder(content: Buffer, messageId: string | undefined): Order {
  if (!messageId) throw new PoisonMessage('the message has no messageId');
  let body: unknown;
  try {
    body = JSON.parse(content.toString('utf8'));
  } catch {
    throw new PoisonMessage('the body is not JSON');
  }
  const parsed = orderMessage.safeParse(body);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ');
    throw new PoisonMessage(`the body is not an order: ${issues}`);
  }
  return { ...parsed.data, message_id: messageId };
}
