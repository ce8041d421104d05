/**
 * Open-loop HTTP load: requests leave on a fixed schedule (`rate` per second) whether or not the earlier ones were
 * answered, as independent users would send them. Each latency is measured from the request's scheduled send time,
 * not from when it actually left: a stall (of the server or of this sender) then counts against every request it
 * delayed, instead of silently sending fewer requests during it ("coordinated omission", which a closed-loop tool
 * like autocannon has by construction).
 */
import { Pool } from 'undici';
import { percentile, round } from './config.js';
import { cpuPerRequest, cpuSnapshot, type CpuGroups } from './processes.js';

export interface OpenLoopResult {
  rate: number;
  /** requests scheduled in the measured window (after the warm-up) */
  sent: number;
  ok: number;
  non_ok: number;
  errors: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  /** how late this sender itself sent its requests (p99): large values mean the sender, not the server, lagged */
  send_lag_p99_ms: number;
  cpu_ms_per_request: CpuGroups;
}

/**
 * GETs `paths` (in turn) on `origin` at `rate` per second for `warmupS` unmeasured seconds, then `seconds` measured
 * ones, over a pool of at most `connections` keep-alive connections (a request that finds them all busy waits, and
 * that wait counts in its latency).
 */
export async function openLoop(
  origin: string,
  paths: string[],
  rate: number,
  seconds: number,
  warmupS: number,
  connections = 100,
): Promise<OpenLoopResult> {
  const pool = new Pool(origin, { connections, headersTimeout: 10_000, bodyTimeout: 10_000 });
  const interval = 1000 / rate;
  const warmup = Math.round(rate * warmupS);
  const total = warmup + Math.round(rate * seconds);
  const latencies: number[] = [];
  const lags: number[] = [];
  const replies: Array<Promise<void>> = [];
  let ok = 0;
  let nonOk = 0;
  let errors = 0;
  const cpuBefore = cpuSnapshot();
  const start = performance.now();
  const send = (i: number) => {
    const scheduled = start + i * interval;
    const measured = i >= warmup;
    if (measured) lags.push(performance.now() - scheduled);
    replies.push(
      pool.request({ method: 'GET', path: paths[i % paths.length]! }).then(
        async ({ statusCode, body }) => {
          await body.dump();
          if (!measured) return;
          if (statusCode === 200) {
            ok++;
            latencies.push(performance.now() - scheduled);
          } else nonOk++;
        },
        () => {
          if (measured) errors++;
        },
      ),
    );
  };
  try {
    await new Promise<void>((resolve) => {
      let next = 0;
      // every tick sends what is due by now; timers fire at best every millisecond, hence several at once at high rates
      const tick = () => {
        const due = Math.min(total, Math.floor((performance.now() - start) / interval) + 1);
        while (next < due) send(next++);
        if (next >= total) resolve();
        else setTimeout(tick, Math.max(0, start + next * interval - performance.now()));
      };
      tick();
    });
    await Promise.all(replies);
  } finally {
    await pool.close();
  }
  const sorted = Float64Array.from(latencies).sort();
  return {
    rate,
    sent: total - warmup,
    ok,
    non_ok: nonOk,
    errors,
    p50_ms: round(percentile(sorted, 50)),
    p90_ms: round(percentile(sorted, 90)),
    p99_ms: round(percentile(sorted, 99)),
    max_ms: round(sorted.at(-1) ?? NaN),
    send_lag_p99_ms: round(percentile(Float64Array.from(lags).sort(), 99)),
    cpu_ms_per_request: cpuPerRequest(cpuBefore, cpuSnapshot(), total),
  };
}
