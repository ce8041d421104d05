import {
  BackendTerminatedError,
  ConnectionError,
  createPool,
  type DatabasePool,
  type Interceptor,
  type QueryResultRow,
  SchemaValidationError,
  sql,
  StatementTimeoutError,
  stringifyDsn,
} from 'slonik';
import type { DatabaseConfig } from './config.js';
import { type ErrorTranslator, unavailable } from './errors.js';

const dsn = (db: DatabaseConfig) =>
  stringifyDsn({ host: db.host, port: db.port, databaseName: db.name, username: db.user, password: db.password });

/** Runs the schema of sql.type(…) (a Standard Schema: zod) on every row; slonik leaves that to an interceptor. */
const resultParser: Interceptor = {
  name: 'result-parser',
  transformRowAsync: async ({ resultParser: schema }, query, row) => {
    if (schema === undefined) return row;
    const parsed = await schema['~standard'].validate(row);
    if (parsed.issues) throw new SchemaValidationError(query, row, parsed.issues);
    return parsed.value as QueryResultRow;
  },
};

/** A slonik pool; it connects lazily, so a service starts (and reports not ready) while its database is down. */
export const createDatabasePool = (db: DatabaseConfig): Promise<DatabasePool> =>
  createPool(dsn(db), {
    maximumPoolSize: db.poolSize,
    connectionTimeout: 3_000,
    statementTimeout: 10_000,
    idleTimeout: 30_000,
    interceptors: [resultParser],
    // slonik sends DISCARD ALL each time a connection goes back to the pool: a second round trip per query, which
    // cost PostgreSQL about as much as the query itself. The services leave no session state behind (no SET,
    // temporary table, named prepared statement or LISTEN), so there is nothing to discard.
    resetConnection: async () => {},
  });

/** True when the database answers a trivial query. */
export async function isDatabaseReachable(pool: DatabasePool): Promise<boolean> {
  try {
    await pool.query(sql.unsafe`SELECT 1`);
    return true;
  } catch {
    return false;
  }
}

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  '57P01',
  '57P03',
  '53300',
]);

/** An error that says the database is down or overloaded, as opposed to a bad query or bad data. */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (
    error instanceof ConnectionError ||
    error instanceof BackendTerminatedError ||
    error instanceof StatementTimeoutError
  )
    return true;
  const code =
    (error as { code?: unknown; cause?: { code?: unknown } } | null)?.code ??
    (error as { cause?: { code?: unknown } } | null)?.cause?.code;
  return typeof code === 'string' && UNAVAILABLE_CODES.has(code);
}

/** For problemDetails: a database that is down or overloaded is a 503 with Retry-After, not a 500. */
export const databaseProblems: ErrorTranslator = (error) =>
  isDatabaseUnavailable(error) ? unavailable('The database is unavailable; try again later.') : undefined;

/** Applies the pending SQL migrations of a service (node-pg-migrate); returns how many ran. */
export async function migrate(db: DatabaseConfig, migrationsDir: string): Promise<number> {
  // loaded only by the deploy step (dist/migrate.js): a running service does not carry node-pg-migrate in memory
  const { runner } = await import('node-pg-migrate');
  const applied = await runner({
    databaseUrl: dsn(db),
    dir: migrationsDir,
    direction: 'up',
    migrationsTable: 'pgmigrations',
    log: () => {},
  });
  return applied.length;
}

/** The main of a service's migrate.js deploy step; its last line tells Ansible whether anything changed. */
export async function runMigrations(loadDatabaseConfig: () => DatabaseConfig, migrationsDir: string): Promise<void> {
  try {
    console.log(`migrations applied: ${await migrate(loadDatabaseConfig(), migrationsDir)}`);
  } catch (error) {
    console.error(`migrations failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
}

/** A data or integrity error (SQLSTATE class 22 or 23): the same row would fail again, however often retried. */
export function isPermanentDataError(error: unknown): boolean {
  const { code, cause } = (error ?? {}) as { code?: unknown; cause?: { code?: unknown } };
  const sqlState = typeof code === 'string' ? code : cause?.code;
  return typeof sqlState === 'string' && /^2[23]/.test(sqlState);
}
