import { orderMessage } from '@crud-master/shared';
import type { Order } from '../data-access/orders-repository.js';

/** A message that can never be stored, whatever the retries: it goes to the dead-letter queue at once. */
export class PoisonMessage extends Error {
  override name = 'PoisonMessage';
}

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
    throw new PoisonMessage(`the body is not an order: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
  }
  return { ...parsed.data, message_id: messageId };
}

const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 30_000;

/** Exponential backoff with jitter: the wait before retry number `attempt` (0-based). */
export function backoffMs(attempt: number): number {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 20));
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}
