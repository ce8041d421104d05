import { LATENCY_BUCKETS, PUBLISH_OUTCOMES } from '@crud-master/shared';
import { Counter, Histogram, type Registry } from 'prom-client';

/** How POST /api/billing ended: 202 (the broker confirmed it), 4xx (the request), 503 (the broker) or another 5xx. */
const ORDER_OUTCOMES = ['accepted', 'invalid', 'unavailable', 'failed'] as const;
export type OrderOutcome = (typeof ORDER_OUTCOMES)[number];

/** The gateway's own figures, beside the HTTP ones. Every outcome is shown from the start, at zero. */
export function gatewayMetrics(registry: Registry) {
  const orders = new Counter({
    name: 'gateway_orders_total',
    help: 'Orders posted to /api/billing, by outcome: accepted (202), invalid (4xx), unavailable (503: the broker), failed.',
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
  for (const outcome of ORDER_OUTCOMES) orders.inc({ outcome }, 0);
  for (const outcome of PUBLISH_OUTCOMES) confirms.zero({ outcome });
  return { orders, confirms };
}

export type GatewayMetrics = ReturnType<typeof gatewayMetrics>;
