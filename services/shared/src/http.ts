import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, Server as NetServer } from 'node:net';
import { createServer, type OutgoingHttpHeader, type OutgoingHttpHeaders, type Server, ServerResponse, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type Koa from 'koa';
import type { Middleware } from 'koa';
import bodyParser from 'koa-bodyparser';
import { HttpError, PROBLEM_JSON, unavailable } from './errors.js';
import type { Logger } from './logger.js';
import type { RequestObserver } from './metrics.js';

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
      logger.info({ requestId, method: ctx.method, url: ctx.url, status: ctx.status, ms: Math.round(ms * 10) / 10 }, 'request');
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

/** Servers being closed: their responses ask clients to close the connection. */
const draining = new WeakSet<Server>();

/** Starts the app's HTTP server; resolves once it listens. */
export async function listen(app: Koa, port: number, host?: string): Promise<Server> {
  // while draining, each response closes its connection, so a keep-alive client reconnects to a live instance; set
  // as the head is written, after any proxied upstream headers (which would say keep-alive)
  class DrainingAwareResponse extends ServerResponse {
    override writeHead(statusCode: number, ...rest: [string | OutgoingHttpHeaders | OutgoingHttpHeader[] | undefined, OutgoingHttpHeaders?]) {
      if (draining.has(server)) this.setHeader('Connection', 'close');
      return super.writeHead(statusCode, ...(rest as [string, OutgoingHttpHeaders]));
    }
  }
  const server: Server = createServer({ ServerResponse: DrainingAwareResponse }, app.callback());
  server.on('clientError', answerMalformedRequest);
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}

/** Node's parser rejects malformed HTTP before the app sees it; answer that with problem+json too. */
function answerMalformedRequest(error: NodeJS.ErrnoException, socket: Duplex): void {
  if (!socket.writable || error.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
  const title = STATUS_CODES[status] ?? 'Bad Request';
  const body = JSON.stringify({ type: 'about:blank', title, status, detail: `The request is not valid HTTP (${error.code ?? 'parse error'}).` });
  socket.end(
    `HTTP/1.1 ${status} ${title}\r\nContent-Type: ${PROBLEM_JSON}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** The port a listening server (HTTP or plain TCP) was given. */
export const portOf = (server: NetServer): number => (server.address() as AddressInfo).port;

const IDLE_GRACE_MS = 1_000;
const DRAIN_LIMIT_MS = 8_000;

/**
 * Stops accepting connections and lets in-flight requests finish, for a reload that drops no request. http's own
 * close() would also drop idle keep-alive sockets at once, racing a request the client has just sent on one; here an
 * idle socket gets a grace period, in which its request is still answered (with Connection: close).
 */
export function closeServer(server: Server): Promise<void> {
  draining.add(server);
  return new Promise((resolve) => {
    const idle = setTimeout(() => server.closeIdleConnections(), IDLE_GRACE_MS);
    const limit = setTimeout(() => server.closeAllConnections(), DRAIN_LIMIT_MS);
    NetServer.prototype.close.call(server, () => {
      clearTimeout(idle);
      clearTimeout(limit);
      resolve();
    });
  });
}
