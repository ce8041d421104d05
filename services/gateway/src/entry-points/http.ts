import Router from '@koa/router';
import {
  healthChecks,
  httpMetrics,
  jsonBody,
  metricsEndpoint,
  problemDetails,
  requestContext,
  type Logger,
} from '@crud-master/shared';
import Koa, { type Middleware } from 'koa';
import type { Registry } from 'prom-client';
import type {} from 'koa-bodyparser'; // types ctx.request.body
import { type OrderPublisher, placeOrder } from '../domain/billing.js';
import type { GatewayMetrics, OrderOutcome } from '../metrics.js';
import { apiDocs } from './docs.js';
import { inventoryProxy } from './inventory-proxy.js';
import { rateLimits, type RateLimitSettings } from './rate-limits.js';

export const BILLING_BODY_LIMIT = '16kb';

interface GatewayOptions {
  inventoryUrl: string;
  upstreamTimeoutMs: number;
  upstreamMaxSockets: number;
  orders: OrderPublisher;
  isReady: () => Promise<boolean>;
  registry: Registry;
  orderCounter: GatewayMetrics['orders'];
  rateLimited: GatewayMetrics['rateLimited'];
  limits: RateLimitSettings;
  /** Serve /metrics here too (the operator allowed it on the public port). */
  publicMetrics: boolean;
  logger: Logger;
}

/** Counts each order by how it ended; a thrown error by the status it is about to be answered with. */
function countOrders(orderCounter: GatewayMetrics['orders']): Middleware {
  return async (ctx, next) => {
    let outcome: OrderOutcome = 'failed';
    try {
      await next();
      outcome = 'accepted';
    } catch (error) {
      const status = (error as { status?: unknown }).status;
      if (status === 503) outcome = 'unavailable';
      else if (typeof status === 'number' && status >= 400 && status < 500) outcome = 'invalid';
      throw error;
    } finally {
      orderCounter.inc({ outcome });
    }
  };
}

/** The public API on :8080: the movies proxy, POST /api/billing, /healthz and /readyz (and /metrics if allowed). */
export function createHttpApp(options: GatewayOptions): Koa {
  const {
    inventoryUrl,
    upstreamTimeoutMs,
    upstreamMaxSockets,
    orders,
    isReady,
    registry,
    orderCounter,
    publicMetrics,
    logger,
  } = options;
  const { byAddress, admitOrder } = rateLimits(options.limits, options.rateLimited);
  const router = new Router();
  router.post('/api/billing', countOrders(orderCounter), jsonBody(BILLING_BODY_LIMIT), async (ctx) => {
    ctx.body = await placeOrder(orders, ctx.request.body, ctx.get('Idempotency-Key') || undefined, admitOrder);
    ctx.status = 202;
  });

  const app = new Koa();
  app.use(requestContext(logger, httpMetrics(registry)));
  app.use(problemDetails(logger));
  // before anything reads a body or reaches inventory: a refused request costs the least here
  app.use(byAddress);
  // most requests are proxied: they pass through nothing more than the request id, the access log, the metrics and
  // the problem+json errors (502, 504)
  app.use(inventoryProxy(inventoryUrl, upstreamTimeoutMs, upstreamMaxSockets));
  app.use(healthChecks(isReady, 'The broker'));
  if (publicMetrics) app.use(metricsEndpoint(registry));
  app.use(apiDocs());
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
