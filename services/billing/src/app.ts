import { closeServer, createLogger, createRegistry, listen, listenForMetrics, type Service } from '@crud-master/shared';
import { createDatabasePool, isDatabaseReachable } from '@crud-master/shared/database';
import type { Server } from 'node:http';
import type { Config } from './config.js';
import { ordersRepository } from './data-access/orders-repository.js';
import { startConsumer } from './entry-points/consumer.js';
import { createHealthApp } from './entry-points/http.js';
import { consumerMetrics, consumingGauge, deadLetteredByCause } from './metrics.js';

export interface BillingConsumer extends Service {
  server: Server;
  metricsServer: Server;
}

/** Starts billing-consumer: the database pool, the queue consumer (which drains any backlog), then the health API. */
export async function start(config: Config): Promise<BillingConsumer> {
  const logger = createLogger('billing-consumer', config.logLevel);
  const pool = await createDatabasePool(config.db);
  const registry = createRegistry();
  const metrics = consumerMetrics(registry);
  const consumer = startConsumer({ broker: config.broker, queueType: config.queueType, prefetch: config.prefetch, orders: ordersRepository(pool), metrics, logger });
  const isConsuming = () => consumer.state.consuming && consumer.connection.isConnected();
  consumingGauge(registry, isConsuming);
  // ready while it consumes (a queue it migrates too) and its database answers; the details show the queues' type,
  // a migration under way and the dead letters to an operator
  const readiness = async () => {
    const { state } = consumer;
    const [database, deadLetterDepth, deadLettered] = await Promise.all([isDatabaseReachable(pool), state.deadLetterDepth(), deadLetteredByCause(metrics)]);
    const consuming = isConsuming();
    const deadLetterQueue = { depth: deadLetterDepth, migrating: state.deadLetterQueueMigrating };
    return { ready: consuming && database, details: { consuming, database, queue: { ...state.queue }, deadLetterQueue, deadLettered } };
  };
  const healthApp = createHealthApp(readiness, registry, logger);
  const server = await listen(healthApp, config.healthPort, config.healthHost, config.http);
  const metricsServer = await listenForMetrics(registry, logger, config.metrics, config.http);
  logger.info({ address: server.address(), metrics: metricsServer.address(), queue: config.broker.queue, queueType: config.queueType }, 'billing-consumer started');
  return {
    logger,
    server,
    metricsServer,
    stop: async () => {
      await Promise.all([closeServer(server), closeServer(metricsServer)]);
      await consumer.stop();
      await pool.end();
    },
  };
}
