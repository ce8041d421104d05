import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../..', import.meta.url));

/** The NAME=VALUE lines of TEXT, as written (no grammar applied): each value is what follows the first =. */
export const namedValues = (text: string): Record<string, string> =>
  Object.fromEntries(
    text
      .split('\n')
      .filter((line) => /^\w+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );

/** FILE's variables, read by ansible/dotenv.sh (Node's own reader follows another grammar: # is a comment there). */
export const readDotenv = (file: string): Record<string, string> =>
  namedValues(
    execFileSync('sh', ['-c', '. "$1/ansible/dotenv.sh" && dotenv_pairs "$2"', 'sh', repo, file], { encoding: 'utf8' }),
  );

/** The repository's .env (made from .env.example by `make`) holds the credentials the roles provisioned. What the
 * environment sets already wins. */
const envFile = `${repo}/.env`;
if (existsSync(envFile)) {
  for (const [name, value] of Object.entries(readDotenv(envFile))) process.env[name] ??= value;
}

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
