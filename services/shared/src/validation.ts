import { z } from 'zod';
import { HttpError } from './errors.js';

/** A string PostgreSQL can store: text columns reject the NUL character. */
export const storableText = (max: number) =>
  z
    .string()
    .max(max, `must be at most ${max} characters`)
    .refine((value) => !value.includes('\u0000'), 'must not contain NUL characters');

/** A required, trimmed, non-empty storable string. */
export const requiredText = (max: number) => z.string().trim().min(1, 'must not be empty').pipe(storableText(max));

/** Parses client input with a schema; a mismatch is a 400 problem that lists each invalid field. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const errors = parsed.error.issues.map((issue) => ({ field: issue.path.join('.') || what, message: issue.message }));
  throw new HttpError(400, `Invalid ${what}: ${errors.map((e) => `${e.field} ${e.message}`).join('; ')}.`, { errors });
}
