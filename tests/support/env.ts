import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The repository's .env (made from .env.example by `make`) holds the credentials the roles provisioned. */
const envFile = fileURLToPath(new URL('../../.env', import.meta.url));
if (existsSync(envFile)) process.loadEnvFile(envFile);

/** The environment of a service under test: .env, plus what the test overrides. */
export const testEnv = (overrides: Record<string, string | number> = {}): NodeJS.ProcessEnv => ({
  ...process.env,
  LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
  // a service under test serves its metrics on a free port, never on the deployed stack's
  GATEWAY_METRICS_PORT: '0',
  INVENTORY_METRICS_PORT: '0',
  BILLING_METRICS_PORT: '0',
  ...Object.fromEntries(Object.entries(overrides).map(([name, value]) => [name, String(value)])),
});

/** A name no other test run uses, for queues and rows. */
export const unique = (prefix: string): string =>
  `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
