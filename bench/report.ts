/**
 * What a run prints (one table, and the CPU profile's summary when there is one) and the summary keys of results.json.
 */
import type { acceptPhase } from './accept.js';
import { APPS, TARGETS } from './config.js';
import type { drainPhase } from './drain.js';
import type { floodPhase } from './flood.js';
import type { limiterPhase } from './limiter.js';
import type { CpuGroups, MemoryByApp } from './processes.js';
import type { provisioningRun } from './provisioning.js';
import type { proxyPhase } from './proxy.js';

export interface Footprint {
  idle_mb: MemoryByApp;
  load_mb: MemoryByApp;
  idle_after_mb: MemoryByApp;
  provisioning: Awaited<ReturnType<typeof provisioningRun>>;
}
export interface Results {
  proxy?: Awaited<ReturnType<typeof proxyPhase>>;
  accept?: Awaited<ReturnType<typeof acceptPhase>>;
  drain?: Awaited<ReturnType<typeof drainPhase>>;
  limiter?: Awaited<ReturnType<typeof limiterPhase>>;
  flood?: Awaited<ReturnType<typeof floodPhase>>;
  footprint?: Footprint;
  [key: string]: unknown;
}

/** The largest RSS of any instance of any app, idle before the load and 30 s after it. */
const idleRssMb = (f: Footprint) =>
  Math.max(...[f.idle_mb, f.idle_after_mb].flatMap((m) => Object.values(m).map((app) => app.max_mb)));

/** The keys results.json starts with: one number per target (null when its phase did not run). */
export const summary = (r: Results) => ({
  proxy_ratio: r.proxy?.c100?.ratio ?? null,
  nginx_ratio: r.proxy?.c100?.nginx_ratio ?? null,
  go_ratio: r.proxy?.c100?.go_ratio ?? null,
  bare_node_cpu_ratio: r.proxy?.c100?.bare_node_cpu_ratio ?? null,
  upstream_cpu_ratio: r.proxy?.c100?.upstream_cpu_ratio ?? null,
  added_p99_ms: r.proxy?.open_loop?.added_p99_ms ?? null,
  accept_ratio: r.accept?.ratio ?? null,
  limiter_proxy_cost: r.limiter?.get.cost ?? null,
  limiter_accept_cost: r.limiter?.post.cost ?? null,
  flood_p99_ms: r.flood?.during.p99_ms ?? null,
  drain_ratio: r.drain?.ratio ?? null,
  drained_rows: r.drain?.drained_rows ?? null,
  idle_rss_mb: r.footprint ? idleRssMb(r.footprint) : null,
  noop_provision_s: r.footprint && 'seconds' in r.footprint.provisioning ? r.footprint.provisioning.seconds : null,
});

const mark = (ok: boolean | undefined) => (ok === undefined ? '' : ok ? 'ok' : 'MISS');
/** "0.91: api-gateway 0.4, inventory-api 0.3, …", the costliest first */
const cpuLine = (cpu: CpuGroups) =>
  `${cpu.total}: ${Object.entries(cpu)
    .filter(([group, ms]) => group !== 'total' && ms >= 0.005)
    .sort((a, b) => b[1] - a[1])
    .map(([group, ms]) => `${group} ${ms}`)
    .join(', ')}`;

