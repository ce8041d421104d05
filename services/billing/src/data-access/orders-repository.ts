import type { OrderMessage } from '@crud-master/shared';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';

export interface Order extends OrderMessage {
  message_id: string;
}

export interface InsertOutcome {
  /** Rows added by this batch. */
  added: number;
  /** Positions in the batch of orders whose (user_id, message_id) is stored with a different order. */
  conflicting: number[];
}

const orderColumns = ['text', 'int4', 'numeric', 'text'] as const;
const rowsOf = (orders: readonly Order[]) => orders.map((order) => [order.user_id, order.number_of_items, order.total_amount, order.message_id]);

/** The orders table, through slonik. */
export const ordersRepository = (pool: DatabasePool) => ({
  /**
   * Stores a batch in one transaction. A (user_id, message_id) already stored with the same order (a redelivery, a
   * client's retry) adds nothing; one stored with a different order is reported as conflicting, by its position.
   */
  insertMany: (orders: readonly Order[]): Promise<InsertOutcome> =>
    pool.transaction(async (transaction) => {
      const result = await transaction.query(sql.unsafe`
        INSERT INTO orders (user_id, number_of_items, total_amount, message_id)
        SELECT * FROM ${sql.unnest(rowsOf(orders), [...orderColumns])}
        ON CONFLICT (user_id, message_id) DO NOTHING`);
      // every row inserted: none conflicts (the usual batch, which then costs one query)
      if (result.rowCount === orders.length) return { added: result.rowCount, conflicting: [] };
      // run in the same transaction, so it sees this batch's rows too: a key reused with another order in one batch
      const conflicting = await transaction.anyFirst(sql.type(z.object({ position: z.coerce.number() }))`
        SELECT incoming.position - 1 AS position
        FROM ${sql.unnest(rowsOf(orders), [...orderColumns])}
          WITH ORDINALITY AS incoming (user_id, number_of_items, total_amount, message_id, position)
        JOIN orders stored USING (user_id, message_id)
        WHERE (stored.number_of_items, stored.total_amount) <> (incoming.number_of_items, incoming.total_amount)
        ORDER BY incoming.position`);
      return { added: result.rowCount, conflicting: [...conflicting] };
    }),
});

export type OrdersRepository = ReturnType<typeof ordersRepository>;
