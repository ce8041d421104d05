/**
 * A slow-client flood, run as a child process (so that its own work does not load the server under test): `count`
 * connections from one address (100 every 30 ms), each sending a POST head and then one body byte every
 * `trickleMs`, until the parent sends 'stop'. It says 'settled' once each has connected or been refused, and at the
 * end how long its connections lived, from their connect to their close.
 *   fork('slow-flood.ts', [port, count, trickleMs]) → 'settled', then on 'stop' { opened, longestMs, openNow }
 */
import { connect } from 'node:net';

const [port, count, trickleMs] = process.argv.slice(2).map(Number) as [number, number, number];
const HEAD = 'POST /api/billing HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n';
let opened = 0;
let longestMs = 0;
let settled = 0;
const settle = () => ++settled === count && process.send?.('settled');
const open = new Map<number, number>();

function floodOne(): void {
  const socket = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1' });
  let started = 0;
  const id = opened++;
  socket.on('connect', () => {
    started = performance.now();
    open.set(id, started);
    socket.write(HEAD);
    settle();
  });
  socket.on('error', () => undefined);
  socket.resume();
  const trickle = setInterval(() => socket.writable && socket.write(' '), trickleMs);
  socket.on('close', () => {
    clearInterval(trickle);
    open.delete(id);
    if (started === 0) settle();
    if (started > 0) longestMs = Math.max(longestMs, performance.now() - started);
  });
}

// 100 connections every 30 ms: all at once would overflow the listen backlog, and the kernel's SYN retries would
// spread them over seconds
const opening = setInterval(() => {
  for (let i = 0; i < 100 && opened < count; i++) floodOne();
  if (opened === count) clearInterval(opening);
}, 30);
process.on('message', () => {
  const now = performance.now();
  for (const started of open.values()) longestMs = Math.max(longestMs, now - started);
  process.send?.({ opened, longestMs, openNow: open.size }, () => process.exit(0));
});
