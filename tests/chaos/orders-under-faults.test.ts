import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  countsWhenDrained,
  sendOrdersUnderFaults,
  tally,
  unexpected,
  type Fault,
} from '@crud-master/test-support/chaos';
import { unique } from '@crud-master/test-support/env';
import { untilReady } from '@crud-master/test-support/http';
import { openOrders, type TestOrders } from '@crud-master/test-support/orders';
import { pm2Processes } from '@crud-master/test-support/pm2';
import { stack } from '@crud-master/test-support/stack';
import { expect } from 'chai';

/**
 * A 202 is a promise that the order is stored exactly once. This posts CHAOS_ORDERS orders (2,000 by default) at
 * CHAOS_RATE per second (50) through the deployed gateway while it SIGKILLs billing-consumer several times and restarts
 * RabbitMQ and PostgreSQL once each, then 5 s more of orders once the faults are over. Every order that got a 202 must
 * be in billing_db exactly once, every other answer must be one a client can retry (503, or a connection error), and
 * every order after the faults must get a 202: how many 503s come during them depends on how long this machine's
 * RabbitMQ takes to restart.
 */
const { gateway } = stack;
const total = Number(process.env.CHAOS_ORDERS ?? 2_000);
const rate = Number(process.env.CHAOS_RATE ?? 50);
const DRAIN_LIMIT_MS = 180_000;
const RECOVERY_LIMIT_MS = 30_000;
const AFTER_FAULTS_SECONDS = 5;
const RECONNECT_MS = 2_000;

const run = promisify(execFile);
const asRoot = (command: string, ...args: string[]) =>
  process.getuid?.() === 0 ? run(command, args) : run('sudo', ['-n', command, ...args]);

const killConsumer = () => {
  for (const p of pm2Processes().filter((p) => p.name === 'billing-consumer' && p.pid > 0)) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch (error) {
      // already gone: PM2 is bringing it back after the previous kill
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }
  return Promise.resolve('SIGKILL billing-consumer');
};
/**
 * Restarts a service with an outage of a few seconds between stop and start (asynchronous: the orders keep coming),
 * optionally doing something while it is down.
 */
const restartWithOutage =
  (service: string, downSeconds: number, whileDown?: Fault): Fault =>
  async () => {
    await asRoot('service', service, 'stop');
    await sleep(downSeconds * 500);
    const during = whileDown ? `, ${await whileDown()} while it was down` : '';
    await sleep(downSeconds * 500);
    await asRoot('service', service, 'start');
    return `restart ${service} (${downSeconds} s down${during})`;
  };

/**
 * The faults, each at a fraction of the sending time (40 s by default). A RabbitMQ restart takes about 15 s here
 * (its init script waits for the node to stop, then to boot), so the PostgreSQL outage comes after it is back.
 */
const faults: Array<[number, Fault]> = [
  [0.05, killConsumer],
  [0.1, restartWithOutage('rabbitmq-server', 2)],
  [0.55, killConsumer],
  // the consumer dies while its database is down: the moment an ack before the commit would lose orders
  [0.65, restartWithOutage('postgresql', 4, killConsumer)],
  [0.85, killConsumer],
  [0.95, killConsumer],
];

describe('orders under faults (chaos)', function () {
  this.timeout(0);
  let orders: TestOrders;

  before(async () => {
    orders = await openOrders();
  });

  after(async () => {
    await orders.close();
  });

  it(
    `When ${total} orders arrive at ${rate}/s while the consumer is killed and RabbitMQ and ` +
      `PostgreSQL restart, ` +
      `then every 202 is stored exactly once, and every order after the faults is accepted`,
    async () => {
      const sendingMs = (total / rate) * 1000;
      const during = await sendOrdersUnderFaults({
        gateway,
        rate,
        orders: total,
        faults: faults.map(([fraction, fault]) => [fraction * sendingMs, fault]),
        keyOf: () => unique('chaos'),
      });
      await untilReady(gateway, RECOVERY_LIMIT_MS, 'the gateway to be ready again after the faults');
      // /readyz answers from one instance of the cluster; each reconnects on its own, a second apart at most
      await sleep(RECONNECT_MS);
      const after = await sendOrdersUnderFaults({
        gateway,
        rate,
        orders: rate * AFTER_FAULTS_SECONDS,
        faults: [],
        keyOf: () => unique('chaos'),
      });
      const outcomes = new Map([...during.outcomes, ...after.outcomes]);
      const accepted = [...outcomes].filter(([, outcome]) => outcome === 202).map(([key]) => key);
      const { counts, drainSeconds } = await countsWhenDrained(
        (keys) => orders.countsOf(keys),
        accepted,
        DRAIN_LIMIT_MS,
      );

      const others = unexpected(outcomes);
      const figures = {
        sent: during.outcomes.size,
        sentAfterFaults: after.outcomes.size,
        accepted202: accepted.length,
        unavailable503: tally(outcomes, 503),
        connectionErrors: tally(outcomes, 'connection error'),
        other: others.length,
        lost: counts.filter((n) => n === 0).length,
        duplicated: counts.filter((n) => n > 1).length,
        acceptedAfterFaults: tally(after.outcomes, 202),
        drainSeconds,
      };
      console.log(`      faults: ${during.log.join(', ')}`);
      console.log(`      chaos: ${JSON.stringify(figures)}`);

      expect(figures.sent).to.equal(total);
      expect(others, 'answers other than 202, 503 or a connection error').to.deep.equal([]);
      expect(figures.lost, 'orders answered 202 but missing from billing_db').to.equal(0);
      expect(figures.duplicated, 'orders stored more than once').to.equal(0);
      expect(figures.acceptedAfterFaults, 'orders accepted once the faults are over').to.equal(figures.sentAfterFaults);
    },
  );
});
