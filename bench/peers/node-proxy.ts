/**
 * The bare Node peer of `make bench`: one process of http-proxy (what koa-proxies wraps) over a keep-alive agent, with
 * nothing around it: the floor for any gateway built on koa-proxies. Usage: node node-proxy.ts PORT UPSTREAM_URL
 */
import { Agent, createServer } from 'node:http';
import httpProxy from 'http-proxy';

const [port, target] = process.argv.slice(2);
const proxy = httpProxy.createProxyServer({ target, agent: new Agent({ keepAlive: true, maxSockets: 256 }) });
proxy.on('error', (_error, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502);
  res.end();
});
createServer((req, res) => proxy.web(req, res)).listen(Number(port), '127.0.0.1');
// an orderly exit, in which node --cpu-prof writes its profile
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
