import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs on stdout, one line each, which PM2 collects. */
export const createLogger = (service: string, level = 'info'): Logger => pino({ name: service, level });
