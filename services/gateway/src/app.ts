import { closeServer, createLogger, createRegistry, listen, listenForMetrics, type Service } from '@crud-master/shared';
import type { Server } from 'node:http';
import type { Config } from './config.js';
import { orderQueue } from './data-access/order-queue.js';
import { createHttpApp } from './entry-points/http.js';
import { gatewayMetrics } from './metrics.js';

export interface ApiGateway extends Service {
  server: Server;
  metricsServer: Server;
}

/** Starts api-gateway: the broker connection (which retries on its own), then HTTP and its metrics. */
export async function start(config: Config): Promise<ApiGateway> {
  const logger = createLogger('api-gateway', config.logLevel);
  const registry = createRegistry();
  const metrics = gatewayMetrics(registry);
  const orders = orderQueue(config.broker, config.publishTimeoutMs, metrics.confirms, logger);
  const app = createHttpApp({
    inventoryUrl: config.inventoryUrl,
    upstreamTimeoutMs: config.upstreamTimeoutMs,
    upstreamMaxSockets: config.upstreamMaxSockets,
    orders,
    isReady: () => Promise.resolve(orders.isReady()),
    registry,
    orderCounter: metrics.orders,
    rateLimited: metrics.rateLimited,
    limits: config.rateLimits,
    publicMetrics: config.metrics.public,
    logger,
  });
  const server = await listen(app, config.port, config.host, config.http);
  const metricsServer = await listenForMetrics(registry, logger, config.metrics, config.http);
  logger.info(
    { address: server.address(), metrics: metricsServer.address(), inventory: config.inventoryUrl },
    'api-gateway listening',
  );
  return {
    logger,
    server,
    metricsServer,
    stop: async () => {
      await Promise.all([closeServer(server), closeServer(metricsServer)]);
      await orders.close();
    },
  };
}
