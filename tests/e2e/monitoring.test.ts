import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { appHosts, hostPrefix, hostsWithApps, onHost, type App, type Host } from '@crud-master/test-support/hosts';
import { eventually } from '@crud-master/test-support/http';
import { startBillingConsumer } from '@crud-master/test-support/operator';
import { pm2ProcessesOn } from '@crud-master/test-support/pm2';
import { monitor } from '@crud-master/test-support/stack';
import { expect } from 'chai';

/**
 * The monitor as the operator meets it: Prometheus scrapes every part of the platform, and a stopped billing-consumer
 * becomes an alert in Alertmanager (its UI's API, and `make status`) that resolves once the consumer is back.
 */
const checkout = fileURLToPath(new URL('../..', import.meta.url));
interface Target {
  labels: { job: string; instance: string };
  health: string;
  lastError: string;
}
interface Alert {
  labels: { alertname: string };
  status: { state: string };
}

const json = async <T>(url: string): Promise<T> => {
  const reply = await fetch(url);
  expect(reply.status, url).to.equal(200);
  return (await reply.json()) as T;
};
const targets = async () =>
  (await json<{ data: { activeTargets: Target[] } }>(`${monitor!.prometheus}/api/v1/targets`)).data.activeTargets;
const firing = async (alertname: string) =>
  (await json<Alert[]>(`${monitor!.alertmanager}/api/v2/alerts?filter=alertname%3D%22${alertname}%22`)).filter(
    (a) => a.status.state === 'active',
  );

describe('the monitor (Prometheus and Alertmanager: on this host after make local, or monitor-vm)', () => {
  before(function () {
    if (!monitor) this.skip();
  });

  it(
    'When the platform runs, ' + 'then Prometheus scrapes every part of it, one target per PM2 instance, all up',
    async function () {
      this.timeout(60_000);
      const instances = (app: App) => pm2ProcessesOn(appHosts[app]).filter((p) => p.name === app).length;
      // a node exporter on each machine, a PostgreSQL exporter on each database host
      const machines = hostsWithApps().length + (monitor!.ownMachine ? 1 : 0);
      const databaseHosts = new Set(['inventory', 'billing'].map((host) => hostPrefix(host as Host).join(' '))).size;
      const expected: Record<string, number> = {
        prometheus: 1,
        alertmanager: 1,
        node: machines,
        postgres: databaseHosts,
        rabbitmq: 1,
        'rabbitmq-queues': 1,
        'api-gateway': instances('api-gateway'),
        'inventory-api': instances('inventory-api'),
        'billing-consumer': instances('billing-consumer'),
      };
      // a target scraped before an app's restart (a test before this one) is up again by its next scrape
      const all = await eventually(
        async () => {
          const now = await targets();
          return now.every((t) => t.health === 'up') ? now : undefined;
        },
        45_000,
        'every target up',
      ).catch(async (error: Error) => {
        const down = (await targets())
          .filter((t) => t.health !== 'up')
          .map((t) => `${t.labels.job} ${t.labels.instance}: ${t.lastError}`);
        throw new Error(`${error.message}; down: ${down.join('; ')}`);
      });
      const perJob = all.reduce<Record<string, number>>(
        (acc, t) => ({ ...acc, [t.labels.job]: (acc[t.labels.job] ?? 0) + 1 }),
        {},
      );
      expect(
        perJob,
        'targets per job (api-gateway and inventory-api: group_vars crud_master_http_instances)',
      ).to.deep.equal(expected);
    },
  );

  // On monitor-vm (the Vagrant stage) only: on one host the same rules and packages would only be proven again.
  describe('when billing-consumer stops (on monitor-vm)', () => {
    before(function () {
      if (!monitor!.ownMachine) this.skip();
    });
    after(async function () {
      this.timeout(40_000);
      await startBillingConsumer();
    });

    it(
      'When billing-consumer is stopped, ' +
        'then BillingNotConsuming fires within 2 minutes, shows in make status, and resolves after pm2 ' +
        'start',
      async function () {
        this.timeout(240_000);
        expect(await firing('BillingNotConsuming'), 'before the stop').to.deep.equal([]);
        onHost('billing', 'pm2', ['stop', 'billing-consumer']);
        const stopped = Date.now();
        // `for: 1m`, after a scrape (15 s) and an evaluation (15 s)
        await eventually(
          async () => ((await firing('BillingNotConsuming')).length > 0 ? true : undefined),
          120_000,
          'BillingNotConsuming to fire',
        );
        console.log(`      fired ${Math.round((Date.now() - stopped) / 1000)} s after pm2 stop`);
        const status = execFileSync('make', ['--no-print-directory', 'status'], { cwd: checkout, encoding: 'utf8' });
        expect(status, 'make status').to.match(/^\s+alerts firing \(\d+;.*\n(\s{4}.*\n)*\s{4}BillingNotConsuming\b/m);

        onHost('billing', 'pm2', ['start', 'billing-consumer']);
        const started = Date.now();
        await eventually(
          async () => ((await firing('BillingNotConsuming')).length === 0 ? true : undefined),
          90_000,
          'BillingNotConsuming to resolve',
        );
        console.log(`      resolved ${Math.round((Date.now() - started) / 1000)} s after pm2 start`);
      },
    );
  });
});
