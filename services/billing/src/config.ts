import { fileURLToPath } from 'node:url';
import {
  databaseEnv,
  env,
  httpLimitsEnv,
  metricsEnv,
  parseConfig,
  QUEUE_TYPES,
  rabbitmqEnv,
} from '@crud-master/shared';
import { z } from 'zod';

const consumerEnv = z.object({
  BILLING_HEALTH_HOST: env.text().default('0.0.0.0'),
  BILLING_HEALTH_PORT: env.port().default(8082),
  // unacknowledged messages in flight; a batch stored in one transaction takes at most half of them, so the next
  // batch arrives while one is stored (bench/: 1000 drains about twice as fast as 100)
  BILLING_PREFETCH: env.count().default(1000),
  // the dead-letter queue's bound (its broker policy, set from the same setting): /readyz and a gauge show the depth
  // against it
  BILLING_DEAD_LETTER_MAX_LENGTH: env.count().default(10_000),
  // the type billing_queue and its dead-letter queue are declared with: quorum when the brokers form a cluster
  RABBITMQ_QUEUE_TYPE: z.enum(QUEUE_TYPES).default('classic'),
  LOG_LEVEL: env.logLevel(),
});

export const loadConfig = (vars: NodeJS.ProcessEnv = process.env) => {
  const { consumer, db, broker, metrics, http } = parseConfig(
    {
      consumer: consumerEnv,
      db: databaseEnv('BILLING'),
      broker: rabbitmqEnv,
      metrics: metricsEnv('BILLING', 9120),
      http: httpLimitsEnv,
    },
    vars,
  );
  return {
    healthHost: consumer.BILLING_HEALTH_HOST,
    healthPort: consumer.BILLING_HEALTH_PORT,
    prefetch: consumer.BILLING_PREFETCH,
    deadLetterMaxLength: consumer.BILLING_DEAD_LETTER_MAX_LENGTH,
    logLevel: consumer.LOG_LEVEL,
    db,
    queueType: consumer.RABBITMQ_QUEUE_TYPE,
    broker,
    metrics,
    http,
  };
};

export type Config = ReturnType<typeof loadConfig>;

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));
