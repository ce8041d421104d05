/**
 * The opt-in CPU profile (`make bench PROFILE=1`): a copy of a service from this checkout's build, started beside the
 * deployed one under `node --cpu-prof` with the deployed env file (the PM2 apps and their config stay as they are),
 * on a free loopback port, loaded like the proxy phase; then stopped, which writes its .cpuprofile into
 * bench/profiles/<run>/ (open it in Chrome DevTools' Performance panel or speedscope). The bench sums the profile up:
 * the functions and packages where the process spent its time.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { eventually } from '@crud-master/test-support/http';
import { closedPort } from '@crud-master/test-support/network';
import { deployedEnvFile, log, root, round, RUN } from './config.js';

interface Profiled {
  app: string;
  script: string;
  /** the env variables that put its listener on a loopback port of ours and its metrics on a free port */
  listen: (port: number) => Record<string, string>;
}

export const PROFILED: Profiled[] = [
  {
    app: 'api-gateway',
    script: 'services/gateway/dist/main.js',
    listen: (port) => ({ GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: String(port), GATEWAY_METRICS_PORT: '0' }),
  },
  {
    app: 'inventory-api',
    script: 'services/inventory/dist/main.js',
    listen: (port) => ({
      INVENTORY_API_HOST: '127.0.0.1',
      INVENTORY_API_PORT: String(port),
      INVENTORY_METRICS_PORT: '0',
    }),
  },
];

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }>;
  samples: number[];
  timeDeltas: number[];
}

/** Where a function lives: a package under node_modules, Node itself, the service's own code, or V8's bookkeeping. */
function areaOf(url: string, functionName: string): string {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (pkg) return pkg;
  if (url.startsWith('node:')) return 'node (core modules)';
  if (url.includes('/services/')) return `services/${/\/services\/([^/]+)/.exec(url)![1]}`;
  // V8's own entries: (garbage collector), (program); other functions without a script are native built-ins
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  return url;
}

/** Self time per function and per area, in % of the time the process was not idle. */
export function summarise(file: string, top = 15) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const { functionName, url, lineNumber } = nodes.get(id)!.callFrame;
    if (functionName === '(idle)') return;
    const us = profile.timeDeltas[i] ?? 0;
    busy += us;
    const name =
      `${functionName || '(anonymous)'} ` +
      `${url.replace(/^file:\/\/.*?\/(node_modules|services)\//, '$1/')}:${lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    const area = areaOf(url, functionName);
    byArea.set(area, (byArea.get(area) ?? 0) + us);
  });
  const rank = (map: Map<string, number>) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, percent: round((100 * us) / busy, 1) }));
  return { file, busy_s: round(busy / 1e6, 1), areas: rank(byArea), functions: rank(byFunction) };
}

/**
 * Starts a copy of `service` from this checkout's build with the deployed env file on a free loopback port, waits until
 * it is ready, and returns its URL and a stop (SIGINT: a graceful stop, which is when node writes a CPU profile).
 */
export async function startCopy(service: Profiled, nodeArgs: string[], logFile: string, settings = {}) {
  const port = await closedPort();
  const args = [...nodeArgs, `--env-file=${deployedEnvFile(service.app)}`, service.script];
  log(`copy of ${service.app}: node ${args.join(' ')} on :${port}`);
  // only what places it (and `settings`): the rest comes from the deployed env file, which does not override these
  const child = spawn('node', args, {
    cwd: root,
    env: { PATH: process.env.PATH, ...settings, ...service.listen(port) },
    stdio: ['ignore', openSync(logFile, 'w'), 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGINT');
    await exited;
  };
  try {
    const ready = async () =>
      (await fetch(`${url}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined;
    await eventually(ready, 30_000, `${service.app} (copy) to be ready`);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, pid: child.pid!, stop };
}

/** Runs `service` under --cpu-prof while `load(url)` runs, then stops it; returns the summaries of its profiles. */
export async function profileWhile<T>(service: Profiled, load: (url: string) => Promise<T>) {
  const dir = `${root}bench/profiles/${RUN}/${service.app}`;
  mkdirSync(dir, { recursive: true });
  const copy = await startCopy(service, ['--cpu-prof', `--cpu-prof-dir=${dir}`], `${dir}/stdout.log`);
  let result: T;
  try {
    result = await load(copy.url);
  } finally {
    await copy.stop();
  }
  const profiles = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => summarise(`${dir}/${f}`));
  log(`profile: ${service.app}: ${profiles.map((p) => p.file).join(', ')}`);
  return { app: service.app, result, profiles };
}
