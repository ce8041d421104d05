import { z } from 'zod';

/** Thrown when the environment does not satisfy a service's schema; the message names each bad variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Parts = Record<string, z.ZodType>;

/**
 * Parses the environment once, each part of the config with its own schema. Every missing or invalid variable is
 * reported in one line that names it.
 */
export function parseConfig<P extends Parts>(
  parts: P,
  vars: NodeJS.ProcessEnv = process.env,
): { [K in keyof P]: z.output<P[K]> } {
  const config: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [part, schema] of Object.entries(parts)) {
    const parsed = schema.safeParse(vars);
    if (parsed.success) config[part] = parsed.data;
    else problems.push(...parsed.error.issues.map((issue) => describeIssue(issue, vars)));
  }
  if (problems.length > 0) throw new ConfigError(`invalid environment: ${problems.join('; ')}`);
  return config as { [K in keyof P]: z.output<P[K]> };
}

function describeIssue(issue: z.core.$ZodIssue, vars: NodeJS.ProcessEnv): string {
  const name = issue.path.join('.');
  // zod 4 issues do not carry the input: a missing variable is one the environment does not have
  return issue.code === 'invalid_type' && vars[name] === undefined
    ? `${name} is required`
    : `${name}: ${issue.message}`;
}

export const env = {
  /** A non-empty string. */
  text: () => z.string().min(1),
  /** A TCP port; 0 lets the OS choose (tests). */
  port: () => z.coerce.number().int().min(0).max(65535),
  /** A positive whole number, e.g. a timeout in ms or a pool size. */
  count: () => z.coerce.number().int().positive(),
  logLevel: () => z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** true or false, spelled out (z.coerce.boolean would read "false" as true); false when unset. */
  flag: () =>
    z
      .enum(['true', 'false'])
      .default('false')
      .transform((value) => value === 'true'),
};

/**
 * Where a service serves /metrics: <PREFIX>_METRICS_HOST (loopback unless told) and <PREFIX>_METRICS_PORT plus the
 * PM2 instance number. PM2's cluster mode shares one port between its instances, so a scrape there would reach one of
 * them at random: each instance has a port of its own instead, and Prometheus scrapes each (port 0 stays 0: tests).
 */
export const metricsEnv = (prefix: 'GATEWAY' | 'INVENTORY' | 'BILLING', defaultPort: number) =>
  z
    .object({
      [`${prefix}_METRICS_HOST`]: env.text().default('127.0.0.1'),
      [`${prefix}_METRICS_PORT`]: env.port().default(defaultPort),
      NODE_APP_INSTANCE: z.coerce.number().int().min(0).max(99).default(0),
    })
    .transform((vars) => {
      const port = vars[`${prefix}_METRICS_PORT`] as number;
      return {
        host: vars[`${prefix}_METRICS_HOST`] as string,
        port: port === 0 ? 0 : port + (vars.NODE_APP_INSTANCE as number),
      };
    });

/**
 * The limits of every HTTP listener of a service (its API and its metrics). The API takes small JSON bodies (16 kB
 * for orders, 64 kB for movies) from clients that send them at once, so a request that has not arrived within a few
 * seconds is a slow client holding a connection, not a real one. The same settings apply to the three services.
 */
