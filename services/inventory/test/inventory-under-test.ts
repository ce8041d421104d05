import { testEnv } from '@crud-master/test-support/env';
import { start } from '../src/app.js';
import { loadConfig } from '../src/config.js';

/** inventory-api on a free port of 127.0.0.1, with .env's settings and the test's overrides. */
export const startOnFreePort = (overrides: Record<string, string | number> = {}) =>
  start(loadConfig(testEnv({ INVENTORY_API_HOST: '127.0.0.1', INVENTORY_API_PORT: 0, ...overrides })));
