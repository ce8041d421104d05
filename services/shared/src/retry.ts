const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 30_000;

/** Exponential backoff with jitter: the wait before retry number `attempt` (0-based). */
export function backoffMs(attempt: number): number {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 20));
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}

export class TimeoutError extends Error {
  override name = 'TimeoutError';
}

/** Rejects with a TimeoutError when `promise` has not settled within `ms`: no broker or database call may hang. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
