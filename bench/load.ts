/** Closed-loop HTTP load with autocannon: a fixed number of connections, each sending its next request on the reply. */
import autocannon from 'autocannon';
import { percentile, round } from './config.js';
import { cpuPerRequest, cpuSnapshot, type CpuGroups } from './processes.js';

export interface LoadResult {
  rps: number;
  ok: number;
  errors: number;
  non_ok: number;
  p50_ms: number;
  p99_ms: number;
  seconds: number;
  /** CPU ms per answered request, per process group (the sum is what one request costs the machine) */
  cpu_ms_per_request: CpuGroups;
}

/** One autocannon run; only the expected status counts as done, and latencies are kept with full precision. */
export async function load(options: autocannon.Options, okStatus: number): Promise<LoadResult> {
  const times: number[] = [];
  let ok = 0;
  let nonOk = 0;
  const cpuBefore = cpuSnapshot();
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(options, (err, res) =>
      err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(res),
    );
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (status === okStatus) {
        ok++;
        times.push(ms);
      } else nonOk++;
    });
  });
  const cpu = cpuPerRequest(cpuBefore, cpuSnapshot(), ok);
  const sorted = Float64Array.from(times).sort();
  const seconds = result.duration;
  return {
    rps: round(ok / seconds, 0),
    ok,
    errors: result.errors + result.timeouts,
    non_ok: nonOk,
    p50_ms: round(percentile(sorted, 50)),
    p99_ms: round(percentile(sorted, 99)),
    seconds: round(seconds, 1),
    cpu_ms_per_request: cpu,
  };
}
