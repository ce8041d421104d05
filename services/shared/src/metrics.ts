import type { Server } from 'node:http';
import Koa, { type Context, type Middleware } from 'koa';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { HttpLimits } from './config.js';
import type { RequestObserver } from './http.js';
import { listen } from './server.js';
import { problemDetails } from './errors.js';
import type { Logger } from './logger.js';

/** Seconds, from a cached read (under a millisecond) to the services' 10 s timeouts. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * A registry per service instance (tests run several in one process), with Node's own figures: CPU, memory, GC, event
 * loop.
 */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * Labels come from requests: anything a client can choose is folded into a fixed set, or a client could grow the
 * registry without bound.
 */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** The route a request matched: named by the middleware that answered it (ctx.state.route), else by @koa/router. */
function routeOf(ctx: Context): string {
  const route: unknown = ctx.state.route ?? (ctx as { _matchedRoute?: unknown })._matchedRoute;
  return typeof route === 'string' ? route : 'unmatched';
}

/** http_requests_total and http_request_duration_seconds, by method, route and status. */
export function httpMetrics(registry: Registry): RequestObserver {
  const labelNames = ['method', 'route', 'status'] as const;
  const requests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by method, route and status.',
    labelNames,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time to answer an HTTP request, by method, route and status.',
    labelNames,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  return (ctx, seconds) => {
    const labels = { method: METHODS.has(ctx.method) ? ctx.method : 'other', route: routeOf(ctx), status: ctx.status };
    requests.inc(labels);
    duration.observe(labels, seconds);
  };
}

/** GET /metrics: the registry in Prometheus' text format. */
export function metricsEndpoint(registry: Registry): Middleware {
  return async (ctx, next) => {
    if (ctx.path !== '/metrics' || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) {
      await next();
      return;
    }
    ctx.state.route = '/metrics';
    ctx.type = registry.contentType;
    ctx.body = await registry.metrics();
  };
}

/** The metrics listener of a service: /metrics alone, on an address of its own, so the public port never shows it. */
export function listenForMetrics(
  registry: Registry,
  logger: Logger,
  address: { host: string; port: number },
  limits: HttpLimits,
): Promise<Server> {
  const app = new Koa();
  app.use(problemDetails(logger));
  app.use(metricsEndpoint(registry));
  return listen(app, address.port, address.host, limits);
}
