// The database helpers are at '@crud-master/shared/database', so that the gateway does not load slonik and pg.
export * from './billing-queue.js';
export * from './config.js';
export * from './confirm-publisher.js';
export * from './errors.js';
export * from './http.js';
export * from './lifecycle.js';
export * from './logger.js';
export * from './metrics.js';
export * from './retry.js';
export * from './server.js';
export * from './validation.js';
