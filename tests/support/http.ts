import type { Server } from 'node:net';
import { portOf } from '@crud-master/shared';
import { assertContract } from './contract.js';

export interface Reply {
  status: number;
  headers: Headers;
  body: any;
  ms: number;
}

/** The base URL of a server that a test started on loopback, with an optional path. */
export const urlOf = (server: Server, path = ''): string => `http://127.0.0.1:${portOf(server)}${path}`;

/**
 * One HTTP request; the body is parsed as JSON when the response says it is JSON. The reply must match openapi.yaml.
 */
export async function request(url: string, init: RequestInit & { json?: unknown } = {}): Promise<Reply> {
  const { json, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (json !== undefined) headers.set('content-type', 'application/json');
  const started = performance.now();
  const response = await fetch(url, {
    ...rest,
    headers,
    body: json !== undefined ? JSON.stringify(json) : rest.body,
  }).catch((error: Error) => {
    // fetch says only "fetch failed": say what failed, and why (ECONNREFUSED, other side closed…)
    const cause = error.cause as { code?: string; message?: string } | undefined;
    throw new Error(
      `${rest.method ?? 'GET'} ${url}: ${error.message} (${cause?.code ?? cause?.message ?? 'no cause'})`,
      { cause: error },
    );
  });
  const text = await response.text();
  const isJson = /json/.test(response.headers.get('content-type') ?? '');
  const body = isJson && text ? JSON.parse(text) : text;
  assertContract(rest.method ?? 'GET', url, response.status, response.headers, body);
  return { status: response.status, headers: response.headers, body, ms: performance.now() - started };
}

/** Polls until `probe` returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Polls `${base}/readyz` until the service answers 200 (up, and its database or broker reachable); a service still
 * starting refuses the connection, which counts as not ready yet. */
export const untilReady = (base: string, timeoutMs = 10_000, what = `${base} to be ready`): Promise<true> =>
  eventually(
    async () => ((await request(`${base}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined),
    timeoutMs,
    what,
  );
