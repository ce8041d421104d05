import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { portOf } from '@crud-master/shared';

/** A loopback port on which nothing listens: connections to it are refused. */
export async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = portOf(server);
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface TcpPeer {
  port: number;
  close(): Promise<void>;
}

async function serve(
  onConnection: (socket: Socket) => void,
  host = '127.0.0.1',
  port = 0,
): Promise<TcpPeer & { server: Server }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  server.listen(port, host);
  await once(server, 'listening');
  return {
    server,
    port: portOf(server),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A peer that accepts connections and never says a word: a hung upstream or broker. */
export const silentPeer = (): Promise<TcpPeer> => serve(() => undefined);

/**
 * A TCP relay to a real server that a test can cut and restore, to simulate an outage of that server. It listens on
 * a free loopback port, or where `listen` says (another loopback address with the server's own port: a second
 * "node" for a client that takes a list of hosts on one port). `hold()` keeps back what the server sends (its
 * answers, e.g. publisher confirms) while the client's frames still reach it; `release()` sends it late, `cut()`
 * drops it.
 */
export async function relay(
  targetPort: number,
  listen: { host?: string; port?: number } = {},
): Promise<TcpPeer & { host: string; cut(): void; restore(): void; hold(): void; release(): void }> {
  let up = true;
  let holding = false;
  let held: Array<[Socket, Buffer]> = [];
  const links = new Set<Socket>();
  const host = listen.host ?? '127.0.0.1';
  const peer = await serve(
    (client) => {
      if (!up) return client.destroy();
      const upstream = new (client.constructor as typeof Socket)();
      upstream.on('error', () => client.destroy());
      upstream.connect(targetPort, '127.0.0.1');
      client.pipe(upstream);
      upstream.on('data', (chunk: Buffer) => {
        if (holding) held.push([client, chunk]);
        else client.write(chunk);
      });
      links.add(upstream);
      upstream.on('close', () => {
        links.delete(upstream);
        client.destroy();
      });
    },
    host,
    listen.port,
  );
  return {
    host,
    port: peer.port,
    close: () => peer.close(),
    cut: () => {
      up = false;
      holding = false;
      held = [];
      for (const link of links) link.destroy();
    },
    restore: () => {
      up = true;
    },
    hold: () => {
      holding = true;
    },
    release: () => {
      holding = false;
      for (const [client, chunk] of held) if (!client.destroyed) client.write(chunk);
      held = [];
    },
  };
}

/** Whether a connection to host:port is refused (nothing listens there). */
const refuses = (host: string, port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, host);
    socket.on('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', () => resolve(true));
  });

/**
 * A loopback address other than 127.0.0.1 on which nothing listens on `port`: a node that is down, for a client that
 * takes several hosts on one port (Linux routes all of 127.0.0.0/8 to the loopback interface).
 */
export async function spareLoopback(port: number): Promise<string> {
  for (let last = 2; last < 255; last++) {
    const host = `127.0.0.${last}`;
    if (await refuses(host, port)) return host;
  }
  throw new Error(`no loopback address without a listener on port ${port}`);
}

/**
 * A relay to a real broker that lets the AMQP handshake through and cuts the connection as soon as the client opens
 * a channel: a broker that refuses every channel.open, for a client that must survive it.
 */
export async function channelCutter(targetPort: number): Promise<TcpPeer> {
  const AMQP_HEADER = 8;
  return serve((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => client.destroy());
    upstream.pipe(client);
    let pending = Buffer.alloc(0);
    let headerSeen = false;
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      if (!headerSeen && pending.length >= AMQP_HEADER) {
        upstream.write(pending.subarray(0, AMQP_HEADER));
        pending = pending.subarray(AMQP_HEADER);
        headerSeen = true;
      }
      // frames: type (1), channel (2), size (4), payload, frame-end (1)
      while (headerSeen && pending.length >= 7 && pending.length >= 8 + pending.readUInt32BE(3)) {
        if (pending.readUInt16BE(1) !== 0) {
          upstream.destroy();
          client.destroy();
          return;
        }
        const size = 8 + pending.readUInt32BE(3);
        upstream.write(pending.subarray(0, size));
        pending = pending.subarray(size);
      }
    });
  });
}
