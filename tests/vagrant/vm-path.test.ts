import { execFileSync } from 'node:child_process';
import { unique } from '@crud-master/test-support/env';
import { appHosts, type Host } from '@crud-master/test-support/hosts';
import { eventually, request } from '@crud-master/test-support/http';
import { orderCounts, readyInQueue } from '@crud-master/test-support/operator';
import { parseJlist } from '@crud-master/test-support/pm2';
import { allStringsOrder, typedOrder } from '@crud-master/test-support/seed';
import { stack } from '@crud-master/test-support/stack';
import { expect } from 'chai';

/**
 * The VM path as its users walk it, with Vagrant itself: the seed's resilience scenario typed over `vagrant ssh`,
 * then a reboot (`vagrant reload`) of every machine. The Vagrant stage (vagrant-stage.sh) runs it in its sandbox
 * against the machines that `make up PROVIDER=docker` made:
 *   VAGRANT_CWD            the checkout whose Vagrantfile and .vagrant/ hold the machines
 *   E2E_GATEWAY_URL        gateway-vm's :8080 as forwarded to the host
 *   E2E_RABBITMQ_API_URL   billing-vm's management API as forwarded to the host (…:15672/api)
 */
const env = process.env;
const { gateway } = stack;
type Machine = `${Host}-vm`;

const vagrant = (...args: string[]): string =>
  execFileSync('vagrant', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
/** `vagrant ssh MACHINE -c COMMAND`, as the vagrant user, the way the seed's scenario is typed. */
const ssh = (machine: Machine, command: string): string => vagrant('ssh', machine, '-c', command);

const psqlBilling = (query: string): string =>
  ssh('billing-vm', `sudo -u postgres psql ${env.BILLING_DB_NAME ?? 'billing_db'} -tAc "${query}"`).trim();
const countsOf = (keys: string[]): number[] => orderCounts(psqlBilling, keys);

const postOrders = async (prefix: string, count: number): Promise<string[]> => {
  const keys = Array.from({ length: count }, () => unique(prefix));
  for (const [index, key] of keys.entries()) {
    const reply = await request(`${gateway}/api/billing`, {
      method: 'POST',
      headers: { 'Idempotency-Key': key },
      json: index % 2 === 0 ? typedOrder : allStringsOrder,
    });
    expect(reply.status, `POST /api/billing ${key}`).to.equal(202);
  }
  return keys;
};

/** The PM2 apps of a machine by name, with their status: read through `pm2 jlist` (the wrapper, as vagrant). */
const pm2Status = (machine: Machine, sudo = false): Record<string, string> =>
  Object.fromEntries(parseJlist(ssh(machine, `${sudo ? 'sudo ' : ''}pm2 jlist`)).map((app) => [app.name, app.status]));

describe('the VM path with Vagrant (make up PROVIDER=docker)', () => {
  it(
    "When the seed's scenario is typed over vagrant ssh, " +
      'then orders wait Ready in billing_queue and land once after pm2 restart',
    async function () {
      this.timeout(180_000);
      ssh('billing-vm', 'pm2 stop billing-consumer');
      expect(pm2Status('billing-vm')).to.deep.equal({ 'billing-consumer': 'stopped' });
      expect(pm2Status('billing-vm', true), '`sudo pm2 list` sees the same daemon as `pm2 list`').to.deep.equal(
        pm2Status('billing-vm'),
      );

      const before = await readyInQueue();
      const keys = await postOrders('vagrant-seed', 3);
      await eventually(
        async () => ((await readyInQueue()) === before + 3 ? true : undefined),
        15_000,
        'the management API on :15672 to show 3 more Ready',
      );
      expect(countsOf(keys), 'orders in billing_db while the consumer is stopped').to.deep.equal([0, 0, 0]);

      ssh('billing-vm', 'pm2 restart billing-consumer');
      await eventually(
        () => (countsOf(keys).every((n) => n === 1) ? true : undefined),
        30_000,
        'each order once in billing_db',
      );
      expect(ssh('billing-vm', 'pm2 logs billing-consumer --lines 20 --nostream')).to.include('billing-consumer');
      // The management API's counts lag by a few seconds: the next test starts from an empty queue it has seen.
      await eventually(async () => ((await readyInQueue()) === 0 ? true : undefined), 30_000, 'an empty billing_queue');
    },
  );

  it(
    'When every machine reboots with orders waiting, ' + 'then PM2 brings every app back and the orders land once',
    async function () {
      this.timeout(900_000);
      ssh('billing-vm', 'pm2 stop billing-consumer');
      const before = await readyInQueue();
      const keys = await postOrders('vagrant-reboot', 3);
      await eventually(
        async () => ((await readyInQueue()) === before + 3 ? true : undefined),
        15_000,
        '3 more Ready before the reboot',
      );

      vagrant('reload', '--no-provision');

      for (const [app, host] of Object.entries(appHosts)) {
        const machine: Machine = `${host}-vm`;
        const unit = ssh(
          machine,
          'systemctl is-active pm2-crud-master.service; systemctl is-enabled pm2-crud-master.service || true',
        )
          .trim()
          .replace(/\s+/g, ' ');
        expect(
          unit,
          `${machine}: the unit of \`pm2 startup\` (pm2-crud-master.service, roles/pm2 tasks/startup.yml) is active ` +
            'and enabled after boot',
        ).to.equal('active enabled');
        const online = await eventually(
          () => {
            const status = pm2Status(machine);
            return status[app] === 'online' ? status : undefined;
          },
          120_000,
          `${app} online on ${machine} after the reboot`,
        );
        expect(Object.keys(online)).to.have.members([app]);
        const failed = ssh(machine, 'systemctl list-units --failed --plain --no-legend').trim();
        expect(failed, `${machine}: failed units after the reboot`).to.not.match(/pm2|postgresql|rabbitmq|ssh/);
      }
      await eventually(
        () => (countsOf(keys).every((n) => n === 1) ? true : undefined),
        60_000,
        'the orders that waited through the reboot, each once in billing_db',
      );
      // PM2 says online as soon as it forks: the forwarded :8080 answers once api-gateway listens and has its broker.
      const ready = async () =>
        (await request(`${gateway}/readyz`).catch(() => undefined))?.status === 200 || undefined;
      await eventually(ready, 60_000, "gateway-vm's :8080 to answer /readyz 200 after the reboot");
    },
  );
});
