import { Agent, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { HttpError } from '@crud-master/shared';
import type { Middleware } from 'koa';
import proxy from 'koa-proxies';

export const MOVIES_PATH = '/api/movies';
const PROXIED_PATH = /^\/api\/movies(?:\/|$)/i;

interface ProxiedRequest extends IncomingMessage {
  upstreamError?: Error;
  upstreamTimedOut?: boolean;
}

// RFC 9110 7.6.1: meant for one connection only; Transfer-Encoding is left to Node, which frames each hop itself
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'upgrade'];

/** The hop-by-hop headers of a message: the fixed ones and those its Connection header names. */
const hopByHopOf = (headers: IncomingHttpHeaders): string[] => [
  ...HOP_BY_HOP,
  ...String(headers.connection ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter(Boolean),
];

/** The metrics' route label of a path: the collection, one movie, or deeper (koa-proxies forwards those too). */
function movieRoute(path: string): string | undefined {
  if (path === MOVIES_PATH || path === `${MOVIES_PATH}/`) return MOVIES_PATH;
  if (!path.startsWith(`${MOVIES_PATH}/`)) return undefined;
  return path.slice(MOVIES_PATH.length + 1).replace(/\/$/, '').includes('/') ? `${MOVIES_PATH}/*` : `${MOVIES_PATH}/:id`;
}

/** What the gateway saw, never what the client claims: a client could otherwise forge its address for inventory. */
function forwardedFor(proxyReq: ClientRequest, req: IncomingMessage): void {
  for (const name of proxyReq.getHeaderNames()) {
    if (name === 'forwarded' || name.startsWith('x-forwarded-')) proxyReq.removeHeader(name);
  }
  proxyReq.setHeader('x-forwarded-for', req.socket.remoteAddress ?? '');
  proxyReq.setHeader('x-forwarded-proto', (req.socket as TLSSocket).encrypted ? 'https' : 'http');
  if (req.headers.host) proxyReq.setHeader('x-forwarded-host', req.headers.host);
}

/**
 * /api/movies* goes to inventory unchanged (method, path, query, end-to-end headers, status, body); hop-by-hop
 * headers stay on their hop, and X-Forwarded-For/-Proto/-Host say what the gateway saw. It must come before any body
 * parser, which would consume the request stream. koa-proxies maps most failures to 500, so a refused or broken
 * connection is mapped here to 502 and a timeout to 504.
 */
export function inventoryProxy(target: string, timeoutMs: number): Middleware {
  // parsed once here: http-proxy would parse a target given as a string on every request
  const upstream = new URL(target);
  // http-proxy takes a parsed target and proxyTimeout too; koa-proxies' types know neither. Its xfwd would append to
  // the client's values.
  const options: Omit<proxy.IBaseKoaProxiesOptions, 'target'> & { target: Record<string, string>; proxyTimeout: number } = {
    target: { protocol: upstream.protocol, hostname: upstream.hostname, port: upstream.port, path: upstream.pathname },
    agent: new Agent({ keepAlive: true }),
    proxyTimeout: timeoutMs,
    logs: false,
    events: {
      error: (err: Error, req: IncomingMessage) => {
        (req as ProxiedRequest).upstreamError = err;
      },
      proxyReq: (proxyReq: ClientRequest, req: IncomingMessage) => {
        for (const name of hopByHopOf(req.headers)) proxyReq.removeHeader(name);
        forwardedFor(proxyReq, req);
        proxyReq.on('timeout', () => {
          (req as ProxiedRequest).upstreamTimedOut = true;
        });
      },
      proxyRes: (proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse) => {
        for (const name of hopByHopOf(proxyRes.headers)) delete proxyRes.headers[name];
        // http-proxy would otherwise echo the client's Connection header; this hop's is Node's own decision
        proxyRes.headers.connection = (res as ServerResponse & { shouldKeepAlive: boolean }).shouldKeepAlive ? 'keep-alive' : 'close';
      },
    },
  };
  const forward = proxy(MOVIES_PATH, options as unknown as proxy.IBaseKoaProxiesOptions);

  return async (ctx, next) => {
    // what koa-proxies matches (case-insensitive, whole segments); anything else skips its per-request path matcher
    if (!PROXIED_PATH.test(ctx.path)) {
      await next();
      return;
    }
    ctx.state.route = movieRoute(ctx.path);
    await forward(ctx, next);
    const req = ctx.req as ProxiedRequest;
    if (req.upstreamTimedOut) throw new HttpError(504, `The inventory did not answer within ${timeoutMs} ms.`);
    if (req.upstreamError) throw new HttpError(502, `The inventory is unreachable (${(req.upstreamError as NodeJS.ErrnoException).code ?? req.upstreamError.message}).`);
  };
}
