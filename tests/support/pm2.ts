import { execFileSync } from 'node:child_process';
import { type Host, onHost } from './hosts.js';

export interface Pm2Process {
  name: string;
  pm_id: number;
  pid: number;
  status: string;
  restarts: number;
  /** RSS in bytes, as PM2 last sampled it (monit.memory) */
  memory: number;
  /** a PM2 module (`pm2 install …`), not an app */
  module: boolean;
  /** the file the process runs */
  script: string;
}

// `pm2 jlist` prints every process's environment: more than execFileSync's default 1 MB buffer on a busy host
export const pm2 = (...args: string[]): string => execFileSync('pm2', args, { encoding: 'utf8', maxBuffer: 64 << 20 });

/** The processes in the output of `pm2 jlist` (one per cluster instance). */
export function parseJlist(jlist: string): Pm2Process[] {
  const list = JSON.parse(jlist) as Array<{
    name: string;
    pm_id: number;
    pid: number;
    monit?: { memory?: number };
    pm2_env: { status: string; restart_time: number; pmx_module?: boolean; pm_exec_path: string };
  }>;
  return list.map((p) => ({
    name: p.name,
    pm_id: p.pm_id,
    pid: p.pid,
    status: p.pm2_env.status,
    restarts: p.pm2_env.restart_time,
    memory: p.monit?.memory ?? 0,
    module: p.pm2_env.pmx_module === true,
    script: p.pm2_env.pm_exec_path,
  }));
}

/** Every PM2 process on this host. */
export const pm2Processes = (): Pm2Process[] => parseJlist(pm2('jlist'));

/** Every PM2 process on a service's host (this one, or a VM through E2E_*_EXEC). */
export const pm2ProcessesOn = (host: Host): Pm2Process[] => parseJlist(onHost(host, 'pm2', ['jlist']));

/** Restarts per app, summed over its instances: a crash shows up as a higher number. */
export const restartsByApp = (): Record<string, number> =>
  pm2Processes().reduce<Record<string, number>>(
    (acc, p) => ({ ...acc, [p.name]: (acc[p.name] ?? 0) + p.restarts }),
    {},
  );
