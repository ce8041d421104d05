import { healthChecks, problemDetails, requestContext, type Logger } from '@crud-master/shared';
import Koa from 'koa';

/** billing-consumer serves only /healthz and /readyz (database and broker reachable). */
export function createHealthApp(isReady: () => Promise<boolean>, logger: Logger): Koa {
  const app = new Koa();
  app.use(requestContext(logger));
  app.use(problemDetails(logger));
  app.use(healthChecks(isReady, 'The database or the broker'));
  return app;
}
