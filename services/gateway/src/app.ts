import { closeServer, createLogger, listen, type Service } from '@crud-master/shared';
import type { Server } from 'node:http';
import type { Config } from './config.js';
import { orderQueue } from './data-access/order-queue.js';
import { createHttpApp } from './entry-points/http.js';

export interface ApiGateway extends Service {
  server: Server;
}

/** Starts api-gateway: the broker connection (which retries on its own), then HTTP. */
export async function start(config: Config): Promise<ApiGateway> {
  const logger = createLogger('api-gateway', config.logLevel);
  const orders = orderQueue(config.broker, config.publishTimeoutMs, logger);
  const app = createHttpApp({
    inventoryUrl: config.inventoryUrl,
    upstreamTimeoutMs: config.upstreamTimeoutMs,
    orders,
    isReady: () => Promise.resolve(orders.isConnected()),
    logger,
  });
  const server = await listen(app, config.port, config.host);
  logger.info({ address: server.address(), inventory: config.inventoryUrl }, 'api-gateway listening');
  return {
    logger,
    server,
    stop: async () => {
      await closeServer(server);
      await orders.close();
    },
  };
}
