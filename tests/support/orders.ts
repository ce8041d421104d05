import { databaseEnv, parseConfig } from '@crud-master/shared';
import { createDatabasePool } from '@crud-master/shared/database';
import { sql } from 'slonik';
import { z } from 'zod';
import { testEnv } from './env.js';

const orderRow = z.object({
  user_id: z.string(),
  number_of_items: z.number(),
  total_amount: z.string(),
  message_id: z.string(),
});

/** billing_db, read straight from the test: the rows stored under some message ids. */
export async function openOrders() {
  const pool = await createDatabasePool(parseConfig({ db: databaseEnv('BILLING') }, testEnv()).db);
  const rowsOf = async (messageIds: readonly string[]) =>
    pool.any(sql.type(orderRow)`
      SELECT user_id, number_of_items, total_amount::text AS total_amount, message_id
      FROM orders WHERE message_id = ANY(${sql.array(messageIds, 'text')}) ORDER BY id`);
  return {
    rowsOf,
    /** The orders recorded as rejected under these message ids (a reused Idempotency-Key), oldest first. */
    rejectedOf: async (messageIds: readonly string[]) =>
      pool.any(sql.type(orderRow.extend({ reason: z.string() }))`
        SELECT user_id, number_of_items, total_amount::text AS total_amount, message_id, reason
        FROM rejected_orders WHERE message_id = ANY(${sql.array(messageIds, 'text')}) ORDER BY id`),
    /** The dead letters held in billing_db under these message ids. */
    heldOf: async (messageIds: readonly string[]) =>
      pool.anyFirst(sql.type(z.object({ message_id: z.string() }))`
        SELECT message_id FROM held_dead_letters WHERE message_id = ANY(${sql.array(messageIds, 'text')})`),
    /** How many rows each message id has: exactly once means 1 each. */
    countsOf: async (messageIds: readonly string[]) => {
      const rows = await rowsOf(messageIds);
      return messageIds.map((id) => rows.filter((row) => row.message_id === id).length);
    },
    close: () => pool.end(),
  };
}

export type TestOrders = Awaited<ReturnType<typeof openOrders>>;
