import {
  execFile,
  execFileSync,
  spawnSync,
  type SpawnSyncOptionsWithStringEncoding,
  type SpawnSyncReturns,
} from 'node:child_process';
import { promisify } from 'node:util';

/**
 * Where the end-to-end suites run a command "on the VM" of a service: `pm2 …`, `psql …`, `ps …`.
 * By default that is this host (`make local` runs the three services here). The Vagrant stage (tests/vagrant/) sets a
 * command prefix per host that runs the command on that machine (over SSH):
 *   E2E_GATEWAY_EXEC, E2E_INVENTORY_EXEC, E2E_BILLING_EXEC   (words split on spaces; empty or unset: this host)
 */
export type Host = 'gateway' | 'inventory' | 'billing';

/** The PM2 apps and the host of each. */
export const appHosts = {
  'api-gateway': 'gateway',
  'inventory-api': 'inventory',
  'billing-consumer': 'billing',
} as const;
export type App = keyof typeof appHosts;

export const hostPrefix = (host: Host): string[] =>
  (process.env[`E2E_${host.toUpperCase()}_EXEC`] ?? '').split(' ').filter(Boolean);

/** Whether a service's host is this one (no E2E_*_EXEC): its PM2, its kernel and its listeners are this machine's. */
export const isThisHost = (host: Host): boolean => hostPrefix(host).length === 0;

/** The distinct hosts and the apps each runs: one entry on a single host, three in the Vagrant stage. */
export function hostsWithApps(): Array<{ host: Host; apps: App[] }> {
  const byPrefix = new Map<string, { host: Host; apps: App[] }>();
  for (const [app, host] of Object.entries(appHosts) as Array<[App, Host]>) {
    const key = hostPrefix(host).join(' ');
    const entry = byPrefix.get(key) ?? { host, apps: [] };
    entry.apps.push(app);
    byPrefix.set(key, entry);
  }
  return [...byPrefix.values()];
}

/** The most output a command may give (Node's default, 1 MiB, is a table of some 10,000 orders). */
const MAX_OUTPUT = 64 * 2 ** 20;

/** Runs a command on a host and returns its stdout; throws when it fails. */
export function onHost(host: Host, command: string, args: string[]): string {
  const [file, ...rest] = [...hostPrefix(host), command, ...args];
  return execFileSync(file!, rest, { encoding: 'utf8', cwd: '/', maxBuffer: MAX_OUTPUT });
}

const execFileAsync = promisify(execFile);

/** Runs a command on a host without blocking the event loop (a test's load keeps running); rejects when it fails. */
export async function onHostAsync(host: Host, command: string, args: string[]): Promise<string> {
  const [file, ...rest] = [...hostPrefix(host), command, ...args];
  return (await execFileAsync(file!, rest, { encoding: 'utf8', cwd: '/', maxBuffer: MAX_OUTPUT })).stdout;
}

/** Runs a command on a host and returns its outcome (status, stdout, stderr). Pass variables with `env NAME=value …`:
 * a host prefix does not carry this process's environment. */
export function spawnOnHost(
  host: Host,
  command: string,
  args: string[],
  options: Partial<SpawnSyncOptionsWithStringEncoding> = {},
): SpawnSyncReturns<string> {
  const [file, ...rest] = [...hostPrefix(host), command, ...args];
  return spawnSync(file!, rest, { cwd: '/', maxBuffer: MAX_OUTPUT, ...options, encoding: 'utf8' });
}

/**
 * psql over TCP on a host's own PostgreSQL as `user` with `password`, which goes on stdin: a command line is readable
 * by every process and sudo logs it (the Vagrant stage's host prefix runs sudo).
 */
export function psqlAsOnHost(
  host: Host,
  login: { user: string; password: string; database: string },
  sql: string,
): SpawnSyncReturns<string> {
  const script = 'IFS= read -r PGPASSWORD; export PGPASSWORD PGCONNECT_TIMEOUT=5; exec psql "$@"';
  return spawnOnHost(
    host,
    'sh',
    ['-c', script, 'psql', '-h', '127.0.0.1', '-U', login.user, '-d', login.database, '-XwtAc', sql],
    {
      input: `${login.password}\n`,
      env: { PATH: process.env.PATH },
    },
  );
}
