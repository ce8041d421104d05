import Router from '@koa/router';
import { healthChecks, jsonBody, problemDetails, requestContext, type Logger } from '@crud-master/shared';
import Koa from 'koa';
import type {} from 'koa-bodyparser'; // types ctx.request.body
import { type OrderPublisher, placeOrder } from '../domain/billing.js';
import { apiDocs } from './docs.js';
import { inventoryProxy } from './inventory-proxy.js';

export const BILLING_BODY_LIMIT = '16kb';

interface GatewayOptions {
  inventoryUrl: string;
  upstreamTimeoutMs: number;
  orders: OrderPublisher;
  isReady: () => Promise<boolean>;
  logger: Logger;
}

/** The public API on :8080: the movies proxy, POST /api/billing, /healthz and /readyz. */
export function createHttpApp({ inventoryUrl, upstreamTimeoutMs, orders, isReady, logger }: GatewayOptions): Koa {
  const router = new Router();
  router.post('/api/billing', jsonBody(BILLING_BODY_LIMIT), async (ctx) => {
    ctx.body = await placeOrder(orders, ctx.request.body, ctx.get('Idempotency-Key') || undefined);
    ctx.status = 202;
  });

  const app = new Koa();
  app.use(requestContext(logger));
  app.use(problemDetails(logger));
  app.use(healthChecks(isReady, 'The broker'));
  app.use(apiDocs());
  app.use(inventoryProxy(inventoryUrl, upstreamTimeoutMs));
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
