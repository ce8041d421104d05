import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';

/** A loopback port on which nothing listens: connections to it are refused. */
export async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface TcpPeer {
  port: number;
  close(): Promise<void>;
}

async function serve(onConnection: (socket: Socket) => void): Promise<TcpPeer & { server: Server }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as { port: number }).port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A peer that accepts connections and never says a word: a hung upstream or broker. */
export const silentPeer = (): Promise<TcpPeer> => serve(() => undefined);

/** A TCP relay to a real server that a test can cut and restore, to simulate an outage of that server. */
export async function relay(targetPort: number): Promise<TcpPeer & { cut(): void; restore(): void }> {
  let up = true;
  const links = new Set<Socket>();
  const peer = await serve((client) => {
    if (!up) return client.destroy();
    const upstream = new (client.constructor as typeof Socket)();
    upstream.on('error', () => client.destroy());
    upstream.connect(targetPort, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    links.add(upstream);
    upstream.on('close', () => {
      links.delete(upstream);
      client.destroy();
    });
  });
  return {
    port: peer.port,
    close: () => peer.close(),
    cut: () => {
      up = false;
      for (const link of links) link.destroy();
    },
    restore: () => {
      up = true;
    },
  };
}