function proxyRows(p: NonNullable<Results['proxy']>): string[][] {
  const rows: string[][] = [];
  for (const c of ['c10', 'c100'] as const) {
    const run = p[c];
    if (!run) continue;
    const last = c === 'c100';
    rows.push([
      `proxy GET /api/movies/:id ${c.slice(1)} conn`,
      `gateway ${run.gateway.rps} req/s p50 ${run.gateway.p50_ms} p99 ${run.gateway.p99_ms} ms`,
      `direct ${run.direct.rps} req/s p50 ${run.direct.p50_ms} p99 ${run.direct.p99_ms} ms`,
      `${run.ratio}x`,
      last ? `>= ${TARGETS.proxy_ratio}x` : '',
      last ? mark(run.ratio >= TARGETS.proxy_ratio) : '',
    ]);
    rows.push([
      `  vs nginx, ${c.slice(1)} conn`,
      `gateway ${run.gateway.rps} req/s`,
      `nginx ${run.nginx.rps} req/s p50 ${run.nginx.p50_ms} p99 ${run.nginx.p99_ms} ms ` +
        `(${run.nginx_vs_direct}x direct)`,
      `${run.nginx_ratio}x`,
      last ? `>= ${TARGETS.nginx_ratio}x` : '',
      last ? mark(run.nginx_ratio >= TARGETS.nginx_ratio) : '',
    ]);
  }
  const c = p.c100;
  if (c) {
    rows.push([
      '  vs Go httputil, 100 conn',
      `gateway ${c.gateway.rps} req/s`,
      `go ${c.go.rps} req/s p50 ${c.go.p50_ms} p99 ${c.go.p99_ms} ms`,
      `${c.go_ratio}x`,
      `>= ${TARGETS.go_ratio}x`,
      mark(c.go_ratio >= TARGETS.go_ratio),
    ]);
    rows.push([
      '  own CPU vs bare Node http-proxy, 100 conn',
      `gateway ${c.gateway.cpu_ms_per_request['api-gateway']} ms/req, ${c.gateway.rps} req/s`,
      `node ${c.node.cpu_ms_per_request['node-proxy']} ms/req, ${c.node.rps} req/s p99 ${c.node.p99_ms} ms`,
      `${c.bare_node_cpu_ratio}x`,
      `<= ${TARGETS.bare_node_cpu_ratio}x`,
      mark(c.bare_node_cpu_ratio <= TARGETS.bare_node_cpu_ratio),
    ]);
    rows.push([
      '  inventory-api CPU via gateway / direct',
      `${c.gateway.cpu_ms_per_request['inventory-api']} ms/req`,
      `${c.direct.cpu_ms_per_request['inventory-api']} ms/req`,
      `${c.upstream_cpu_ratio}x`,
      `<= ${TARGETS.upstream_cpu_ratio}x`,
      mark(c.upstream_cpu_ratio <= TARGETS.upstream_cpu_ratio),
    ]);
  }
  if (p.c100) {
    for (const side of ['direct', 'gateway', 'nginx', 'go', 'node'] as const) {
      rows.push([`  CPU ms per GET via ${side}, 100 conn`, cpuLine(p.c100[side].cpu_ms_per_request), '', '', '', '']);
    }
    rows.push(['  CPU-bound ceiling (direct CPU / gateway CPU)', '', '', `${p.c100.cpu_bound_ratio}x`, '', '']);
  }
  const o = p.open_loop;
  if (o) {
    rows.push([
      `open loop ${o.rate} req/s (half of direct), ` +
        `p99${o.over_capacity.length ? ` (over the capacity of: ${o.over_capacity.join(', ')})` : ''}`,
      `gateway p50 ${o.gateway.p50_ms} p99 ${o.gateway.p99_ms} ms`,
      `direct p50 ${o.direct.p50_ms} p99 ${o.direct.p99_ms} ms; nginx p99 ${o.nginx.p99_ms} ms`,
      `+${o.added_p99_ms} ms (nginx +${o.nginx_added_p99_ms} ms)`,
      `<= ${TARGETS.added_p99_ms} ms`,
      mark(o.added_p99_ms <= TARGETS.added_p99_ms),
    ]);
    for (const side of ['direct', 'gateway', 'nginx'] as const) {
      rows.push([`  CPU ms per GET via ${side}, open loop`, cpuLine(o[side].cpu_ms_per_request), '', '', '', '']);
    }
  }
  return rows;
}

