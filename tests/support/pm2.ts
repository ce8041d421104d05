import { execFileSync } from 'node:child_process';

export interface Pm2Process {
  name: string;
  pm_id: number;
  pid: number;
  status: string;
  restarts: number;
  /** RSS in bytes, as PM2 last sampled it (monit.memory) */
  memory: number;
}

// `pm2 jlist` prints every process's environment: more than execFileSync's default 1 MB buffer on a busy host
export const pm2 = (...args: string[]): string => execFileSync('pm2', args, { encoding: 'utf8', maxBuffer: 64 << 20 });

/** Every PM2 process (one per cluster instance), from `pm2 jlist`. */
export function pm2Processes(): Pm2Process[] {
  const list = JSON.parse(pm2('jlist')) as Array<{
    name: string;
    pm_id: number;
    pid: number;
    monit?: { memory?: number };
    pm2_env: { status: string; restart_time: number };
  }>;
  return list.map((p) => ({
    name: p.name,
    pm_id: p.pm_id,
    pid: p.pid,
    status: p.pm2_env.status,
    restarts: p.pm2_env.restart_time,
    memory: p.monit?.memory ?? 0,
  }));
}

/** Restarts per app, summed over its instances: a crash shows up as a higher number. */
export const restartsByApp = (): Record<string, number> =>
  pm2Processes().reduce<Record<string, number>>((acc, p) => ({ ...acc, [p.name]: (acc[p.name] ?? 0) + p.restarts }), {});
