import { fileURLToPath } from 'node:url';
import { databaseEnv, env, httpLimitsEnv, metricsEnv, parseConfig } from '@crud-master/shared';
import { z } from 'zod';

const httpEnv = z.object({
  INVENTORY_API_HOST: env.text().default('0.0.0.0'),
  INVENTORY_API_PORT: env.port().default(8080),
  LOG_LEVEL: env.logLevel(),
});

export const loadConfig = (vars: NodeJS.ProcessEnv = process.env) => {
  const { http, db, metrics, limits } = parseConfig(
    { http: httpEnv, db: databaseEnv('INVENTORY'), metrics: metricsEnv('INVENTORY', 9110), limits: httpLimitsEnv },
    vars,
  );
  const { INVENTORY_API_HOST: host, INVENTORY_API_PORT: port, LOG_LEVEL: logLevel } = http;
  return { host, port, logLevel, db, metrics, http: limits };
};

export type Config = ReturnType<typeof loadConfig>;

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));
