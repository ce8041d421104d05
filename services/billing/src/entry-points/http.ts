import {
  healthChecks,
  httpMetrics,
  problemDetails,
  type Readiness,
  requestContext,
  type Logger,
} from '@crud-master/shared';
import Koa from 'koa';
import type { Registry } from 'prom-client';

/** billing-consumer serves only /healthz and /readyz (consuming, and its database reachable). */
export function createHealthApp(readiness: () => Promise<Readiness>, registry: Registry, logger: Logger): Koa {
  const app = new Koa();
  app.use(requestContext(logger, httpMetrics(registry)));
  app.use(problemDetails(logger));
  app.use(healthChecks(readiness, 'The database or the broker, or the consumption of the queue,'));
  return app;
}
