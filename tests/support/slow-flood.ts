import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Agent } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { rawRequest } from './raw-http.js';

/**
 * Issue 23's flood, as the e2e test and the bench's flood phase send it: this many slow connections from FLOOD_FROM,
 * each a POST head and then a body byte every FLOOD_TRICKLE_MS, while a client on CLIENT_FROM reads movies.
 */
export const FLOOD_CONNECTIONS = 15_000;
export const FLOOD_TRICKLE_MS = 500;
export const FLOOD_FROM = '127.0.0.1';
export const CLIENT_FROM = '127.0.0.2';

/** Where a slow flood goes, from where, and how many connections it opens. */
export interface FloodTarget {
  host: string;
  port: number;
  /** the flood's source address (a loopback one: 127.0.0.1, …); none: the system's choice */
  localAddress?: string;
  /** a network namespace (a path, as `nsenter --net=` takes it) to flood from: a guest's, on the Vagrant stage */
  netns?: string;
  count: number;
  /** ms between the body bytes each connection trickles */
  trickleMs: number;
}

/** What became of the flood's connections, measured from each one's connect to its close. */
export interface FloodReport {
  /** connections attempted */
  opened: number;
  connected: number;
  /** never connected (refused, reset in the handshake) */
  failed: number;
  /** how many closed after how many whole seconds: those of second 0 were turned away at once (a connection cap) */
  livedSeconds: Record<number, number>;
  /**
   * how many closed after which answer: its status (408: the request timeout; a 400 with the parser's error code), or
   * none (closed by a cap)
   */
  answers: Record<string, number>;
  /** the longest lifetime (ms) by answer: that of none is how late the server closed a connection it turned away */
  longestByAnswer: Record<string, number>;
  /** the longest lifetime, counting those still open at the end */
  longestMs: number;
  /** still open at the end */
  openNow: number;
  /** the longest the flood's process was late running a callback (its event loop's delay): its measuring error */
  lagMs: number;
}

export interface SlowFlood {
  /** each connection has connected or failed */
  settled: Promise<unknown>;
  /** …and each one that connected is closed again */
  drained: Promise<unknown>;
  /** stops the flood and reports */
  stop(): Promise<FloodReport>;
  kill(): void;
}

const child = fileURLToPath(new URL('./slow-flood-child.ts', import.meta.url));

/**
 * Starts a slow flood in a child process (slow-flood-child.ts), in `netns` if given (nsenter(1), as root). The child
 * runs under prlimit(1) with a file limit above its connections: a Debian host's default soft limit (1024) holds far
 * fewer sockets, and root may raise the hard one; anyone may lower it.
 */
export function startSlowFlood(target: FloodTarget): SlowFlood {
  const files = target.count + 256;
  const command = [
    'prlimit',
    `--nofile=${files}:${files}`,
    '--',
    process.execPath,
    '--import',
    'tsx',
    child,
    JSON.stringify(target),
  ];
  const [file, ...args] = target.netns ? ['nsenter', `--net=${target.netns}`, '--', ...command] : command;
  const flood = spawn(file!, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const said = (word: string) =>
    new Promise((resolve, reject) => {
      const listen = (message: unknown) => message === word && resolve(word);
      flood.on('message', listen);
      flood.once('exit', (code) => reject(new Error(`the slow flood exited (${code}) before it was ${word}`)));
    });
  const [settled, drained] = [said('settled'), said('drained')];
  // a flood stopped before it settled or drained leaves these unawaited
  settled.catch(() => undefined);
  drained.catch(() => undefined);
  return {
    settled,
    drained,
    stop: async () => {
      flood.send('stop');
      for (;;) {
        const [message] = (await once(flood, 'message')) as [unknown];
        if (typeof message === 'object') return message as FloodReport;
      }
    },
    kill: () => flood.kill(),
  };
}

/** What a client got from a series of GETs: each one's status and latency in ms, and the errors in place of one. */
export interface Probe {
  latencies: number[];
  statuses: Map<number, number>;
  errors: string[];
}

/** Sends GET `path` one after the other through `agent`, `pauseMs` apart, until `until()` says so. */
export async function probeWhile(
  base: string,
  path: string,
  agent: Agent,
  pauseMs: number,
  until: () => boolean,
): Promise<Probe> {
  const probe: Probe = { latencies: [], statuses: new Map(), errors: [] };
  while (!until()) {
    const sent = performance.now();
    try {
      const reply = await rawRequest(base, { method: 'GET', path }, 5_000, agent);
      probe.statuses.set(reply.status, (probe.statuses.get(reply.status) ?? 0) + 1);
      probe.latencies.push(performance.now() - sent);
    } catch (error) {
      probe.errors.push((error as NodeJS.ErrnoException).code ?? String(error));
    }
    await sleep(pauseMs);
  }
  return probe;
}

/** A flood and a client's GETs side by side: what each got, and when the flood had settled (ms from its start). */
export interface FloodAndProbe {
  probe: Probe;
  report: FloodReport;
  settledMs?: number;
}

/**
 * Starts a slow flood at `target` and meanwhile sends GET `path` to `base` through `agent` (probeWhile), until every
 * flood connection is closed or `limitMs` has passed; then stops the flood and reports both. The flood is killed
 * whatever happens.
 */
export async function probeDuringFlood(
  target: FloodTarget,
  client: { base: string; path: string; agent: Agent; pauseMs: number },
  limitMs: number,
): Promise<FloodAndProbe> {
  const started = performance.now();
  const flood = startSlowFlood(target);
  let settledMs: number | undefined;
  void flood.settled.then(
    () => (settledMs = performance.now() - started),
    () => undefined,
  );
  let done = false;
  try {
    const probing = probeWhile(client.base, client.path, client.agent, client.pauseMs, () => done);
    await Promise.race([flood.drained, sleep(limitMs)]);
    done = true;
    const probe = await probing;
    return { probe, report: await flood.stop(), settledMs };
  } finally {
    done = true;
    flood.kill();
  }
}

/** A percentile of latencies in ms (nearest rank). */
export const percentile = (values: number[], p: number): number =>
  [...values].sort((a, b) => a - b)[Math.max(0, Math.ceil((values.length * p) / 100) - 1)] ?? NaN;

/** One line of figures for a test's output: the probe's count, p50 and p99, and the flood's connections. */
export const describeFlood = (probe: Probe, report: FloodReport, from: string): string =>
  `${probe.latencies.length} GETs from ${from} (statuses ${JSON.stringify(Object.fromEntries(probe.statuses))}, ` +
  `${probe.errors.length} errors${probe.errors.length > 0 ? `: ${[...new Set(probe.errors)].join('; ')}` : ''}), ` +
  `p50 ${percentile(probe.latencies, 50).toFixed(1)} ms, ` +
  `p99 ${percentile(probe.latencies, 99).toFixed(1)} ms; flood: ${report.opened} opened, ${report.connected} ` +
  'connected, ' +
  `${report.failed} failed, ${report.openNow} still open, the longest lived ${Math.round(report.longestMs)} ms; ` +
  `closed after s: ${JSON.stringify(report.livedSeconds)}, with answers ${JSON.stringify(report.answers)}, ` +
  `the longest by answer (ms) ${JSON.stringify(report.longestByAnswer)}; ` +
  `the flood's own event loop lagged up to ${Math.round(report.lagMs)} ms`;
