import { Agent, type ClientRequest, type IncomingMessage } from 'node:http';
import { HttpError } from '@crud-master/shared';
import type { Middleware } from 'koa';
import proxy from 'koa-proxies';

export const MOVIES_PATH = '/api/movies';

interface ProxiedRequest extends IncomingMessage {
  upstreamError?: Error;
  upstreamTimedOut?: boolean;
}

/**
 * /api/movies* goes to inventory unchanged (method, path, query, headers, status, body). It must come before any
 * body parser, which would consume the request stream. koa-proxies maps most failures to 500, so a refused or
 * broken connection is mapped here to 502 and a timeout to 504.
 */
export function inventoryProxy(target: string, timeoutMs: number): Middleware {
  // http-proxy takes proxyTimeout and xfwd too; koa-proxies' types leave them out
  const options: proxy.IBaseKoaProxiesOptions & { proxyTimeout: number; xfwd: boolean } = {
    target,
    agent: new Agent({ keepAlive: true }),
    proxyTimeout: timeoutMs,
    xfwd: true,
    logs: false,
    events: {
      error: (err: Error, req: IncomingMessage) => {
        (req as ProxiedRequest).upstreamError = err;
      },
      proxyReq: (proxyReq: ClientRequest, req: IncomingMessage) => {
        proxyReq.on('timeout', () => {
          (req as ProxiedRequest).upstreamTimedOut = true;
        });
      },
    },
  };
  const forward = proxy(MOVIES_PATH, options);

  return async (ctx, next) => {
    await forward(ctx, next);
    const req = ctx.req as ProxiedRequest;
    if (req.upstreamTimedOut) throw new HttpError(504, `The inventory did not answer within ${timeoutMs} ms.`);
    if (req.upstreamError) throw new HttpError(502, `The inventory is unreachable (${(req.upstreamError as NodeJS.ErrnoException).code ?? req.upstreamError.message}).`);
  };
}
