import { closeServer, createLogger, listen, type Service } from '@crud-master/shared';
import { createDatabasePool, isDatabaseReachable } from '@crud-master/shared/database';
import type { Server } from 'node:http';
import type { Config } from './config.js';
import { ordersRepository } from './data-access/orders-repository.js';
import { startConsumer } from './entry-points/consumer.js';
import { createHealthApp } from './entry-points/http.js';

export interface BillingConsumer extends Service {
  server: Server;
}

/** Starts billing-consumer: the database pool, the queue consumer (which drains any backlog), then the health API. */
export async function start(config: Config): Promise<BillingConsumer> {
  const logger = createLogger('billing-consumer', config.logLevel);
  const pool = await createDatabasePool(config.db);
  const consumer = startConsumer({ broker: config.broker, prefetch: config.prefetch, orders: ordersRepository(pool), logger });
  // ready while it consumes and its database answers; the details show the dead letters to an operator
  const readiness = async () => {
    const [database, deadLetterDepth] = await Promise.all([isDatabaseReachable(pool), consumer.state.deadLetterDepth()]);
    const consuming = consumer.state.consuming && consumer.connection.isConnected();
    return {
      ready: consuming && database,
      details: { consuming, database, deadLetterQueue: { depth: deadLetterDepth }, deadLettered: { ...consumer.state.deadLettered } },
    };
  };
  const server = await listen(createHealthApp(readiness, logger), config.healthPort, config.healthHost);
  logger.info({ address: server.address(), queue: config.broker.queue }, 'billing-consumer started');
  return {
    logger,
    server,
    stop: async () => {
      await closeServer(server);
      await consumer.stop();
      await pool.end();
    },
  };
}
