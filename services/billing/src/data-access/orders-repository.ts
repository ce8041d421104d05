import type { OrderMessage } from '@crud-master/shared';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';
import { KEY_REUSED } from '../domain/orders.js';

export interface Order extends OrderMessage {
  message_id: string;
}

export interface StoreOutcome {
  /** Rows added to orders by this batch. */
  added: number;
  /** Positions in the batch of orders whose (user_id, message_id) holds a different order: recorded as rejected. */
  rejected: number[];
}

const orderColumns = ['text', 'int4', 'numeric', 'text'] as const;
const rowsOf = (orders: readonly Order[]) =>
  orders.map((order) => [order.user_id, order.number_of_items, order.total_amount, order.message_id]);

/** The orders and rejected_orders tables, through slonik. */
export const ordersRepository = (pool: DatabasePool) => ({
  /**
   * Stores a batch in one transaction. A (user_id, message_id) already stored with the same order (a redelivery, a
   * client's retry) adds nothing; one stored with a different order goes to rejected_orders, in the same transaction.
   */
  store: (orders: readonly Order[]): Promise<StoreOutcome> =>
    pool.transaction(async (transaction) => {
      const result = await transaction.query(sql.unsafe`
        INSERT INTO orders (user_id, number_of_items, total_amount, message_id)
        SELECT * FROM ${sql.unnest(rowsOf(orders), [...orderColumns])}
        ON CONFLICT (user_id, message_id) DO NOTHING`);
      // every row inserted: none conflicts (the usual batch, which then costs one query)
      if (result.rowCount === orders.length) return { added: result.rowCount, rejected: [] };
      // in the same transaction, so it sees this batch's rows too: a key reused with another order in one batch
      const rejected = await transaction.anyFirst(sql.type(z.object({ position: z.coerce.number() }))`
        SELECT incoming.position - 1 AS position
        FROM ${sql.unnest(rowsOf(orders), [...orderColumns])}
          WITH ORDINALITY AS incoming (user_id, number_of_items, total_amount, message_id, position)
        JOIN orders stored USING (user_id, message_id)
        WHERE (stored.number_of_items, stored.total_amount) <> (incoming.number_of_items, incoming.total_amount)
        ORDER BY incoming.position`);
      if (rejected.length > 0) {
        await transaction.query(sql.unsafe`
          INSERT INTO rejected_orders (user_id, number_of_items, total_amount, message_id, reason)
          SELECT *, ${KEY_REUSED}
          FROM ${sql.unnest(rowsOf(rejected.map((position) => orders[position]!)), [...orderColumns])}
          ON CONFLICT DO NOTHING`);
      }
      return { added: result.rowCount, rejected: [...rejected] };
    }),
});

export type OrdersRepository = ReturnType<typeof ordersRepository>;
