import { once } from 'node:events';
import { type AddressInfo, Server as NetServer, type Socket } from 'node:net';
import {
  createServer,
  type IncomingMessage,
  type OutgoingHttpHeader,
  type OutgoingHttpHeaders,
  type Server,
  ServerResponse,
  STATUS_CODES,
} from 'node:http';
import type { Duplex } from 'node:stream';
import type Koa from 'koa';
import type { HttpLimits } from './config.js';
import { PROBLEM_JSON } from './errors.js';

// The life of a service's HTTP server: it listens with the edge's timeouts and caps, and drains when it is closed.

/** Servers being closed: their responses ask clients to close the connection. */
const draining = new WeakSet<Server>();

/** Starts the app's HTTP server with the given timeouts and connection caps; resolves once it listens. */
export async function listen(app: Koa, port: number, host: string | undefined, limits: HttpLimits): Promise<Server> {
  // set as the head is written, after any proxied upstream headers (which would say keep-alive): while draining, each
  // response closes its connection, so a keep-alive client reconnects to a live instance; an answer given before the
  // request's body arrived (413, 429) closes it too, once the rest of the body is drained (lingerBeforeClose)
  class EdgeResponse extends ServerResponse {
    override writeHead(
      statusCode: number,
      ...rest: [string | OutgoingHttpHeaders | OutgoingHttpHeader[] | undefined, OutgoingHttpHeaders?]
    ) {
      const early = !this.req.complete;
      if (draining.has(server) || early) this.setHeader('Connection', 'close');
      if (early) lingerBeforeClose(this.socket, this.req, limits);
      return super.writeHead(statusCode, ...(rest as [string, OutgoingHttpHeaders]));
    }
  }
  const server: Server = createServer(
    {
      ServerResponse: EdgeResponse,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      // how often Node looks for requests past their timeouts (30 s by default, which would triple a 10 s timeout)
      connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs / 2),
    },
    app.callback(),
  );
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket;
  server.maxConnections = limits.maxConnections;
  capConnectionsPerAddress(server, limits.maxConnectionsPerAddress);
  server.on('clientError', answerMalformedRequest);
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}

/**
 * Each client address may hold `max` connections; more are closed at once. A global cap alone would let one address
 * take every connection and lock the others out; this one leaves them theirs.
 */
function capConnectionsPerAddress(server: Server, max: number): void {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    const count = (open.get(address) ?? 0) + 1;
    if (count > max) {
      socket.destroy();
      return;
    }
    open.set(address, count);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left > 0) open.set(address, left);
      else open.delete(address);
    });
  });
}

/**
 * nginx's lingering close. Closing a connection whose client is still sending its body makes the kernel answer the
 * next bytes with a reset, and a reset throws away the answer the client has not read yet (its 413). So when Node
 * closes such a connection after the answer, it only ends its own side, reads and drops the rest of the body, and
 * closes once that is read, or after `lingerMs`, or `lingerBytes`, whichever comes first.
 */
function lingerBeforeClose(socket: Socket | null, req: IncomingMessage, { lingerMs, lingerBytes }: HttpLimits): void {
  if (socket === null) return;
  socket.destroySoon = () => {
    socket.end();
    const close = () => socket.destroy();
    if (req.complete) return close();
    const timer = setTimeout(close, lingerMs);
    const start = socket.bytesRead;
    // the answer is sent: nothing needs the body any more (a proxy that piped it upstream stops here)
    req.unpipe();
    req.resume();
    req.on('data', () => socket.bytesRead - start > lingerBytes && close());
    req.once('end', close);
    socket.once('close', () => clearTimeout(timer));
  };
}

/** Node rejects malformed HTTP or a request past its timeout before the app sees it; answer with problem+json too. */
function answerMalformedRequest(error: NodeJS.ErrnoException, socket: Duplex): void {
  // an answer already under way (a lingering close) cannot be followed by another
  const answering = (socket as { _httpMessage?: ServerResponse })._httpMessage?.headersSent === true;
  if (!socket.writable || error.code === 'ECONNRESET' || answering) {
    socket.destroy();
    return;
  }
  const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const title = STATUS_CODES[status] ?? 'Bad Request';
  const detail =
    status === 408
      ? 'The request did not arrive in time.'
      : `The request is not valid HTTP (${error.code ?? 'parse error'}).`;
  const body = JSON.stringify({ type: 'about:blank', title, status, detail });
  socket.end(
    `HTTP/1.1 ${status} ${title}\r\nContent-Type: ${PROBLEM_JSON}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** The port a listening server (HTTP or plain TCP) was given. */
export const portOf = (server: NetServer): number => (server.address() as AddressInfo).port;

const IDLE_GRACE_MS = 1_000;
const DRAIN_LIMIT_MS = 8_000;

/**
 * Stops accepting connections and lets in-flight requests finish, for a reload that drops no request. http's own
 * close() would also drop idle keep-alive sockets at once, racing a request the client has just sent on one; here an
 * idle socket gets a grace period, in which its request is still answered (with Connection: close).
 */
export function closeServer(server: Server): Promise<void> {
  draining.add(server);
  return new Promise((resolve) => {
    const idle = setTimeout(() => server.closeIdleConnections(), IDLE_GRACE_MS);
    const limit = setTimeout(() => server.closeAllConnections(), DRAIN_LIMIT_MS);
    NetServer.prototype.close.call(server, () => {
      clearTimeout(idle);
      clearTimeout(limit);
      resolve();
    });
  });
}
