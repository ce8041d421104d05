import {
  Agent,
  type ClientRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import type { TLSSocket } from 'node:tls';
import { HttpError } from '@crud-master/shared';
import type { Middleware } from 'koa';
import proxy from 'koa-proxies';

export const MOVIES_PATH = '/api/movies';
const PROXIED_PATH = /^\/api\/movies(?:\/|$)/i;

interface ProxiedRequest extends IncomingMessage {
  upstreamRequest?: ClientRequest;
  upstreamError?: Error;
  upstreamTimedOut?: boolean;
}

// RFC 9110 7.6.1: meant for one connection only; Transfer-Encoding is left to Node, which frames each hop itself
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
];

/** The hop-by-hop headers of a message: the fixed ones and those its Connection header names. */
const hopByHopOf = (headers: IncomingHttpHeaders): string[] =>
  headers.connection === undefined
    ? HOP_BY_HOP
    : [
        ...HOP_BY_HOP,
        ...headers.connection
          .split(',')
          .map((name) => name.trim().toLowerCase())
          .filter(Boolean),
      ];

/** The metrics' route label of a path: the collection, one movie, or deeper (koa-proxies forwards those too). */
export function movieRoute(path: string): string | undefined {
  if (path === MOVIES_PATH || path === `${MOVIES_PATH}/`) return MOVIES_PATH;
  if (!path.startsWith(`${MOVIES_PATH}/`)) return undefined;
  return path
    .slice(MOVIES_PATH.length + 1)
    .replace(/\/$/, '')
    .includes('/')
    ? `${MOVIES_PATH}/*`
    : `${MOVIES_PATH}/:id`;
}

/**
 * The headers inventory gets, set on the request before http-proxy copies them: hop-by-hop ones stay on this hop
 * (Expect too: Node has answered 100 Continue here), and X-Forwarded-* say what the gateway saw, never what the client
 * claims (it could otherwise forge its address for inventory). Done here rather than on http-proxy's proxyReq event,
 * which comes too late for a request that waited for an upstream socket (its headers are written by then) and never
 * for one that says Expect.
 */
function upstreamHeaders(req: IncomingMessage): void {
  const { headers } = req;
  for (const name of [...hopByHopOf(headers), 'expect']) delete headers[name];
  for (const name of Object.keys(headers)) {
    if (name === 'forwarded' || name.startsWith('x-forwarded-')) delete headers[name];
  }
  headers['x-forwarded-for'] = req.socket.remoteAddress ?? '';
  headers['x-forwarded-proto'] = (req.socket as TLSSocket).encrypted ? 'https' : 'http';
  if (headers.host) headers['x-forwarded-host'] = headers.host;
}

/**
 * koa-proxies settles its promise on the response's 'close' by building an Error, stack trace and all, which it throws
 * away after every response that finished (a finished response closes too): about 15 µs of a request's 440 in a CPU
 * profile (issue 27). Its listener runs only for a response that closed unfinished, the one case it is there for.
 */
function onlyWhenUnfinished(res: ServerResponse, listener: ((...args: unknown[]) => void) | undefined): void {
  if (listener === undefined) return;
  res.removeListener('close', listener);
  res.once('close', () => {
    if (!res.writableFinished) listener();
  });
}

/**
 * /api/movies* goes to inventory unchanged (method, path, query, end-to-end headers, status, body); hop-by-hop
 * headers stay on their hop, and X-Forwarded-For/-Proto/-Host say what the gateway saw. It must come before any body
 * parser, which would consume the request stream. koa-proxies maps most failures to 500, so a refused or broken
 * connection is mapped here to 502 and a timeout to 504.
 */
export function inventoryProxy(target: string, timeoutMs: number, maxSockets: number): Middleware {
  // parsed once here: http-proxy would parse a target given as a string on every request
  const upstream = new URL(target);
  // http-proxy takes a parsed target and proxyTimeout too; koa-proxies' types know neither. Its xfwd would append to
  // the client's values.
  const options: Omit<proxy.IBaseKoaProxiesOptions, 'target'> & {
    target: Record<string, string>;
    proxyTimeout: number;
  } = {
    target: { protocol: upstream.protocol, hostname: upstream.hostname, port: upstream.port, path: upstream.pathname },
    // an idle connection is closed a second before inventory's keep-alive timeout (its Keep-Alive header), so that no
    // request is sent on one that inventory is closing; Node applies that header only below the agent's own timeout
    agent: new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, timeout: timeoutMs }),
    proxyTimeout: timeoutMs,
    logs: false,
    events: {
      error: (err: Error, req: IncomingMessage, res: ServerResponse) => {
        // once inventory's answer is on its way, a failure of the rest (the upstream request ended early) is no error
        if (!res.headersSent) (req as ProxiedRequest).upstreamError = err;
      },
      proxyReq: (proxyReq: ClientRequest, req: IncomingMessage) => {
        (req as ProxiedRequest).upstreamRequest = proxyReq;
        proxyReq.on('timeout', () => {
          (req as ProxiedRequest).upstreamTimedOut = true;
        });
      },
      proxyRes: (proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse) => {
        const keepAlive = proxyRes.headers['keep-alive'];
        for (const name of hopByHopOf(proxyRes.headers)) delete proxyRes.headers[name];
        // http-proxy would otherwise echo the client's Connection header; this hop's is Node's own decision
        proxyRes.headers.connection = (res as ServerResponse & { shouldKeepAlive: boolean }).shouldKeepAlive
          ? 'keep-alive'
          : 'close';
        // inventory answered before the body arrived (413): the gateway drains the rest itself (shared listen()), and
        // frees its upstream socket rather than keep sending inventory a body that nobody reads
        proxyRes.once('end', () => {
          if (!req.complete) (req as ProxiedRequest).upstreamRequest?.destroy();
          // the client has the headers: the agent reads inventory's keep-alive timeout once the response ended
          if (keepAlive !== undefined) proxyRes.headers['keep-alive'] = keepAlive;
        });
      },
    },
  };
  // a RegExp: koa-proxies compiles a string path into one on every request
  const forward = proxy(PROXIED_PATH, options as unknown as proxy.IBaseKoaProxiesOptions);

  return async (ctx, next) => {
    // what koa-proxies matches (case-insensitive, whole segments); anything else skips its per-request path matcher
    if (!PROXIED_PATH.test(ctx.path)) {
      await next();
      return;
    }
    ctx.state.route = movieRoute(ctx.path);
    upstreamHeaders(ctx.req);
    const closeListeners = ctx.res.listenerCount('close');
    const forwarded = forward(ctx, next) as Promise<void>;
    onlyWhenUnfinished(
      ctx.res,
      ctx.res.listeners('close')[closeListeners] as ((...args: unknown[]) => void) | undefined,
    );
    await forwarded;
    const req = ctx.req as ProxiedRequest;
    if (req.upstreamTimedOut) throw new HttpError(504, `The inventory did not answer within ${timeoutMs} ms.`);
    if (req.upstreamError)
      throw new HttpError(
        502,
        'The inventory is unreachable ' +
          `(${(req.upstreamError as NodeJS.ErrnoException).code ?? req.upstreamError.message}).`,
      );
  };
}
