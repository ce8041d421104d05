import { type DatabasePool, sql } from 'slonik';
import { z } from 'zod';

// bigserial ids arrive as BigInt; they stay far below 2^53, so JSON gets a plain number
const movieRow = z.object({ id: z.coerce.number(), title: z.string(), description: z.string() });

export type Movie = z.infer<typeof movieRow>;
export type NewMovie = Pick<Movie, 'title' | 'description'>;
export type MovieChanges = Partial<NewMovie>;
export interface MovieSearch {
  title?: string | undefined;
  limit: number;
  offset: number;
}

const columns = sql.fragment`id, title, description`;

/** The movies table, through slonik; every function returns plain objects. */
export const moviesRepository = (pool: DatabasePool) => ({
  list: ({ title, limit, offset }: MovieSearch): Promise<readonly Movie[]> => {
    // strpos matches the title literally: % and _ are plain characters here, unlike in LIKE
    const match = title === undefined ? sql.fragment`TRUE` : sql.fragment`strpos(lower(title), lower(${title})) > 0`;
    return pool.any(sql.type(movieRow)`
      SELECT ${columns} FROM movies WHERE ${match} ORDER BY id LIMIT ${limit} OFFSET ${offset}`);
  },

  find: (id: string): Promise<Movie | null> =>
    pool.maybeOne(sql.type(movieRow)`SELECT ${columns} FROM movies WHERE id = ${id}`),

  create: ({ title, description }: NewMovie): Promise<Movie> =>
    pool.one(sql.type(movieRow)`
      INSERT INTO movies (title, description) VALUES (${title}, ${description}) RETURNING ${columns}`),

  update: (id: string, changes: MovieChanges): Promise<Movie | null> =>
    pool.maybeOne(sql.type(movieRow)`
      UPDATE movies
      SET title = COALESCE(${changes.title ?? null}, title),
          description = COALESCE(${changes.description ?? null}, description),
          updated_at = now()
      WHERE id = ${id}
      RETURNING ${columns}`),

  remove: async (id: string): Promise<boolean> => {
    const result = await pool.query(sql.unsafe`DELETE FROM movies WHERE id = ${id}`);
    return result.rowCount === 1;
  },

  removeAll: async (): Promise<number> => {
    const result = await pool.query(sql.unsafe`DELETE FROM movies`);
    return result.rowCount;
  },
});

export type MoviesRepository = ReturnType<typeof moviesRepository>;
