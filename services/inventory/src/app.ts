import { closeServer, createLogger, createRegistry, listen, listenForMetrics, type Service } from '@crud-master/shared';
import { createDatabasePool, isDatabaseReachable } from '@crud-master/shared/database';
import type { Server } from 'node:http';
import type { Config } from './config.js';
import { moviesRepository } from './data-access/movies-repository.js';
import { moviesService } from './domain/movies.js';
import { createHttpApp } from './entry-points/http.js';

export interface InventoryApi extends Service {
  server: Server;
  metricsServer: Server;
}

/** Starts inventory-api: the database pool, then HTTP and its metrics. */
export async function start(config: Config): Promise<InventoryApi> {
  const logger = createLogger('inventory-api', config.logLevel);
  const pool = await createDatabasePool(config.db);
  const registry = createRegistry();
  const app = createHttpApp(moviesService(moviesRepository(pool)), () => isDatabaseReachable(pool), registry, logger);
  const server = await listen(app, config.port, config.host, config.http);
  const metricsServer = await listenForMetrics(registry, logger, config.metrics, config.http);
  logger.info({ address: server.address(), metrics: metricsServer.address() }, 'inventory-api listening');
  return {
    logger,
    server,
    metricsServer,
    stop: async () => {
      await Promise.all([closeServer(server), closeServer(metricsServer)]);
      await pool.end();
    },
  };
}
