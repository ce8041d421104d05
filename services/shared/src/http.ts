import { randomUUID } from 'node:crypto';
import type { Context, Middleware } from 'koa';
import bodyParser from 'koa-bodyparser';
import { HttpError, unavailable } from './errors.js';
import type { Logger } from './logger.js';

/** Records an answered request, given how long it took; requestContext calls it as it logs the request. */
export type RequestObserver = (ctx: Context, seconds: number) => void;

export const REQUEST_ID_HEADER = 'x-request-id';

/**
 * Gives each request an id (the client's X-Request-Id, else a new one), sets it on the request too so a proxy
 * forwards it, echoes it on the response, and when the request ends logs it and hands its duration to the metrics
 * (one clock for both).
 */
export function requestContext(logger: Logger, observe: RequestObserver): Middleware {
  return async (ctx, next) => {
    const given = ctx.get(REQUEST_ID_HEADER);
    const requestId = /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
    ctx.req.headers[REQUEST_ID_HEADER] = requestId;
    ctx.set('X-Request-Id', requestId);
    const started = performance.now();
    try {
      await next();
    } finally {
      const ms = performance.now() - started;
      observe(ctx, ms / 1000);
      logger.info(
        { requestId, method: ctx.method, url: ctx.url, status: ctx.status, ms: Math.round(ms * 10) / 10 },
        'request',
      );
    }
  };
}

/** JSON bodies only: another content type gives 415, malformed JSON 400 and an oversized body 413. */
export function jsonBody(limit: string): Middleware {
  const jsonTypes = ['application/json', 'application/*+json'];
  const parse = bodyParser({ enableTypes: ['json'], extendTypes: { json: jsonTypes }, jsonLimit: limit, strict: true });
  return async (ctx, next) => {
    const hasBody = Boolean(ctx.request.length) || ctx.get('transfer-encoding') !== '';
    if (hasBody && !ctx.is(jsonTypes)) {
      throw new HttpError(415, 'The request body must be application/json.');
    }
    await parse(ctx, next);
  };
}

/** What /readyz reports: ready or not, and optionally figures an operator looks at (e.g. dead letters). */
export interface Readiness {
  ready: boolean;
  details?: Record<string, unknown>;
}

/** GET /healthz (the process is alive) and GET /readyz (its dependencies answer). */
export function healthChecks(readiness: () => Promise<boolean | Readiness>, dependency: string): Middleware {
  return async (ctx, next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      await next();
      return;
    }
    if (ctx.path === '/healthz') {
      ctx.state.route = ctx.path;
      ctx.body = { status: 'ok' };
    } else if (ctx.path === '/readyz') {
      ctx.state.route = ctx.path;
      const answer = await readiness();
      const { ready, details } = typeof answer === 'boolean' ? { ready: answer, details: undefined } : answer;
      const extra = details === undefined ? {} : { details };
      if (!ready) throw unavailable(`${dependency} is unreachable.`, extra);
      ctx.body = { status: 'ready', ...extra };
    } else {
      await next();
    }
  };
}
