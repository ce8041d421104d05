import { Agent, type AgentOptions, request as httpRequest } from 'node:http';

export interface RawReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface RawRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

/**
 * A client that keeps its connections open, and closes an idle one a second before the server's keep-alive timeout
 * (its Keep-Alive header), rather than send a request on one the server is closing. Node applies that header only
 * below the agent's own timeout.
 */
export const keepAliveAgent = (options: AgentOptions = {}): Agent =>
  new Agent({ keepAlive: true, timeout: 60_000, ...options });

const capped = keepAliveAgent({ maxSockets: 16 });

/**
 * An HTTP request with nothing checked or normalised on the way, for hostile input that fetch() would refuse. By
 * default at most 16 are on the wire at once; the others wait for a socket.
 */
export function rawRequest(
  base: string,
  { method, path, headers = {}, body }: RawRequest,
  timeoutMs = 10_000,
  agent = capped,
): Promise<RawReply> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    // Node sends a DELETE body with neither a length nor chunks unless told its length
    const length = body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) };
    const options = {
      host: url.hostname,
      port: url.port,
      method,
      path,
      headers: { ...length, ...headers },
      agent,
      timeout: timeoutMs,
    };
    const req = httpRequest(options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms: ${method} ${path}`)));
    req.on('error', reject);
    req.end(body);
  });
}
