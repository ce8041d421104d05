import Router from '@koa/router';
import { healthChecks, httpMetrics, jsonBody, problemDetails, requestContext, type Logger } from '@crud-master/shared';
import { databaseProblems } from '@crud-master/shared/database';
import Koa from 'koa';
import type { Registry } from 'prom-client';
import type {} from 'koa-bodyparser'; // types ctx.request.body
import type { MoviesService } from '../domain/movies.js';

export const BODY_LIMIT = '64kb';

/** The inventory's HTTP API: the movie routes under /api/movies, plus /healthz and /readyz. */
export function createHttpApp(
  movies: MoviesService,
  isReady: () => Promise<boolean>,
  registry: Registry,
  logger: Logger,
): Koa {
  const router = new Router({ prefix: '/api/movies' });
  router
    .get('/', async (ctx) => {
      ctx.body = await movies.list(ctx.query);
    })
    .post('/', async (ctx) => {
      const movie = await movies.create(ctx.request.body);
      ctx.status = 201;
      ctx.set('Location', `/api/movies/${movie.id}`);
      ctx.body = movie;
    })
    .delete('/', async (ctx) => {
      await movies.removeAll();
      ctx.status = 204;
    })
    .get('/:id', async (ctx) => {
      ctx.body = await movies.get(ctx.params.id!);
    })
    .put('/:id', async (ctx) => {
      ctx.body = await movies.update(ctx.params.id!, ctx.request.body);
    })
    .delete('/:id', async (ctx) => {
      await movies.remove(ctx.params.id!);
      ctx.status = 204;
    });

  const app = new Koa();
  app.use(requestContext(logger, httpMetrics(registry)));
  app.use(problemDetails(logger, databaseProblems));
  app.use(healthChecks(isReady, 'The database'));
  app.use(jsonBody(BODY_LIMIT));
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
