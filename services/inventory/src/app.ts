import { closeServer, createLogger, listen, type Service } from '@crud-master/shared';
import { createDatabasePool, isDatabaseReachable } from '@crud-master/shared/database';
import type { Server } from 'node:http';
import type { Config } from './config.js';
import { moviesRepository } from './data-access/movies-repository.js';
import { moviesService } from './domain/movies.js';
import { createHttpApp } from './entry-points/http.js';

export interface InventoryApi extends Service {
  server: Server;
}

/** Starts inventory-api: the database pool, then HTTP. */
export async function start(config: Config): Promise<InventoryApi> {
  const logger = createLogger('inventory-api', config.logLevel);
  const pool = await createDatabasePool(config.db);
  const app = createHttpApp(moviesService(moviesRepository(pool)), () => isDatabaseReachable(pool), logger);
  const server = await listen(app, config.port, config.host);
  logger.info({ address: server.address() }, 'inventory-api listening');
  return {
    logger,
    server,
    stop: async () => {
      await closeServer(server);
      await pool.end();
    },
  };
}
