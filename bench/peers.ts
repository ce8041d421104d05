/**
 * The plain proxies a gateway is measured against, beside nginx (nginx.ts), in front of the same inventory-api: Go's
 * net/http/httputil ReverseProxy (peers/go-proxy.go, built with Debian's golang-go, which `make bench` installs) and a
 * bare Node http-proxy, the library koa-proxies wraps (peers/node-proxy.ts). Each runs as one process on a free
 * loopback port, its CPU counted in a group of its own, and ends with the bench whichever way it ends.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { eventually } from '@crud-master/test-support/http';
import { closedPort } from '@crud-master/test-support/network';
import { log, root } from './config.js';
import { trackProcessTree, untrackProcessTree } from './processes.js';

export interface Peer {
  url: string;
  /** Stops it (SIGTERM, SIGKILL after 10 s) and checks that its port is closed. */
  stop(): Promise<void>;
}

/**
 * Ends `child` with the bench, however the bench ends (an error, SIGINT, SIGTERM), with `signal`, then runs `cleanup`;
 * returns the undo, for a child stopped on purpose.
 */
export function endWithBench(child: ChildProcess, signal: NodeJS.Signals, cleanup = () => {}) {
  const killNow = () => {
    child.kill(signal);
    cleanup();
  };
  const onSignal = (received: NodeJS.Signals) => {
    killNow();
    process.removeListener(received, onSignal);
    process.kill(process.pid, received);
  };
  process.on('exit', killNow);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.removeListener('exit', killNow);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  };
}

/** Sends `signal`, `fallback` if the child still runs 10 s later, and waits until it has exited. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals, fallback: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  const timer = setTimeout(() => child.kill(fallback), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Whether nothing answers on `url` any more. */
export const refuses = (url: string) =>
  fetch(url).then(
    () => false,
    () => true,
  );

/** Builds the Go peer into a temporary directory (the standard library only: nothing is downloaded). */
function buildGoProxy(dir: string): string {
  const binary = join(dir, 'go-proxy');
  // GOTOOLCHAIN=local: this machine's Go, whatever a newer go command would otherwise look for
  const env = { ...process.env, GOTOOLCHAIN: 'local', GOCACHE: join(dir, 'cache'), GOPATH: join(dir, 'gopath') };
  const built = spawnSync('go', ['build', '-o', binary, `${root}bench/peers/go-proxy.go`], { encoding: 'utf8', env });
  if (built.error || built.status !== 0) {
    throw new Error(
      'go build of bench/peers/go-proxy.go failed (is golang-go installed? make bench installs it): ' +
        `${built.error?.message ?? built.stderr}`,
    );
  }
  return binary;
}

export const PEERS = {
  go: (dir: string, port: number, upstream: string) => [buildGoProxy(dir), `127.0.0.1:${port}`, upstream],
  // http-proxy calls util._extend, which Node deprecates with a warning
  node: (_dir: string, port: number, upstream: string) => [
    process.execPath,
    '--no-deprecation',
    `${root}bench/peers/node-proxy.ts`,
    String(port),
    upstream,
  ],
};
export type PeerName = keyof typeof PEERS;

/** Starts a peer in front of `upstream` and waits until it answers /readyz through it. */
export async function startPeer(name: PeerName, upstream: string): Promise<Peer> {
  const dir = mkdtempSync(join(os.tmpdir(), `crud-master-bench-${name}-`));
  const port = await closedPort();
  const [command, ...args] = PEERS[name](dir, port, upstream);
  const child = spawn(command!, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const group = `${name}-proxy`;
  trackProcessTree(child.pid!, group);
  const undo = endWithBench(child, 'SIGTERM', () => rmSync(dir, { recursive: true, force: true }));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await stopChild(child, 'SIGTERM', 'SIGKILL');
    undo();
    untrackProcessTree(child.pid!);
    rmSync(dir, { recursive: true, force: true });
    if (!(await refuses(url))) throw new Error(`${group} still answers on ${url} after it was stopped`);
    log(`${group}: stopped`);
  };
  try {
    await eventually(
      async () => {
        if (child.exitCode !== null) throw new Error(`${group} exited with ${child.exitCode}`);
        const reply = await fetch(`${url}/readyz`).catch(() => undefined);
        await reply?.arrayBuffer();
        return reply?.status === 200 ? true : undefined;
      },
      10_000,
      `${group} on ${url} to answer /readyz through ${upstream}`,
    );
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  log(`${group}: on ${url}, proxying to ${upstream}`);
  return { url, stop };
}
