// Issue 23's slow flood on the Vagrant stage, for its isolation checks. Run in one guest's network namespace (the
// client's), it floods HOST:PORT from another guest's (FLOOD_NETNS) and meanwhile sends GET /api/movies from its own,
// one at a time, each on a new connection, until the gateway has closed every flood connection.
//   node --import tsx tests/vagrant/slow-flood-stage.ts HOST PORT FLOOD_NETNS CAP REQUEST_TIMEOUT_MS
// Prints one line: `ok FIGURES` when the firewall refused some flood connections (its cap per source, CAP), each one
// that got through was closed within the request timeout (+ 1 s for Node's check, + 2 s for a busy instance, + the
// flood's own lag) with a 4xx or none, none is left open, and every GET was answered 200; else `fail WHAT FIGURES`.
import { Agent } from 'node:http';
import {
  describeFlood,
  FLOOD_CONNECTIONS,
  FLOOD_TRICKLE_MS,
  probeDuringFlood,
} from '@crud-master/test-support/slow-flood';

const [host, port, netns, cap, requestTimeoutMs] = process.argv.slice(2);
const agent = new Agent({ keepAlive: false });
try {
  const { probe, report } = await probeDuringFlood(
    { host: host!, port: Number(port), netns, count: FLOOD_CONNECTIONS, trickleMs: FLOOD_TRICKLE_MS },
    { base: `http://${host}:${port}`, path: '/api/movies?limit=1', agent, pauseMs: 10 },
    60_000,
  );
  const closedWithinMs = Number(requestTimeoutMs) + 1_000 + 2_000 + report.lagMs;
  const faults = [
    report.opened === FLOOD_CONNECTIONS ? '' : `${report.opened} flood connections opened`,
    // a connection the gateway closes frees its place under the cap for another: what counts is that some are refused
    report.failed > 0 ? '' : `all ${report.connected} flood connections got through, none refused by the cap of ${cap}`,
    report.openNow === 0 ? '' : `${report.openNow} flood connections still open`,
    report.longestMs <= closedWithinMs ? '' : `a flood connection lived ${Math.round(report.longestMs)} ms`,
    // the connections held get 408; on the scale stage a few also got an early 400 (the report names the parser's
    // error code): an answer, and a close, all the same
    Object.keys(report.answers).every((answer) => answer === 'none' || /^4\d\d( |$)/.test(answer))
      ? ''
      : 'a flood connection got an answer other than a 4xx',
    probe.errors.length === 0 && [...probe.statuses.keys()].every((status) => status === 200)
      ? ''
      : 'a GET was not answered 200',
    probe.latencies.length > 100 ? '' : `only ${probe.latencies.length} GETs`,
  ].filter(Boolean);
  const figures = describeFlood(probe, report, 'this guest');
  console.log(faults.length ? `fail ${faults.join('; ')}: ${figures}` : `ok ${figures}`);
} finally {
  agent.destroy();
}
process.exit(0);