export const httpLimitsEnv = z
  .object({
    // a request head is a few hundred bytes: 5 s is plenty on any link, and bounds a client that trickles it
    HTTP_HEADERS_TIMEOUT_MS: env.count().default(5_000),
    // the whole request, head and body (at most 64 kB): Node's 300 s would let a trickled body hold its socket
    HTTP_REQUEST_TIMEOUT_MS: env.count().default(10_000),
    // an idle keep-alive connection is closed after this; the gateway's upstream agent reuses one for less
    HTTP_KEEP_ALIVE_TIMEOUT_MS: env.count().default(5_000),
    // then the connection closes and the client opens another (nginx's keepalive_requests is 1000 too)
    HTTP_MAX_REQUESTS_PER_SOCKET: env.count().default(1_000),
    // open connections of one client address per instance; more are closed at once. Above what one address needs
    // (browsers open 6; a gateway instance opens UPSTREAM_MAX_SOCKETS to inventory; the chaos suite's retries 256)
    HTTP_MAX_CONNECTIONS_PER_ADDRESS: env.count().default(512),
    // all connections of one instance: the last resort, when many addresses flood it at once
    HTTP_MAX_CONNECTIONS: env.count().default(4_096),
    // a request answered before its body arrived (413, 429) closes its connection; the rest of the body is read and
    // dropped first, for this long and up to this many bytes, or closing would reset the connection and lose the answer
    HTTP_LINGER_MS: env.count().default(5_000),
    HTTP_LINGER_BYTES: env.count().default(8 * 1024 * 1024),
  })
  .transform((vars) => ({
    headersTimeoutMs: vars.HTTP_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: Math.max(vars.HTTP_REQUEST_TIMEOUT_MS, vars.HTTP_HEADERS_TIMEOUT_MS),
    keepAliveTimeoutMs: vars.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    maxRequestsPerSocket: vars.HTTP_MAX_REQUESTS_PER_SOCKET,
    maxConnectionsPerAddress: vars.HTTP_MAX_CONNECTIONS_PER_ADDRESS,
    maxConnections: vars.HTTP_MAX_CONNECTIONS,
    lingerMs: vars.HTTP_LINGER_MS,
    lingerBytes: vars.HTTP_LINGER_BYTES,
  }));

export type HttpLimits = z.output<typeof httpLimitsEnv>;

export const databaseEnv = (prefix: 'INVENTORY' | 'BILLING') =>
  z
    .object({
      [`${prefix}_DB_HOST`]: env.text().default('127.0.0.1'),
      [`${prefix}_DB_PORT`]: env.port().default(5432),
      [`${prefix}_DB_NAME`]: env.text(),
      [`${prefix}_DB_USER`]: env.text(),
      [`${prefix}_DB_PASSWORD`]: env.text(),
      [`${prefix}_DB_POOL_SIZE`]: env.count().default(10),
    })
    .transform((vars) => ({
      host: vars[`${prefix}_DB_HOST`] as string,
      port: vars[`${prefix}_DB_PORT`] as number,
      name: vars[`${prefix}_DB_NAME`] as string,
      user: vars[`${prefix}_DB_USER`] as string,
      password: vars[`${prefix}_DB_PASSWORD`] as string,
      poolSize: vars[`${prefix}_DB_POOL_SIZE`] as number,
    }));

export type DatabaseConfig = z.output<ReturnType<typeof databaseEnv>>;

export const rabbitmqEnv = z
  .object({
    // one broker, or the nodes of a cluster (one per billing VM), comma-separated: all on RABBITMQ_PORT
    RABBITMQ_HOST: env
      .text()
      .default('127.0.0.1')
      .transform((value) => value.split(',').map((host) => host.trim()))
      .refine(
        (hosts) => hosts.every(Boolean),
        'must be host names or addresses separated by commas, none of them empty',
      ),
    RABBITMQ_PORT: env.port().default(5672),
    RABBITMQ_USER: env.text(),
    RABBITMQ_PASSWORD: env.text(),
    RABBITMQ_VHOST: env.text(),
    RABBITMQ_QUEUE: env.text(),
  })
  .transform((vars) => ({
    hosts: vars.RABBITMQ_HOST,
    port: vars.RABBITMQ_PORT,
    user: vars.RABBITMQ_USER,
    password: vars.RABBITMQ_PASSWORD,
    vhost: vars.RABBITMQ_VHOST,
    queue: vars.RABBITMQ_QUEUE,
  }));

export type RabbitmqConfig = z.output<typeof rabbitmqEnv>;
