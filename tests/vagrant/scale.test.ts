import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  countsWhenDrained,
  outcomeCounts,
  retryUntilAccepted,
  sendOrdersUnderFaults,
  tally,
  unexpected,
  type Fault,
} from '@crud-master/test-support/chaos';
import { unique } from '@crud-master/test-support/env';
import { eventually, request } from '@crud-master/test-support/http';
import { countsPerKey, management, managementAuth, orderCountsQuery } from '@crud-master/test-support/operator';
import { billingQueue, stack } from '@crud-master/test-support/stack';
import { stage } from '@crud-master/test-support/stage';
import { expect } from 'chai';

/**
 * Billing under broker faults, on the Vagrant stage's machines. Scaled out (`make scale-test`: BILLING_VM_COUNT=3,
 * six machines), the billing VMs' RabbitMQ nodes form one cluster, billing_queue and its dead-letter queue are quorum
 * queues with a replica on each, and orders survive a broker stopped on purpose and a billing VM halted, one after the
 * other, with at most 1% answered 503. With one billing VM (the three-VM stage) the same faults hit its single broker:
 * the 503s are only reported, for comparison; no order answered 202 is lost or stored twice either way.
 *   E2E_GATEWAY_URL        gateway-vm's :8080 as forwarded to the host
 *   E2E_RABBITMQ_API_URL   billing-vm's management API as forwarded to the host (…:15672/api)
 *   the machines and SCALE_*: tests/support/stage.ts
 */
const env = process.env;
const { gateway } = stack;
const { billingVms, brokerVm, orders: total, rate } = stage;
const { vhost, queue } = billingQueue;
const queues = [queue, `${queue}.dead-letter`];
const nodes = billingVms.map((vm) => `rabbit@${vm}`).sort();
const clustered = billingVms.length > 1;
const haltedVm = billingVms.at(-1)!;
/** How long a stopped broker and a halted VM stay down. */
const DOWN_MS = 5_000;
const DRAIN_LIMIT_MS = 300_000;

const run = promisify(execFile);
const onVm = async (vm: string, ...command: string[]) =>
  (await run(stage.onVm, [vm, ...command], { encoding: 'utf8', maxBuffer: 64 << 20 })).stdout;
const vagrant = async (...args: string[]) =>
  (await run('vagrant', args, { encoding: 'utf8', maxBuffer: 64 << 20 })).stdout;

const api = async (path: string) => (await request(`${management}${path}`, { headers: managementAuth })).body;
const queueInfo = (name: string) =>
  api(`/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`) as Promise<Record<string, any>>;
const runningNodes = async () =>
  ((await api('/nodes')) as Array<{ name: string; running: boolean }>)
    .filter((n) => n.running)
    .map((n) => n.name)
    .sort();

/** Every node running, every queue with an online replica on each, and a consumer on billing_queue from every VM
 * (undefined until then, also while the management API does not answer). */
async function clusterWhole(): Promise<true | undefined> {
  try {
    if (JSON.stringify(await runningNodes()) !== JSON.stringify(nodes)) return undefined;
    for (const name of queues) {
      const info = await queueInfo(name);
      if (info.type === 'quorum' && JSON.stringify([...(info.online ?? [])].sort()) !== JSON.stringify(nodes))
        return undefined;
      if (info.type === undefined) return undefined;
      if (name === queue && info.consumers !== billingVms.length) return undefined;
    }
    return true;
  } catch {
    return undefined;
  }
}

/** The nodes that api-gateway's connections (its broker user's) are on, e.g. "rabbit@billing-vm × 2". */
async function gatewayConnections(): Promise<string> {
  try {
    const connections = (await api('/connections')) as Array<{ user: string; node: string }>;
    const byNode = new Map<string, number>();
    for (const { node } of connections.filter((c) => c.user === env.RABBITMQ_PUBLISHER_USER))
      byNode.set(node, (byNode.get(node) ?? 0) + 1);
    return [...byNode].map(([node, count]) => `${node} × ${count}`).join(', ') || 'none';
  } catch {
    return 'unknown (the management API did not answer)';
  }
}

/** `rabbitmq-diagnostics check_if_node_is_quorum_critical` on a VM: stopping its node keeps every quorum. */
const quorumSafe = (vm: string) => async () =>
  onVm(vm, 'rabbitmq-diagnostics', '-q', 'check_if_node_is_quorum_critical').then(
    () => true as const,
    () => undefined,
  );

/**
 * billing_db's rows per message id for the orders whose key starts with `prefix` (psql as postgres on billing-vm);
 * by prefix, as thousands of keys in an IN list would overflow one command-line argument.
 */
async function countsOf(prefix: string, keys: string[]): Promise<number[]> {
  const sql = orderCountsQuery(`LIKE '${prefix}-%'`);
  return countsPerKey(
    await onVm(
      'billing-vm',
      'runuser',
      '-u',
      'postgres',
      '--',
      'psql',
      env.BILLING_DB_NAME ?? 'billing_db',
      '-XtAc',
      sql,
    ),
    keys,
  );
}

