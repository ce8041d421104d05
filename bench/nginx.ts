/**
 * nginx as the reference reverse proxy: Debian's nginx-light (`make bench` installs it), started by the bench with a
 * throwaway configuration in a temporary directory, on a free loopback port, its workers running as nobody. It
 * proxies to the same inventory-api the gateway proxies to, over a pool of keep-alive upstream connections, and
 * writes a buffered access log, as a production nginx would. The bench stops it whichever way it exits.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { eventually } from '@crud-master/test-support/http';
import { closedPort } from '@crud-master/test-support/network';
import { log } from './config.js';
import { endWithBench, refuses, stopChild } from './peers.js';
import { trackProcessTree, untrackProcessTree } from './processes.js';

export interface Nginx {
  url: string;
  workers: number;
  /** Stops nginx (gracefully: the access log's buffer is written), checks that it is gone; returns the log's lines. */
  stop(): Promise<{ access_log_lines: number }>;
}

const WORKERS = Number(process.env.BENCH_NGINX_WORKERS ?? os.cpus().length);

const config = (dir: string, port: number, upstream: URL) => `
# Written by the bench (bench/nginx.ts) for one run; removed when it ends.
worker_processes ${WORKERS};
user nobody nogroup;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log ${dir}/access.log combined buffer=64k flush=1s;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  # keepalive_requests stays at nginx's default, 1000, which the Node services also use (HTTP_MAX_REQUESTS_PER_SOCKET)
  upstream inventory {
    server ${upstream.host};
    keepalive 64;
    keepalive_requests 100000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://inventory;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;

/** Starts nginx in front of `upstream` (http://host:port) and waits until it answers through it. */
export async function startNginx(upstream: string): Promise<Nginx> {
  const dir = mkdtempSync(join(os.tmpdir(), 'crud-master-bench-nginx-'));
  // the workers (nobody) reach the temporary paths below it
  chmodSync(dir, 0o755);
  const port = await closedPort();
  writeFileSync(`${dir}/nginx.conf`, config(dir, port, new URL(upstream)));
  const args = ['-p', dir, '-c', `${dir}/nginx.conf`, '-e', `${dir}/error.log`];
  const check = spawnSync('nginx', [...args, '-t'], { encoding: 'utf8' });
  if (check.error || check.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(
      `nginx -t failed (is nginx-light installed? make bench installs it): ${check.error?.message ?? check.stderr}`,
    );
  }
  const child = spawn('nginx', [...args, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const pid = child.pid!;
  trackProcessTree(pid, 'nginx');
  // SIGTERM, a fast stop in which the master still ends its workers (a master killed outright would leave them serving)
  const undo = endWithBench(child, 'SIGTERM', () => rmSync(dir, { recursive: true, force: true }));
  const url = `http://127.0.0.1:${port}`;

  const stop = async () => {
    // SIGQUIT: a graceful stop, which also writes out the access log's buffer
    await stopChild(child, 'SIGQUIT', 'SIGTERM');
    undo();
    untrackProcessTree(pid);
    if (!(await refuses(url))) throw new Error(`nginx still answers on ${url} after it was stopped`);
    const lines = readFileSync(`${dir}/access.log`, 'utf8').split('\n').filter(Boolean).length;
    rmSync(dir, { recursive: true, force: true });
    log(`nginx: stopped (${lines} lines in its access log)`);
    return { access_log_lines: lines };
  };

  try {
    // up, and really nginx proxying to inventory-api: nginx puts its own name in Server
    await eventually(
      async () => {
        if (child.exitCode !== null)
          throw new Error(`nginx exited with ${child.exitCode}: ${readFileSync(`${dir}/error.log`, 'utf8')}`);
        const reply = await fetch(`${url}/readyz`).catch(() => undefined);
        await reply?.arrayBuffer();
        return reply?.status === 200 && reply.headers.get('server')?.startsWith('nginx') ? true : undefined;
      },
      10_000,
      `nginx on ${url} to answer /readyz through ${upstream}`,
    );
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  log(`nginx: ${WORKERS} workers on ${url}, proxying to ${upstream} (config in ${dir})`);
  return { url, workers: WORKERS, stop };
}
