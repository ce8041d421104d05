import { env, httpLimitsEnv, metricsEnv, parseConfig, rabbitmqEnv } from '@crud-master/shared';
import { z } from 'zod';

const gatewayEnv = z.object({
  GATEWAY_HOST: env.text().default('0.0.0.0'),
  GATEWAY_PORT: env.port().default(8080),
  // where /api/movies* goes, e.g. http://192.168.56.11:8080
  INVENTORY_API_URL: z.url(),
  // an inventory that has not answered by then gives 504
  UPSTREAM_TIMEOUT_MS: env.count().default(10_000),
  // connections of one instance to inventory: a slow inventory then holds this many of its sockets, not one per client
  // request (its DB pool has 10 connections, so more would only queue there); the others wait in the gateway
  UPSTREAM_MAX_SOCKETS: env.count().default(128),
  // a publish the broker has not confirmed by then gives 503
  PUBLISH_TIMEOUT_MS: env.count().default(3_000),
  // /metrics on the public port as well as on the metrics listener: only when the operator allows it
  GATEWAY_PUBLIC_METRICS: env.flag(),
  // Rate limits, each per GATEWAY_RATE_LIMIT_WINDOW_S and per instance (PM2 runs 2: each counts alone); 0 turns one
  // off. Every request of a client address counts towards _REQUESTS, its POST/PUT/DELETE also towards _WRITES, and
  // an order also towards its user_id's _ORDERS_PER_USER. The defaults leave the test suites several times below
  // them (chaos: 50 orders/s of one user, the scale stage 100/s); a user of the API comes nowhere near.
  GATEWAY_RATE_LIMIT_WINDOW_S: env.count().default(10),
  GATEWAY_RATE_LIMIT_REQUESTS: z.coerce.number().int().min(0).default(10_000),
  GATEWAY_RATE_LIMIT_WRITES: z.coerce.number().int().min(0).default(2_000),
  GATEWAY_RATE_LIMIT_ORDERS_PER_USER: z.coerce.number().int().min(0).default(1_000),
  // proxies (addresses, comma-separated) whose X-Forwarded-For names the client; by default none: the socket's address
  GATEWAY_TRUSTED_PROXIES: z
    .string()
    .default('')
    .transform((value) =>
      value
        .split(',')
        .map((address) => address.trim())
        .filter(Boolean),
    ),
  LOG_LEVEL: env.logLevel(),
});

export const loadConfig = (vars: NodeJS.ProcessEnv = process.env) => {
  const { gateway, broker, metrics, http } = parseConfig(
    { gateway: gatewayEnv, broker: rabbitmqEnv, metrics: metricsEnv('GATEWAY', 9100), http: httpLimitsEnv },
    vars,
  );
  return {
    host: gateway.GATEWAY_HOST,
    port: gateway.GATEWAY_PORT,
    inventoryUrl: gateway.INVENTORY_API_URL,
    upstreamTimeoutMs: gateway.UPSTREAM_TIMEOUT_MS,
    upstreamMaxSockets: gateway.UPSTREAM_MAX_SOCKETS,
    publishTimeoutMs: gateway.PUBLISH_TIMEOUT_MS,
    rateLimits: {
      windowSeconds: gateway.GATEWAY_RATE_LIMIT_WINDOW_S,
      requests: gateway.GATEWAY_RATE_LIMIT_REQUESTS,
      writes: gateway.GATEWAY_RATE_LIMIT_WRITES,
      ordersPerUser: gateway.GATEWAY_RATE_LIMIT_ORDERS_PER_USER,
      trustedProxies: gateway.GATEWAY_TRUSTED_PROXIES,
    },
    logLevel: gateway.LOG_LEVEL,
    broker,
    http,
    metrics: { ...metrics, public: gateway.GATEWAY_PUBLIC_METRICS },
  };
};

export type Config = ReturnType<typeof loadConfig>;
