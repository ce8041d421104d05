import type { IncomingMessage } from 'node:http';
import { HttpError } from '@crud-master/shared';
import type { Middleware } from 'koa';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import type { GatewayMetrics, LimitReason } from '../metrics.js';
import { movieRoute } from './inventory-proxy.js';

export interface RateLimitSettings {
  windowSeconds: number;
  /** per client address, every request; 0: no limit */
  requests: number;
  /** per client address, POST/PUT/DELETE */
  writes: number;
  /** per user_id, POST /api/billing */
  ordersPerUser: number;
  trustedProxies: string[];
}

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** An IPv4 client over an IPv6 socket is ::ffff:a.b.c.d: the same client as a.b.c.d. */
const plain = (address: string) => address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');

/**
 * The client's address: the socket's, unless that is a trusted proxy; then X-Forwarded-For is read from the right,
 * past the trusted proxies, to the first address none of them is (what a client writes further left is not believed).
 */
export function clientAddress(req: IncomingMessage, trusted: ReadonlySet<string>): string {
  let address = plain(req.socket.remoteAddress ?? '');
  const forwarded = String(req.headers['x-forwarded-for'] ?? '').split(',');
  while (trusted.has(address) && forwarded.length > 0) {
    const hop = plain(forwarded.pop()!.trim());
    if (hop) address = hop;
  }
  return address;
}

/** The metrics' route of a request, from a fixed set. */
const routeOf = (path: string) => movieRoute(path) ?? (path === '/api/billing' ? '/api/billing' : 'other');

/**
 * Rate limits with rate-limiter-flexible's in-memory limiter: fixed windows, counted by this instance alone (PM2's
 * two gateway instances each count their own). Past a limit: 429 problem+json with Retry-After (the window's rest).
 */
export function rateLimits(settings: RateLimitSettings, rateLimited: GatewayMetrics['rateLimited']) {
  const limit = (points: number, what: string) => ({
    limiter: points > 0 ? new RateLimiterMemory({ points, duration: settings.windowSeconds }) : undefined,
    detail: (key: string) => `Too many ${what} ${key}: at most ${points} per ${settings.windowSeconds} s.`,
  });
  const limits: Record<LimitReason, ReturnType<typeof limit>> = {
    address: limit(settings.requests, 'requests from'),
    writes: limit(settings.writes, 'writes from'),
    user: limit(settings.ordersPerUser, 'orders for user_id'),
  };
  const trusted = new Set(settings.trustedProxies.map(plain));

  async function take(reason: LimitReason, key: string, route: string) {
    try {
      await limits[reason].limiter?.consume(key);
    } catch (refusal) {
      if (!(refusal instanceof RateLimiterRes)) throw refusal;
      rateLimited.inc({ route, reason });
      const retryAfter = String(Math.max(1, Math.ceil(refusal.msBeforeNext / 1000)));
      throw new HttpError(429, limits[reason].detail(key), {}, { 'Retry-After': retryAfter });
    }
  }

  /** Every request, by its client address; writes also against the stricter write limit. */
  const byAddress: Middleware = async (ctx, next) => {
    const address = clientAddress(ctx.req, trusted);
    const route = routeOf(ctx.path);
    await take('address', address, route);
    if (WRITES.has(ctx.method)) await take('writes', address, route);
    await next();
  };

  /** An order of a valid body, by its user_id. */
  const admitOrder = (userId: string) => take('user', userId, '/api/billing');

  return { byAddress, admitOrder };
}
