import { ConfigError } from './config.js';
import type { Logger } from './logger.js';

export interface Service {
  logger: Logger;
  /** Closes HTTP, then AMQP, then the database pool. */
  stop(): Promise<void>;
}

const SHUTDOWN_GRACE_MS = 10_000;

/** The main of each service: start it, and stop it gracefully on SIGINT/SIGTERM. */
export async function runService(start: () => Promise<Service>): Promise<void> {
  let service: Service;
  try {
    service = await start();
  } catch (error) {
    // a bad environment is reported in one line; anything else with its stack
    console.error(error instanceof ConfigError ? error.message : error);
    process.exit(1);
  }
  let stopping = false;
  const shutdown = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    service.logger.info({ signal }, 'shutting down');
    setTimeout(() => {
      service.logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS).unref();
    try {
      await service.stop();
      process.exit(0);
    } catch (error) {
      service.logger.error({ err: error }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}
