import { once } from 'node:events';
import { connect, type Socket } from 'node:net';

/** What a raw connection got back: the bytes it read, and the error that ended it (ECONNRESET), if any. */
export interface RawExchange {
  received: string;
  error?: string;
  /** ms from the connection to its close */
  ms: number;
}

/** A loopback connection from a given source address (127.0.0.2 is another client of the same host). */
export async function openSocket(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, localAddress });
  await once(socket, 'connect');
  return socket;
}

/**
 * Sends a request head, then `size` bytes of body as fast as the connection takes it, and only then reads what comes
 * back, until the connection closes: a simple client (send the request, then read the answer). An answer lost to a
 * reset shows as an error with nothing received.
 */
export async function postHugeBody(
  port: number,
  path: string,
  size: number,
  connection = 'close',
): Promise<RawExchange> {
  const started = performance.now();
  const socket = await openSocket(port);
  const head =
    `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${size}\r\nConnection: ${connection}\r\n\r\n`;
  let received = '';
  let error: string | undefined;
  socket.setEncoding('latin1');
  socket.pause();
  socket.on('data', (chunk: string) => (received += chunk));
  socket.on('error', (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message));
  const closed = new Promise((resolve) => socket.once('close', resolve));
  socket.write(head);
  const chunk = Buffer.alloc(64 * 1024, 'x');
  for (let sent = 0; sent < size && !socket.destroyed && !socket.writableEnded; sent += chunk.length) {
    if (!socket.write(chunk.subarray(0, Math.min(chunk.length, size - sent)))) {
      await new Promise((resolve) => {
        socket.once('drain', resolve);
        socket.once('close', resolve);
      });
    }
  }
  socket.resume();
  // a keep-alive answer leaves the connection open: once it is read, the client closes it
  const answered = setInterval(() => {
    if (/\r\n\r\n/.test(received) && received.includes('}')) socket.end();
  }, 20);
  await closed;
  clearInterval(answered);
  return { received, error, ms: performance.now() - started };
}

/** A header of a raw HTTP answer, lower-cased name. */
export const headerOf = (raw: string, name: string): string | undefined =>
  new RegExp(`^${name}:\\s*(.*?)\\r?$`, 'im').exec(raw.split('\r\n\r\n')[0] ?? '')?.[1];
