import { randomUUID } from 'node:crypto';
import { type OrderMessage, orderMessage, parseInput } from '@crud-master/shared';
import { z } from 'zod';

/** The seed sends numbers ("usr_123", 3, 99.97), the subject strings ("3", "5", "180"): both are accepted. */
const numberOrString = z.union([z.number(), z.string().trim()]).transform(String);

const wholeNumber = numberOrString
  .pipe(z.string().regex(/^\d{1,10}$/, 'must be a positive whole number'))
  .transform(Number);

/** Money stays a decimal string ("99.97"), normalised to two decimals; it is never a float. */
const amount = numberOrString
  .pipe(
    z.string().regex(/^\d{1,10}(\.\d{1,2})?$/, 'must be a non-negative amount with at most 2 decimals, below 10^10'),
  )
  .transform((value) => {
    const [whole = '0', cents = ''] = value.split('.');
    return `${BigInt(whole)}.${cents.padEnd(2, '0')}`;
  });

/** A number above 2^53 - 1 has already been rounded by JSON.parse: two users would merge, so it is refused. */
const userId = z
  .union([
    z.number().refine(Number.isSafeInteger, 'a number must be a whole number below 2^53; send a larger id as a string'),
    z.string().trim(),
  ])
  .transform(String);

export const billingRequest = z
  .object({ user_id: userId, number_of_items: wholeNumber, total_amount: amount })
  .pipe(orderMessage);

const idempotencyKey = z
  .string()
  .regex(/^[\x21-\x7e]{1,200}$/, 'must be 1 to 200 visible ASCII characters')
  .optional();

export interface OrderPublisher {
  /** Resolves once the broker has confirmed the persistent message. */
  publish(order: OrderMessage, messageId: string): Promise<void>;
}

/** Whether a valid order may go on (its user's rate limit); throws when it may not. */
export type OrderAdmission = (userId: string) => Promise<void>;

/** Normalises the order, admits it and queues it; resolves only after the broker confirmed it. */
export async function placeOrder(
  publisher: OrderPublisher,
  body: unknown,
  rawKey: string | undefined,
  admit: OrderAdmission = async () => {},
) {
  const order = parseInput(billingRequest, body, 'body');
  const messageId = parseInput(idempotencyKey, rawKey, 'Idempotency-Key') ?? randomUUID();
  await admit(order.user_id);
  await publisher.publish(order, messageId);
  return { message_id: messageId, status: 'queued' as const, order };
}
