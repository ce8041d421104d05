import { HttpError, parseInput, requiredText, storableText } from '@crud-master/shared';
import { z } from 'zod';
import type { Movie, MoviesRepository } from '../data-access/movies-repository.js';

export const PAGE_SIZE_DEFAULT = 50;
export const PAGE_SIZE_MAX = 100;

const title = requiredText(255);
const description = storableText(10_000);

export const newMovieSchema = z.object({ title, description: description.default('') });

export const movieChangesSchema = z
  .object({ title: title.optional(), description: description.optional() })
  .refine((changes) => changes.title !== undefined || changes.description !== undefined, {
    error: 'give at least one of title and description',
  });

const integerParam = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,9}$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().min(min).max(max));

export const movieSearchSchema = z.object({
  title: storableText(255).optional(),
  limit: integerParam(1, PAGE_SIZE_MAX).default(PAGE_SIZE_DEFAULT),
  offset: integerParam(0, 1_000_000_000).default(0),
});

const BIGINT_MAX = 9_223_372_036_854_775_807n;

/** A movie id is a positive bigint; it stays a string so that no precision is lost on the way to SQL. */
export const movieIdSchema = z
  .string()
  .refine((id) => /^[1-9]\d{0,18}$/.test(id) && BigInt(id) <= BIGINT_MAX, 'must be a positive integer below 2^63');

const parseId = (id: string) => parseInput(movieIdSchema, id, 'id');

const notFound = (id: string) => new HttpError(404, `Movie ${id} does not exist.`);

/** The movie use cases: validation and not-found rules on top of the repository. */
export const moviesService = (movies: MoviesRepository) => ({
  list: (query: unknown) => movies.list(parseInput(movieSearchSchema, query, 'query')),

  create: (body: unknown) => movies.create(parseInput(newMovieSchema, body, 'body')),

  get: async (rawId: string): Promise<Movie> => {
    const id = parseId(rawId);
    return (await movies.find(id)) ?? Promise.reject(notFound(id));
  },

  update: async (rawId: string, body: unknown): Promise<Movie> => {
    const id = parseId(rawId);
    return (await movies.update(id, parseInput(movieChangesSchema, body, 'body'))) ?? Promise.reject(notFound(id));
  },

  remove: async (rawId: string): Promise<void> => {
    const id = parseId(rawId);
    if (!(await movies.remove(id))) throw notFound(id);
  },

  removeAll: () => movies.removeAll(),
});

export type MoviesService = ReturnType<typeof moviesService>;
