import { STATUS_CODES } from 'node:http';
import type { Context, Middleware } from 'koa';
import type { Logger } from 'pino';

export const PROBLEM_JSON = 'application/problem+json';

/** The one error type of the services: an HTTP status and an RFC 9457 problem detail. */
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly extensions: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

/** 503 with Retry-After, for a dependency (database, broker) that is down or too slow. */
export const unavailable = (detail: string, extensions: Record<string, unknown> = {}, retryAfterSeconds = 5) =>
  new HttpError(503, detail, extensions, { 'Retry-After': String(retryAfterSeconds) });

export function sendProblem(ctx: Context, error: HttpError): void {
  ctx.status = error.status;
  ctx.set(error.headers);
  ctx.type = PROBLEM_JSON;
  ctx.body = {
    type: 'about:blank',
    title: STATUS_CODES[error.status] ?? 'Error',
    status: error.status,
    detail: error.detail,
    instance: ctx.path,
    ...error.extensions,
  };
}

/** Errors thrown by koa and its middleware (body parser, router) carry an exposable 4xx status. */
function isClientError(error: unknown): error is { status: number; message: string; expose?: boolean } {
  const status = (error as { status?: unknown } | null)?.status;
  return typeof status === 'number' && status >= 400 && status < 500;
}

/** Maps an error of a service's own dependencies (its database) to a problem; undefined for anything else. */
export type ErrorTranslator = (error: unknown) => HttpError | undefined;

function toHttpError(error: unknown, translate: ErrorTranslator): HttpError | undefined {
  if (error instanceof HttpError) return error;
  if (isClientError(error))
    return new HttpError(
      error.status,
      error.expose === false ? (STATUS_CODES[error.status] ?? 'Bad request') : error.message,
    );
  return translate(error);
}

/** The single error middleware: every error and every unmatched route becomes application/problem+json. */
export function problemDetails(logger: Logger, translate: ErrorTranslator = () => undefined): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      // an unmatched route (404) or method (405, with its Allow header) leaves the status without a body; the
      // router says 501 for a method it does not know (PROPFIND), which this API simply does not allow either
      if (ctx.status >= 400 && ctx.body == null && ctx.respond !== false && !ctx.headerSent) {
        if (ctx.status === 404) throw new HttpError(404, `No route for ${ctx.method} ${ctx.path}.`);
        throw new HttpError(ctx.status === 501 ? 405 : ctx.status, `${ctx.method} is not allowed on ${ctx.path}.`);
      }
    } catch (error) {
      if (ctx.headerSent || !ctx.writable) {
        logger.warn({ err: error, path: ctx.path }, 'request failed after the response started');
        return;
      }
      // answered before the whole body arrived (413, 415): read and drop the rest, or the next request on this
      // keep-alive connection would be parsed from the middle of this body (and a proxy writing it would get EPIPE)
      if (!ctx.req.complete) ctx.req.resume();
      const known = toHttpError(error, translate);
      if (known === undefined || known.status >= 500) logger.error({ err: error, path: ctx.path }, 'request failed');
      sendProblem(ctx, known ?? new HttpError(500, 'An unexpected error occurred.'));
    }
  };
}
