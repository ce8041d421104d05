import { execFileSync } from 'node:child_process';

export interface Pm2Process {
  name: string;
  pid: number;
  status: string;
  restarts: number;
}

export const pm2 = (...args: string[]): string => execFileSync('pm2', args, { encoding: 'utf8' });

/** Every PM2 process (one per cluster instance), from `pm2 jlist`. */
export function pm2Processes(): Pm2Process[] {
  const list = JSON.parse(pm2('jlist')) as Array<{ name: string; pid: number; pm2_env: { status: string; restart_time: number } }>;
  return list.map((p) => ({ name: p.name, pid: p.pid, status: p.pm2_env.status, restarts: p.pm2_env.restart_time }));
}

/** Restarts per app, summed over its instances: a crash shows up as a higher number. */
export const restartsByApp = (): Record<string, number> =>
  pm2Processes().reduce<Record<string, number>>((acc, p) => ({ ...acc, [p.name]: (acc[p.name] ?? 0) + p.restarts }), {});
