/**
 * A slow-client flood, run as a child process by slow-flood.ts (so that its own work does not load the server under
 * test): `count` connections from `localAddress` (100 every 30 ms), each sending a POST head and then one body byte
 * every `trickleMs`, until the parent sends 'stop'. It says 'settled' once each has connected or failed, 'drained'
 * once every connection that connected has been closed too, and on 'stop' what became of them (FloodReport).
 *   argv[2]: JSON of FloodTarget
 */
import { connect } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FloodReport, FloodTarget } from './slow-flood.js';

const { host, port, localAddress, count, trickleMs } = JSON.parse(process.argv[2]!) as FloodTarget;
const HEAD = 'POST /api/billing HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n';
const report: FloodReport = {
  opened: 0,
  connected: 0,
  failed: 0,
  livedSeconds: {},
  answers: {},
  longestByAnswer: {},
  longestMs: 0,
  openNow: 0,
  lagMs: 0,
};
// how late this process ran its own callbacks: a lifetime it measured is late by as much at most
const lag = monitorEventLoopDelay({ resolution: 10 });
lag.enable();
const open = new Map<number, number>();
let settled = false;
let drained = false;

function progress(): void {
  if (!settled && report.connected + report.failed === count) {
    settled = true;
    process.send?.('settled');
  }
  if (settled && !drained && open.size === 0) {
    drained = true;
    process.send?.('drained');
  }
}

function floodOne(): void {
  const socket = connect({ host, port, localAddress });
  let started = 0;
  const id = report.opened++;
  socket.on('connect', () => {
    started = performance.now();
    report.connected++;
    open.set(id, started);
    socket.write(HEAD);
    progress();
  });
  socket.on('error', () => undefined);
  let answer = 'none';
  socket.once('data', (chunk: Buffer) => {
    const head = chunk.toString('latin1');
    const status = /^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 'other';
    // a 400 names what Node's parser found (server.ts's answer to a clientError): e.g. "400 HPE_INVALID_METHOD"
    const cause = /is not valid HTTP \(([^)]+)\)/.exec(head)?.[1];
    answer = cause ? `${status} ${cause}` : status;
  });
  socket.resume();
  const trickle = setInterval(() => socket.writable && socket.write(' '), trickleMs);
  socket.on('close', () => {
    clearInterval(trickle);
    open.delete(id);
    if (started === 0) report.failed++;
    else {
      const lived = performance.now() - started;
      const second = Math.floor(lived / 1_000);
      report.livedSeconds[second] = (report.livedSeconds[second] ?? 0) + 1;
      report.longestMs = Math.max(report.longestMs, lived);
      report.answers[answer] = (report.answers[answer] ?? 0) + 1;
      report.longestByAnswer[answer] = Math.round(Math.max(report.longestByAnswer[answer] ?? 0, lived));
    }
    progress();
  });
}

// 100 connections every 30 ms: all at once would overflow the listen backlog, and the kernel's SYN retries would
// spread them over seconds
const opening = setInterval(() => {
  for (let i = 0; i < 100 && report.opened < count; i++) floodOne();
  if (report.opened === count) clearInterval(opening);
}, 30);
process.on('message', () => {
  const now = performance.now();
  for (const started of open.values()) report.longestMs = Math.max(report.longestMs, now - started);
  report.openNow = open.size;
  report.lagMs = lag.max / 1e6;
  process.send?.(report, () => process.exit(0));
});
