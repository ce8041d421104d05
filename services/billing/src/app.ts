import {
  billingTopology,
  closeServer,
  createLogger,
  createRegistry,
  listen,
  listenForMetrics,
  type Service,
  withTimeout,
} from '@crud-master/shared';
import { createDatabasePool, isDatabaseReachable } from '@crud-master/shared/database';
import type { Server } from 'node:http';
import type { Config } from './config.js';
import { heldDeadLettersRepository } from './data-access/held-dead-letters.js';
import { ordersRepository } from './data-access/orders-repository.js';
import { startConsumer } from './entry-points/consumer.js';
import { createHealthApp } from './entry-points/http.js';
import { consumerGauges, consumerMetrics, countsByCause } from './metrics.js';

/** /readyz answers within this, whatever hangs: what did not answer by then counts as unknown, or unreachable. */
const READINESS_TIMEOUT_MS = 3_000;
const UNKNOWN_DEAD_LETTERING = { depth: null, held: null, oldestHeldSeconds: null };

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
  const consumer = startConsumer({
    broker: config.broker,
    queueType: config.queueType,
    prefetch: config.prefetch,
    orders: ordersRepository(pool),
    held: heldDeadLettersRepository(pool, billingTopology(config.broker.queue).deadLetterExchange),
    metrics,
    logger,
  });
  const { state } = consumer;
  consumerGauges(registry, {
    isConsuming: consumer.isConsuming,
    isStoreFailing: () => state.storeFailure !== undefined,
    deadLettering: consumer.deadLettering,
    maxLength: config.deadLetterMaxLength,
  });
  // Ready while it consumes (a queue it migrates too), its database answers, every batch is stored, and every dead
  // letter was placed: an order that waits, or a dead letter held aside, is something an operator must look at.
  const readiness = async () => {
    const [database, { depth, held, oldestHeldSeconds }, deadLettered, heldAside] = await Promise.all([
      withTimeout(isDatabaseReachable(pool), READINESS_TIMEOUT_MS, 'the database').catch(() => false),
      withTimeout(consumer.deadLettering(), READINESS_TIMEOUT_MS, 'the dead-letter figures').catch(
        () => UNKNOWN_DEAD_LETTERING,
      ),
      countsByCause(metrics.deadLettered),
      countsByCause(metrics.heldAside),
    ]);
    const consuming = consumer.isConsuming();
    // blocked: the broker refused or did not confirm a dead letter, held in billing_db until the queue takes it
    const blocked = held !== null && held > 0;
    const deadLetterQueue = {
      depth,
      maxLength: config.deadLetterMaxLength,
      migrating: state.deadLetterQueueMigrating,
      blocked,
      held,
      oldestHeldSeconds,
    };
    return {
      ready: consuming && database && !state.storeFailure && !blocked,
      details: {
        consuming,
        database,
        storeFailure: state.storeFailure,
        queue: { ...state.queue },
        deadLetterQueue,
        deadLettered,
        heldAside,
      },
    };
  };
  const healthApp = createHealthApp(readiness, registry, logger);
  const server = await listen(healthApp, config.healthPort, config.healthHost, config.http);
  const metricsServer = await listenForMetrics(registry, logger, config.metrics, config.http);
  logger.info(
    {
      address: server.address(),
      metrics: metricsServer.address(),
      queue: config.broker.queue,
      queueType: config.queueType,
    },
    'billing-consumer started',
  );
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
