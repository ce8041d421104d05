import type { Options } from 'amqplib';
import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';

/** A dead letter as it goes to the dead-letter exchange: its body, properties (reason header included) and cause. */
export interface DeadLetter {
  messageId: string | undefined;
  cause: string;
  reason: string;
  properties: Options.Publish;
  content: Buffer;
}

const heldRow = z.object({
  id: z.coerce.number(),
  properties: z.record(z.string(), z.unknown()),
  content: z.instanceof(Buffer),
});
const heldFigures = z.object({ held: z.coerce.number(), oldest_seconds: z.coerce.number().nullable() });

/**
 * held_dead_letters: the dead letters the broker would not take, kept in billing_db until it does, each for the
 * dead-letter exchange it goes to. Several consumers may move them at once (one per billing VM): each takes rows the
 * others have not locked.
 */
export const heldDeadLettersRepository = (pool: DatabasePool, exchange: string) => ({
  hold: async ({ messageId, cause, reason, properties, content }: DeadLetter): Promise<void> => {
    await pool.query(sql.unsafe`
      INSERT INTO held_dead_letters (exchange, message_id, cause, reason, properties, content)
      VALUES (${exchange}, ${messageId ?? null}, ${cause}, ${reason},
        ${sql.jsonb(properties as never)}, ${sql.binary(content)})`);
  },

  /**
   * Offers the oldest held dead letters, up to `limit`, to `place` in order, and deletes each it placed; stops at the
   * first it could not place. Returns how many it moved.
   */
  move: (limit: number, place: (properties: Options.Publish, content: Buffer) => Promise<boolean>): Promise<number> =>
    pool.transaction(async (transaction) => {
      const rows = await transaction.any(sql.type(heldRow)`
        SELECT id, properties, content FROM held_dead_letters WHERE exchange = ${exchange}
        ORDER BY id LIMIT ${limit} FOR UPDATE SKIP LOCKED`);
      const placed: number[] = [];
      for (const row of rows) {
        if (!(await place(row.properties, row.content))) break;
        placed.push(row.id);
      }
      if (placed.length > 0)
        await transaction.query(sql.unsafe`DELETE FROM held_dead_letters WHERE id = ANY(${sql.array(placed, 'int8')})`);
      return placed.length;
    }),

  /** How many are held, and how long the oldest has been (null when none is). */
  figures: async () => {
    const { held, oldest_seconds: oldestSeconds } = await pool.one(sql.type(heldFigures)`
      SELECT count(*) AS held, extract(epoch FROM now() - min(held_at)) AS oldest_seconds
      FROM held_dead_letters WHERE exchange = ${exchange}`);
    return { held, oldestSeconds };
  },
});

export type HeldDeadLetters = ReturnType<typeof heldDeadLettersRepository>;
