import { LATENCY_BUCKETS, PUBLISH_OUTCOMES } from '@crud-master/shared';
import { Counter, Histogram, type Registry } from 'prom-client';

/** How POST /api/billing ended: 202 (the broker confirmed it), 4xx (the request), 503 (the broker) or another 5xx. */
const ORDER_OUTCOMES = ['accepted', 'invalid', 'unavailable', 'failed'] as const;
export type OrderOutcome = (typeof ORDER_OUTCOMES)[number];

/** Why a request was refused with 429: its address's limit, its address's write limit, or its user_id's limit. */
export const LIMIT_REASONS = ['address', 'writes', 'user'] as const;
export type LimitReason = (typeof LIMIT_REASONS)[number];
/** The routes a limit is counted by: fixed, whatever path a client sends. */
export const LIMITED_ROUTES = ['/api/movies', '/api/movies/:id', '/api/movies/*', '/api/billing', 'other'] as const;

/** The gateway's own figures, beside the HTTP ones. Every outcome is shown from the start, at zero. */
export function gatewayMetrics(registry: Registry) {
  const orders = new Counter({
    name: 'gateway_orders_total',
    help:
      'Orders posted to /api/billing, by outcome: ' +
      'accepted (202), invalid (4xx), unavailable (503: the broker), failed.',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const confirms = new Histogram({
    name: 'gateway_broker_confirm_seconds',
    help: "From an order's publish to the broker's confirm, return or the publish timeout, by outcome.",
    labelNames: ['outcome'],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const rateLimited = new Counter({
    name: 'gateway_rate_limited_total',
    help:
      'Requests refused with 429, by route and by reason: ' +
      'address (any request), writes (POST/PUT/DELETE), user (user_id).',
    labelNames: ['route', 'reason'],
    registers: [registry],
  });
  for (const outcome of ORDER_OUTCOMES) orders.inc({ outcome }, 0);
  for (const outcome of PUBLISH_OUTCOMES) confirms.zero({ outcome });
  for (const route of LIMITED_ROUTES) for (const reason of LIMIT_REASONS) rateLimited.inc({ route, reason }, 0);
  return { orders, confirms, rateLimited };
}

export type GatewayMetrics = ReturnType<typeof gatewayMetrics>;