describe(
  `billing on ${billingVms.length} billing VM(s) under broker ` +
    `faults${clustered ? ', one RabbitMQ cluster (make scale-test)' : ''}`,
  function () {
    this.timeout(0);

    it('When the billing VMs are up, then the management API shows a running node on each', async () => {
      expect(await runningNodes(), 'running nodes (GET /api/nodes on billing-vm)').to.deep.equal(nodes);
    });

    it(
      'When the consumers have declared them on one node, ' +
        'then billing_queue and its dead-letter queue are classic queues',
      async function () {
        if (clustered) this.skip();
        for (const name of queues) expect((await queueInfo(name)).type, `${name}'s type`).to.equal('classic');
      },
    );

    it(
      'When the consumers have declared them on a cluster, ' +
        'then billing_queue and its dead-letter queue are quorum queues with a replica on every node',
      async function () {
        if (!clustered) this.skip();
        for (const name of queues) {
          const info = await eventually(
            async () => {
              const found = await queueInfo(name);
              return found.members !== undefined ? found : undefined;
            },
            30_000,
            `${name}'s members in the management API`,
          );
          expect(info.type, `${name}'s type`).to.equal('quorum');
          expect([...info.members].sort(), `${name}'s replicas`).to.deep.equal(nodes);
        }
        await eventually(clusterWhole, 60_000, 'every replica online and a consumer on every billing VM');
      },
    );

    it(
      `When orders arrive at ${rate}/s while ${brokerVm}'s broker stops and restarts, ` +
        `then ${haltedVm} halts and comes back, then each is stored exactly once`,
      async function () {
        // two nodes: the quorum of either queue is both (check_if_node_is_quorum_critical never passes)
        if (billingVms.length === 2 || (clustered && brokerVm === haltedVm) || !billingVms.includes(brokerVm))
          this.skip();
        const prefix = unique('scale');
        const steps: string[] = [];
        const loadStarted = Date.now();
        /** Runs one step of the faults and notes when it started (seconds into the load) and how long it took. */
        const step = async (what: string, action: () => Promise<unknown>) => {
          const started = Date.now();
          await action();
          steps.push(
            `${((started - loadStarted) / 1000).toFixed(1)}s ${what} (${((Date.now() - started) / 1000).toFixed(1)} s)`,
          );
        };
        // One after the other, never together: a quorum of three tolerates one node down. On one node the check passes
        // (no quorum queue) and both faults stop the only broker.
        const faults: Fault = async () => {
          steps.push(`api-gateway's connections: ${await gatewayConnections()}`);
          await step(`${brokerVm}: check_if_node_is_quorum_critical passes`, () =>
            eventually(quorumSafe(brokerVm), 120_000, `${brokerVm} not quorum-critical`),
          );
          await step(`${brokerVm}: systemctl stop rabbitmq-server`, () =>
            onVm(brokerVm, 'systemctl', 'stop', 'rabbitmq-server'),
          );
          await step(`${brokerVm}: broker down`, () => sleep(DOWN_MS));
          await step(`${brokerVm}: systemctl start rabbitmq-server`, () =>
            onVm(brokerVm, 'systemctl', 'start', 'rabbitmq-server'),
          );
          await step('the cluster whole again', () =>
            eventually(clusterWhole, 180_000, `${brokerVm} back in the cluster`),
          );
          steps.push(`api-gateway's connections: ${await gatewayConnections()}`);
          await step(`${haltedVm}: check_if_node_is_quorum_critical passes`, () =>
            eventually(quorumSafe(haltedVm), 120_000, `${haltedVm} not quorum-critical`),
          );
          await step(`vagrant halt ${haltedVm}`, () => vagrant('halt', haltedVm));
          await step(`${haltedVm}: halted`, () => sleep(DOWN_MS));
          await step(`vagrant up ${haltedVm} --no-provision`, () => vagrant('up', '--no-provision', haltedVm));
          await step('the cluster whole again', () =>
            eventually(clusterWhole, 300_000, `${haltedVm} back in the cluster, its consumer consuming`),
          );
          steps.push(`api-gateway's connections: ${await gatewayConnections()}`);
          return 'faults in sequence';
        };

        const sent = await sendOrdersUnderFaults({
          gateway,
          rate,
          orders: total,
          faults: [[3_000, faults]],
          untilFaultsDone: true,
          keyOf: (i) => `${prefix}-${i}`,
        });
        const retriesStarted = Date.now();
        const final = await retryUntilAccepted(gateway, sent);
        const retrySeconds = (Date.now() - retriesStarted) / 1000;
        const keys = [...final.keys()];
        const accepted = keys.filter((key) => final.get(key) === 202);
        const { counts, drainSeconds } = await countsWhenDrained(
          (some) => countsOf(prefix, some),
          accepted,
          DRAIN_LIMIT_MS,
        );

        const others = unexpected(sent.outcomes);
        const figures = {
          sent: sent.outcomes.size,
          accepted202: tally(sent.outcomes, 202),
          unavailable503: tally(sent.outcomes, 503),
          connectionErrors: tally(sent.outcomes, 'connection error'),
          other: others.length,
          retriedTo202: accepted.length - tally(sent.outcomes, 202),
          unresolved: keys.length - accepted.length,
          // what the last retry of each unresolved order got
          unresolvedAs: outcomeCounts([...final.values()].filter((outcome) => outcome !== 202)),
          lost: counts.filter((n) => n === 0).length,
          duplicated: counts.filter((n) => n > 1).length,
          sendSeconds: sent.seconds,
          retrySeconds,
          drainSeconds,
        };
        console.log(`      steps: ${steps.join('; ')}`);
        console.log(`      chaos: ${JSON.stringify(figures)}`);

        expect(figures.sent, 'orders sent').to.be.at.least(total);
        expect(others, 'answers other than 202, 503 or a connection error').to.deep.equal([]);
        expect(figures.unresolved, 'orders still not accepted after their retries').to.equal(0);
        expect(figures.lost, 'orders answered 202 (at once or on a retry) but missing from billing_db').to.equal(0);
        expect(figures.duplicated, 'orders stored more than once').to.equal(0);
        if (clustered)
          expect(
            figures.unavailable503 + figures.connectionErrors,
            'orders answered 503 (or not at all): at most 1%',
          ).to.be.at.most(figures.sent / 100);
      },
    );
  },
);
