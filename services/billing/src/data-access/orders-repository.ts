import type { OrderMessage } from '@crud-master/shared';
import { type DatabasePool, sql } from 'slonik';

export interface Order extends OrderMessage {
  message_id: string;
}

/** The orders table, through slonik. */
export const ordersRepository = (pool: DatabasePool) => ({
  /** Stores a batch in one statement; a message_id already stored (a redelivery) is skipped. Returns rows added. */
  insertMany: async (orders: readonly Order[]): Promise<number> => {
    const rows = orders.map((order) => [order.user_id, order.number_of_items, order.total_amount, order.message_id]);
    const result = await pool.query(sql.unsafe`
      INSERT INTO orders (user_id, number_of_items, total_amount, message_id)
      SELECT * FROM ${sql.unnest(rows, ['text', 'int4', 'numeric', 'text'])}
      ON CONFLICT (message_id) DO NOTHING`);
    return result.rowCount;
  },
});

export type OrdersRepository = ReturnType<typeof ordersRepository>;