export function table(results: Results): string {
  const rows: string[][] = [['measure', 'through the service', 'ceiling', 'ratio', 'target', '']];
  if (results.proxy) rows.push(...proxyRows(results.proxy));
  if (results.accept) {
    const a = results.accept;
    rows.push([
      `billing accept, ${a.concurrency} outstanding`,
      `${a.gateway.rate} 202/s p99 ${a.gateway.p99_ms} ms; CPU ${a.gateway.cpu_ms_per_request} ms/req (gw ` +
        `${a.gateway['api-gateway_cpu_ms_per_request']})`,
      `${a.raw.rate} confirms/s (raw amqplib); CPU ${a.raw.cpu_ms_per_message} ms/msg`,
      `${a.ratio}x`,
      `>= ${TARGETS.accept_ratio}x`,
      mark(a.ratio >= TARGETS.accept_ratio),
    ]);
  }
  if (results.limiter) {
    const l = results.limiter;
    for (const [what, run, target] of [
      ['GET /api/movies/:id', l.get, TARGETS.limiter_proxy_cost],
      ['POST /api/billing', l.post, TARGETS.limiter_accept_cost],
    ] as const) {
      rows.push([
        `limiter cost, ${what} 100 conn (1 - on/off)`,
        `on ${run.on.rps} req/s p99 ${run.on.p99_ms} ms; CPU ${run.on.cpu_ms_per_request} ms/req`,
        `off ${run.off.rps} req/s p99 ${run.off.p99_ms} ms; CPU ${run.off.cpu_ms_per_request} ms/req`,
        `${run.cost}`,
        `<= ${target}`,
        mark(run.cost <= target),
      ]);
    }
  }
  if (results.flood) {
    const f = results.flood;
    const figures = (l: typeof f.quiet) =>
      `${l.gets} GETs p50 ${l.p50_ms} p99 ${l.p99_ms} max ${l.max_ms} ms, ${l.errors} errors`;
    rows.push([
      `GET /api/movies, new connections, while ${f.connections} slow ones hold on`,
      `${figures(f.during)}; statuses ${JSON.stringify(f.during.statuses)}`,
      `no flood: ${figures(f.quiet)}`,
      `p99 +${f.added_p99_ms} ms`,
      `p99 <= ${TARGETS.flood_p99_ms} ms`,
      mark(
        f.during.p99_ms <= TARGETS.flood_p99_ms &&
          f.during.errors === 0 &&
          Object.keys(f.during.statuses).every((s) => s === '200'),
      ),
    ]);
  }
  if (results.drain) {
    const d = results.drain;
    rows.push([
      `drain ${d.messages} msgs, prefetch ${d.prefetch}${d.consumer.candidate ? ' (checkout copy)' : ''}, median of ` +
        `${d.runs.length}`,
      `${d.consumer.rate} msg/s, ${d.drained_rows} rows (${d.consumer.seconds_incl_startup} s incl. start); CPU ` +
        `${d.consumer.cpu_ms_per_message.total} ms/msg`,
      `${d.raw.rate} msg/s (raw consume+ack); CPU ${d.raw.cpu_ms_per_message.total} ms/msg`,
      `${d.ratio}x (runs ${d.runs.map((r) => r.ratio).join(', ')})`,
      `>= ${TARGETS.drain_ratio}x, ${d.messages} rows`,
      mark(d.ratio >= TARGETS.drain_ratio && d.drained_rows === d.messages && d.duplicate_rows === 0),
    ]);
  }
  if (results.footprint) {
    const f = results.footprint;
    for (const app of APPS) {
      const idle = f.idle_mb[app];
      if (!idle) continue;
      const max = Math.max(idle.max_mb, f.idle_after_mb[app]?.max_mb ?? 0);
      rows.push([
        `RSS ${app} (${idle.instances_mb.length} inst.)`,
        `idle ${idle.instances_mb.join('/')} MB; load ${f.load_mb[app]?.instances_mb.join('/') ?? '-'} MB`,
        `after load idle ${f.idle_after_mb[app]?.instances_mb.join('/') ?? '-'} MB`,
        `max idle ${max} MB`,
        `<= ${TARGETS.idle_rss_mb} MB`,
        mark(max <= TARGETS.idle_rss_mb),
      ]);
    }
    const pr = f.provisioning;
    rows.push([
      'provisioning, nothing to change',
      'skipped' in pr ? `skipped: ${pr.skipped}` : `${pr.seconds} s`,
      '',
      'skipped' in pr ? '' : `changed=0: ${pr.changed_0}`,
      '',
      '',
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

/** Where each profiled process spent its (non-idle) CPU time: by package or area, then by function. */
export function profileReport(results: Results): string {
  const out: string[] = [];
  for (const { app, result, profiles } of results.proxy?.profiles ?? []) {
    for (const p of profiles) {
      out.push(`CPU profile of ${app} at 100 conn (${result.rps} req/s, ${p.busy_s} s busy): ${p.file}`);
      out.push(`  by area: ${p.areas.map((a) => `${a.name} ${a.percent}%`).join(', ')}`);
      out.push(...p.functions.slice(0, 10).map((f) => `  ${String(f.percent).padStart(5)}%  ${f.name}`));
    }
  }
  return out.join('\n');
}
