/** What each process costs: RSS of the PM2 instances, and CPU time per process group read from /proc. */
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { pm2Processes, type Pm2Process } from '@crud-master/test-support/pm2';
import { APPS, round } from './config.js';

export type MemoryByApp = Record<string, { instances_mb: number[]; max_mb: number }>;

const addInstance = (out: MemoryByApp, app: string, mb: number) => {
  const entry = (out[app] ??= { instances_mb: [], max_mb: 0 });
  entry.instances_mb.push(mb);
  entry.max_mb = Math.max(entry.max_mb, mb);
};

/** RSS of every instance from `pm2 jlist` (monit.memory). */
export function pm2Memory(): MemoryByApp {
  const out: MemoryByApp = {};
  for (const p of pm2Processes().filter((p) => (APPS as readonly string[]).includes(p.name)))
    addInstance(out, p.name, round(p.memory / 2 ** 20, 1));
  return out;
}

/** RSS of a process from /proc (what monit.memory reports), cheap enough to sample while the load runs. */
export function procRssMb(pid: number): number | undefined {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? round(Number(kb) / 1024, 1) : undefined;
  } catch {
    return undefined;
  }
}

/** Samples the RSS of the given apps' instances every 250 ms until stopped; keeps each instance's peak. */
export function rssSampler(apps: readonly string[]) {
  const instances = pm2Processes().filter((p) => apps.includes(p.name) && p.pid > 0);
  const peak = new Map<Pm2Process, number>();
  const sample = () => {
    for (const p of instances) peak.set(p, Math.max(peak.get(p) ?? 0, procRssMb(p.pid) ?? 0));
  };
  sample();
  const timer = setInterval(sample, 250);
  return {
    stop: (): MemoryByApp => {
      clearInterval(timer);
      sample();
      const out: MemoryByApp = {};
      for (const [p, mb] of peak) addInstance(out, p.name, mb);
      return out;
    },
  };
}

/** Each app's entry with the larger peak of the two. */
export function mergeMax(a: MemoryByApp, b: MemoryByApp): MemoryByApp {
  const out: MemoryByApp = { ...a };
  for (const [app, entry] of Object.entries(b)) {
    const old = out[app];
    if (!old || entry.max_mb > old.max_mb) out[app] = entry;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// CPU time per process group, from /proc: what each request costs, whatever else the machine is doing

const TICKS_PER_S = 100;
export type CpuGroups = Record<string, number>;

/** Processes started by the bench itself (nginx): a parent's pid and the group that it and its children count in. */
const tracked = new Map<number, string>();
export const trackProcessTree = (pid: number, group: string) => tracked.set(pid, group);
export const untrackProcessTree = (pid: number) => tracked.delete(pid);

/**
 * CPU seconds used so far by each group: every PM2 app, the PM2 daemon, PostgreSQL, RabbitMQ, the processes the bench
 * started (nginx: its master and workers) and this load generator.
 */
export function cpuSnapshot(apps = new Map(pm2Processes().map((p) => [p.pid, p.name]))): CpuGroups {
  const groups: CpuGroups = {};
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    // after the command: state, ppid, …, utime (14th field of the line), stime (15th)
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    let group = apps.get(pid) ?? tracked.get(pid) ?? tracked.get(Number(fields[1]));
    if (!group && pid === process.pid) group = 'load-generator';
    else if (!group && comm.startsWith('PM2')) group = 'pm2-daemon';
    else if (!group && comm === 'postgres') group = 'postgres';
    else if (!group && comm === 'beam.smp') group = 'rabbitmq';
    if (group) groups[group] = (groups[group] ?? 0) + ticks / TICKS_PER_S;
  }
  return groups;
}

/** CPU milliseconds per request (or message) of each group between two snapshots; `total` is their sum. */
export function cpuPerRequest(before: CpuGroups, after: CpuGroups, requests: number): CpuGroups {
  const out: CpuGroups = {};
  let total = 0;
  for (const [group, seconds] of Object.entries(after)) {
    const ms = ((seconds - (before[group] ?? 0)) * 1000) / Math.max(1, requests);
    if (ms > 0) {
      out[group] = round(ms, 3);
      total += ms;
    }
  }
  out.total = round(total, 3);
  return out;
}

/**
 * Waits (at most `timeoutMs`) until the stack uses less than `cores` of CPU over a second: what the last load left
 * behind (the PM2 daemon writing a backlog of log lines, a GC) would otherwise fall into the next measurement.
 * Returns the cores the stack used in the last second.
 */
export async function settle(cores = 0.25, timeoutMs = 20_000): Promise<number> {
  const apps = new Map(pm2Processes().map((p) => [p.pid, p.name]));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const before = cpuSnapshot(apps);
    await sleep(1000);
    const after = cpuSnapshot(apps);
    const used = Object.entries(after).reduce(
      (sum, [group, s]) => (group === 'load-generator' ? sum : sum + s - (before[group] ?? 0)),
      0,
    );
    if (used < cores || Date.now() > deadline) return round(used, 2);
  }
}
