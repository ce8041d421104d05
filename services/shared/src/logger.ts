import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

let pending = '';

function flush(): void {
  if (pending === '') return;
  const lines = pending;
  pending = '';
  process.stdout.write(lines);
}

/**
 * stdout, written once per turn of the event loop with every line logged in it. Under PM2 each stdout write is a
 * message to the daemon (for `pm2 logs`) and a write to the app's log file: one per request would cost the daemon
 * about as much CPU as the request itself. pino's own asynchronous destination (sonic-boom) writes to file
 * descriptor 1, which PM2's cluster mode does not collect, so it cannot replace this. What is pending is written
 * when the process exits.
 */
const batchedStdout: DestinationStream = {
  write(line: string) {
    if (pending === '') setImmediate(flush);
    pending += line;
  },
};
process.on('exit', flush);

/** JSON logs on stdout, one line each, which PM2 collects. */
export const createLogger = (service: string, level = 'info'): Logger => pino({ name: service, level }, batchedStdout);
