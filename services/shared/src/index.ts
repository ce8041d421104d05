export * from './billing-queue.js';
export * from './config.js';
export * from './database.js';
export * from './errors.js';
export * from './http.js';
export * from './lifecycle.js';
export * from './logger.js';
export * from './validation.js';
